"""CUBIC congestion avoidance (RFC 9438), Linux's default, in bytes, sans-IO.

After a loss the window drops to β = 0.7 of what it was (Linux: 717/1024) and then grows along a
cubic in the time since: fast while far below the window where the loss happened (W_max),
flat around it, fast again beyond. Where Reno would be faster (short RTTs, small windows) it
follows Reno's estimate instead (RFC 9438 §4.3). Slow start and HyStart are the caller's; HyStart
is left out, as a constant-delay path never trips its delay test.
"""

from __future__ import annotations

from typing import Final

C: Final = 0.4
"""Segments per second cubed (RFC 9438 §5.1)."""
BETA: Final = 717 / 1024
"""The multiplicative decrease, as Linux's ``beta`` (RFC 9438: 0.7)."""
ALPHA: Final = 3 * (1 - BETA) / (1 + BETA)
"""Reno-friendly additive increase per RTT (RFC 9438 §4.3)."""


class Cubic:
    """The window one sender keeps, in bytes; ``mss`` converts the RFC's segments."""

    def __init__(self, mss: int) -> None:
        self.mss = mss
        self.w_max = 0.0
        self._epoch_start = -1.0
        self._k = 0.0
        self._origin = 0.0
        self._w_est = 0.0
        self._carry = 0.0

    def reduced(self, cwnd: int) -> int:
        """A loss at window ``cwnd``: the slow-start threshold to drop to. With fast convergence
        (RFC 9438 §4.7) a loss below the last W_max remembers a lower one, so that a newcomer
        can take its share."""
        self.w_max = cwnd * (1 + BETA) / 2 if cwnd < self.w_max else float(cwnd)
        self._epoch_start = -1.0
        return max(int(cwnd * BETA), 2 * self.mss)

    def timed_out(self) -> None:
        """A retransmission timeout starts over (Linux's ``bictcp_reset`` in CA_Loss)."""
        self.w_max = 0.0
        self._epoch_start = -1.0

    def grown(self, cwnd: int, acked: int, now: float, min_rtt_s: float) -> int:
        """The window after ``acked`` bytes were acknowledged in congestion avoidance."""
        if acked <= 0 or cwnd <= 0:
            return cwnd
        mss = self.mss
        if self._epoch_start < 0:
            self._epoch_start = now
            self._w_est = float(cwnd)
            self._carry = 0.0
            if cwnd < self.w_max:
                self._k = ((self.w_max - cwnd) / (C * mss)) ** (1 / 3)
                self._origin = self.w_max
            else:
                self._k, self._origin = 0.0, float(cwnd)
        elapsed = now - self._epoch_start + max(min_rtt_s, 0.0)
        target = self._origin + C * mss * (elapsed - self._k) ** 3
        target = min(max(target, float(cwnd)), 1.5 * cwnd)  # RFC 9438 §4.2: at most 1.5x per RTT
        self._w_est += ALPHA * mss * acked / cwnd
        target = max(target, self._w_est)
        self._carry += (target - cwnd) * acked / cwnd
        step = int(self._carry)
        self._carry -= step
        return cwnd + step
