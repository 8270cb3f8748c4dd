"""Drop one chosen packet: `--drop first-syn` and friends, to show what a loss at each step costs.

Each selector names a packet by what it carries on the wire and drops the first match, once.
``server-data:N`` drops the server's Nth full-sized packet instead (a TCP segment or a QUIC
datagram of ``FULL_PACKET_BYTES`` or more of payload): a loss in the middle of a page's answers,
where HTTP/2's streams wait for it and HTTP/3's do not.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from handshake.errors import UsageError
from handshake.trace.packet import IpPacket, TcpSegment, UdpDatagram

_TLS_HANDSHAKE = 0x16
FULL_PACKET_BYTES = 1000
SERVER_DATA = "server-data:"
_CLIENT_HELLO = 1
_SERVER_HELLO = 2


def _tls_first_message(packet: IpPacket) -> int | None:
    """The handshake type of the TLS record that starts this TCP payload, if it starts one."""
    segment = packet.transport
    if isinstance(segment, TcpSegment) and len(segment.payload) > 5 and segment.payload[0] == _TLS_HANDSHAKE:
        return segment.payload[5]
    return None


def _quic_initial(packet: IpPacket) -> bool:
    """A QUIC v1 long-header Initial (RFC 9000 §17.2.2): form bit set, type bits 00."""
    datagram = packet.transport
    if not isinstance(datagram, UdpDatagram) or len(datagram.payload) < 5:
        return False
    first = datagram.payload[0]
    return bool(first & 0x80) and (first & 0x30) == 0 and datagram.payload[1:5] != b"\0\0\0\0"


def _syn(packet: IpPacket) -> bool:
    s = packet.transport
    return isinstance(s, TcpSegment) and s.syn and not s.has_ack


def _synack(packet: IpPacket) -> bool:
    s = packet.transport
    return isinstance(s, TcpSegment) and s.syn and s.has_ack


SELECTORS = {
    # name: (sent by the client?, matches)
    "first-syn": (True, _syn),
    "first-synack": (False, _synack),
    "client-hello": (True, lambda p: _tls_first_message(p) == _CLIENT_HELLO or _quic_initial(p)),
    "server-hello": (False, lambda p: _tls_first_message(p) == _SERVER_HELLO or _quic_initial(p)),
    "client-initial": (True, _quic_initial),
    "server-initial": (False, _quic_initial),
}


def _full_packet(packet: IpPacket) -> bool:
    carried = packet.transport
    return not isinstance(carried, bytes) and len(carried.payload) >= FULL_PACKET_BYTES


def _server_data_index(name: str) -> int | None:
    """N of "server-data:N" (1 or more), None for any other name."""
    if not name.startswith(SERVER_DATA):
        return None
    count = name[len(SERVER_DATA):]
    return int(count) if count.isdigit() and int(count) >= 1 else None


def check_selectors(names: list[str]) -> tuple[str, ...]:
    for name in names:
        if name not in SELECTORS and _server_data_index(name) is None:
            raise UsageError(f"unknown --drop selector {name!r}: choose from " + ", ".join(SELECTORS)
                             + f", {SERVER_DATA}N (the server's Nth full-sized packet, N from 1)")
    return tuple(names)


@dataclass
class PacketDropper:
    """A sim ``DropRule``: drops the first packet matching each selector once armed."""

    selectors: tuple[str, ...]
    armed: bool = False
    dropped: list[str] = field(default_factory=list)
    full_server_packets: int = 0
    """The server's full-sized packets seen since it was armed (for ``server-data:N``)."""

    def __call__(self, from_client: bool, packet: IpPacket) -> bool:
        if not self.armed:
            return False
        counted = not from_client and _full_packet(packet)
        if counted:
            self.full_server_packets += 1
        for name in self.selectors:
            if name in self.dropped:
                continue
            index = _server_data_index(name)
            if index is not None:
                if counted and index == self.full_server_packets:
                    self.dropped.append(name)
                    return True
                continue
            by_client, matches = SELECTORS[name]
            if by_client == from_client and matches(packet):
                self.dropped.append(name)
                return True
        return False

    @property
    def unmatched(self) -> list[str]:
        return [name for name in self.selectors if name not in self.dropped]
