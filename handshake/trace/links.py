"""Link layers: the IP packet inside a captured frame, for each link type we read.

Link types per https://www.tcpdump.org/linktypes.html. Besides the headers themselves, what a
frame may stack before its IP packet: 802.1Q / 802.1ad VLAN tags, MPLS label stacks (RFC 3032)
and, on PPP links, the optional HDLC-like address and control fields (RFC 1662) and a
compressed protocol field (RFC 1661 §6.5). Tunnels inside IP are ``tunnels``' business.

Every function here returns None for a frame without IP (ARP, LLDP, LCP, ...) or one too short
to tell, and never raises.
"""

from __future__ import annotations

from typing import Final

from .integers import u16, u32, u32le

__all__ = [
    "LINKTYPE_NULL", "LINKTYPE_ETHERNET", "LINKTYPE_PPP", "LINKTYPE_PPP_HDLC", "LINKTYPE_RAW",
    "LINKTYPE_LOOP", "LINKTYPE_LINUX_SLL", "LINKTYPE_LINUX_SLL2", "LINKTYPE_IPV4", "LINKTYPE_IPV6",
    "SUPPORTED_LINKTYPES", "ip_payload", "ethernet_ip", "ethertype_ip", "mpls_ip", "ppp_ip",
]

LINKTYPE_NULL: Final = 0
LINKTYPE_ETHERNET: Final = 1
LINKTYPE_PPP: Final = 9
LINKTYPE_PPP_HDLC: Final = 50
LINKTYPE_RAW: Final = 101
LINKTYPE_LOOP: Final = 108
LINKTYPE_LINUX_SLL: Final = 113
LINKTYPE_LINUX_SLL2: Final = 276
LINKTYPE_IPV4: Final = 228
LINKTYPE_IPV6: Final = 229
_DLT_RAW_BSD: Final = (12, 14)  # DLT_RAW as some BSDs write it into the file unmapped
_RAW_LINKTYPES: Final = frozenset((LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_IPV6, *_DLT_RAW_BSD))
SUPPORTED_LINKTYPES: Final = frozenset((LINKTYPE_NULL, LINKTYPE_ETHERNET, LINKTYPE_PPP, LINKTYPE_PPP_HDLC,
                                        LINKTYPE_LOOP, LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2, *_RAW_LINKTYPES))

_ETHERTYPE_IPV4: Final = 0x0800
_ETHERTYPE_IPV6: Final = 0x86DD
_ETHERTYPE_MPLS: Final = 0x8847
_ETHERTYPE_MPLS_MULTICAST: Final = 0x8848
_ETHERTYPE_VLAN: Final = frozenset((0x8100, 0x88A8, 0x9100))  # 802.1Q, 802.1ad, old QinQ
_AF_INET: Final = 2
_AF_INET6: Final = frozenset((10, 24, 28, 30))  # Linux, Net/OpenBSD, FreeBSD, macOS

_PPP_IPV4: Final = 0x0021
_PPP_IPV6: Final = 0x0057
_PPP_MPLS: Final = frozenset((0x0281, 0x0283))  # unicast, multicast (RFC 3032 §4.3)
_CISCO_HDLC_ADDRESSES: Final = frozenset((0x0F, 0x8F))  # unicast, broadcast (RFC 1547 §4.3.1)

_MAX_MPLS_LABELS: Final = 16
"""Deeper label stacks than this are not seen in practice: a frame claiming one is not MPLS."""


def ip_payload(linktype: int, data: bytes) -> bytes | None:
    """The IP packet inside a frame, or None for non-IP frames and unsupported link types."""
    if linktype in _RAW_LINKTYPES:
        return data if data and data[0] >> 4 in (4, 6) else None
    if linktype == LINKTYPE_ETHERNET:
        return ethernet_ip(data, 0)
    if linktype == LINKTYPE_LINUX_SLL:  # 16 bytes; protocol type last
        if len(data) < 16:
            return None
        return ethertype_ip(u16(data, 14), data, 16)
    if linktype == LINKTYPE_LINUX_SLL2:  # 20 bytes; protocol type first
        if len(data) < 20:
            return None
        return ethertype_ip(u16(data, 0), data, 20)
    if linktype == LINKTYPE_NULL or linktype == LINKTYPE_LOOP:
        # 4-byte address family: host byte order of the capturing machine for NULL (either
        # order may arrive), network byte order for LOOP.
        if len(data) < 4:
            return None
        family = u32(data, 0)
        if linktype == LINKTYPE_NULL and family > 0xFFFF:
            family = u32le(data, 0)
        if family == _AF_INET or family in _AF_INET6:
            return data[4:]
        return None
    if linktype == LINKTYPE_PPP or linktype == LINKTYPE_PPP_HDLC:
        return ppp_ip(data, 0)
    return None


def ethernet_ip(data: bytes, pos: int) -> bytes | None:
    """The IP packet in the Ethernet II frame starting at ``data[pos]``: destination and source
    addresses, then any VLAN tags (each a TCI and the next type), then the ethertype."""
    pos += 12
    if len(data) < pos + 2:
        return None
    ethertype = u16(data, pos)
    while ethertype in _ETHERTYPE_VLAN:
        pos += 4
        if len(data) < pos + 2:
            return None
        ethertype = u16(data, pos)
    return ethertype_ip(ethertype, data, pos + 2)


def ethertype_ip(ethertype: int, data: bytes, pos: int) -> bytes | None:
    """The IP packet at ``data[pos]`` that ``ethertype`` announces (IPv4, IPv6, or MPLS over them)."""
    if ethertype == _ETHERTYPE_IPV4 or ethertype == _ETHERTYPE_IPV6:
        return data[pos:]
    if ethertype == _ETHERTYPE_MPLS or ethertype == _ETHERTYPE_MPLS_MULTICAST:
        return mpls_ip(data, pos)
    return None


def mpls_ip(data: bytes, pos: int) -> bytes | None:
    """The IP packet under the MPLS label stack at ``data[pos]``.

    Each entry is 4 bytes: label (20 bits), traffic class (3), bottom of stack (1), TTL (8)
    (RFC 3032 §2.1). MPLS does not say what follows the stack; like the routers, we tell IPv4
    from IPv6 by the first nibble (RFC 3032 §2.2, RFC 4928 §1). Anything else (a pseudowire's
    control word and Ethernet, say) is not read.
    """
    for _ in range(_MAX_MPLS_LABELS):
        if len(data) < pos + 4:
            return None
        bottom = data[pos + 2] & 0x01
        pos += 4
        if bottom:
            if len(data) > pos and data[pos] >> 4 in (4, 6):
                return data[pos:]
            return None
    return None


def ppp_ip(data: bytes, pos: int) -> bytes | None:
    """The IP packet in the PPP frame at ``data[pos]`` (link types 9 and 50, and PPTP's GRE).

    RFC 1662 §3.1 puts the address 0xFF and control 0x03 first; a link that negotiated
    Address-and-Control-Field-Compression leaves them out (RFC 1661 §6.6). The protocol field
    is 2 bytes, or 1 when compressed (RFC 1661 §6.5): protocol numbers have an odd low byte
    and an even high byte, so an odd first byte is a whole 1-byte field. Link type 50 may
    instead hold Cisco HDLC (RFC 1547 §4.3.1: address 0x0F or 0x8F, control 0, an ethertype).
    """
    size = len(data)
    if size < pos + 2:
        return None
    first = data[pos]
    if first == 0xFF and data[pos + 1] == 0x03:
        pos += 2
    elif first in _CISCO_HDLC_ADDRESSES and data[pos + 1] == 0x00:
        if size < pos + 4:
            return None
        return ethertype_ip(u16(data, pos + 2), data, pos + 4)
    if size <= pos:
        return None
    if data[pos] & 0x01:
        protocol = data[pos]
        pos += 1
    else:
        if size < pos + 2:
            return None
        protocol = u16(data, pos)
        pos += 2
    if protocol == _PPP_IPV4 or protocol == _PPP_IPV6:
        return data[pos:] if size > pos else None
    if protocol in _PPP_MPLS:
        return mpls_ip(data, pos)
    return None
