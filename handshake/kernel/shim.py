"""The shim: the forwarder (``forwarder.Forwarder``) running on its own, in a process or a thread.

``ShimProcess`` (what ``Topology`` uses by default) forks a child that runs only the forwarder
loop, so the caller's Python work cannot delay packets: in one process the forwarder thread
needs the GIL for every packet, and a caller busy with TLS or QUIC computation holds it for up
to ``sys.getswitchinterval()`` (5 ms) at a time -- measured: median error 0.3 ms idle, 4 to
47 ms with a CPU-bound main thread, seconds at the tail. ``ShimThread`` runs the same loop in a
thread of the caller's process: no fork, and the drop hook shares the caller's memory.
Either way the forwarder runs at real-time priority (``run_before_other_work``: its process,
or only its thread), so other work on a busy machine cannot make a delivery late.

Both have one interface (``Shim``): ``start``, ``stop``, ``packets``, ``take_packets``,
``stats``, ``error``, ``set_link``, ``set_drop``, ``epoch_offset_s``. With ``ShimProcess`` the
drop hook given to the constructor is inherited by the fork, so it may be any callable, but
what it changes happens in the child; one given later to ``set_drop`` is pickled across, and
the child's captured packets come back by pickle too.

The child: ignores Ctrl-C and SIGHUP (the owner stops it), closes every descriptor but its
TUNs, its control socket and the capture file (a copy of one of the caller's sockets would keep
that socket open after the caller closed it), turns off the cyclic GC (no pauses; it builds no
cycles), and exits as soon as its control socket reaches end of file, i.e. when its owner dies,
even by SIGKILL. It never returns into the caller's code: it ends with ``os._exit``. Forking a
process that has threads is safe here because the child only runs code imported before the
fork and takes no lock another thread could have held (no imports, no logging, no dlopen).
"""

from __future__ import annotations

import abc
import dataclasses
import gc
import os
import pickle
import signal
import socket
import threading
import time
import traceback
from multiprocessing.connection import Connection
from typing import Any

from handshake.errors import UsageError
from handshake.kernel.forwarder import (REALTIME_SPIN_S, DropHook, Forwarder, ShimStats, run_before_other_work,
                                       set_timer_slack_ns)
from handshake.net.link import LinkConfig
from handshake.trace.pcap import LINKTYPE_RAW, PcapWriter

__all__ = ["DropHook", "ShimStats", "ShimFailed", "Shim", "ShimThread", "ShimProcess", "make_shim"]


class ShimFailed(RuntimeError):
    """The forwarder stopped with an error (a drop hook raised, the shim process died)."""


def _open_capture(path: str | os.PathLike) -> int:
    """Create the capture file as PcapWriter does (mode 0644 whatever the umask); a file that
    cannot be created is the user's error, one line."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    except OSError as error:
        raise UsageError(f"cannot write capture {os.fsdecode(path)}: {error.strerror}") from None
    try:
        os.fchmod(fd, 0o644)
    except OSError:
        pass
    return fd


class Shim(abc.ABC):
    """Forward packets between the client's and the server's TUN descriptors through the link.

    The descriptors stay the caller's to close, after ``stop``.
    """

    epoch_offset_s: float
    """Add to a monotonic time for the wall-clock time the pcap records."""
    link: LinkConfig
    """The link model in use (the last one given)."""

    @abc.abstractmethod
    def start(self) -> None: ...

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop forwarding (scheduled packets are dropped), close the capture file; idempotent."""

    @property
    @abc.abstractmethod
    def running(self) -> bool: ...

    @property
    @abc.abstractmethod
    def packets(self) -> list[tuple[float, bytes]]:
        """The client's view so far as (monotonic time, IP packet), if ``keep_packets``."""

    @abc.abstractmethod
    def take_packets(self) -> list[tuple[float, bytes]]:
        """The captured packets, emptied: one list per run or variant."""

    @property
    @abc.abstractmethod
    def stats(self) -> ShimStats: ...

    @property
    @abc.abstractmethod
    def error(self) -> BaseException | None:
        """What stopped the forwarder, if it did not stop cleanly."""

    @abc.abstractmethod
    def set_link(self, link: LinkConfig) -> None:
        """A new link model from the next packet on; scheduled packets keep their times."""

    @abc.abstractmethod
    def set_drop(self, drop: DropHook | None) -> None:
        """A new drop hook (None: none) from the next packet on."""

    @abc.abstractmethod
    def _stat_path(self) -> str | None: ...

    def cpu_s(self) -> tuple[float, float]:
        """(user, system) CPU seconds the forwarder has used so far (0, 0 when not running)."""
        path = self._stat_path()
        try:
            with open(path or "", "rb") as file:
                fields = file.read().rsplit(b")", 1)[1].split()
        except OSError:
            return 0.0, 0.0
        ticks = os.sysconf("SC_CLK_TCK")
        return int(fields[11]) / ticks, int(fields[12]) / ticks  # utime, stime: fields 14, 15


def make_shim(client_fd: int, server_fd: int, link: LinkConfig, *, isolate: bool = True,
              capture: str | os.PathLike | None = None, keep_packets: bool = False,
              drop: DropHook | None = None) -> Shim:
    """A ShimProcess (``isolate``) or a ShimThread, not yet started."""
    kind = ShimProcess if isolate else ShimThread
    return kind(client_fd, server_fd, link, capture=capture, keep_packets=keep_packets, drop=drop)


# --- in a thread ---------------------------------------------------------------------------

class ShimThread(Shim):
    """The forwarder in a daemon thread of this process."""

    def __init__(self, client_fd: int, server_fd: int, link: LinkConfig, *,
                 capture: str | os.PathLike | None = None, keep_packets: bool = False,
                 drop: DropHook | None = None) -> None:
        self.epoch_offset_s = time.time() - time.monotonic()
        self.link = link
        self._capture_file = os.fdopen(_open_capture(capture), "wb") if capture is not None else None
        pcap = PcapWriter(self._capture_file, LINKTYPE_RAW) if self._capture_file is not None else None
        self._forwarder = Forwarder(client_fd, server_fd, link, pcap=pcap, keep_packets=keep_packets,
                                    drop=drop, epoch_offset_s=self.epoch_offset_s)
        self._error: BaseException | None = None
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._thread = threading.Thread(target=self._run, name="handshake-shim", daemon=True)
        self._ready = threading.Event()
        self._stopped = False

    def _run(self) -> None:
        set_timer_slack_ns(1)
        if run_before_other_work():  # this thread only: on Linux, scheduling is per thread
            self._forwarder.spin_s = REALTIME_SPIN_S
        self._ready.set()
        try:
            self._forwarder.run(self._wake_r, self._drain)
        except BaseException as error:  # noqa: BLE001 - kept for the owner
            self._error = error

    def _drain(self) -> None:
        try:
            os.read(self._wake_r, 4096)
        except BlockingIOError:
            pass

    def start(self) -> None:
        """Returns once the thread runs as it will forward (as ShimProcess waits for "ready")."""
        self._thread.start()
        self._ready.wait()

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._forwarder.stopping = True
        os.write(self._wake_w, b"x")
        if self._thread.is_alive():
            self._thread.join()
        os.close(self._wake_r)
        os.close(self._wake_w)
        if self._capture_file is not None:
            self._capture_file.close()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    @property
    def packets(self) -> list[tuple[float, bytes]]:
        return self._forwarder.packets

    def take_packets(self) -> list[tuple[float, bytes]]:
        taken, self._forwarder.packets = self._forwarder.packets, []
        return taken

    @property
    def stats(self) -> ShimStats:
        return dataclasses.replace(self._forwarder.stats)  # a snapshot, as ShimProcess gives

    @property
    def error(self) -> BaseException | None:
        return self._error

    def set_link(self, link: LinkConfig) -> None:
        self.link = link
        self._forwarder.set_link(link)

    def set_drop(self, drop: DropHook | None) -> None:
        self._forwarder.drop = drop

    def _stat_path(self) -> str | None:
        tid = self._thread.native_id
        return f"/proc/self/task/{tid}/stat" if tid is not None and self.running else None


# --- in a process --------------------------------------------------------------------------

def _portable(error: BaseException | None) -> BaseException | None:
    """The error itself if it pickles, else a RuntimeError that names it."""
    if error is None:
        return None
    try:
        pickle.dumps(error)
        return error
    except Exception:  # noqa: BLE001 - any pickling failure
        return RuntimeError(repr(error))


class _Child:
    """The forked side: runs the forwarder and answers the owner's requests."""

    def __init__(self, conn: Connection, forwarder: Forwarder) -> None:
        self.conn = conn
        self.forwarder = forwarder
        self.error: BaseException | None = None
        self.done = False

    def serve(self) -> None:
        try:
            self.forwarder.run(self.conn.fileno(), self.answer)
        except BaseException as error:  # noqa: BLE001 - e.g. the drop hook raised
            self.error = error
        while not self.done:  # forwarding has stopped; still answer until told to stop
            self.answer()

    def answer(self) -> None:
        forwarder = self.forwarder
        try:
            command, argument = self.conn.recv()
        except (EOFError, OSError):  # the owner is gone
            forwarder.stopping = self.done = True
            return
        reply: Any = None
        if command == "peek":
            reply = list(forwarder.packets)
        elif command == "take":
            reply, forwarder.packets = forwarder.packets, []
        elif command == "stats":
            reply = forwarder.stats
        elif command == "error":
            reply = _portable(self.error)
        elif command == "link":
            forwarder.set_link(argument)
        elif command == "drop":
            forwarder.drop = argument
        elif command == "stop":
            if forwarder.pcap is not None:
                forwarder.pcap.close()
            reply = (forwarder.packets, forwarder.stats, _portable(self.error))
            forwarder.stopping = self.done = True
        self.conn.send(reply)


def _close_all_but(keep: set[int]) -> None:
    low = 0
    for fd in sorted(keep):
        if fd > low:
            os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 1 << 20)


def _child_main(control_fd: int, client_fd: int, server_fd: int, capture_fd: int | None,
                link: LinkConfig, keep_packets: bool, drop: DropHook | None,
                epoch_offset_s: float) -> None:
    gc.disable()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        signal.set_wakeup_fd(-1)  # an asyncio owner's wakeup fd is about to be closed here
    except ValueError:
        pass
    keep = {0, 1, 2, control_fd, client_fd, server_fd}
    if capture_fd is not None:
        keep.add(capture_fd)
    _close_all_but(keep)
    set_timer_slack_ns(1)
    conn = Connection(control_fd)
    pcap = PcapWriter(os.fdopen(capture_fd, "wb"), LINKTYPE_RAW) if capture_fd is not None else None
    forwarder = Forwarder(client_fd, server_fd, link, pcap=pcap, keep_packets=keep_packets,
                          drop=drop, epoch_offset_s=epoch_offset_s)
    if run_before_other_work():
        forwarder.spin_s = REALTIME_SPIN_S
    conn.send("ready")
    _Child(conn, forwarder).serve()


class ShimProcess(Shim):
    """The forwarder in a forked child process, out of reach of this process's GIL."""

    def __init__(self, client_fd: int, server_fd: int, link: LinkConfig, *,
                 capture: str | os.PathLike | None = None, keep_packets: bool = False,
                 drop: DropHook | None = None) -> None:
        self.epoch_offset_s = time.time() - time.monotonic()
        self.link = link
        self._args = (client_fd, server_fd, link, keep_packets, drop)
        self._capture_fd = _open_capture(capture) if capture is not None else None
        self._conn: Connection | None = None
        self._pid: int | None = None
        self._final: tuple[list[tuple[float, bytes]], ShimStats, BaseException | None] | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        client_fd, server_fd, link, keep_packets, drop = self._args
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        pid = os.fork()
        if pid == 0:  # the child: never return from here
            status = 1
            try:
                parent.close()
                _child_main(child.detach(), client_fd, server_fd, self._capture_fd, link,
                            keep_packets, drop, self.epoch_offset_s)
                status = 0
            except BaseException:  # noqa: BLE001 - say why on stderr, then go
                traceback.print_exc()
            finally:
                os._exit(status)
        self._pid = pid
        child.close()
        if self._capture_fd is not None:
            os.close(self._capture_fd)  # the child writes it now
            self._capture_fd = None
        self._conn = Connection(parent.detach())
        try:
            if self._conn.recv() != "ready":
                raise EOFError
        except (EOFError, OSError):
            self._gone("did not start")

    def _gone(self, what: str) -> None:
        """The child is dead or unreachable: reap it and keep an error for ``error``."""
        status = self._reap()
        how = f"signal {-status}" if status is not None and status < 0 else f"status {status}"
        self._final = ([], ShimStats(), ShimFailed(f"the shim process {what} ({how})"))
        raise self._final[2]

    def _reap(self) -> int | None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        pid, self._pid = self._pid, None
        if pid is None:
            return None
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status)

    def _call(self, command: str, argument: Any = None) -> Any:
        with self._lock:
            if self._conn is None:
                raise ShimFailed("the shim process is not running")
            try:
                self._conn.send((command, argument))
                return self._conn.recv()
            except (EOFError, OSError):
                self._gone("died")

    def stop(self) -> None:
        if self._final is not None or self._conn is None:
            if self._capture_fd is not None:  # never started
                os.close(self._capture_fd)
                self._capture_fd = None
            return
        try:
            self._final = self._call("stop")
        except ShimFailed:
            return  # _gone kept the reason
        self._reap()

    @property
    def running(self) -> bool:
        return self._conn is not None and self._final is None

    @property
    def packets(self) -> list[tuple[float, bytes]]:
        return self._final[0] if self._final is not None else self._call("peek")

    def take_packets(self) -> list[tuple[float, bytes]]:
        if self._final is not None:
            taken, self._final = self._final[0], ([], *self._final[1:])
            return taken
        return self._call("take")

    @property
    def stats(self) -> ShimStats:
        return self._final[1] if self._final is not None else self._call("stats")

    @property
    def error(self) -> BaseException | None:
        if self._final is not None:
            return self._final[2]
        return self._call("error") if self._conn is not None else None

    def set_link(self, link: LinkConfig) -> None:
        self.link = link
        self._call("link", link)

    def set_drop(self, drop: DropHook | None) -> None:
        try:
            pickle.dumps(drop)
        except Exception as error:  # noqa: BLE001
            raise TypeError(
                f"the drop hook goes to the shim process by pickle and this one does not pickle"
                f" ({error}); pass it to the constructor, or use ShimThread"
            ) from None
        self._call("drop", drop)

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs."""
        return self._pid

    def _stat_path(self) -> str | None:
        return f"/proc/{self._pid}/stat" if self._pid is not None else None
