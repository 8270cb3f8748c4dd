"""IPv4/IPv6 + TCP/UDP headers: build real packet bytes and parse them back.

Pure ``struct`` and integer arithmetic, no scapy: the simulator encodes every packet it moves
with this module, so the hot path (``tcp_packet`` / ``udp_packet``) must stay at a few µs.

Parsing never raises anything but ``PacketError``; it does not verify checksums, because
captures taken on the sending host routinely carry unfilled ones (checksum offload).
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

from .integers import u16, u32

__all__ = [
    "FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR",
    "OPT_EOL", "OPT_NOP", "OPT_MSS", "OPT_WSCALE", "OPT_SACK_PERM", "OPT_SACK",
    "OPT_TIMESTAMP", "OPT_FASTOPEN", "OPT_EXPERIMENTAL", "TFO_EXP_MAGIC",
    "PROTO_TCP", "PROTO_UDP", "SEQ_MOD", "seq_diff",
    "PacketError", "TcpSegment", "UdpDatagram", "IpPacket",
    "encode", "decode", "tcp_packet", "udp_packet",
    "mss_option", "wscale_option", "sack_perm_option", "timestamp_option", "fastopen_option",
]

# TCP flags (RFC 793 §3.1; ECE/CWR from RFC 3168). Bits 8-11 of the 12-bit field are reserved
# (NS/AE live there) and are carried through untouched.
FIN: Final = 0x01
SYN: Final = 0x02
RST: Final = 0x04
PSH: Final = 0x08
ACK: Final = 0x10
URG: Final = 0x20
ECE: Final = 0x40
CWR: Final = 0x80

# TCP option kinds (IANA "TCP Option Kind Numbers").
OPT_EOL: Final = 0
OPT_NOP: Final = 1
OPT_MSS: Final = 2
OPT_WSCALE: Final = 3
OPT_SACK_PERM: Final = 4
OPT_SACK: Final = 5
OPT_TIMESTAMP: Final = 8
OPT_FASTOPEN: Final = 34
OPT_EXPERIMENTAL: Final = 254
TFO_EXP_MAGIC: Final = 0xF989
"""Magic (RFC 6994 ExID) that marks kind 254 as TFO: what Linux sent before kind 34 existed."""

PROTO_TCP: Final = 6
PROTO_UDP: Final = 17

_TFO_EXP_MAGIC_BYTES: Final = TFO_EXP_MAGIC.to_bytes(2, "big")
_MAX_OPTIONS: Final = 40  # RFC 793: data offset is 4 bits of 32-bit words, so at most 60 - 20 bytes.

_IP4: Final = struct.Struct("!BBHHHBBH4s4s")
_IP6: Final = struct.Struct("!IHBB16s16s")
_TCP: Final = struct.Struct("!HHIIBBHHH")
_UDP: Final = struct.Struct("!HHHH")
_U16: Final = struct.Struct("!H")
_TIMESTAMPS: Final = struct.Struct("!II")

# IPv6 extension headers we step over (RFC 8200 §4): hop-by-hop, routing, fragment, dest options,
# and AH (RFC 4302, length in 4-octet units).
_V6_HOP: Final = 0
_V6_ROUTING: Final = 43
_V6_FRAGMENT: Final = 44
_V6_DSTOPTS: Final = 60
_V6_AH: Final = 51
_JUMBO_OPTION: Final = 0xC2
"""The hop-by-hop Jumbo Payload option (RFC 2675 §2)."""
_V6_EXTENSIONS: Final = frozenset((_V6_HOP, _V6_ROUTING, _V6_FRAGMENT, _V6_DSTOPTS, _V6_AH))
_NOP: Final = (OPT_NOP, b"")
"""A NOP option as ``TcpSegment.options`` holds it (one object for all)."""


SEQ_MOD: Final = 1 << 32
"""TCP sequence numbers and timestamps wrap at 2**32 (RFC 793 §3.3, RFC 7323 §5.2)."""


def seq_diff(a: int, b: int) -> int:
    """a - b in sequence space, as a signed distance (RFC 793 comparisons are modulo 2^32)."""
    d = (a - b) % SEQ_MOD
    return d - SEQ_MOD if d >= SEQ_MOD // 2 else d


class PacketError(ValueError):
    """Bytes that are not a well-formed packet, or field values that cannot be encoded."""


# Made once per packet, so its __init__ is written out: compiled (mypyc), a dataclass's
# generated __init__ stays interpreted Python (1.3 µs for a frozen one of 8 fields), a written
# one is compiled (0.1 µs). A written __init__ cannot assign to a frozen dataclass, so it is not
# frozen; nothing assigns after __init__, and unsafe_hash keeps it hashable as before.
@dataclass(slots=True, unsafe_hash=True, init=False)
class TcpSegment:
    """A TCP header and its payload (RFC 793 §3.1)."""

    sport: int
    dport: int
    seq: int
    ack: int
    flags: int
    """The 12-bit flag field: FIN ... CWR plus the 4 reserved bits."""
    window: int
    options: tuple[tuple[int, bytes], ...]
    """(kind, data) in wire order; NOP is (1, b""); EOL ends the list and is never stored."""
    payload: bytes

    def __init__(self, sport: int, dport: int, seq: int, ack: int, flags: int, window: int,
                 options: tuple[tuple[int, bytes], ...], payload: bytes) -> None:
        self.sport = sport
        self.dport = dport
        self.seq = seq
        self.ack = ack
        self.flags = flags
        self.window = window
        self.options = options
        self.payload = payload

    def option(self, kind: int) -> bytes | None:
        """The data of the first option of this kind, or None."""
        for k, data in self.options:
            if k == kind:
                return data
        return None

    @property
    def mss(self) -> int | None:
        """The MSS option's value (RFC 793 §3.1), None if absent or malformed."""
        data = self.option(OPT_MSS)
        return u16(data, 0) if data is not None and len(data) == 2 else None

    @property
    def timestamps(self) -> tuple[int, int] | None:
        """(TSval, TSecr) of the timestamps option (RFC 7323 §3), None if absent or malformed."""
        data = self.option(OPT_TIMESTAMP)
        return (u32(data, 0), u32(data, 4)) if data is not None and len(data) == 8 else None

    @property
    def fastopen_cookie(self) -> bytes | None:
        """None: no TFO option; b"": a cookie request; else the cookie (RFC 7413 §4.1.1).

        Kind 34 or the experimental kind 254 with magic 0xF989 (RFC 7413 §4.1.1 / RFC 6994).
        """
        for kind, data in self.options:
            if kind == OPT_FASTOPEN:
                return data
            if kind == OPT_EXPERIMENTAL and data[:2] == _TFO_EXP_MAGIC_BYTES:
                return data[2:]
        return None

    @property
    def syn(self) -> bool:
        return bool(self.flags & SYN)

    @property
    def fin(self) -> bool:
        return bool(self.flags & FIN)

    @property
    def rst(self) -> bool:
        return bool(self.flags & RST)

    @property
    def has_ack(self) -> bool:
        return bool(self.flags & ACK)

    @property
    def seq_len(self) -> int:
        """Sequence space consumed: SYN and FIN count one each (RFC 793 §3.3)."""
        return len(self.payload) + (self.flags & SYN and 1) + (self.flags & FIN)


# Made once per packet: its __init__ is written out, as TcpSegment's is (handshake.trace.packet).
@dataclass(slots=True, unsafe_hash=True, init=False)
class UdpDatagram:
    """A UDP header and its payload (RFC 768)."""

    sport: int
    dport: int
    payload: bytes

    def __init__(self, sport: int, dport: int, payload: bytes) -> None:
        self.sport = sport
        self.dport = dport
        self.payload = payload


# Made once per packet: its __init__ is written out, as TcpSegment's is (handshake.trace.packet).
@dataclass(slots=True, unsafe_hash=True, init=False)
class IpPacket:
    """An IPv4 or IPv6 packet. ``transport`` is raw bytes for other protocols and for
    non-first fragments (their bytes are not a transport header)."""

    src: str
    dst: str
    proto: int
    """IPv4 protocol / IPv6 next header of the upper layer (after extension headers)."""
    transport: TcpSegment | UdpDatagram | bytes
    ttl: int = 64
    """TTL (IPv4) or hop limit (IPv6)."""
    ident: int = 0
    """IPv4 identification; for IPv6 the 20-bit flow label (its nearest per-flow counterpart)."""
    version: int = 4

    def __init__(self, src: str, dst: str, proto: int, transport: TcpSegment | UdpDatagram | bytes,
                 ttl: int = 64, ident: int = 0, version: int = 4) -> None:
        self.src = src
        self.dst = dst
        self.proto = proto
        self.transport = transport
        self.ttl = ttl
        self.ident = ident
        self.version = version


# --- option builders -------------------------------------------------------------------------

def mss_option(mss: int) -> tuple[int, bytes]:
    return (OPT_MSS, _U16.pack(mss))


def wscale_option(shift: int) -> tuple[int, bytes]:
    return (OPT_WSCALE, bytes((shift,)))


def sack_perm_option() -> tuple[int, bytes]:
    return (OPT_SACK_PERM, b"")


def timestamp_option(tsval: int, tsecr: int) -> tuple[int, bytes]:
    return (OPT_TIMESTAMP, _TIMESTAMPS.pack(tsval, tsecr))


def fastopen_option(cookie: bytes = b"", *, experimental: bool = False) -> tuple[int, bytes]:
    """A TFO option: empty cookie = cookie request (RFC 7413 §4.1.1); ``experimental`` gives
    Linux's pre-RFC form, kind 254 + magic 0xF989."""
    if experimental:
        return (OPT_EXPERIMENTAL, _TFO_EXP_MAGIC_BYTES + cookie)
    return (OPT_FASTOPEN, cookie)


# --- encoding --------------------------------------------------------------------------------

@lru_cache(maxsize=4096)
def _pack_addr(addr: str) -> tuple[int, bytes]:
    """(version, address bytes); strict dotted-quad / RFC 4291 text, cached for the hot path."""
    try:
        if ":" in addr:
            return 6, socket.inet_pton(socket.AF_INET6, addr)
        return 4, socket.inet_pton(socket.AF_INET, addr)
    except (OSError, TypeError, ValueError):
        raise PacketError(f"bad IP address {addr!r}") from None


def _addr(addr: str) -> tuple[int, bytes]:
    try:
        return _pack_addr(addr)
    except TypeError:  # unhashable, so the cache refused it
        raise PacketError(f"bad IP address {addr!r}") from None


def _addr_bytes(addr: str, version: int) -> bytes:
    v, packed = _addr(addr)
    if v != version:
        raise PacketError(f"{addr!r} is not an IPv{version} address")
    return packed


def _options_bytes(options: Sequence[Any]) -> bytes:
    """Options in wire form, padded with EOL to a 32-bit boundary (RFC 793 §3.1)."""
    try:
        return _options_bytes_cached(options)
    except TypeError:  # a list, or bytearray data: not hashable, so not cacheable
        return _options_wire(options)


def _options_wire(options: Sequence[Any]) -> bytes:
    parts = []
    for kind, data in options:
        if kind == OPT_EOL or kind == OPT_NOP:
            if data:
                raise PacketError(f"TCP option {kind} takes no data")
            parts.append(bytes((kind,)))
        else:
            if not 0 <= kind <= 255:
                raise PacketError(f"bad TCP option kind {kind}")
            parts.append(bytes((kind, len(data) + 2)) + bytes(data))
    raw = b"".join(parts)
    if len(raw) > _MAX_OPTIONS:
        raise PacketError(f"TCP options take {len(raw)} bytes, more than {_MAX_OPTIONS}")
    return raw + b"\0" * (-len(raw) % 4)


_options_bytes_cached = lru_cache(maxsize=1024)(_options_wire)


def _payload_sum(payload: bytes) -> int:
    """The payload as one big integer, zero-padded to 16 bits: ≡ its word sum mod 0xFFFF."""
    value = int.from_bytes(payload, "big")
    return value << 8 if len(payload) & 1 else value


def _tcp_bytes(pseudo: int, sport: int, dport: int, seq: int, ack: int, flags: int,
               window: int, options: Sequence[Any], payload: bytes) -> bytes:
    """TCP header + payload with the checksum over the pseudo-header (RFC 793 §3.1).

    The Internet checksum is the ones' complement of the ones' complement sum of 16-bit words
    (RFC 1071); as 2**16 ≡ 1 (mod 0xFFFF), any 16-bit-aligned byte string read as one integer
    is congruent to its word sum, so the sum is a few big-int additions and one modulo.
    """
    opts = _options_bytes(options) if options else b""
    hlen = 20 + len(opts)
    if not 0 <= flags <= 0xFFF:
        raise PacketError(f"bad TCP flags 0x{flags:x}")
    offset_byte = (hlen << 2) | (flags >> 8)
    flags_byte = flags & 0xFF
    total = (pseudo + hlen + len(payload) + sport + dport + seq + ack
             + (offset_byte << 8) + flags_byte + window
             + int.from_bytes(opts, "big") + _payload_sum(payload))
    try:
        header = _TCP.pack(sport, dport, seq, ack, offset_byte, flags_byte, window,
                           -total % 0xFFFF, 0)
    except struct.error as exc:
        raise PacketError(f"bad TCP field: {exc}") from None
    return header + opts + payload


def _udp_bytes(pseudo: int, sport: int, dport: int, payload: bytes) -> bytes:
    """UDP header + payload; a computed checksum of 0 is sent as 0xFFFF (RFC 768)."""
    length = 8 + len(payload)
    if length > 0xFFFF:
        raise PacketError(f"UDP datagram of {length} bytes exceeds 65535")
    total = pseudo + length + sport + dport + length + _payload_sum(payload)
    try:
        header = _UDP.pack(sport, dport, length, -total % 0xFFFF or 0xFFFF)
    except struct.error as exc:
        raise PacketError(f"bad UDP field: {exc}") from None
    return header + payload


def _ip_bytes(version: int, src: bytes, dst: bytes, proto: int, ttl: int, ident: int,
              body: bytes) -> bytes:
    try:
        if version == 4:
            total = 20 + len(body)
            if total > 0xFFFF:
                raise PacketError(f"IPv4 packet of {total} bytes exceeds 65535")
            # RFC 791 §3.1 header checksum; flags = DF (0x4000): the paths we model use PMTUD.
            word_sum = (0x4500 + total + ident + 0x4000 + (ttl << 8) + proto
                        + int.from_bytes(src, "big") + int.from_bytes(dst, "big"))
            return _IP4.pack(0x45, 0, total, ident, 0x4000, ttl, proto,
                             -word_sum % 0xFFFF, src, dst) + body
        if len(body) > 0xFFFF:
            raise PacketError(f"IPv6 payload of {len(body)} bytes exceeds 65535")
        if not 0 <= ident <= 0xFFFFF:
            raise PacketError(f"IPv6 flow label {ident} exceeds 20 bits")
        return _IP6.pack(0x60000000 | ident, len(body), proto, ttl, src, dst) + body
    except struct.error as exc:
        raise PacketError(f"bad IP field: {exc}") from None


def _pseudo_sum(version: int, src: bytes, dst: bytes, proto: int) -> int:
    """Pseudo-header sum without the length (RFC 793 §3.1, RFC 8200 §8.1)."""
    return int.from_bytes(src, "big") + int.from_bytes(dst, "big") + proto


def encode(packet: IpPacket) -> bytes:
    """The packet's wire bytes, with IP (v4), TCP and UDP checksums filled in."""
    version = packet.version
    if version != 4 and version != 6:
        raise PacketError(f"bad IP version {version}")
    src = _addr_bytes(packet.src, version)
    dst = _addr_bytes(packet.dst, version)
    proto = packet.proto
    t = packet.transport
    try:
        if isinstance(t, TcpSegment):
            if proto != PROTO_TCP:
                raise PacketError(f"protocol {proto} does not match a TCP segment")
            body = _tcp_bytes(_pseudo_sum(version, src, dst, proto), t.sport, t.dport, t.seq,
                              t.ack, t.flags, t.window, t.options, bytes(t.payload))
        elif isinstance(t, UdpDatagram):
            if proto != PROTO_UDP:
                raise PacketError(f"protocol {proto} does not match a UDP datagram")
            body = _udp_bytes(_pseudo_sum(version, src, dst, proto), t.sport, t.dport,
                              bytes(t.payload))
        elif isinstance(t, (bytes, bytearray, memoryview)):
            body = bytes(t)
        else:
            raise PacketError(f"bad transport {type(t).__name__}")
    except PacketError:
        raise
    except (TypeError, ValueError, OverflowError) as exc:
        raise PacketError(f"cannot encode transport: {exc}") from None
    return _ip_bytes(version, src, dst, proto, packet.ttl, packet.ident, body)


def tcp_packet(src: str, dst: str, sport: int, dport: int, seq: int, ack: int, flags: int,
               payload: bytes = b"", options: Sequence[Any] = (),
               window: int = 65535) -> bytes:
    """``encode(IpPacket(src, dst, 6, TcpSegment(...)))`` without the objects (the hot path)."""
    version, src_b = _addr(src)
    dst_b = _addr_bytes(dst, version)
    try:
        body = _tcp_bytes(_pseudo_sum(version, src_b, dst_b, PROTO_TCP), sport, dport, seq, ack,
                          flags, window, options, payload)
    except PacketError:
        raise
    except (TypeError, ValueError, OverflowError) as exc:
        raise PacketError(f"cannot encode TCP segment: {exc}") from None
    return _ip_bytes(version, src_b, dst_b, PROTO_TCP, 64, 0, body)


def udp_packet(src: str, dst: str, sport: int, dport: int, payload: bytes = b"") -> bytes:
    """``encode(IpPacket(src, dst, 17, UdpDatagram(...)))`` without the objects (for QUIC)."""
    version, src_b = _addr(src)
    dst_b = _addr_bytes(dst, version)
    try:
        body = _udp_bytes(_pseudo_sum(version, src_b, dst_b, PROTO_UDP), sport, dport, payload)
    except PacketError:
        raise
    except (TypeError, ValueError, OverflowError) as exc:
        raise PacketError(f"cannot encode UDP datagram: {exc}") from None
    return _ip_bytes(version, src_b, dst_b, PROTO_UDP, 64, 0, body)


# --- decoding --------------------------------------------------------------------------------

def _parse_options(data: bytes, i: int, n: int) -> tuple[tuple[int, bytes], ...]:
    """The options in ``data[i:n]``, up to EOL or to the first malformed one (bad length): like
    Linux's ``tcp_parse_options``, junk ends the list instead of failing the segment."""
    options = []
    while i < n:
        kind = data[i]
        if kind == OPT_EOL:
            break
        if kind == OPT_NOP:
            options.append(_NOP)
            i += 1
            continue
        if i + 1 >= n:
            break
        length = data[i + 1]
        if length < 2 or i + length > n:
            break
        options.append((kind, data[i + 2:i + length]))
        i += length
    return tuple(options)


# Field by field with byte indexing rather than struct (see .integers).
def _decode_tcp(data: bytes, start: int, end: int, partial: bool) -> TcpSegment | bytes:
    """The TCP segment in ``data[start:end]``."""
    size = end - start
    if size < 20:
        if partial:
            return data[start:end]
        raise PacketError(f"truncated TCP header ({size} bytes)")
    offset_byte = data[start + 12]
    hlen = (offset_byte >> 4) * 4
    if hlen < 20:
        raise PacketError(f"bad TCP data offset {hlen >> 2}")
    if hlen > size:
        if partial:
            return data[start:end]
        raise PacketError(f"TCP header of {hlen} bytes exceeds the segment ({size})")
    options = _parse_options(data, start + 20, start + hlen) if hlen > 20 else ()
    return TcpSegment(u16(data, start), u16(data, start + 2), u32(data, start + 4), u32(data, start + 8),
                      ((offset_byte & 0x0F) << 8) | data[start + 13], u16(data, start + 14), options,
                      data[start + hlen:end])


def _decode_udp(data: bytes, start: int, end: int, partial: bool) -> UdpDatagram | bytes:
    """The UDP datagram in ``data[start:end]``."""
    size = end - start
    if size < 8:
        if partial:
            return data[start:end]
        raise PacketError(f"truncated UDP header ({size} bytes)")
    length = u16(data, start + 4)
    if length < 8:
        raise PacketError(f"bad UDP length {length}")
    if length > size:
        if not partial:
            raise PacketError(f"UDP length {length} exceeds the packet ({size})")
        length = size
    return UdpDatagram(u16(data, start), u16(data, start + 2), data[start + 8:start + length])


def _decode_transport(proto: int, data: bytes, start: int, end: int, partial: bool) -> TcpSegment | UdpDatagram | bytes:
    if proto == PROTO_TCP:
        return _decode_tcp(data, start, end, partial)
    if proto == PROTO_UDP:
        return _decode_udp(data, start, end, partial)
    return data[start:end]


_MAX_NAMES: Final = 1 << 16
_V4_PAIRS: dict[bytes, tuple[str, str]] = {}
_V6_NAMES: dict[bytes, str] = {}
"""Address texts already made (IPv4: source and destination together, by their 8 bytes): a
capture has far fewer addresses than packets, and formatting one (inet_ntoa / inet_ntop) costs
more than the lookup. Emptied when full, so they stay bounded."""


def _v4_names(data: bytes) -> tuple[str, str]:
    """The source and destination texts of an IPv4 header."""
    key = data[12:20]
    names = _V4_PAIRS.get(key)
    if names is None:
        if len(_V4_PAIRS) >= _MAX_NAMES:
            _V4_PAIRS.clear()
        names = _V4_PAIRS[key] = (socket.inet_ntoa(key[:4]), socket.inet_ntoa(key[4:]))
    return names


def _v6_name(data: bytes, i: int) -> str:
    key = data[i:i + 16]
    name = _V6_NAMES.get(key)
    if name is None:
        if len(_V6_NAMES) >= _MAX_NAMES:
            _V6_NAMES.clear()
        name = _V6_NAMES[key] = socket.inet_ntop(socket.AF_INET6, key)
    return name


def _decode_v4(data: bytes, allow_truncated: bool) -> IpPacket:
    n = len(data)
    if n < 20:
        raise PacketError(f"truncated IPv4 header ({n} bytes)")
    ihl = (data[0] & 0x0F) * 4
    if ihl < 20:
        raise PacketError(f"bad IPv4 header length {ihl}")
    if ihl > n:
        raise PacketError(f"truncated IPv4 options ({n} of {ihl} bytes)")
    total = u16(data, 2)
    partial = False
    if total == 0:
        # TSO/GSO: the sending host captured the packet before the NIC cut it into MTU-sized
        # ones and set their lengths. Wireshark ("assumed TSO", its ip.tso_support, on by
        # default) then takes the frame's length, and so do we; a frame the snap length cut
        # is as partial as any other.
        total = n
        partial = allow_truncated
    elif total < ihl:
        raise PacketError(f"IPv4 total length {total} is shorter than its header ({ihl})")
    elif total > n:
        if not allow_truncated:
            raise PacketError(f"truncated IPv4 packet ({n} of {total} bytes)")
        total, partial = n, True
    # RFC 791: the total length decides where the packet ends; link padding is dropped.
    frag = u16(data, 6)
    proto = data[9]
    if frag & 0x1FFF:
        transport: TcpSegment | UdpDatagram | bytes = data[ihl:total]  # a later fragment: no transport header
    else:
        transport = _decode_transport(proto, data, ihl, total, partial or bool(frag & 0x2000))
    src, dst = _v4_names(data)
    return IpPacket(src, dst, proto, transport, data[8], u16(data, 4), 4)


def _jumbo_length(data: bytes, i: int, n: int) -> int | None:
    """The Jumbo Payload Length among the hop-by-hop options in ``data[i:n]`` (RFC 2675 §2:
    option type 0xC2, 4 bytes: the packet's length after the IPv6 header), or None."""
    while i < n:
        kind = data[i]
        if kind == 0:  # Pad1 (RFC 8200 §4.2)
            i += 1
            continue
        if i + 1 >= n:
            return None
        size = data[i + 1]
        if kind == _JUMBO_OPTION and size == 4 and i + 6 <= n:
            return u32(data, i + 2)
        i += 2 + size
    return None


def _decode_v6(data: bytes, allow_truncated: bool) -> IpPacket:
    n = len(data)
    if n < 40:
        raise PacketError(f"truncated IPv6 header ({n} bytes)")
    plen = u16(data, 4)
    next_header = data[6]
    end = 40 + plen
    partial = False
    if plen == 0 and n > 40:
        # A jumbogram (RFC 2675: its hop-by-hop Jumbo Payload option, read below, says how
        # long) or TSO/GSO from the sending host, with no option (Linux BIG TCP since 6.3):
        # the frame's length then, as Wireshark with its ipv6.tso_support.
        end = n
        partial = allow_truncated
    elif end > n:
        if not allow_truncated:
            raise PacketError(f"truncated IPv6 packet ({n} of {end} bytes)")
        end, partial = n, True
    pos = 40
    offset = 0
    more_fragments = False
    while next_header in _V6_EXTENSIONS:
        if pos + 8 > end:
            raise PacketError(f"truncated IPv6 extension header {next_header}")
        if next_header == _V6_FRAGMENT:
            frag = u16(data, pos + 2)
            offset, more_fragments, hlen = frag >> 3, bool(frag & 1), 8
        elif next_header == _V6_AH:
            hlen = (data[pos + 1] + 2) * 4
        else:
            hlen = (data[pos + 1] + 1) * 8
        if pos + hlen > end:
            raise PacketError(f"IPv6 extension header {next_header} runs past the packet")
        if plen == 0 and next_header == _V6_HOP and pos == 40:
            jumbo = _jumbo_length(data, pos + 2, pos + hlen)
            if jumbo is not None:
                if 40 + jumbo <= n:
                    end, partial = 40 + jumbo, False
                elif not allow_truncated:
                    raise PacketError(f"truncated IPv6 jumbogram ({n} of {40 + jumbo} bytes)")
        next_header = data[pos]
        pos += hlen
    if offset:
        transport: TcpSegment | UdpDatagram | bytes = data[pos:end]
    else:
        transport = _decode_transport(next_header, data, pos, end, partial or more_fragments)
    flow_label = ((data[1] & 0x0F) << 16) | u16(data, 2)
    return IpPacket(_v6_name(data, 8), _v6_name(data, 24), next_header, transport, data[7], flow_label, 6)


def decode(data: object, *, allow_truncated: bool = False) -> IpPacket:
    """Parse an IPv4 or IPv6 packet (the version nibble decides).

    ``allow_truncated``: accept a packet cut short by the capture's snap length (pass
    ``frame.orig_len > len(frame.data)``); the transport payload is then what was captured.
    The first fragment of a fragmented packet is decoded the same way; later fragments
    keep their bytes raw.
    """
    if isinstance(data, bytes):
        raw = data
    else:
        try:
            raw = bytes(data)  # type: ignore[call-overload]  # any bytes-like; anything else is refused
        except TypeError:
            raise PacketError(f"cannot decode {type(data).__name__}") from None
    if not raw:
        raise PacketError("empty packet")
    version = raw[0] >> 4
    if version == 4:
        return _decode_v4(raw, allow_truncated)
    if version == 6:
        return _decode_v6(raw, allow_truncated)
    raise PacketError(f"bad IP version {version}")
