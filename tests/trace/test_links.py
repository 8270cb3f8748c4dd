"""Link layers: PPP (both link types, both framings, compressed fields), Cisco HDLC, and MPLS
label stacks under Ethernet, VLAN tags, Linux cooked and PPP give the IP packet they carry."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from handshake.trace.links import (
    LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL2, LINKTYPE_PPP, LINKTYPE_PPP_HDLC, SUPPORTED_LINKTYPES,
    ip_payload, mpls_ip, ppp_ip,
)
from handshake.trace.packet import ACK, PSH, tcp_packet, udp_packet
from handshake.trace import pcap

V4 = tcp_packet("10.0.0.1", "10.0.0.2", 40000, 443, 2, 9, PSH | ACK, b"GET / HTTP/1.1\r\n")
V6 = udp_packet("2001:db8::1", "2001:db8::2", 4433, 443, b"\xc3" * 1200)
ETH = b"\x02\0\0\0\0\x02\x02\0\0\0\0\x01"


def label(value: int, bottom: bool, ttl: int = 64) -> bytes:
    """One MPLS label stack entry (RFC 3032 §2.1): label, traffic class 0, S, TTL."""
    return struct.pack(">I", value << 12 | int(bottom) << 8 | ttl)


def test_ppp_link_types_are_read_and_named_in_pcap_too():
    assert {LINKTYPE_PPP, LINKTYPE_PPP_HDLC} <= SUPPORTED_LINKTYPES
    assert pcap.LINKTYPE_PPP == 9 and pcap.LINKTYPE_PPP_HDLC == 50 and pcap.ip_payload is ip_payload
    pcap.check_linktype(9)
    pcap.check_linktype(50)


@pytest.mark.parametrize("linktype", [LINKTYPE_PPP, LINKTYPE_PPP_HDLC])
@pytest.mark.parametrize("header, packet", [
    (b"\xff\x03\x00\x21", V4),  # RFC 1662 address and control, 2-byte protocol
    (b"\xff\x03\x00\x57", V6),
    (b"\xff\x03\x21", V4),      # protocol field compressed (RFC 1661 §6.5)
    (b"\x00\x21", V4),          # address and control compressed (RFC 1661 §6.6)
    (b"\x57", V6),              # both
    (b"\xff\x03\x02\x81" + label(16, True), V4),  # MPLS unicast over PPP (RFC 3032 §4.3)
])
def test_ppp_frames_in_either_framing_give_the_ip_packet(linktype, header, packet):
    assert ip_payload(linktype, header + packet) == packet


@pytest.mark.parametrize("frame", [
    b"\xff\x03\xc0\x21\x01\x01\x00\x04",  # LCP Configure-Request
    b"\xff\x03\x80\x21" + V4,             # IPCP: the protocol, not IP
    b"\xff\x03",                          # address and control, nothing after
    b"\xff\x03\x00",                      # half a protocol field
    b"\xff\x03\x00\x21",                  # IPv4 announced, no packet
    b"",
    b"\x00",
])
def test_ppp_frames_without_ip_give_none(frame):
    assert ip_payload(LINKTYPE_PPP, frame) is None


@pytest.mark.parametrize("address", [0x0F, 0x8F])
def test_cisco_hdlc_in_link_type_50_carries_an_ethertype(address):
    assert ip_payload(LINKTYPE_PPP_HDLC, bytes([address, 0]) + b"\x86\xdd" + V6) == V6
    assert ip_payload(LINKTYPE_PPP_HDLC, bytes([address, 0]) + b"\x08\x06" + bytes(28)) is None  # ARP


@pytest.mark.parametrize("stack", [
    label(16, True),
    label(16, False) + label(17, True),
    label(16, False) + label(17, False) + label(3, False) + label(99, True),
])
@pytest.mark.parametrize("packet", [V4, V6], ids=["ipv4", "ipv6"])
def test_an_mpls_stack_is_read_to_its_bottom_and_the_ip_told_by_its_first_nibble(stack, packet):
    assert ip_payload(LINKTYPE_ETHERNET, ETH + b"\x88\x47" + stack + packet) == packet
    assert ip_payload(LINKTYPE_ETHERNET, ETH + b"\x88\x48" + stack + packet) == packet  # multicast
    assert ip_payload(LINKTYPE_ETHERNET, ETH + b"\x81\x00\x00\x2a\x88\x47" + stack + packet) == packet
    sll2 = struct.pack(">HHIHBB8s", 0x8847, 0, 2, 1, 0, 6, bytes(8))
    assert ip_payload(LINKTYPE_LINUX_SLL2, sll2 + stack + packet) == packet


@pytest.mark.parametrize("data", [
    label(16, False) + label(17, False),             # no bottom of the stack before the end
    label(16, True) + b"\x00\x00\x00\x00" + ETH,     # a pseudowire control word: not read
    label(16, True),                                 # nothing under the stack
    label(16, False) * 20 + label(1, True) + V4,     # deeper than any real stack
    b"\x00\x01",
])
def test_mpls_without_ip_under_it_gives_none(data):
    assert mpls_ip(data, 0) is None


def test_scapy_built_ppp_and_mpls_frames_agree():
    scapy = pytest.importorskip("scapy.all")
    from scapy.contrib.mpls import MPLS
    from scapy.layers.ppp import HDLC, PPP

    inner = scapy.IP(V4)
    assert ip_payload(LINKTYPE_PPP_HDLC, bytes(HDLC() / PPP() / inner)) == V4
    assert ip_payload(LINKTYPE_PPP, bytes(PPP() / inner)) == V4
    frame = scapy.Ether(type=0x8847) / MPLS(label=16, s=0) / MPLS(label=17, s=1) / inner
    assert ip_payload(LINKTYPE_ETHERNET, bytes(frame)) == V4


@settings(max_examples=3000, deadline=None)
@given(st.sampled_from([LINKTYPE_PPP, LINKTYPE_PPP_HDLC, LINKTYPE_ETHERNET]), st.binary(max_size=80))
def test_link_layers_never_raise(linktype, data):
    result = ip_payload(linktype, data)
    assert result is None or isinstance(result, bytes)
    assert ppp_ip(data, 0) is None or isinstance(ppp_ip(data, 0), bytes)
    assert mpls_ip(data, 0) is None or isinstance(mpls_ip(data, 0), bytes)
