"""Packet codec speed: µs per packet for encode and decode, and per frame for pcap I/O.

The simulator encodes (and the receiving side decodes) every packet it moves, so these figures
bound its per-packet cost. Run by hand: ``python bench/bench_codec.py``.
"""

from __future__ import annotations

import io
import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

from handshake.trace.packet import (
    ACK, PSH, SYN, IpPacket, TcpSegment, UdpDatagram, decode, encode, fastopen_option,
    mss_option, sack_perm_option, tcp_packet, timestamp_option, udp_packet, wscale_option,
)
from handshake.trace.pcap import PcapWriter, iter_capture

SYN_OPTIONS = (mss_option(1460), sack_perm_option(), timestamp_option(123456, 0), (1, b""),
               wscale_option(7), fastopen_option(b"\x11" * 8))


def per_call_us(fn, repeat: int = 5, number: int = 20_000) -> float:
    """Best of ``repeat`` runs: the least disturbed measurement."""
    return min(timeit.repeat(fn, repeat=repeat, number=number)) / number * 1e6


def main() -> None:
    cases = {
        "SYN v4, 6 options": IpPacket("10.0.0.1", "10.0.0.2", 6, TcpSegment(
            40000, 443, 1, 0, SYN, 65535, SYN_OPTIONS, b"")),
        "ACK v4, 1448 B data": IpPacket("10.0.0.2", "10.0.0.1", 6, TcpSegment(
            443, 40000, 1, 2, PSH | ACK, 65535, (timestamp_option(1, 2),), bytes(1448))),
        "ACK v4, no data": IpPacket("10.0.0.1", "10.0.0.2", 6, TcpSegment(
            40000, 443, 2, 1449, ACK, 65535, (timestamp_option(3, 1),), b"")),
        "UDP v6, 1200 B (QUIC Initial)": IpPacket("2001:db8::1", "2001:db8::2", 17, UdpDatagram(
            4433, 443, bytes(1200)), version=6),
    }
    print(f"{'packet':32} {'encode':>8} {'decode':>8}   µs/packet")
    for name, packet in cases.items():
        wire = encode(packet)
        print(f"{name:32} {per_call_us(lambda: encode(packet)):8.2f} "
              f"{per_call_us(lambda: decode(wire)):8.2f}")

    print()
    print(f"{'hot path (bytes, no objects)':32} {'encode':>8}")
    data = bytes(1448)
    hot = {
        "tcp_packet SYN v4, 6 options": lambda: tcp_packet(
            "10.0.0.1", "10.0.0.2", 40000, 443, 1, 0, SYN, b"", SYN_OPTIONS),
        "tcp_packet ACK v4, 1448 B data": lambda: tcp_packet(
            "10.0.0.2", "10.0.0.1", 443, 40000, 1, 2, ACK, data),
        "udp_packet v6, 1200 B": lambda: udp_packet(
            "2001:db8::1", "2001:db8::2", 4433, 443, data[:1200]),
    }
    for name, fn in hot.items():
        print(f"{name:32} {per_call_us(fn):8.2f}")

    frames = 20_000
    wire = encode(cases["ACK v4, 1448 B data"])
    buf = io.BytesIO()

    def write_all() -> None:
        buf.seek(0)
        buf.truncate()
        with PcapWriter(buf) as writer:
            for i in range(frames):
                writer.write(i * 1e-4, wire)

    write_us = min(timeit.repeat(write_all, repeat=3, number=1)) / frames * 1e6
    raw = buf.getvalue()
    read_us = min(timeit.repeat(lambda: sum(1 for _ in iter_capture(io.BytesIO(raw))),
                                repeat=3, number=1)) / frames * 1e6
    print()
    print(f"pcap write {write_us:.2f} µs/frame, iter_capture {read_us:.2f} µs/frame "
          f"({frames} frames of {len(wire)} B)")


if __name__ == "__main__":
    main()
