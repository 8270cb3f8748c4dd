"""Server time: how long a server held what it answered, as far as one capture point shows it.

A capture point sees a client packet go by and, later, the server's answer to it. The gap is the
path from the capture point to the server and back, plus the time the server took. The path part
is measured once, on the exchange a server answers at once and in its kernel: the SYN and its
SYN-ACK (TCP), the client's Initial and the server's first Initial (QUIC, where the server's TLS
stack computes its first flight: a millisecond or two more). What is left of a later gap is
server time (DESIGN.md §6): a client-side capture sees gap = RTT + server time, a server-side
one gap = server time.

The same measure tells a server that *waited* for a client packet from one that was merely busy
and heard it meanwhile: a server held back by its congestion window (or the anti-amplification
limit) sends the moment the client's ACK arrives, so its server time for that packet is about
zero; a server that was computing sends when it is done, whatever arrived meanwhile.

Packets a server sends back to back reach the capture point spaced by the bottleneck's
serialization time, or the sender's pacing where that is slower (the packet-pair principle):
the tightest spacing in the server's handshake flight bounds how long a packet of a given size
takes to follow another, so that a pause between two packets can be told from the wire's own.
"""

from __future__ import annotations

from typing import Final

AT_ONCE_FLOOR_S: Final = 0.005
"""Server time below this is "at once" whatever the path: scheduling and capture jitter."""
AT_ONCE_SHARE: Final = 0.25
"""...and below this share of the capture point's path to the server and back, which bounds how
much that path's queueing and jitter can vary between two exchanges."""


class PathLeg:
    """The capture point's path to the server and back, from the first exchange a server answers
    at once; then each server packet's server time against the client packet it answers."""

    def __init__(self) -> None:
        self.leg_s: float | None = None
        """Seconds from a client packet passing the capture point to the server's immediate answer
        passing it; None until measured."""
        self._asked_at: float | None = None
        self._answered_at: float | None = None
        self.client_leg_s: float | None = None
        """The same towards the client: from the server's immediate answer to the client's next
        packet (its ACK of a SYN-ACK, of an Initial); None until measured."""
        self.s_per_byte: float | None = None
        """Seconds a byte takes at the bottleneck, from the tightest pair of the server's
        handshake flight (about 0 on an unshaped path); None until two of its packets were seen."""
        self._flight_last: float | None = None
        self._client_seen_at = -1.0

    def asked(self, time: float) -> None:
        """The client sent what the server answers at once (a SYN, an Initial); a repeated one
        (a retransmission) replaces the earlier: the answer is to the latest."""
        if self.leg_s is None:
            self._asked_at = time

    def answered(self, time: float) -> None:
        """The server's immediate answer (SYN-ACK, its first Initial): fixes the leg once."""
        if self.leg_s is None and self._asked_at is not None:
            self.leg_s = max(time - self._asked_at, 0.0)
            self._answered_at = time

    def answered_back(self, time: float) -> None:
        """A client packet: the first after the server's answer fixes the client's leg; the
        latest may break a packet pair (``flight_packet``)."""
        if self.client_leg_s is None and self._answered_at is not None:
            self.client_leg_s = max(time - self._answered_at, 0.0)
        self._client_seen_at = time

    def flight_packet(self, time: float, size: int) -> None:
        """A server packet of its handshake flight (``size`` bytes on the wire): with the one
        before it, a packet pair. The tightest pair is the bottleneck's rate (a pair further
        apart was not sent back to back; nor was one that may answer a client packet between)."""
        last, self._flight_last = self._flight_last, time
        if last is None or size <= 0 or \
                last <= self._client_seen_at <= time and not self.before_it_arrived(time, self._client_seen_at):
            return
        spacing = max(time - last, 0.0) / size
        self.s_per_byte = spacing if self.s_per_byte is None else min(self.s_per_byte, spacing)

    def wire_time(self, size: int) -> float:
        """Seconds a packet of ``size`` bytes spends at the bottleneck, as far as measured."""
        return size * (self.s_per_byte or 0.0)

    def client_time(self, sent_at: float, heard_at: float) -> float | None:
        """How long the client held the server packet seen at ``heard_at`` before the client
        packet seen at ``sent_at`` (a user, a script, Nagle); None before the leg is known."""
        if self.client_leg_s is None or heard_at < 0:
            return None
        return max(sent_at - heard_at - self.client_leg_s, 0.0)

    def client_at_once(self, sent_at: float, heard_at: float) -> bool:
        """Whether the client packet seen at ``sent_at`` left as soon as the server packet seen
        at ``heard_at`` reached the client (within the jitter its leg allows); False before
        the leg is known."""
        held = self.client_time(sent_at, heard_at)
        return held is not None and held <= AT_ONCE_FLOOR_S + AT_ONCE_SHARE * (self.client_leg_s or 0.0)

    def client_could_have(self, sent_at: float, server_seen_at: float) -> bool:
        """Whether the client packet seen at ``sent_at`` left after the server packet seen at
        ``server_seen_at`` could have reached the client."""
        leg = self.client_leg_s or 0.0
        return sent_at - server_seen_at >= leg - (AT_ONCE_FLOOR_S + AT_ONCE_SHARE * leg)

    def server_time(self, sent_at: float, heard_at: float) -> float | None:
        """How long the server held the client packet seen at ``heard_at`` before the server
        packet seen at ``sent_at`` (never negative); None before the leg is known."""
        if self.leg_s is None or heard_at < 0:
            return None
        return max(sent_at - heard_at - self.leg_s, 0.0)

    def at_once(self, sent_at: float, heard_at: float) -> bool | None:
        """Whether the server sent at ``sent_at`` as soon as the client packet seen at
        ``heard_at`` reached it (within the jitter the path allows); None when unknown."""
        if self.leg_s is None or heard_at < 0:
            return None
        return sent_at - heard_at - self.leg_s <= self.tolerance_s

    def before_it_arrived(self, sent_at: float, heard_at: float) -> bool:
        """Whether the server packet seen at ``sent_at`` left before the client packet seen at
        ``heard_at`` could have reached the server: then it cannot answer it."""
        if self.leg_s is None:
            return sent_at < heard_at
        return sent_at - heard_at - self.leg_s < -self.tolerance_s

    @property
    def tolerance_s(self) -> float:
        return AT_ONCE_FLOOR_S + AT_ONCE_SHARE * (self.leg_s or 0.0)
