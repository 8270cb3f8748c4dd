"""QUIC packet headers: one UDP payload in, the packets it carries out (nothing decrypted here).

RFC 9000 §17: a long header (form bit set) names its version and both connection IDs; Initial,
0-RTT and Handshake packets end where their Length field says, so several may share one
datagram (§12.2, "coalesced"); Retry and Version Negotiation packets have no Length and take
the rest of the datagram. A short header (1-RTT) also runs to the end of the datagram, and
does not say how long its Destination Connection ID is: only the connection knows (§17.3),
so the caller passes that length.

RFC 8999 keeps only the version, the connection IDs and the form bit stable across versions;
the rest is read for QUIC v1 (RFC 9000) and v2 (RFC 9369, same layout, other type codes).
Parsing never raises: bytes that are not a packet end the datagram's list of packets and are
counted as ``trailing_bytes``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from handshake.trace.integers import uint

VERSION_NEGOTIATION: Final = 0x00000000
VERSION_1: Final = 0x00000001
VERSION_2: Final = 0x6B3343CF
"""RFC 9369 §3.1."""

KNOWN_VERSIONS: Final = (VERSION_1, VERSION_2)

MAX_CID_BYTES: Final = 20
"""RFC 9000 §17.2: in QUIC v1 (and v2) a connection ID is at most 20 bytes."""
MIN_CLIENT_DCID_BYTES: Final = 8
"""RFC 9000 §7.2: the client's first Destination Connection ID is at least 8 bytes."""
RETRY_TAG_BYTES: Final = 16
"""RFC 9001 §5.8: the Retry Integrity Tag."""

_FORM_LONG: Final = 0x80
_FIXED_BIT: Final = 0x40

PacketType = Literal["initial", "0rtt", "handshake", "retry", "1rtt", "version_negotiation", "unknown_version"]

_LONG_TYPES: dict[int, tuple[PacketType, ...]] = {
    VERSION_1: ("initial", "0rtt", "handshake", "retry"),  # RFC 9000 §17.2, Table 5
    VERSION_2: ("retry", "initial", "0rtt", "handshake"),  # RFC 9369 §3.2
}

PACKET_TYPE_CODES: dict[int, dict[PacketType, int]] = {
    version: {name: code for code, name in enumerate(names)} for version, names in _LONG_TYPES.items()
}
"""The two type bits of a long header, per version: what tshark shows as quic.long.packet_type."""


def version_name(version: int | None) -> str | None:
    """"1", "2", or the hex code of another version (None for a short header)."""
    if version is None:
        return None
    return {VERSION_1: "1", VERSION_2: "2"}.get(version, f"0x{version:08x}")


class QuicDecodeError(ValueError):
    """Bytes ended, or a field does not fit, where a QUIC structure needed more."""


class Reader:
    """Length-checked reads, including RFC 9000 §16 variable-length integers."""

    __slots__ = ("data", "position", "end")

    def __init__(self, data: bytes, position: int = 0, end: int | None = None) -> None:
        self.data = data
        self.position = position
        self.end = len(data) if end is None else end

    @property
    def remaining(self) -> int:
        return self.end - self.position

    def bytes(self, count: int) -> bytes:
        if count < 0 or self.position + count > self.end:
            raise QuicDecodeError("truncated")
        chunk = self.data[self.position : self.position + count]
        self.position += count
        return chunk

    def uint8(self) -> int:
        if self.position >= self.end:
            raise QuicDecodeError("truncated")
        value = self.data[self.position]
        self.position += 1
        return value

    def uint(self, width: int) -> int:
        end = self.position + width
        if width < 0 or end > self.end:
            raise QuicDecodeError("truncated")
        value = uint(self.data, self.position, end)
        self.position = end
        return value

    def varint(self) -> int:
        """RFC 9000 §16: the two high bits of the first byte give the length (1, 2, 4, 8)."""
        first = self.uint8()
        length = 1 << (first >> 6)
        value = first & 0x3F
        if length > 1:
            value = (value << (8 * (length - 1))) | self.uint(length - 1)
        return value


# Made once per packet: its __init__ is written out, as TcpSegment's is (handshake.trace.packet).
@dataclass(slots=True, unsafe_hash=True, init=False)
class QuicPacket:
    """One packet as it was on the wire, its protected parts still protected."""

    packet_type: PacketType
    version: int | None
    """The long header's version; None for a short header."""
    dcid: bytes | None
    """Destination Connection ID; None for a short header whose length was not known."""
    scid: bytes | None
    """Source Connection ID (long headers only)."""
    data: bytes
    """The whole packet: header, packet number and protected payload (or Retry token + tag)."""
    pn_offset: int | None
    """Where the (protected) packet number starts in ``data``: Initial, 0-RTT, Handshake, and
    1-RTT once its DCID length is known; None otherwise."""
    token: bytes = b""
    """Initial: the address-validation token (RFC 9000 §17.2.2); Retry: the new token."""
    retry_tag: bytes = b""
    supported_versions: tuple[int, ...] = ()
    """Version Negotiation: what the server speaks (RFC 9000 §17.2.1)."""

    def __init__(self, packet_type: PacketType, version: int | None, dcid: bytes | None,
                 scid: bytes | None, data: bytes, pn_offset: int | None, token: bytes = b"",
                 retry_tag: bytes = b"", supported_versions: tuple[int, ...] = ()) -> None:
        self.packet_type = packet_type
        self.version = version
        self.dcid = dcid
        self.scid = scid
        self.data = data
        self.pn_offset = pn_offset
        self.token = token
        self.retry_tag = retry_tag
        self.supported_versions = supported_versions

    @property
    def is_long_header(self) -> bool:
        return self.version is not None

    @property
    def protected(self) -> bool:
        """Carries an encrypted payload (everything but Retry, VN and unknown versions)."""
        return self.packet_type in ("initial", "0rtt", "handshake", "1rtt")

    @property
    def type_code(self) -> int | None:
        """The long header's two type bits (RFC 9000 Table 5 / RFC 9369 §3.2)."""
        if self.version is None:
            return None
        return PACKET_TYPE_CODES.get(self.version, {}).get(self.packet_type)


# Made once per packet: its __init__ is written out, as TcpSegment's is (handshake.trace.packet).
@dataclass(slots=True, unsafe_hash=True, init=False)
class ParsedDatagram:
    packets: tuple[QuicPacket, ...]
    trailing_bytes: int
    """Bytes after the last packet that did not parse as one (padding, garbage)."""

    def __init__(self, packets: tuple[QuicPacket, ...], trailing_bytes: int) -> None:
        self.packets = packets
        self.trailing_bytes = trailing_bytes


def parse_datagram(payload: bytes, short_dcid_length: int | None = None) -> ParsedDatagram:
    """The packets of one UDP payload, in order.

    RFC 9000 §12.2: a receiver SHOULD ignore coalesced packets whose DCID differs from the
    first one's, so they end the list too.
    """
    payload = bytes(payload)
    packets: list[QuicPacket] = []
    position = 0
    while position < len(payload):
        try:
            packet = _parse_packet(payload, position, short_dcid_length)
        except QuicDecodeError:
            packet = None
        if packet is None:
            break
        if packets and packet.dcid is not None and packets[0].dcid is not None and packet.dcid != packets[0].dcid:
            break
        packets.append(packet)
        position += len(packet.data)
    return ParsedDatagram(tuple(packets), len(payload) - position)


def first_packet(payload: bytes) -> QuicPacket | None:
    """The datagram's first packet when it has a long header (short headers need context)."""
    if not payload or not payload[0] & _FORM_LONG:
        return None
    try:
        return _parse_packet(bytes(payload), 0, None)
    except QuicDecodeError:
        return None


def _parse_packet(payload: bytes, start: int, short_dcid_length: int | None) -> QuicPacket | None:
    reader = Reader(payload, start)
    first = reader.uint8()
    if not first & _FORM_LONG:
        if not first & _FIXED_BIT:
            return None  # RFC 9000 §17.3.1: not a QUIC v1 packet (zero padding lands here)
        if short_dcid_length is None or not 0 <= short_dcid_length <= MAX_CID_BYTES:
            return QuicPacket("1rtt", None, None, None, payload[start:], None)
        dcid = reader.bytes(short_dcid_length)
        return QuicPacket("1rtt", None, dcid, None, payload[start:], reader.position - start)

    version = reader.uint(4)
    dcid = reader.bytes(reader.uint8())
    scid = reader.bytes(reader.uint8())
    if version == VERSION_NEGOTIATION:
        # RFC 9000 §17.2.1: a list of 32-bit versions fills the rest of the datagram.
        rest = reader.bytes(reader.remaining)
        if len(rest) % 4:
            return None
        versions = tuple(int.from_bytes(rest[i : i + 4], "big") for i in range(0, len(rest), 4))
        return QuicPacket("version_negotiation", version, dcid, scid, payload[start:], None,
                          supported_versions=versions)
    names = _LONG_TYPES.get(version)
    if names is None:
        return QuicPacket("unknown_version", version, dcid, scid, payload[start:], None)
    if len(dcid) > MAX_CID_BYTES or len(scid) > MAX_CID_BYTES or not first & _FIXED_BIT:
        return None
    packet_type = names[(first >> 4) & 0x03]
    if packet_type == "retry":
        # RFC 9000 §17.2.5: Retry Token, then the 128-bit integrity tag, to the datagram's end.
        rest = reader.bytes(reader.remaining)
        if len(rest) < RETRY_TAG_BYTES:
            return None
        return QuicPacket("retry", version, dcid, scid, payload[start:], None,
                          token=rest[:-RETRY_TAG_BYTES], retry_tag=rest[-RETRY_TAG_BYTES:])
    token = reader.bytes(reader.varint()) if packet_type == "initial" else b""
    length = reader.varint()
    pn_offset = reader.position - start
    end = reader.position + length
    if length < 1 or end > len(payload):
        return None
    return QuicPacket(packet_type, version, dcid, scid, payload[start:end], pn_offset, token=token)
