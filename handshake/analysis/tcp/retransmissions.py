"""What a TCP side sent twice: retransmissions, and how long after the first copy."""

from __future__ import annotations

from handshake.trace.packet import TcpSegment, seq_diff

from ..intervals import FirstSeenRanges, RecentSet
from ..report import note_retransmission, retransmission_causes


class Retransmissions:
    """Spots a side sending sequence space it already sent: a retransmission (loss or a late ACK).

    Seen from one capture point, packets may also arrive out of order; only a range that was
    wholly seen before counts as sent again. What was seen is kept as merged ranges
    (``FirstSeenRanges``), so a long connection costs bounded memory.
    """

    def __init__(self, side: str) -> None:
        self.side = side
        self._base: int | None = None
        self._seen: FirstSeenRanges[int] = FirstSeenRanges()  # tag: the TSval of the first copy
        self._seen_tsvals = RecentSet()
        self.found: dict[str, list[tuple[float, float | None]]] = {}
        """What was retransmitted ("SYN", "data", ...) → (when, how long after its first copy)."""

    def check(self, segment: TcpSegment, time: float, timestamps: tuple[int, int] | None = None) -> bool:
        """Whether ``segment`` (whose TCP timestamps the caller read) resends what was seen."""
        if self._base is None:
            self._base = segment.seq
        seq_len = segment.seq_len
        if not seq_len:
            return False
        start = seq_diff(segment.seq, self._base)
        end = start + seq_len
        if timestamps is not None:
            key = (start, timestamps[0])
            if key in self._seen_tsvals:
                return False  # the very same packet twice: the link duplicated it
            self._seen_tsvals.add(key)
        first = self._seen.covered_since(start, end)
        if first is None and timestamps is not None:
            first = self._fills_gap_late(start, timestamps[0])
        self._seen.add(start, end, time, timestamps[0] if timestamps else None)
        if first is None:
            return False
        if segment.syn:
            what = "SYN-ACK" if segment.has_ack else "SYN"
        else:
            what = "data" if segment.payload else "FIN"
        note_retransmission(self.found, what, time, time - first)
        return True

    def note_unseen_original(self, segment: TcpSegment, time: float) -> None:
        """Count a retransmission recognised by other means (its first copy was never seen here)."""
        note_retransmission(self.found, "data" if segment.payload else "FIN", time, None)

    def _fills_gap_late(self, start: int, tsval: int) -> float | None:
        """A segment below data already seen, sent (by its TSval) after that data: the copy that
        went missing before the capture point is being resent. Returns when the later data was
        first seen; None for plain reordering (an older TSval)."""
        return self._seen.earliest_above(start, lambda r_tsval: r_tsval is not None and seq_diff(tsval, r_tsval) > 0)

    def causes(self, before: float | None) -> list[str]:
        return retransmission_causes(self.side, self.found, before)
