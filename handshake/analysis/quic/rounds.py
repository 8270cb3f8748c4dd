"""The QUIC round-trip counter: the same idea as ``tcp.rounds.TcpRoundCounter``, for datagrams.

Every datagram gets a *round*: the number of full round trips the client had completed when it
was sent. The client's first Initial is round 0. A server datagram is one round past the newest
client datagram the server provably had when it sent it (and at least round 1: a server only
ever answers); a client datagram is at the round of the newest server datagram it provably had.
What a side had is cumulative (a later datagram cannot know less), and "provably had" is read
from the packets, never from times:

- ACK frames (RFC 9000 §19.3) name packet numbers, per number space, of the other side;
- the caller adds what a packet's content implies, e.g. HANDSHAKE_DONE (the server had the
  client's Finished, RFC 9001 §4.1.2), data on a client-initiated stream (the server had a frame
  that opened it, RFC 9000 §3.2), a DCID the server chose (the client had the packet naming it);
- anti-amplification (RFC 9000 §8.1): before it validates the client's address a server may send
  at most three times the bytes it received. Round-0 client datagrams are all the server can
  have received before it has any of round 1, so once the server's bytes (UDP payloads) exceed
  three times theirs, it had a client datagram of round 1 or later. A validated address lifts
  the limit, but validation itself needs such a datagram (a Handshake packet, or the Initial that
  returns a Retry token). Only a token in a round-0 Initial (NEW_TOKEN from an earlier
  connection) validates sooner: the caller switches the argument off then. This is the only
  proof that a server's flight stopped at the limit and resumed when the client's
  acknowledgments arrived, because those acknowledgments are not ack-eliciting and so are
  never acknowledged themselves.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from ..intervals import NumberSet

AMPLIFICATION_FACTOR: Final = 3
"""RFC 9000 §8.1."""
_MAX_UNACKNOWLEDGED: Final = 1 << 13


# Made once per datagram: its __init__ is written out, as TcpSegment's is (handshake.trace.packet).
@dataclass(slots=True, unsafe_hash=True, init=False)
class DatagramRound:
    round: int
    """Round trips completed before this datagram was sent."""
    round_by_evidence: int
    """The same from ACK frames and packet contents alone; lower than ``round`` when only the
    anti-amplification limit proves the server waited for the client."""

    def __init__(self, round: int, round_by_evidence: int) -> None:
        self.round = round
        self.round_by_evidence = round_by_evidence


class _Side:
    """What one side sent, indexed by what the other side can acknowledge."""

    def __init__(self) -> None:
        self.sent: dict[str, dict[int, int]] = {}  # space → unacknowledged packet number → round
        self.unacknowledged: dict[str, list[int]] = {}  # space → sorted packet numbers
        self.acknowledged: dict[str, NumberSet] = {}  # space → numbers acknowledged (merged runs)
        self.seen: dict[str, NumberSet] = {}  # space → every number seen sent
        self.unseen_acknowledged: set[str] = set()
        """Spaces in which the other side acknowledged a packet the capture never held."""
        self.known = -1
        """Highest round of this side's datagrams the other side provably had."""

    def record(self, space: str, packet_number: int, rnd: int) -> None:
        numbers = self.sent.setdefault(space, {})
        if packet_number in numbers or packet_number in self.acknowledged.get(space, ()):
            return  # a duplicated datagram: the first copy's round stands
        seen = self.seen.get(space)
        if seen is None:
            seen = self.seen[space] = NumberSet()
        seen.add(packet_number)
        numbers[packet_number] = rnd
        pending = self.unacknowledged.setdefault(space, [])
        bisect.insort(pending, packet_number)
        if len(pending) > _MAX_UNACKNOWLEDGED:  # never acknowledged (a one-sided capture)
            del numbers[pending.pop(0)]

    def acknowledge(self, space: str, ranges: Iterable[tuple[int, int]]) -> None:
        seen = self.seen.get(space)
        if space not in self.unseen_acknowledged and (seen is None or any(seen.missing_in(low, high)
                                                                          for low, high in ranges)):
            self.unseen_acknowledged.add(space)
        pending = self.unacknowledged.get(space)
        if not pending:
            return
        numbers = self.sent[space]
        done = self.acknowledged.get(space)
        if done is None:
            done = self.acknowledged[space] = NumberSet()
        for low, high in ranges:
            start = bisect.bisect_left(pending, low)
            end = bisect.bisect_right(pending, high)
            if start < end:
                acked = pending[start:end]
                self.known = max(self.known, max(numbers[n] for n in acked))
                for n in acked:
                    del numbers[n]
                    done.add(n)
                del pending[start:end]


class QuicRoundCounter:
    """Feed a connection's datagrams in capture order; get each datagram's round."""

    def __init__(self) -> None:
        self._client = _Side()
        self._server = _Side()
        self.client_round0_bytes = 0
        """UDP payload bytes of the client's round-0 datagrams so far."""
        self.server_bytes = 0
        self.amplification_limit_applies = True
        """False once the server may have validated the client's address without a round-1
        datagram (a token in a round-0 Initial)."""
        self._server_had_round1 = False

    def unseen_acknowledged(self, from_client: bool) -> set[str]:
        """The packet-number spaces in which that side sent packets the other acknowledged but
        the capture does not hold."""
        return (self._client if from_client else self._server).unseen_acknowledged

    def add(
        self,
        from_client: bool,
        udp_bytes: int,
        *,
        sent: Iterable[tuple[str, int]] = (),
        acks: Iterable[tuple[str, Iterable[tuple[int, int]]]] = (),
        had: Iterable[int] = (),
        client_may_have_answered: bool = True,
    ) -> DatagramRound:
        """One datagram: the packet numbers it ``sent`` (space, number), the ranges its ACK
        frames acknowledge (space, ranges), and the rounds of the other side's datagrams its
        content proves were received (``had``). ``client_may_have_answered`` (server datagrams):
        whether any client datagram past round 0 could have reached the server before this one
        left; where the capture's times say none could, the 3x bound proves nothing (a capture
        that misses client bytes undercounts them)."""
        mine, theirs = (self._client, self._server) if from_client else (self._server, self._client)
        for space, ranges in acks:
            theirs.acknowledge(space, ranges)
        if "initial" in self._client.unseen_acknowledged:
            # Client Initials the capture missed hold bytes the 3x bound would have to count.
            self.amplification_limit_applies = False
        for rnd in had:
            theirs.known = max(theirs.known, rnd)
        if from_client:
            by_evidence = max(theirs.known, 0)
            rnd = by_evidence
            if rnd == 0:
                self.client_round0_bytes += udp_bytes
        else:
            self.server_bytes += udp_bytes
            by_evidence = max(theirs.known + 1, 1)
            if self.amplification_limit_applies and client_may_have_answered and \
                    self.server_bytes > AMPLIFICATION_FACTOR * self.client_round0_bytes:
                self._server_had_round1 = True
            rnd = max(by_evidence, 2) if self._server_had_round1 else by_evidence
        for space, packet_number in sent:
            mine.record(space, packet_number, rnd)
        return DatagramRound(rnd, by_evidence)
