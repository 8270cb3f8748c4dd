"""The forwarder's per-packet work: read from one TUN, ask the link model, write into the other.

Like Mahimahi's ``mm-delay``, but delay, jitter, loss, rate, reordering and duplication are the
link model's (``handshake.net.link``), the same one the simulator uses, applied per packet on
``time.monotonic()``. A packet read from one TUN gets its arrival times from that direction's
``LinkDirection`` (none if lost, two if duplicated) and is written into the other TUN at those
times; a heap holds the scheduled deliveries. ``shim`` runs this in a thread or a process.

Timing: the loop sleeps in ``select()`` until ``spin_s`` before the next delivery, then polls
(``select`` with a zero timeout, so arriving packets are still read and timestamped on time)
until the moment comes. A sleep alone wakes late by the timer slack and the scheduler's latency;
asyncio's loop rounds its timeouts to whole milliseconds (DESIGN.md §4). The timer slack of the
thread is set to 1 ns for the same reason. A forwarder running at real-time priority
(``run_before_other_work``) wakes within microseconds even on a busy machine, and polls only for
the last ``REALTIME_SPIN_S``: at real-time priority a poll keeps ordinary work off that core.

Capture is the client's view, as a capture on the client host would be (and as the simulator
records it): client-to-server packets when the client's TUN hands them over, before any loss;
server-to-client packets when they are written into the client's TUN, after it.
"""

from __future__ import annotations

import ctypes
import heapq
import os
import select
import time
from collections.abc import Callable
from dataclasses import dataclass

from handshake.net.link import LinkConfig, LinkDirection
from handshake.trace.pcap import PcapWriter

__all__ = ["SPIN_S", "REALTIME_SPIN_S", "DropHook", "ShimStats", "Forwarder", "run_before_other_work"]

SPIN_S = 0.001
"""How long before a delivery the loop stops sleeping and polls instead."""
REALTIME_SPIN_S = 0.0001
"""The same, for a forwarder at real-time priority."""

_READ_SIZE = 65536
_BURST = 64  # packets read from one TUN before due deliveries get a turn
_PR_SET_TIMERSLACK = 29
_libc = ctypes.CDLL(None, use_errno=True)  # loaded here: a forked child must not dlopen

DropHook = Callable[[bool, bytes], bool]
"""``hook(from_client, packet) -> True`` drops the packet before the link model sees it."""

# Only what the topology is for is forwarded: IPv4 from the client's 198.18.0.0/16 to the
# server's 198.19.0.0/16 and back (the first two octets of the addresses at offsets 12 and 16).
_CLIENT_NET = bytes((198, 18))
_SERVER_NET = bytes((198, 19))


@dataclass
class ShimStats:
    """What the forwarder did."""

    read_c2s: int = 0
    """Packets the client sent (read from the client's TUN)."""
    read_s2c: int = 0
    """Packets the server sent."""
    hooked: int = 0
    """Packets the drop hook removed."""
    lost: int = 0
    """Packets the link model lost (a duplicated packet that loses one copy is not counted)."""
    delivered: int = 0
    """Copies written into the receiving TUN."""
    filtered: int = 0
    """Packets that were not IPv4 between 198.18.0.0/16 and 198.19.0.0/16: never forwarded."""
    write_errors: int = 0
    """Writes the receiving TUN refused."""
    late_s_max: float = 0.0
    """The most a delivery was written after its scheduled time (seconds)."""


def _between(packet: bytes, src_net: bytes, dst_net: bytes) -> bool:
    return (
        len(packet) >= 20 and packet[0] >> 4 == 4
        and packet[12:14] == src_net and packet[16:18] == dst_net
    )


def set_timer_slack_ns(ns: int) -> None:
    """prctl(PR_SET_TIMERSLACK) for the calling thread: how late the kernel may fire its timers."""
    _libc.prctl(_PR_SET_TIMERSLACK, ctypes.c_ulong(ns), ctypes.c_ulong(0), ctypes.c_ulong(0),
                ctypes.c_ulong(0))


def run_before_other_work() -> bool:
    """SCHED_FIFO (the lowest real-time priority) for the calling process, so that a packet due now
    leaves now even when every core is busy with ordinary work, as netem's do from the kernel's
    softirq. The kernel's real-time throttling (``sched_rt_runtime_us``: 95 % of each second)
    keeps a runaway loop from starving the machine. False where the system does not allow it."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
    except OSError:
        return False
    return True


class Forwarder:
    """The packet loop between two TUN descriptors; owns neither a thread nor the descriptors."""

    def __init__(self, client_fd: int, server_fd: int, link: LinkConfig, *,
                 pcap: PcapWriter | None = None, keep_packets: bool = False,
                 drop: DropHook | None = None, epoch_offset_s: float = 0.0) -> None:
        self.client_fd = client_fd
        self.server_fd = server_fd
        self.set_link(link)
        self.pcap = pcap
        self.keep_packets = keep_packets
        self.drop = drop
        self.epoch_offset_s = epoch_offset_s
        """Added to monotonic times for the pcap's wall-clock timestamps."""
        self.packets: list[tuple[float, bytes]] = []
        """The client's view as (monotonic time, IP packet), when ``keep_packets`` is set."""
        self.stats = ShimStats()
        self.stopping = False
        self.spin_s = SPIN_S
        self._heap: list[tuple[float, int, int, bytes]] = []
        self._seq = 0

    def set_link(self, link: LinkConfig) -> None:
        """Use a new link model from the next packet on (fresh random streams and queues);
        packets already scheduled keep their times."""
        self.link = link
        self._c2s = LinkDirection(link, "c2s")
        self._s2c = LinkDirection(link, "s2c")

    def run(self, control_fd: int, on_control: Callable[[], None]) -> None:
        """Forward until ``stopping``; call ``on_control()`` whenever ``control_fd`` is readable."""
        client_fd, server_fd = self.client_fd, self.server_fd
        readers = [client_fd, server_fd, control_fd]
        heap = self._heap
        monotonic = time.monotonic
        spin_s = self.spin_s
        while not self.stopping:
            now = monotonic()
            while heap and heap[0][0] <= now:
                scheduled, _, fd, packet = heapq.heappop(heap)
                self._write(fd, packet, scheduled)
            if heap:
                wait = heap[0][0] - monotonic()
                timeout = wait - spin_s if wait > spin_s else 0.0
            else:
                timeout = None
            ready, _, _ = select.select(readers, [], [], timeout)
            for fd in ready:
                if fd == client_fd:
                    self._forward(client_fd, server_fd, True)
                elif fd == server_fd:
                    self._forward(server_fd, client_fd, False)
                else:
                    on_control()

    def _record(self, when: float, packet: bytes) -> None:
        if self.keep_packets:
            self.packets.append((when, packet))
        if self.pcap is not None:
            self.pcap.write(when + self.epoch_offset_s, packet)

    def _write(self, fd: int, packet: bytes, scheduled: float) -> None:
        now = time.monotonic()
        if fd == self.client_fd:
            # Recorded before the write: once written, the client may already have read it,
            # and whoever takes the packets next must find it there.
            self._record(now, packet)
        try:
            os.write(fd, packet)
        except OSError:  # a TUN refuses only malformed packets; the client's view keeps it
            self.stats.write_errors += 1
            return
        self.stats.delivered += 1
        if now - scheduled > self.stats.late_s_max:
            self.stats.late_s_max = now - scheduled

    def _forward(self, src_fd: int, dst_fd: int, from_client: bool) -> None:
        """Read up to _BURST packets from ``src_fd`` and schedule (or write) their copies."""
        stats = self.stats
        heap = self._heap
        if from_client:
            direction, src_net, dst_net = self._c2s, _CLIENT_NET, _SERVER_NET
        else:
            direction, src_net, dst_net = self._s2c, _SERVER_NET, _CLIENT_NET
        capturing = from_client and (self.keep_packets or self.pcap is not None)
        for _ in range(_BURST):
            try:
                packet = os.read(src_fd, _READ_SIZE)
            except BlockingIOError:
                return
            now = time.monotonic()
            if from_client:
                stats.read_c2s += 1
                if capturing:
                    self._record(now, packet)
            else:
                stats.read_s2c += 1
            if not _between(packet, src_net, dst_net):
                stats.filtered += 1
                continue
            drop = self.drop
            if drop is not None and drop(from_client, packet):
                stats.hooked += 1
                continue
            arrivals = direction.transmit(len(packet), now)
            if not arrivals:
                stats.lost += 1
            for arrival in arrivals:
                if arrival <= now and not (heap and heap[0][0] <= arrival):
                    self._write(dst_fd, packet, arrival)  # due already, and nothing due before it
                else:
                    self._seq += 1
                    heapq.heappush(heap, (arrival, self._seq, dst_fd, packet))
