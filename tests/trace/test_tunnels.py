"""Tunnels: GRE (with ERSPAN I-III), VXLAN, Geneve, IP in IP and MPLS give the inner IP packet,
nested ones too; packets that are no tunnel come back as they are, and nothing raises.

The tunnel packets are built with scapy (an implementation independent of ours) where it has
the layer, and by hand from the RFCs in tests/capture_files.py otherwise; both are read here."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from handshake.trace.packet import ACK, PSH, SYN, tcp_packet, udp_packet
from handshake.trace.tunnels import MAX_DEPTH, decapsulate

from tests.capture_files import TUNNELS, erspan2, erspan3, geneve, gre, vxlan

V4 = tcp_packet("10.0.0.1", "10.0.0.2", 40000, 443, 1, 0, SYN)
V6 = tcp_packet("2001:db8::1", "2001:db8::2", 40000, 443, 2, 9, PSH | ACK, b"GET / HTTP/1.1\r\n")
QUIC = udp_packet("10.0.0.2", "10.0.0.1", 443, 4789, b"\x48" + bytes(40))  # a short header to port 4789
ETH4 = b"\x02\0\0\0\0\x02\x02\0\0\0\0\x01\x08\x00"
ETH6 = b"\x02\0\0\0\0\x02\x02\0\0\0\0\x01\x86\xdd"

scapy = pytest.importorskip("scapy.all")
from scapy.contrib.erspan import ERSPAN, ERSPAN_II, ERSPAN_III, ERSPAN_PlatformSpecific  # noqa: E402
from scapy.contrib.geneve import GENEVE  # noqa: E402
from scapy.contrib.mpls import MPLS  # noqa: E402
from scapy.layers.l2 import GRE  # noqa: E402
from scapy.layers.vxlan import VXLAN  # noqa: E402

OUTER4 = scapy.IP(src="192.0.2.1", dst="192.0.2.2")
OUTER6 = scapy.IPv6(src="2001:db8:ffff::1", dst="2001:db8:ffff::2")


def _scapy_cases():
    inner4, inner6 = scapy.IP(V4), scapy.IPv6(V6)
    ether4 = scapy.Ether(dst="02:00:00:00:00:02", src="02:00:00:00:00:01") / inner4
    ether6 = scapy.Ether(dst="02:00:00:00:00:02", src="02:00:00:00:00:01") / inner6
    return {
        "ipip": (OUTER4 / inner4, V4),
        "ipv6-in-ipv4": (OUTER4 / inner6, V6),
        "ipv4-in-ipv6": (OUTER6 / inner4, V4),
        "ipv6-in-ipv6": (OUTER6 / inner6, V6),
        "gre": (OUTER4 / GRE() / inner4, V4),
        "gre-ipv6-outer": (OUTER6 / GRE() / inner6, V6),
        "gre-checksum": (OUTER4 / GRE(chksum_present=1) / inner4, V4),
        "gre-key-sequence": (OUTER4 / GRE(key_present=1, key=7, seqnum_present=1, sequence_number=5) / inner6, V6),
        "gre-ethernet": (OUTER4 / GRE(proto=0x6558) / ether6, V6),
        "gre-mpls": (OUTER4 / GRE(proto=0x8847) / MPLS(label=16, s=0) / MPLS(label=17, s=1) / inner4, V4),
        "erspan1": (OUTER4 / GRE(proto=0x88BE) / ether4, V4),
        "erspan2": (OUTER4 / GRE(proto=0x88BE, seqnum_present=1) / ERSPAN_II(session_id=3) / ether4, V4),
        "erspan3": (OUTER4 / GRE(proto=0x22EB, seqnum_present=1) / ERSPAN_III(session_id=3) / ether6, V6),
        "erspan3-platform": (OUTER4 / GRE(proto=0x22EB, seqnum_present=1) / ERSPAN_III(session_id=3, o=1)
                             / ERSPAN_PlatformSpecific() / ether4, V4),
        "vxlan": (OUTER4 / scapy.UDP(sport=50000, dport=4789) / VXLAN(vni=42, flags=0x08) / ether4, V4),
        # scapy's default flags are VXLAN-GPE's (I and P, next protocol Ethernet)
        "vxlan-gpe-flags": (OUTER4 / scapy.UDP(sport=50000, dport=4789) / VXLAN(vni=42) / ether4, V4),
        "vxlan-gpe-ip": (OUTER4 / scapy.UDP(sport=50000, dport=4789) / VXLAN(vni=42, flags=0x0C, NextProtocol=2)
                         / inner6, V6),
        "vxlan-vlan": (OUTER6 / scapy.UDP(sport=50000, dport=4789) / VXLAN(vni=42)
                       / scapy.Ether(dst="02:00:00:00:00:02") / scapy.Dot1Q(vlan=42) / inner6, V6),
        "geneve": (OUTER4 / scapy.UDP(sport=50000, dport=6081) / GENEVE(vni=42, proto=0x6558) / ether4, V4),
        "geneve-ip": (OUTER4 / scapy.UDP(sport=50000, dport=6081) / GENEVE(vni=42, proto=0x86DD) / inner6, V6),
        "vxlan-in-gre-in-ipip": (OUTER6 / scapy.IP(src="192.0.2.3", dst="192.0.2.4") / GRE()
                                 / scapy.IP(src="192.0.2.5", dst="192.0.2.6") / scapy.UDP(dport=4789) / VXLAN()
                                 / ether4, V4),
    }


SCAPY_CASES = _scapy_cases()


@pytest.mark.parametrize("name", list(SCAPY_CASES))
def test_the_inner_packet_of_a_scapy_built_tunnel(name):
    outer, inner = SCAPY_CASES[name]
    assert decapsulate(bytes(outer)) == inner


def test_erspan_type_one_is_ethernet_right_after_a_gre_header_without_sequence_number():
    # scapy's ERSPAN (type I/II) layer: with the sequence bit it is a type II header, without none.
    frame = scapy.Ether() / scapy.IP(V4)
    assert decapsulate(bytes(OUTER4 / GRE(proto=0x88BE) / frame)) == V4
    assert decapsulate(bytes(OUTER4 / GRE(proto=0x88BE, seqnum_present=1) / ERSPAN() / frame)) == V4


@pytest.mark.parametrize("name", list(TUNNELS))
@pytest.mark.parametrize("outer_v6", [False, True], ids=["outer-ipv4", "outer-ipv6"])
@pytest.mark.parametrize("inner", [V4, V6], ids=["inner-ipv4", "inner-ipv6"])
def test_the_inner_packet_of_a_hand_built_tunnel(name, outer_v6, inner):
    outer = TUNNELS[name](inner, outer_v6)
    assert decapsulate(outer) == inner
    parsed = scapy.IPv6(outer) if outer_v6 else scapy.IP(outer)  # scapy reads the same headers
    assert bytes(parsed.lastlayer()) != b"" and parsed.haslayer(scapy.TCP)


def test_link_padding_after_the_outer_packet_is_not_part_of_the_inner_one():
    outer = TUNNELS["gre"](V4, False)
    assert decapsulate(outer + bytes(12)) == V4


def test_a_packet_that_is_no_tunnel_comes_back_as_it_is():
    for packet in (V4, V6, QUIC, udp_packet("10.0.0.1", "10.0.0.2", 5000, 443, b"\xc3" + bytes(1199)),
                   udp_packet("10.0.0.1", "10.0.0.2", 4789, 443, bytes(30)), b"", b"\x45", bytes(60)):
        assert decapsulate(packet) == packet


def test_quic_to_the_vxlan_or_geneve_port_is_not_taken_for_a_tunnel():
    """QUIC's fixed bit (0x40) is a reserved VXLAN flag and makes a Geneve version of 1."""
    for first in (0x40, 0x48, 0x5F, 0xC0, 0xCF):
        for port in (4789, 6081):
            packet = udp_packet("10.0.0.2", "10.0.0.1", 443, port, bytes([first]) + ETH4[1:] + V4)
            assert decapsulate(packet) == packet


def test_a_tunnel_whose_payload_is_not_ip_gives_none():
    arp = b"\x02\0\0\0\0\x02\x02\0\0\0\0\x01\x08\x06" + bytes(28)
    header_only = TUNNELS["ipip"](V4, False)[:20]  # IP in IP with nothing inside: left as it is
    assert decapsulate(header_only) == header_only
    assert decapsulate(bytes(OUTER4 / scapy.UDP(dport=4789) / VXLAN() / scapy.Raw(arp))) is None
    assert decapsulate(bytes(OUTER4 / GRE(proto=0x6558) / scapy.Raw(arp))) is None
    assert decapsulate(bytes(OUTER4 / GRE(proto=0x0806) / scapy.Raw(bytes(28)))) is None


def test_outer_ipv4_fragments_are_not_reassembled():
    whole = TUNNELS["gre"](V4, False)
    first = bytearray(whole)
    first[6] |= 0x20  # more fragments
    later = bytearray(whole)
    later[6:8] = struct.pack(">H", 100)  # offset 800 bytes
    assert decapsulate(bytes(first)) == bytes(first)
    assert decapsulate(bytes(later)) == bytes(later)


def test_gre_forms_we_do_not_read_are_left_as_they_are():
    routing = bytearray(TUNNELS["gre"](V4, False))
    routing[20] |= 0x40  # RFC 1701 routing present: discarded, as RFC 2784 says
    assert decapsulate(bytes(routing)) == bytes(routing)
    version2 = bytearray(TUNNELS["gre"](V4, False))
    version2[21] = 2
    assert decapsulate(bytes(version2)) == bytes(version2)


def test_pptp_enhanced_gre_carries_ppp():
    # version 1, key present (payload length, call id), sequence number, acknowledgment (A)
    header = struct.pack(">BBHHHII", 0x30, 0x81, 0x880B, len(V4) + 2, 9, 1, 0)
    packet = scapy.IP(src="192.0.2.1", dst="192.0.2.2", proto=47) / scapy.Raw(header + b"\xff\x03\x00\x21" + V4)
    assert decapsulate(bytes(packet)) == V4
    without_ack = struct.pack(">BBHHHI", 0x30, 0x01, 0x880B, len(V4) + 1, 9, 1)
    packet = scapy.IP(src="192.0.2.1", dst="192.0.2.2", proto=47) / scapy.Raw(without_ack + b"\x21" + V4)
    assert decapsulate(bytes(packet)) == V4


def test_nesting_stops_at_the_fixed_depth():
    packet = V4
    for _ in range(MAX_DEPTH + 1):
        packet = TUNNELS["ipip"](packet, False)
    once_left = decapsulate(packet)
    assert once_left == TUNNELS["ipip"](V4, False)
    assert decapsulate(TUNNELS["nested"](V6, True)) == V6


def test_headers_built_here_match_scapys():
    assert gre(0x0800, V4, key=7, sequence=5) == bytes(GRE(key_present=1, key=7, seqnum_present=1,
                                                             sequence_number=5, proto=0x0800) / scapy.Raw(V4))
    checksummed = gre(0x0800, V4, checksum=True)
    assert checksummed == bytes(GRE(chksum_present=1, proto=0x0800) / scapy.Raw(V4))
    assert vxlan(ETH4 + V4) == bytes(VXLAN(vni=42, flags=0x08) / scapy.Raw(ETH4 + V4))
    assert geneve(0x0800, V4) == bytes(GENEVE(vni=42, proto=0x0800) / scapy.Raw(V4))
    assert erspan2(ETH4 + V4)[:2] == bytes(ERSPAN_II(session_id=7) / scapy.Raw(ETH4 + V4))[:2]
    assert len(erspan3(b"", platform=True)) == 20 and len(erspan3(b"", platform=False)) == 12


@st.composite
def tunnel_like(draw):
    """Packets that reach the tunnel parsers: a plausible outer header, then random bytes."""
    proto = draw(st.sampled_from([4, 41, 47, 17]))
    body = draw(st.binary(max_size=120))
    if proto == 17:
        port = draw(st.sampled_from([4789, 6081]))
        body = struct.pack(">HHHH", 1, port, 8 + len(body), 0) + body
    if proto == 47 and draw(st.booleans()):
        body = struct.pack(">BBH", draw(st.integers(0, 255)), draw(st.integers(0, 255)),
                           draw(st.sampled_from([0x0800, 0x86DD, 0x6558, 0x8847, 0x88BE, 0x22EB, 0x880B]))) + body
    if draw(st.booleans()):
        header = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(body), 0, 0, 64, proto, 0, bytes(4), bytes(4))
    else:
        header = struct.pack(">IHBB16s16s", 0x60000000, len(body), proto, 64, bytes(16), bytes(16))
    cut = draw(st.integers(0, len(header) + len(body)))
    return (header + body)[:cut] if draw(st.booleans()) else header + body


@settings(max_examples=5000, deadline=None)
@given(st.one_of(st.binary(max_size=200), tunnel_like()))
def test_the_decapsulator_never_raises(data):
    result = decapsulate(data)
    assert result is None or isinstance(result, bytes)
