"""What a TCP sender knows of its segments in flight: the SACK scoreboard and RACK, sans-IO.

Linux marks a segment lost by *time*, not by duplicate ACKs (RACK-TLP, RFC 8985, its default
since 4.18): a segment is lost once a segment sent after it has been delivered (acknowledged or
selectively acknowledged, RFC 2018) and a round trip plus a reordering window has passed since it
was sent. The window is a quarter of the minimum RTT, and nothing while three or more segments
are SACKed or the sender is already recovering, as long as the path has not been seen to reorder
(``tcp_rack_reo_wnd``): so three SACKed segments behind a hole mark it lost at once, as the old
duplicate-ACK threshold did, and one or two start a timer instead.

Offsets here are stream offsets (bytes from the ISN), never wrapped; the connection turns
sequence numbers into them. What was delivered and what is in flight are counted in segments,
as Linux counts its congestion window in packets.
"""

from __future__ import annotations

from typing import Final

DUPLICATE_THRESHOLD: Final = 3
"""SACKed segments from which no reordering window is waited for (``tp->reordering``'s start)."""
_TIME_EPSILON: Final = 1e-9


class SentSegment:
    """One segment as sent: its bytes ``[start, end)`` (a FIN counts one) and what became of it."""

    def __init__(self, start: int, end: int, sent_at: float, order: int, fin: bool) -> None:
        self.start = start
        self.end = end
        self.sent_at = sent_at
        """When it was last sent (a retransmission restarts it)."""
        self.order = order
        """Its place among everything sent: which of two sent at the same instant went first
        (Linux breaks such ties by sequence, its clock being fine enough that only a burst of
        new data shares one; in virtual time a retransmission may share its instant too)."""
        self.fin = fin
        self.sacked = False
        self.lost = False
        self.resent = False
        """Sent again since it was marked lost: in flight once more."""
        self.retransmitted = False
        """Sent more than once: an ACK of it may be of either copy."""

    @property
    def size(self) -> int:
        return self.end - self.start


class Scoreboard:
    """The segments sent and not yet cumulatively acknowledged, in stream order, with RACK's state."""

    def __init__(self) -> None:
        self.segments: list[SentSegment] = []
        self.min_rtt_s = -1.0
        self.reordering_seen = False
        self._rack_sent_at = -1.0
        """When the most recently sent delivered segment was sent (RACK.xmit_ts)."""
        self._rack_order = 0
        self._sends = 0
        self._rack_rtt_s = 0.0
        self._highest_delivered_end = 0
        """RACK.fack: the end of the highest segment delivered so far."""

    # ---- what the sender did ------------------------------------------------------------------

    def sent(self, start: int, end: int, now: float, fin: bool) -> None:
        self._sends += 1
        self.segments.append(SentSegment(start, end, now, self._sends, fin))

    def resent(self, segment: SentSegment, now: float) -> None:
        self._sends += 1
        segment.sent_at = now
        segment.order = self._sends
        segment.retransmitted = True
        if segment.lost:
            segment.resent = True

    def forget_from(self, offset: int) -> None:
        """The sender rewound to ``offset`` (a SYN-ACK or rejected TFO data sent again): what
        lay beyond will be sent anew."""
        self.segments = [segment for segment in self.segments if segment.start < offset]

    def mark_all_lost(self) -> None:
        """A retransmission timeout: every segment not SACKed is lost (``tcp_timeout_mark_lost``)."""
        for segment in self.segments:
            if not segment.sacked:
                segment.lost, segment.resent = True, False

    # ---- what the receiver said -----------------------------------------------------------------

    def acknowledged(self, offset: int, now: float) -> int:
        """The cumulative ACK reached ``offset``: segments newly delivered by it (not SACKed before)."""
        delivered = 0
        done = 0
        for segment in self.segments:
            if segment.end > offset:
                break
            if not segment.sacked:
                delivered += 1
                self._delivered(segment, now)
            done += 1
        if done:
            del self.segments[:done]
        if self.segments and self.segments[0].start < offset:
            self.segments[0].start = offset  # acknowledged in part (a peer that cut it differently)
        return delivered

    def selectively_acknowledged(self, blocks: list[tuple[int, int]], now: float) -> int:
        """SACK blocks ``[left, right)`` in offsets: segments newly delivered by them."""
        delivered = 0
        for left, right in blocks:
            for segment in self.segments:
                if segment.start >= right:
                    break
                if segment.sacked or segment.start < left or segment.end > right:
                    continue
                segment.sacked = True
                delivered += 1
                self._delivered(segment, now)
        return delivered

    def _delivered(self, segment: SentSegment, now: float) -> None:
        """RFC 8985 §6.2 steps 2-3: the latest-sent delivered segment sets RACK's clock; one
        delivered below what was already delivered, never sent twice, shows reordering."""
        if not segment.retransmitted and segment.end < self._highest_delivered_end:
            self.reordering_seen = True
        self._highest_delivered_end = max(self._highest_delivered_end, segment.end)
        rtt = now - segment.sent_at
        if segment.retransmitted and self.min_rtt_s >= 0 and rtt < self.min_rtt_s:
            return  # the ACK of the first copy, not of the retransmission: no sample
        if not segment.retransmitted and (self.min_rtt_s < 0 or rtt < self.min_rtt_s):
            self.min_rtt_s = rtt
        if segment.order > self._rack_order:
            self._rack_sent_at, self._rack_order, self._rack_rtt_s = segment.sent_at, segment.order, rtt

    # ---- what the sender concludes ------------------------------------------------------------------

    def detect_losses(self, now: float, srtt_s: float, recovering: bool) -> tuple[bool, float]:
        """RFC 8985 §6.2 step 5 as ``tcp_rack_detect_loss``: mark lost every segment sent before
        the latest delivered one whose time is up. Returns (any newly lost, the longest wait
        left for the others, 0 if none)."""
        if self._rack_sent_at < 0:
            return False, 0.0
        reo_wnd = self._reordering_window(srtt_s, recovering)
        newly_lost = False
        wait = 0.0
        for segment in self.segments:
            if segment.sacked or (segment.lost and not segment.resent):
                continue
            if segment.order > self._rack_order:
                continue  # sent after the latest delivered one: no news of it yet
            remaining = segment.sent_at + self._rack_rtt_s + reo_wnd - now
            if remaining <= _TIME_EPSILON:
                segment.lost, segment.resent = True, False
                newly_lost = True
            else:
                wait = max(wait, remaining)
        return newly_lost, wait

    def _reordering_window(self, srtt_s: float, recovering: bool) -> float:
        if not self.reordering_seen and (recovering or self.sacked_segments >= DUPLICATE_THRESHOLD):
            return 0.0
        return min(max(self.min_rtt_s, 0.0) / 4, srtt_s)

    @property
    def sacked_segments(self) -> int:
        return sum(1 for segment in self.segments if segment.sacked)

    def in_flight(self) -> int:
        """Segments the network holds, RFC 6675's pipe as Linux counts it (packets_out − sacked
        − lost + retransmitted): a lost segment counts again once sent again."""
        return sum(1 for segment in self.segments if not segment.sacked and (not segment.lost or segment.resent))

    def next_lost(self) -> SentSegment | None:
        """The first segment marked lost and not yet sent again (``tcp_xmit_retransmit_queue``'s order)."""
        for segment in self.segments:
            if segment.lost and not segment.resent and not segment.sacked:
                return segment
        return None

    def last_unsacked(self) -> SentSegment | None:
        for segment in reversed(self.segments):
            if not segment.sacked:
                return segment
        return None


def sack_blocks(pieces: list[tuple[int, int, int]], limit: int) -> list[tuple[int, int]]:
    """The receiver's SACK blocks (RFC 2018 §4) from its out-of-order ``pieces`` (start, end,
    arrival order): contiguous pieces merged, the block holding the latest arrival first, the
    others by how recently they grew, at most ``limit`` (3 beside timestamps in 40 option bytes)."""
    blocks: list[tuple[int, int, int]] = []
    for start, end, arrival in sorted(pieces):
        if blocks and start <= blocks[-1][1]:
            left, right, latest = blocks[-1]
            blocks[-1] = (left, max(right, end), max(latest, arrival))
        else:
            blocks.append((start, end, arrival))
    blocks.sort(key=lambda block: -block[2])
    return [(left, right) for left, right, _ in blocks[:limit]]
