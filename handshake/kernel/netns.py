"""Network namespaces: create and remove them by name, and move one thread into one.

A namespace is created with ``ip netns add`` (which bind-mounts it at ``/run/netns/NAME``, so
``ip netns list`` and ``ip netns exec`` see it) and entered with ``setns(2)`` through ctypes:
Python 3.11 has no ``os.setns``. ``setns`` moves only the calling *thread*; everything that thread
then creates (sockets, TUN devices, child processes) belongs to that namespace for life, wherever
it is used afterwards. That is what makes the wrong-namespace hazard (DESIGN.md §4) real: the host
namespace routes 198.18.0.0/15 to a gateway that accepts anything, so a socket made in the wrong
place does not fail, it leaks. Hence ``ensure_in``: code that creates sockets checks the thread's
namespace first, by inode, and refuses.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import subprocess
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = [
    "NETNS_DIR", "Namespace", "WrongNamespace", "current_identity", "ensure_in", "in_namespace",
    "run_in", "create", "remove", "write_sysctl",
]

NETNS_DIR = "/run/netns"
"""Where ``ip netns`` keeps named namespaces (bind mounts of ``/proc/PID/ns/net``)."""

_CLONE_NEWNET = 0x40000000
_THREAD_NS = "/proc/thread-self/ns/net"
_libc = ctypes.CDLL(None, use_errno=True)
_libc.setns.argtypes = (ctypes.c_int, ctypes.c_int)
_libc.setns.restype = ctypes.c_int

T = TypeVar("T")


class WrongNamespace(RuntimeError):
    """The current thread is not in the namespace a socket or device was meant for."""


def _identity(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def current_identity() -> tuple[int, int]:
    """(device, inode) of the calling thread's network namespace: equal means same namespace."""
    return _identity(_THREAD_NS)


@dataclass(frozen=True)
class Namespace:
    """A named network namespace that exists (its identity is read when this is made)."""

    name: str
    """The name ``ip netns`` knows it by."""
    identity: tuple[int, int]
    """(device, inode) of its nsfs file: the same for every handle on this namespace."""

    @classmethod
    def open(cls, name: str) -> Namespace:
        return cls(name, _identity(os.path.join(NETNS_DIR, name)))

    @property
    def path(self) -> str:
        return os.path.join(NETNS_DIR, self.name)

    def contains_current_thread(self) -> bool:
        return current_identity() == self.identity


def ensure_in(namespace: Namespace) -> None:
    """Raise WrongNamespace unless the calling thread is in ``namespace``: call before any socket."""
    if not namespace.contains_current_thread():
        raise WrongNamespace(
            f"this thread is not in network namespace {namespace.name}: refusing to create a socket"
            " or device that would belong to another namespace (the host one reaches the outside)"
        )


def _setns(fd: int) -> None:
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"setns: {os.strerror(errno)}")


@contextlib.contextmanager
def in_namespace(namespace: Namespace) -> Iterator[None]:
    """Move the calling thread into ``namespace`` for the block, then back where it was.

    Checks both moves by inode. In the main thread a signal handler that raises (Ctrl-C,
    SIGTERM) can fire inside the block's ``finally`` before the move back; code that must never
    be left behind in a namespace uses ``run_in``, whose thread no signal interrupts.
    """
    origin = os.open(_THREAD_NS, os.O_RDONLY | os.O_CLOEXEC)
    try:
        origin_identity = _identity(f"/proc/self/fd/{origin}")
        target = os.open(namespace.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            _setns(target)
        finally:
            os.close(target)
        try:
            ensure_in(namespace)
            yield
        finally:
            _setns(origin)
            if current_identity() != origin_identity:  # pragma: no cover - setns succeeded
                raise WrongNamespace(f"could not return from network namespace {namespace.name}")
    finally:
        os.close(origin)


def run_in(namespace: Namespace, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call ``function`` in a fresh thread inside ``namespace`` and return (or raise) its result.

    The calling thread never changes namespace. What the function creates keeps the namespace:
    a socket made here works from any thread, a process started here lives in ``namespace``.
    """
    outcome: list[Any] = []

    def body() -> None:
        try:
            with in_namespace(namespace):
                outcome.append((True, function(*args, **kwargs)))
        except BaseException as error:  # noqa: BLE001 - handed to the caller
            outcome.append((False, error))

    thread = threading.Thread(target=body, name=f"netns-{namespace.name}", daemon=True)
    thread.start()
    thread.join()
    ok, value = outcome[0]
    if not ok:
        raise value
    return value


def _ip_batch(commands: Iterable[str], keep_going: bool = False) -> subprocess.CompletedProcess:
    """Run ``ip -batch -``: one process for several commands (each exec costs ≈ 3 ms).

    ``keep_going`` adds ``-force``: run every command even after one fails.
    """
    argv = ["ip", "-force", "-batch", "-"] if keep_going else ["ip", "-batch", "-"]
    script = "".join(f"{command}\n" for command in commands)
    return subprocess.run(argv, input=script, capture_output=True, text=True, check=False)


def create(names: Iterable[str]) -> list[Namespace]:
    """Create named namespaces (``ip netns add``); KernelUnavailable with ip's message if not.

    On failure some of them may exist: the caller removes ``names`` either way.
    """
    names = list(names)
    result = _ip_batch(f"netns add {name}" for name in names)
    if result.returncode != 0:
        from handshake.kernel.privileges import KernelUnavailable

        message = (result.stderr.strip().splitlines() or ["ip netns add failed"])[-1]
        raise KernelUnavailable(f"cannot create a network namespace: {message}")
    return [Namespace.open(name) for name in names]


def remove(names: Iterable[str]) -> None:
    """Delete named namespaces (``ip netns del``), ignoring ones that are already gone."""
    names = [name for name in names if os.path.exists(os.path.join(NETNS_DIR, name))]
    if names:
        _ip_batch((f"netns del {name}" for name in names), keep_going=True)


def write_sysctl(key: str, value: str | int) -> None:
    """Set a sysctl (``net.ipv4.tcp_fastopen``) for the calling thread's namespace.

    ``/proc/sys/net`` answers for the namespace of the thread that opens it, so this is per
    namespace when called inside ``in_namespace`` / ``run_in``.
    """
    with open("/proc/sys/" + key.replace(".", "/"), "w") as file:
        file.write(f"{value}\n")
