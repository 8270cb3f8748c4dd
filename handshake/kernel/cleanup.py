"""Leave nothing behind: name each run's namespaces after their owner, reap those of dead owners.

A run that is SIGKILLed cannot clean up: its namespaces stay mounted under ``/run/netns`` and
the processes it started inside them (a server, the user's command) keep running. So every
namespace name says who owns it -- ``hs-PID-START-N-ROLE``, where START is the owner's start time
in clock ticks since boot (``/proc/PID/stat`` field 22), because PIDs are reused (pid_max is
often 32768) and a PID alone cannot tell a live owner from a stranger who got its number. Each
new run, and ``handshake shim --cleanup``, removes the namespaces whose owner is gone, after
killing whatever still runs inside them. Namespaces of live runs are never touched, so two runs
at once are safe.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
from collections.abc import Iterable
from dataclasses import dataclass

from handshake.kernel import netns

__all__ = ["PREFIX", "Owner", "new_names", "owner_of", "leftovers", "pids_in", "kill_inside", "reap_leftovers"]

PREFIX = "hs-"
_NAME = re.compile(r"^hs-(\d+)-(\d+)-(\d+)-(client|server)$")
_counter = itertools.count()
_DEAD_STATES = (b"Z", b"X")
"""/proc/PID/stat states of a process that has exited: zombie, dead."""


@dataclass(frozen=True)
class Owner:
    """The process a namespace belongs to."""

    pid: int
    start_ticks: int
    """Its start time in clock ticks since boot: with the PID, unique for the machine's uptime."""

    def alive(self) -> bool:
        return _start_ticks(self.pid) == self.start_ticks


def _start_ticks(pid: int) -> int | None:
    """The start time of a running process; None for no process, or a zombie (a run killed
    and not yet waited for by its parent: dead, though its PID still answers)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            stat = file.read()
    except OSError:
        return None
    # Field 2 (comm) may hold spaces and parentheses; the fields after its last ')' start at 3.
    fields = stat[stat.rindex(b")") + 2:].split()
    return None if fields[0] in _DEAD_STATES else int(fields[19])


def new_names(roles: Iterable[str] = ("client", "server")) -> list[str]:
    """Fresh names owned by this process, unique within it: ``hs-PID-START-N-ROLE``."""
    pid = os.getpid()
    start = _start_ticks(pid)
    n = next(_counter)
    return [f"{PREFIX}{pid}-{start}-{n}-{role}" for role in roles]


def owner_of(name: str) -> Owner | None:
    """The owner a name records, or None for a name this tool did not make."""
    match = _NAME.match(name)
    return Owner(int(match[1]), int(match[2])) if match else None


def leftovers() -> list[str]:
    """Names of this tool's namespaces whose owner is no longer running."""
    try:
        names = sorted(os.listdir(netns.NETNS_DIR))
    except FileNotFoundError:
        return []
    return [name for name in names if (owner := owner_of(name)) is not None and not owner.alive()]


def pids_in(identity: tuple[int, int]) -> list[int]:
    """Processes whose (main thread's) network namespace is ``identity`` (``ip netns pids``)."""
    found = []
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            st = os.stat(f"/proc/{entry}/ns/net")
        except OSError:  # gone, or a kernel thread
            continue
        if (st.st_dev, st.st_ino) == identity:
            found.append(int(entry))
    return found


def kill_inside(names: Iterable[str]) -> list[int]:
    """SIGKILL every process still running in the named namespaces; return their PIDs."""
    killed = []
    for name in names:
        try:
            identity = netns.Namespace.open(name).identity
        except OSError:
            continue
        for pid in pids_in(identity):
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except ProcessLookupError:
                pass
    return killed


def reap_leftovers() -> list[str]:
    """Remove the namespaces of dead owners, killing what runs inside; return their names."""
    names = leftovers()
    if names:
        kill_inside(names)
        netns.remove(names)
    return [name for name in names if not os.path.exists(os.path.join(netns.NETNS_DIR, name))]
