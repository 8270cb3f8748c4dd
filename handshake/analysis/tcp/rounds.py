"""The round-trip counter: how many client→server→client cycles happened before a given packet.

Every packet gets a *round*: the number of full round trips the client had completed when the
packet was sent. The first SYN is round 0. A server packet is one round past the latest client
packet the server provably had when it sent it; a client packet is at the round of the latest
server packet it provably had. "Provably had" is read from the packet itself, never from times
or the engine's knowledge:

- the cumulative ACK number covers every data-bearing (or SYN/FIN) packet of the other side
  whose last sequence number it passes (RFC 793);
- the TCP timestamp echo (TSecr, RFC 7323) names a TSval the other side sent, which also covers
  pure ACKs — the only way to see that a server flight waited for the client's ACKs because its
  initial congestion window was full. Timestamps tick in milliseconds, so several packets may
  share one; only the *first* packet with the echoed TSval is taken as received (never
  overcount a round on a fast link).

A packet's placement also says *when* (capture time) the newest packet it proves received was
seen, by each kind of evidence: having received a packet is not having waited for it, and the
caller tells the two apart by time (a server that was busy answers long after what it echoes).

The round trips to the first response byte are then the round of the packet that completes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from heapq import heappop, heappush
from typing import Final, cast

from handshake.trace.packet import seq_diff

from .flows import FlowPacket


# Made once per packet: its __init__ is written out, as TcpSegment's is (handshake.trace.packet).
@dataclass(slots=True, unsafe_hash=True, init=False)
class PacketRound:
    round: int
    """Round trips completed before this packet was sent."""
    round_by_ack: int
    """The same, from ACK numbers alone (a lower value means the timestamp echo showed a wait for pure ACKs)."""
    heard_by_ack: float
    """Capture time of the newest other-side packet the ACK number proves received (-1.0: none)."""
    heard_by_echo: float
    """The same for the timestamp echo (-1.0: none)."""

    def __init__(self, round: int, round_by_ack: int, heard_by_ack: float = -1.0, heard_by_echo: float = -1.0) -> None:
        self.round = round
        self.round_by_ack = round_by_ack
        self.heard_by_ack = heard_by_ack
        self.heard_by_echo = heard_by_echo


_MAX_UNACKNOWLEDGED: Final = 1 << 13
"""Packets a side's index holds before it forgets the oldest (a peer that never answers)."""
_TRIM_ECHOED: Final = 1024
_FROM_SEGMENT: Final = object()
"""``timestamps`` not given: read them from the segment (callers that have them pass them)."""


class _Side:
    """What one side sent, indexed by what the other side can acknowledge."""

    def __init__(self) -> None:
        self.seq_base: int | None = None
        self.ts_base: int | None = None
        self.by_seq_end: list[tuple[int, int, float]] = []  # heap of (relative seq end, round, time)
        self.by_tsval: list[tuple[int, int, float]] = []  # (relative TSval, round, time) in send order
        self.ts_cursor = 0
        self.known_by_ack = -1  # highest round of this side's packets the other side acknowledged
        self.known_by_ts = -1
        self.heard_by_ack = -1.0  # capture time of the newest of them (-1.0: none yet)
        self.heard_by_ts = -1.0

    def rel_seq(self, seq: int) -> int:
        assert self.seq_base is not None
        return seq_diff(seq, self.seq_base)

    def rel_ts(self, tsval: int) -> int:
        if self.ts_base is None:
            self.ts_base = tsval
        return seq_diff(tsval, self.ts_base)

    def trim_tsvals(self) -> None:
        """Forget echoed TSvals (all but the last, which tells the first of its tick), and the
        oldest ones when the other side never echoes: memory stays bounded."""
        entries = self.by_tsval
        if self.ts_cursor > _TRIM_ECHOED:
            del entries[:self.ts_cursor - 1]
            self.ts_cursor = 1
        elif len(entries) > _MAX_UNACKNOWLEDGED:
            drop = len(entries) // 2
            del entries[:drop]
            self.ts_cursor = max(self.ts_cursor - drop, 0)

    def acknowledge(self, ack: int) -> None:
        if self.seq_base is None:
            return
        rel = self.rel_seq(ack)
        heap = self.by_seq_end
        while heap and heap[0][0] <= rel:
            _, rnd, time = heappop(heap)
            self.known_by_ack = max(self.known_by_ack, rnd)
            self.heard_by_ack = max(self.heard_by_ack, time)

    def echo(self, tsecr: int) -> None:
        if self.ts_base is None:
            return
        rel = seq_diff(tsecr, self.ts_base)
        entries = self.by_tsval
        while self.ts_cursor < len(entries):
            tsval, rnd, time = entries[self.ts_cursor]
            first_of_its_tick = self.ts_cursor == 0 or entries[self.ts_cursor - 1][0] != tsval
            if tsval < rel or (tsval == rel and first_of_its_tick):
                self.known_by_ts = max(self.known_by_ts, rnd)
                self.heard_by_ts = max(self.heard_by_ts, time)
                self.ts_cursor += 1
            else:
                break


class TcpRoundCounter:
    """Feed a connection's packets in capture order; get each packet's round."""

    def __init__(self) -> None:
        self._client = _Side()
        self._server = _Side()

    def place(self, packet: FlowPacket, timestamps: tuple[int, int] | None | object = _FROM_SEGMENT) -> PacketRound:
        """Learn what this packet's ACK and timestamp echo prove, and where that places it.

        Nothing is recorded for the packet itself until ``record``: the caller may place a
        packet sent by a timer (a retransmission) by its ACK number alone.
        """
        segment = packet.segment
        mine, theirs = (self._client, self._server) if packet.from_client else (self._server, self._client)
        if mine.seq_base is None:
            mine.seq_base = segment.seq
        stamps = segment.timestamps if timestamps is _FROM_SEGMENT else cast("tuple[int, int] | None", timestamps)
        if segment.has_ack:
            theirs.acknowledge(segment.ack)
            if stamps is not None and stamps[1]:
                theirs.echo(stamps[1])
        step = 0 if packet.from_client else 1
        by_ack = max(theirs.known_by_ack + step, 0)
        return PacketRound(max(by_ack, theirs.known_by_ts + step), by_ack, theirs.heard_by_ack, theirs.heard_by_ts)

    def record(self, packet: FlowPacket, rnd: int,
               timestamps: tuple[int, int] | None | object = _FROM_SEGMENT) -> None:
        """Remember the packet at round ``rnd`` so that the other side's ACKs and echoes can name it."""
        segment = packet.segment
        mine = self._client if packet.from_client else self._server
        if segment.syn or segment.fin or segment.payload:
            end = mine.rel_seq(segment.seq) + segment.seq_len
            heap = mine.by_seq_end
            heappush(heap, (end, rnd, packet.time))
            if len(heap) > _MAX_UNACKNOWLEDGED:  # never acknowledged (a one-sided capture)
                heappop(heap)
        stamps = segment.timestamps if timestamps is _FROM_SEGMENT else cast("tuple[int, int] | None", timestamps)
        if stamps is not None:
            mine.by_tsval.append((mine.rel_ts(stamps[0]), rnd, packet.time))
            mine.trim_tsvals()

    def add(self, packet: FlowPacket, *, retransmission: bool = False) -> PacketRound:
        """Place and record a packet. A retransmission is sent by a timer, not in answer to what
        the timestamp echo shows arrived meanwhile, so only its ACK number places it."""
        placed = self.place(packet)
        rnd = placed.round_by_ack if retransmission else placed.round
        self.record(packet, rnd)
        return PacketRound(rnd, placed.round_by_ack, placed.heard_by_ack, placed.heard_by_echo)
