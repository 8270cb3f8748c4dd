"""Captures for the inspect tests: sim runs written by `compare`'s writer, and the same packets
re-framed (Ethernet, Linux cooked, loopback; pcapng; IPv6) the way other tools write them."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from handshake.net.link import LinkConfig
from handshake.runner import RunOptions, VariantRun, run_sim, write_capture
from handshake.trace.packet import IpPacket, decode, encode
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


def pcapng_bytes(packets: list[tuple[float, bytes]], linktype: int = 101, *, nanoseconds: bool = True) -> bytes:
    """One section, one interface (if_tsresol 9 or 6), Enhanced Packet Blocks."""
    shb = _block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    resolution = 9 if nanoseconds else 6
    options = struct.pack("<HH", 9, 1) + bytes([resolution]) + b"\0\0\0" + struct.pack("<HH", 0, 0)
    idb = _block(1, struct.pack("<HHI", linktype, 0, 0) + options)
    out = [shb, idb]
    for time, frame in packets:
        ticks = round(time * 10 ** resolution)
        out.append(_block(6, struct.pack("<IIIII", 0, ticks >> 32, ticks & 0xFFFFFFFF, len(frame), len(frame)) + frame))
    return b"".join(out)


def reframe(packets: list[tuple[float, bytes]], link: str = "raw", *, ipv6: bool = False,
            pcapng: bool = False) -> bytes:
    """The raw IP packets of a capture as another tool would have written them."""
    linktype, header = LINK_HEADERS[link]
    framed = []
    for time, data in packets:
        ip = to_ipv6(data) if ipv6 else data
        frame = header(ipv6) + ip
        if link.startswith("ethernet") and len(frame) < 60:
            frame += b"\0" * (60 - len(frame))  # Ethernet pads short frames: not part of the IP packet
        framed.append((time, frame))
    return pcapng_bytes(framed, linktype) if pcapng else pcap_bytes(framed, linktype)
