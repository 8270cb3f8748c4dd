"""Tunnels: the IP packet carried inside another IP packet, so that the inner flow is the connection.

Captures from traffic mirroring (ERSPAN, VXLAN, Geneve) and from tunnelled links (GRE, IP in
IP, MPLS) show the client's packets inside an outer packet between two tunnel endpoints. What
``inspect`` judges is the inner connection, so the outer headers are stripped before any
analysis, and before the packet is given to a worker process (``analysis.parallel``), which
shards by the inner addresses and ports.

Read here, nested up to ``MAX_DEPTH`` deep:
- IP in IP: IPv4 or IPv6 inside IPv4 or IPv6 (protocols 4 and 41; RFC 2003, RFC 2473).
- GRE (protocol 47): RFC 2784 with RFC 2890's key and sequence number; payloads IPv4, IPv6,
  transparent Ethernet bridging (0x6558), MPLS (0x8847, 0x8848; RFC 4023), ERSPAN type I
  (0x88BE without the sequence bit: the mirrored Ethernet frame follows the GRE header),
  type II (0x88BE with it: an 8-byte ERSPAN header first) and type III (0x22EB: a 12-byte
  header, and an 8-byte platform subheader when its O bit is set; the frame is Ethernet, or
  IP when its frame type says so). GRE version 1 (PPTP, RFC 2637 §4.1) carries PPP.
- VXLAN (UDP destination port 4789, RFC 7348 §5): 8 bytes with the I flag, then Ethernet.
- Geneve (UDP destination port 6081, RFC 8926 §3.4): 8 bytes plus the options' length, then
  Ethernet or IP as its protocol type says.

Limits: the outer packet's IPv6 extension headers are not walked (the tunnel protocol must be
its first next header), and **outer IPv4 fragments are not reassembled**: a fragmented tunnel
packet is left as it is (a later fragment holds no header to read, and the first one only part
of the inner packet). A tunnel packet too short for its headers is left as it is too; one whose
payload is not IP (ARP in VXLAN, say) gives None, as ``links.ip_payload`` does for such frames.
Nothing here raises.
"""

from __future__ import annotations

from typing import Final

from .integers import u16
from .links import ethernet_ip, ethertype_ip, mpls_ip, ppp_ip

__all__ = ["MAX_DEPTH", "VXLAN_PORT", "GENEVE_PORT", "TUNNEL_PROTOCOLS", "decapsulate"]

MAX_DEPTH: Final = 4
"""Encapsulations stripped at most, one inside the other (VXLAN in GRE in IP in IP is 3)."""

VXLAN_PORT: Final = 4789
GENEVE_PORT: Final = 6081

_PROTO_IPIP: Final = 4
_PROTO_UDP: Final = 17
_PROTO_IPV6: Final = 41
_PROTO_GRE: Final = 47
TUNNEL_PROTOCOLS: Final = (_PROTO_IPIP, _PROTO_IPV6, _PROTO_GRE)
"""IP protocols that are tunnels whatever their contents (UDP is one only to the two ports)."""

_GRE_ETHERNET: Final = 0x6558  # transparent Ethernet bridging
_GRE_ERSPAN: Final = 0x88BE  # types I and II
_GRE_ERSPAN3: Final = 0x22EB
_GRE_PPP: Final = 0x880B  # GRE version 1 (PPTP)
_ERSPAN3_FRAME_IP: Final = 2  # frame type: an IP packet without its Ethernet header

_NOT_A_TUNNEL: Final = b""
"""What ``_inner`` returns for a packet that is no tunnel (or too damaged to be read as one)."""


def decapsulate(ip: bytes) -> bytes | None:
    """The innermost IP packet of a tunnel packet (up to ``MAX_DEPTH`` deep); ``ip`` itself when
    it is no tunnel; None when a tunnel carries something other than IP."""
    for _ in range(MAX_DEPTH):
        inner = _inner(ip)
        if inner is None:
            return None
        if not inner:  # _NOT_A_TUNNEL
            return ip
        ip = inner
    return ip


def _inner(ip: bytes) -> bytes | None:
    """One layer: the packet inside ``ip``, ``_NOT_A_TUNNEL``, or None (a tunnel without IP)."""
    size = len(ip)
    if size < 20:
        return _NOT_A_TUNNEL
    version = ip[0] >> 4
    if version == 4:
        header = (ip[0] & 0x0F) * 4
        if header < 20 or size < header:
            return _NOT_A_TUNNEL
        if u16(ip, 6) & 0x3FFF:  # more fragments, or a fragment offset: not reassembled
            return _NOT_A_TUNNEL
        total = u16(ip, 2)
        end = total if header <= total <= size else size  # link padding out; 0 (TSO) or cut: what we have
        proto = ip[9]
    elif version == 6:
        if size < 40:
            return _NOT_A_TUNNEL
        header = 40
        length = u16(ip, 4)
        end = 40 + length if 0 < length and 40 + length <= size else size
        proto = ip[6]
    else:
        return _NOT_A_TUNNEL
    if proto == _PROTO_IPIP or proto == _PROTO_IPV6:
        if end <= header or ip[header] >> 4 != (4 if proto == _PROTO_IPIP else 6):
            return _NOT_A_TUNNEL
        return ip[header:end]
    if proto == _PROTO_GRE:
        return _gre(ip[header:end])
    if proto == _PROTO_UDP and end >= header + 8:
        port = u16(ip, header + 2)
        if port == VXLAN_PORT:
            return _vxlan(ip[header + 8:end])
        if port == GENEVE_PORT:
            return _geneve(ip[header + 8:end])
    return _NOT_A_TUNNEL


def _gre(gre: bytes) -> bytes | None:
    """The payload of a GRE packet: flags and version (2 bytes), protocol type (2), then the
    optional checksum + reserved (C), key (K) and sequence number (S) words, 4 bytes each
    (RFC 2784 §2.1, RFC 2890 §2); version 1 adds an acknowledgment number (A)."""
    size = len(gre)
    if size < 4:
        return _NOT_A_TUNNEL
    flags = gre[0]
    version = gre[1] & 0x07
    protocol = u16(gre, 2)
    has_sequence = bool(flags & 0x10)
    pos = 4 + 4 * (bool(flags & 0x80) + bool(flags & 0x20) + has_sequence)
    if version == 1:  # PPTP's enhanced GRE: key always, acknowledgment when A is set
        if protocol != _GRE_PPP:
            return _NOT_A_TUNNEL
        pos += 4 * bool(gre[1] & 0x80)
        if size <= pos:
            return _NOT_A_TUNNEL
        return ppp_ip(gre, pos)
    if version != 0 or flags & 0x40 or size <= pos:  # RFC 1701's routing: discarded, as RFC 2784 §2.3 says
        return _NOT_A_TUNNEL
    if protocol == _GRE_ETHERNET:
        return ethernet_ip(gre, pos)
    if protocol == _GRE_ERSPAN:
        if has_sequence:  # type II: version (1), VLAN, CoS, encapsulation, session, index
            pos += 8
        return ethernet_ip(gre, pos)
    if protocol == _GRE_ERSPAN3:
        return _erspan3(gre, pos)
    return ethertype_ip(protocol, gre, pos)  # IP, MPLS; anything else is no IP: None


def _erspan3(gre: bytes, pos: int) -> bytes | None:
    """ERSPAN type III: version and VLAN, CoS, BSO, T and session, a 32-bit timestamp, then
    SGT (16 bits), P, frame type (5), hardware id (6), D, granularity (2) and O: the platform
    subheader's 8 bytes follow when O is set (draft-foschiano-erspan-03 §4.3)."""
    if len(gre) < pos + 12:
        return _NOT_A_TUNNEL
    frame_type = (gre[pos + 10] >> 2) & 0x1F
    optional = gre[pos + 11] & 0x01
    pos += 12 + 8 * optional
    if frame_type == _ERSPAN3_FRAME_IP:
        return gre[pos:] if len(gre) > pos and gre[pos] >> 4 in (4, 6) else None
    return ethernet_ip(gre, pos)


def _vxlan(payload: bytes) -> bytes | None:
    """VXLAN: flags (the I bit, 0x08, says the VNI is valid and must be set), 3 reserved bytes,
    the 24-bit VNI and a reserved byte, then the inner Ethernet frame (RFC 7348 §5). With the
    P flag (0x04; VXLAN-GPE, draft-ietf-nvo3-vxlan-gpe §3.1, which scapy and some switches
    write on port 4789 too) the last reserved byte names the payload: IPv4, IPv6, Ethernet or
    MPLS. A QUIC packet to port 4789 fails the flags test: QUIC's fixed bit (0x40) is a bit
    both leave reserved (and makes a Geneve version of 1)."""
    if len(payload) < 8 + 14:
        return _NOT_A_TUNNEL
    flags = payload[0]
    if not flags & 0x08 or flags & 0x40:
        return _NOT_A_TUNNEL
    if flags & 0x04:
        next_protocol = payload[3]
        if next_protocol == 1 or next_protocol == 2:
            return payload[8:] if payload[8] >> 4 == (4 if next_protocol == 1 else 6) else None
        if next_protocol == 5:
            return mpls_ip(payload, 8)
        if next_protocol != 3:
            return None  # NSH, say: not read
    return ethernet_ip(payload, 8)


def _geneve(payload: bytes) -> bytes | None:
    """Geneve: version (2 bits, 0) and options length (6 bits, in 4-byte words), O and C
    flags, the protocol type (an ethertype), the VNI, then the options (RFC 8926 §3.4)."""
    if len(payload) < 8 or payload[0] >> 6:
        return _NOT_A_TUNNEL
    pos = 8 + (payload[0] & 0x3F) * 4
    protocol = u16(payload, 2)
    if len(payload) <= pos:
        return _NOT_A_TUNNEL
    if protocol == _GRE_ETHERNET:
        return ethernet_ip(payload, pos)
    if protocol == 0x0800 or protocol == 0x86DD:
        return ethertype_ip(protocol, payload, pos)
    return _NOT_A_TUNNEL
