"""The window a Linux receiver offers, and how it grows: receive-buffer autotuning, sans-IO.

Linux does not offer its whole buffer at once. A connection starts with ``tcp_rmem[1]`` (128 KB)
of buffer, of which it may offer the part data will fill (the scaling ratio: payload over the
memory each packet takes, measured on the kernel engine's TUN at 0.62, so about 80 KB), and starts
offering 64 KB (``tcp_select_initial_window``), growing that by two segments per data segment
received (``tcp_grow_window``). Once per round trip, if the application read more than in the
round trip before, the buffer grows (dynamic right-sizing, ``tcp_rcv_space_adjust`` as Linux
4.19-6.16 has it): to twice what it read plus 16 segments, for a loss, and twice more for each
doubling of the rate, for a sender in slow start, up to ``tcp_rmem[2]``. Linux 6.18, the kernel
engine's here, grew its window more slowly at first (174, 251, 650 KB and 1.46 MB in the four
round trips after the first 80 KB of a 1.5 MB page; this rule gives 418, 696 KB and 1.67 MB in
three), but both finish that page alike. Data held out of order takes its room from what is
offered, and the window's right edge never moves back (the caller keeps that): so a hole stops a
sender at one window past it until it is filled, however large its congestion window.

The application here reads at once, as the sim's endpoints do.
"""

from __future__ import annotations

from typing import Final

DEFAULT_BUFFER: Final = 131072
"""``net.ipv4.tcp_rmem[1]``: a new socket's receive buffer."""
MAX_BUFFER: Final = 32 * 1024 * 1024
"""``net.ipv4.tcp_rmem[2]``: what autotuning may grow it to (Debian's kernels: 32 MB)."""
SCALING_RATIO: Final = 0.62
"""Window bytes per byte of buffer: 1448 bytes of payload in about 2.3 KB of packet memory, as
measured through the kernel engine's TUN (80,896 bytes offered from 131,072 of buffer)."""
INITIAL_RATIO: Final = 0.5
"""The ratio assumed before any packet was measured (``TCP_DEFAULT_SCALING_RATIO``): the SYN's window."""


class ReceiveWindow:
    """One receiver's window; ``mss``: the largest segment it expects (its advertised MSS)."""

    def __init__(self, mss: int, buffer: int = DEFAULT_BUFFER, max_buffer: int = MAX_BUFFER) -> None:
        self.buffer = buffer
        self.max_buffer = max_buffer
        self.clamp = int(buffer * SCALING_RATIO)
        """The most it may offer (``window_clamp``)."""
        initial = int(buffer * INITIAL_RATIO)
        self.initial = initial - initial % mss if initial > mss else initial
        """What the SYN offers: 64,240 bytes with a 1460-byte MSS, as Linux's SYNs show."""
        self.offer_limit = self.initial
        """Grows toward the clamp as data arrives (``rcv_ssthresh``)."""
        self._mss = mss
        self._space = 10 * mss  # rcvq_space.space: what the application read in the last measure
        self._read = 0
        self._measure_start = -1.0

    def segment_arrived(self, size: int) -> None:
        """In-order data of ``size`` bytes arrived (``tcp_grow_window`` for a full-sized skb)."""
        if size >= 128 and self.offer_limit < self.clamp:
            self.offer_limit = min(self.offer_limit + 2 * self._mss, self.clamp)

    def read(self, size: int, now: float, rtt_s: float | None) -> None:
        """The application read ``size`` bytes at ``now``; ``rtt_s``: the receiver's RTT estimate.
        Once a round trip has passed since the measure began, grow the buffer as the module says
        if more was read in it than in the measure before."""
        if self._measure_start < 0:
            self._measure_start = now
        self._read += size
        if rtt_s is None or now - self._measure_start < rtt_s:
            return
        if self._read > self._space:
            window = 2 * self._read + 16 * self._mss
            window += 2 * window * (self._read - self._space) // self._space
            self._space = self._read
            grown = min(int(window / SCALING_RATIO), self.max_buffer)
            if grown > self.buffer:
                self.buffer = grown
                self.clamp = int(grown * SCALING_RATIO)
        self._read = 0
        self._measure_start = now

    def offered(self, held_out_of_order: int) -> int:
        """The window to offer now, before the no-shrink rule: what is left of the clamp beside
        the bytes held out of order, no more than the offer limit."""
        return max(min(self.clamp - held_out_of_order, self.offer_limit), 0)
