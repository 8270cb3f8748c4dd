"""Captures for the inspect tests: sim runs written by `compare`'s writer, and the same packets
re-framed (Ethernet, Linux cooked, loopback, PPP, MPLS; pcapng; IPv6; inside tunnels) the way
other tools write them. The outer headers are built here by hand from their RFCs; tests check
them against tshark and scapy."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from handshake.net.link import LinkConfig
from handshake.runner import RunOptions, VariantRun, run_sim, write_capture
from handshake.trace.packet import IpPacket, decode, encode, udp_packet
from handshake.trace.pcap import iter_capture
from handshake.variants import CATALOG

RTT_S = 0.1


@dataclass
class WrittenRun:
    run: VariantRun
    pcap: Path
    keylog: Path


def written_run(directory: Path, variant: str, link: LinkConfig | None = None,
                options: RunOptions | None = None) -> WrittenRun:
    run = run_sim(CATALOG[variant], link or LinkConfig.from_rtt(RTT_S), options)
    pcap, keylog = write_capture(run, directory)
    return WrittenRun(run, pcap, keylog)


def raw_packets(pcap: Path) -> list[tuple[float, bytes]]:
    return [(frame.time, frame.data) for frame in iter_capture(pcap)]


# --- framing ---------------------------------------------------------------------------------

LINK_HEADERS = {
    # link type: (LINKTYPE value, header for an IPv4 / IPv6 packet)
    "raw": (101, lambda v6: b""),
    "ethernet": (1, lambda v6: b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01"
                 + (b"\x86\xdd" if v6 else b"\x08\x00")),
    "ethernet-vlan": (1, lambda v6: b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01"
                      + b"\x81\x00\x00\x2a" + (b"\x86\xdd" if v6 else b"\x08\x00")),
    "sll": (113, lambda v6: struct.pack(">HHH8sH", 0, 1, 6, b"\x02\0\0\0\0\1\0\0", 0x86DD if v6 else 0x0800)),
    "sll2": (276, lambda v6: struct.pack(">HHIHBB8s", 0x86DD if v6 else 0x0800, 0, 2, 1, 0, 6, b"\x02\0\0\0\0\1\0\0")),
    "null": (0, lambda v6: struct.pack("<I", 24 if v6 else 2)),  # BSD loopback, little-endian host
    "loop": (108, lambda v6: struct.pack(">I", 24 if v6 else 2)),
    # RFC 1662 address and control, then the 2-byte protocol (0x0057 IPv6, 0x0021 IPv4)
    "ppp": (9, lambda v6: b"\xff\x03" + (b"\x00\x57" if v6 else b"\x00\x21")),
    # address and control left out, protocol field compressed to 1 byte (RFC 1661 §6.5, §6.6)
    "ppp-compressed": (9, lambda v6: b"\x57" if v6 else b"\x21"),
    "ppp-hdlc": (50, lambda v6: b"\xff\x03" + (b"\x00\x57" if v6 else b"\x00\x21")),
    "cisco-hdlc": (50, lambda v6: b"\x0f\x00" + (b"\x86\xdd" if v6 else b"\x08\x00")),  # RFC 1547 §4.3.1
    # two MPLS labels (16 and 17, TTL 64), the second the bottom of the stack (RFC 3032 §2.1)
    "ethernet-mpls": (1, lambda v6: b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + b"\x88\x47"
                      + struct.pack(">II", 16 << 12 | 64, 17 << 12 | 1 << 8 | 64)),
}


def to_ipv6(data: bytes) -> bytes:
    """The same TCP segment or UDP datagram between IPv6 addresses (checksums recomputed)."""
    packet = decode(data)
    mapped = {packet.src: _v6(packet.src), packet.dst: _v6(packet.dst)}
    return encode(IpPacket(mapped[packet.src], mapped[packet.dst], packet.proto, packet.transport, packet.ttl, 0, 6))


def _v6(v4: str) -> str:
    a, b, c, d = (int(x) for x in v4.split("."))
    return f"2001:db8::{a:x}:{b:x}:{c:x}:{d:x}"


def pcap_bytes(packets: list[tuple[float, bytes]], linktype: int = 101) -> bytes:
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, linktype)]
    for time, frame in packets:
        ticks = round(time * 1_000_000)
        out.append(struct.pack("<IIII", ticks // 1_000_000, ticks % 1_000_000, len(frame), len(frame)) + frame)
    return b"".join(out)


def _block(block_type: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    total = 12 + len(body)
    return struct.pack("<II", block_type, total) + body + struct.pack("<I", total)


TLS_KEY_LOG = 0x544C534B


def secrets_block(kind: int, data: bytes) -> bytes:
    """A Decryption Secrets Block (pcapng spec §4.7): type, length, the data padded to 32 bits."""
    return _block(0x0A, struct.pack("<II", kind, len(data)) + data)


def pcapng_bytes(packets: list[tuple[float, bytes]], linktype: int = 101, *, nanoseconds: bool = True,
                 secrets: list[tuple[int, int, bytes]] = ()) -> bytes:
    """One section, one interface (if_tsresol 9 or 6), Enhanced Packet Blocks; ``secrets``:
    (before packet number, secrets type, data) for each Decryption Secrets Block."""
    shb = _block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    resolution = 9 if nanoseconds else 6
    options = struct.pack("<HH", 9, 1) + bytes([resolution]) + b"\0\0\0" + struct.pack("<HH", 0, 0)
    idb = _block(1, struct.pack("<HHI", linktype, 0, 0) + options)
    out = [shb, idb]
    for number, (time, frame) in enumerate(packets):
        out += [secrets_block(kind, data) for at, kind, data in secrets if at == number]
        ticks = round(time * 10 ** resolution)
        out.append(_block(6, struct.pack("<IIIII", 0, ticks >> 32, ticks & 0xFFFFFFFF, len(frame), len(frame)) + frame))
    return b"".join(out)


def reframe(packets: list[tuple[float, bytes]], link: str = "raw", *, ipv6: bool = False,
            pcapng: bool = False, tunnel: str | None = None, outer_ipv6: bool = False,
            secrets: bytes | None = None, secrets_at: int = 0) -> bytes:
    """The raw IP packets of a capture as another tool would have written them: ``tunnel`` (a
    name in TUNNELS) wraps each in outer headers, between IPv6 addresses if ``outer_ipv6``;
    ``secrets`` (pcapng only) is a key log put in a Decryption Secrets Block before packet
    number ``secrets_at``."""
    linktype, header = LINK_HEADERS[link]
    framed = []
    for time, data in packets:
        ip = to_ipv6(data) if ipv6 else data
        if tunnel is not None:
            ip = TUNNELS[tunnel](ip, outer_ipv6)
        frame = header(outer_ipv6 if tunnel is not None else ipv6) + ip
        if link.startswith("ethernet") and len(frame) < 60:
            frame += b"\0" * (60 - len(frame))  # Ethernet pads short frames: not part of the IP packet
        framed.append((time, frame))
    if secrets is not None:
        return pcapng_bytes(framed, linktype, secrets=[(secrets_at, TLS_KEY_LOG, secrets)])
    return pcapng_bytes(framed, linktype) if pcapng else pcap_bytes(framed, linktype)


# --- tunnels ---------------------------------------------------------------------------------

_OUTER = {False: ("192.0.2.1", "192.0.2.2"), True: ("2001:db8:ffff::1", "2001:db8:ffff::2")}
"""The tunnel endpoints (documentation addresses), IPv4 and IPv6."""
_ETH = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01"


def _outer_ip(proto: int, payload: bytes, outer_v6: bool) -> bytes:
    src, dst = _OUTER[outer_v6]
    return encode(IpPacket(src, dst, proto, payload, 64, 0, 6 if outer_v6 else 4))


def _ethertype(ip: bytes) -> bytes:
    return b"\x86\xdd" if ip[0] >> 4 == 6 else b"\x08\x00"


def _ethernet(ip: bytes) -> bytes:
    return _ETH + _ethertype(ip) + ip


def _checksum(data: bytes) -> int:
    """RFC 1071: the ones' complement of the ones' complement sum of 16-bit words."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f">{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def gre(protocol: int, payload: bytes, *, checksum: bool = False, key: int | None = None,
        sequence: int | None = None) -> bytes:
    """A GRE header (RFC 2784 §2.1; key and sequence number RFC 2890 §2) and its payload."""
    flags = (0x80 if checksum else 0) | (0x20 if key is not None else 0) | (0x10 if sequence is not None else 0)
    words = b"".join(struct.pack(">I", value) for value in (key, sequence) if value is not None)
    if checksum:
        body = words + payload
        total = _checksum(struct.pack(">BBHHH", flags, 0, protocol, 0, 0) + body)
        return struct.pack(">BBHHH", flags, 0, protocol, total, 0) + body
    return struct.pack(">BBH", flags, 0, protocol) + words + payload


def _mpls(ip: bytes) -> bytes:
    return struct.pack(">II", 100 << 12 | 64, 200 << 12 | 1 << 8 | 64) + ip


def erspan2(frame: bytes, session: int = 7) -> bytes:
    """ERSPAN type II header: version 1, VLAN, CoS, En, T, session id; reserved, index."""
    return struct.pack(">HHI", 1 << 12 | 0, session, 0) + frame


def erspan3(frame: bytes, *, platform: bool, session: int = 7) -> bytes:
    """ERSPAN type III: version 2, VLAN; CoS, BSO, T, session; timestamp; SGT; P, frame type 0
    (Ethernet), hardware id, D, granularity, O (a platform-specific subheader of 8 bytes follows)."""
    head = struct.pack(">HHIHH", 2 << 12, session, 123456, 0, (1 << 0) if platform else 0)
    return head + (struct.pack(">II", 3 << 26, 0) if platform else b"") + frame


def vxlan(frame: bytes, vni: int = 42) -> bytes:
    return struct.pack(">II", 0x08 << 24, vni << 8) + frame


def geneve(protocol: int, payload: bytes, *, options: bytes = b"") -> bytes:
    return struct.pack(">BBHI", len(options) // 4, 0, protocol, 42 << 8) + options + payload


_GENEVE_OPTION = struct.pack(">HBB", 0x0103, 0x80, 1) + b"\x00\x00\x00\x01"  # class, type, length 1 word


def _udp_tunnel(port: int, payload: bytes, outer_v6: bool) -> bytes:
    src, dst = _OUTER[outer_v6]
    return udp_packet(src, dst, 49152, port, payload)


TUNNELS = {
    # name: (inner IP packet, outer IPv6?) → outer IP packet
    "ipip": lambda ip, v6: _outer_ip(41 if ip[0] >> 4 == 6 else 4, ip, v6),
    "gre": lambda ip, v6: _outer_ip(47, gre(0x86DD if ip[0] >> 4 == 6 else 0x0800, ip), v6),
    "gre-checksum-key-sequence": lambda ip, v6: _outer_ip(
        47, gre(0x86DD if ip[0] >> 4 == 6 else 0x0800, ip, checksum=True, key=0x1234, sequence=9), v6),
    "gre-ethernet": lambda ip, v6: _outer_ip(47, gre(0x6558, _ethernet(ip), key=5), v6),
    "gre-mpls": lambda ip, v6: _outer_ip(47, gre(0x8847, _mpls(ip)), v6),
    "erspan1": lambda ip, v6: _outer_ip(47, gre(0x88BE, _ethernet(ip)), v6),
    "erspan2": lambda ip, v6: _outer_ip(47, gre(0x88BE, erspan2(_ethernet(ip)), sequence=3), v6),
    "erspan3": lambda ip, v6: _outer_ip(47, gre(0x22EB, erspan3(_ethernet(ip), platform=True), sequence=3), v6),
    "vxlan": lambda ip, v6: _udp_tunnel(4789, vxlan(_ETH + b"\x81\x00\x00\x2a" + _ethertype(ip) + ip), v6),
    "geneve": lambda ip, v6: _udp_tunnel(6081, geneve(0x6558, _ethernet(ip), options=_GENEVE_OPTION), v6),
    "geneve-ip": lambda ip, v6: _udp_tunnel(6081, geneve(0x86DD if ip[0] >> 4 == 6 else 0x0800, ip), v6),
    # three deep: VXLAN inside GRE inside IP in IP
    "nested": lambda ip, v6: _outer_ip(4, _outer_ip(47, gre(0x0800, _udp_tunnel(4789, vxlan(_ethernet(ip)), False)),
                                                    False), v6),
}
