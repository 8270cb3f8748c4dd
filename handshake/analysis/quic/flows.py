"""QUIC connections out of a packet trace: which UDP datagrams belong to which connection.

A connection starts with a client Initial (RFC 9000 §17.2.2) whose Destination Connection ID is
new on its UDP 4-tuple: its sender is the client. It is proved to be QUIC by opening it with the
Initial keys its DCID yields (RFC 9001 §5.2), so other UDP traffic never starts a connection.
A first attempt in a version this reader does not know starts one too, once the server's
Version Negotiation packet echoes its connection IDs (§17.2.1), because that round trip is part
of the connection's cost.

A later client Initial on the same 4-tuple belongs to the same connection when its DCID is one
the connection already uses (the first DCID, a SCID the server chose, or the SCID of a Retry,
§17.2.5.2), when its SCID is the client's, or when it is the new attempt after Version
Negotiation (another version, §6.2). Any other new client Initial starts a new connection (port
reuse). Every other datagram on the 4-tuple belongs to the newest connection.

Not followed: connection migration (RFC 9000 §9) to a new 4-tuple, and captures that begin
after the client's first Initial.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final, TypeGuard

from handshake.trace.packet import UdpDatagram
from handshake.trace.record import TracedPacket

from ..tcp.flows import packets_carrying
from .crypto import initial_protections
from .packets import KNOWN_VERSIONS, MAX_CID_BYTES, MIN_CLIENT_DCID_BYTES, QuicPacket, first_packet


# Made once per packet: its __init__ is written out, as TcpSegment's is (handshake.trace.packet).
@dataclass(slots=True, unsafe_hash=True, init=False)
class QuicDatagram:
    """One UDP datagram of a QUIC connection, placed on its side."""

    time: float
    from_client: bool
    payload: bytes
    """The UDP payload: one or more QUIC packets."""
    wire_bytes: int
    """Length of the IP packet."""

    def __init__(self, time: float, from_client: bool, payload: bytes, wire_bytes: int) -> None:
        self.time = time
        self.from_client = from_client
        self.payload = payload
        self.wire_bytes = wire_bytes


@dataclass
class QuicFlow:
    client: tuple[str, int]
    server: tuple[str, int]
    version: int
    """The version of the client's first Initial (or first attempt, before Version Negotiation)."""
    original_dcid: bytes
    """The DCID of the client's first Initial: the Initial keys come from it (RFC 9001 §5.2)."""
    client_scid: bytes
    datagrams: list[QuicDatagram] = field(default_factory=list)
    """Filled by ``quic_flows``; the streaming ``QuicFlowTracker`` keeps none."""
    server_cids: set[bytes] = field(default_factory=set)
    """SCIDs the server's long headers (and Retry) named."""
    version_negotiation_seen: bool = False
    """A Version Negotiation packet answered the client."""
    version_negotiated: bool = False
    """... and the client tried again in another version."""
    first_time: float | None = None
    """Capture time of the connection's first datagram."""

    @property
    def start_time(self) -> float:
        if self.datagrams:
            return self.datagrams[0].time
        return 0.0 if self.first_time is None else self.first_time

    @staticmethod
    def endpoint_text(endpoint: tuple[str, int]) -> str:
        addr, port = endpoint
        return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def _opens_as_initial(packet: QuicPacket) -> bool:
    """The client Initial opens with the keys of its own DCID: it is QUIC, and the first one."""
    assert packet.version is not None and packet.dcid is not None
    client, _ = initial_protections(packet.dcid, packet.version)
    return client.open(packet, -1) is not None


def _client_initial(packet: QuicPacket | None) -> TypeGuard[QuicPacket]:
    return (
        packet is not None
        and packet.packet_type == "initial"
        and packet.version in KNOWN_VERSIONS
        and packet.dcid is not None
        and MIN_CLIENT_DCID_BYTES <= len(packet.dcid) <= MAX_CID_BYTES
    )


class QuicFlowTracker:
    """Places UDP datagrams on QUIC connections one at a time, in capture order (sans-IO).

    Keeps one small record per connection and none of its datagrams (only, per 4-tuple, a few
    first attempts in an unknown version until a Version Negotiation packet claims them).
    """

    def __init__(self) -> None:
        self._current: dict[tuple, QuicFlow] = {}
        self._unanswered: dict[tuple, list[tuple[QuicDatagram, QuicPacket]]] = {}
        """Client datagrams in a version this reader does not know, kept until a Version
        Negotiation packet shows they were a connection's first attempt."""

    def place(self, time: float, src: str, dst: str, datagram: UdpDatagram,
              wire_bytes: int) -> list[tuple[QuicFlow, QuicDatagram, bool]]:
        """The (connection, datagram on its side, whether it started the connection) this UDP
        datagram makes known: none for UDP that is not QUIC, several when a Version
        Negotiation packet claims the attempts it answers."""
        if not datagram.payload:
            return []
        source, destination = (src, datagram.sport), (dst, datagram.dport)
        key = (source, destination) if source <= destination else (destination, source)
        flow = self._current.get(key)
        packet = first_packet(datagram.payload)
        record = QuicDatagram(time, True, bytes(datagram.payload), wire_bytes)
        may_start = flow is None or (source == flow.client and not _continues(flow, packet))
        out: list[tuple[QuicFlow, QuicDatagram, bool]] = []
        if may_start and _client_initial(packet) and _opens_as_initial(packet):
            assert packet.version is not None and packet.dcid is not None  # _client_initial saw to it
            flow = QuicFlow(client=source, server=destination, version=packet.version,
                            original_dcid=packet.dcid, client_scid=packet.scid or b"", first_time=time)
            self._current[key] = flow
            out.append((flow, record, True))
            return self._learn(flow, source, packet, out)
        elif may_start and _unknown_version_attempt(packet):
            pending = self._unanswered.get(key)
            if pending is None:
                pending = self._unanswered[key] = []
                if len(self._unanswered) > _MAX_UNANSWERED_TUPLES:
                    del self._unanswered[next(iter(self._unanswered))]
            if len(pending) < _MAX_UNANSWERED and (not pending or pending[0][1].dcid == packet.dcid):
                pending.append((record, packet))
            return []
        elif packet is not None and packet.packet_type == "version_negotiation" and key in self._unanswered:
            attempts = self._unanswered.pop(key)
            first_record, first = attempts[0]
            # RFC 9000 §17.2.1: the VN packet echoes the client's connection IDs, swapped.
            if packet.dcid == first.scid and packet.scid == first.dcid:
                assert first.version is not None and first.dcid is not None  # _unknown_version_attempt
                flow = QuicFlow(client=destination, server=source, version=first.version,
                                original_dcid=first.dcid, client_scid=first.scid or b"", first_time=first_record.time)
                self._current[key] = flow
                out.extend((flow, attempt, index == 0) for index, (attempt, _) in enumerate(attempts))
        if flow is None:
            return out
        self._learn(flow, source, packet, out)
        out.append((flow, QuicDatagram(time, source == flow.client, record.payload, record.wire_bytes), False))
        return out

    @staticmethod
    def _learn(flow: QuicFlow, source: tuple, packet: QuicPacket | None,
               out: list[tuple[QuicFlow, QuicDatagram, bool]]) -> list[tuple[QuicFlow, QuicDatagram, bool]]:
        """What a long header tells about the connection: the server's connection IDs, and
        whether a Version Negotiation changed the version."""
        from_client = source == flow.client
        if packet is not None and not from_client and packet.scid:
            if packet.packet_type == "version_negotiation":
                if packet.dcid == flow.client_scid:
                    flow.version_negotiation_seen = True
            elif packet.packet_type in ("initial", "handshake", "retry") and len(flow.server_cids) < _MAX_SERVER_CIDS:
                flow.server_cids.add(packet.scid)
        if (from_client and flow.version_negotiation_seen and packet is not None
                and packet.packet_type == "initial" and packet.version != flow.version):
            flow.version_negotiated = True
        return out


def quic_flows(packets: Iterable[TracedPacket]) -> list[QuicFlow]:
    """Group QUIC datagrams into connections, in order of first appearance.

    Datagrams that do not decode (IP/UDP) or that are not QUIC are skipped: this never raises
    on a bad packet.
    """
    flows: list[QuicFlow] = []
    tracker = QuicFlowTracker()
    for traced, ip, datagram in packets_carrying(packets, UdpDatagram):
        for flow, placed, started in tracker.place(traced.time, ip.src, ip.dst, datagram, len(traced.data)):
            if started:
                flows.append(flow)
            flow.datagrams.append(placed)
    return flows


_MAX_UNANSWERED_TUPLES: Final = 4096
_MAX_SERVER_CIDS: Final = 64
_MAX_UNANSWERED: Final = 8


def _unknown_version_attempt(packet: QuicPacket | None) -> TypeGuard[QuicPacket]:
    return (
        packet is not None
        and packet.packet_type == "unknown_version"
        and packet.dcid is not None
        and len(packet.dcid) >= MIN_CLIENT_DCID_BYTES
    )


def _continues(flow: QuicFlow, packet: QuicPacket | None) -> bool:
    """This client datagram is one more of ``flow``'s, not the first of a new connection."""
    if not _client_initial(packet):
        return True
    assert packet is not None
    if packet.dcid == flow.original_dcid or packet.dcid in flow.server_cids or packet.scid == flow.client_scid:
        return True
    # RFC 9000 §6.2: after Version Negotiation the client starts over in another version.
    return flow.version_negotiation_seen and packet.version != flow.version
