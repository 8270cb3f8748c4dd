"""Segmentation offload: a capture with TSO/GSO super-segments reads as the same traffic at MTU size.

A host that hands its NIC (TSO) or its own driver layer (GSO) one large TCP segment, cut into
MTU-sized ones only below the capture point, shows tcpdump that large segment: up to 64 KB in one
packet, with its IPv4 total length left 0 for the NIC to fill in, or set to the true large length
(GSO, and GRO on a receiving host, which merges arriving segments the same way). Wireshark reads
both ("IPv4 total length 0: assumed TSO"); so must `inspect`.

The traffic is real: the sim engine's runs of several variants with 64 KB responses (about 45
segments each), written once as captured at MTU size and once with each burst of a flow's
same-direction data segments merged into super-segments, as the sending host's capture shows
them. The connections, their round trips, TTFB, TLS facts and stream bytes must not change.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from handshake.analysis.capture import inspect_capture
from handshake.analysis.keylog import KeyLog, parse_keylog
from handshake.net.link import LinkConfig
from handshake.runner import RunOptions, run_sim
from handshake.trace.packet import FIN, PSH, RST, SYN, IpPacket, TcpSegment, decode, encode
from handshake.trace.pcap import PcapWriter
from handshake.variants import CATALOG

VARIANTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("http", ()), ("tls12", ()), ("tls12-resume", ()), ("tls13", ()), ("tls13-0rtt", ()), ("tfo-tls13", ()),
    ("quic", ()), ("tls12", ("server-hello",)))
"""(variant, packets dropped once): the last loses its ServerHello, which the server's timer resends
300 ms on, where it joins the next data in one super-segment (its first byte then comes earlier)."""
SIM_CLIENT = "198.18.0.1"
SIM_SERVER = "198.19.0.1"
V6_RUN = "tls13"
"""This variant's run is written over IPv6 (payload length 0 for TSO, RFC 8200 §3)."""
BURST_S = 0.005
"""Segments a sender let go within this of the first of them are one super-segment: a tenth of
the 50 ms RTT, so a burst the congestion window released never joins the next round's."""
MAX_IP = 0xFFFF
"""What one IPv4 packet can carry (RFC 791's 16-bit total length), and so what TSO hands down."""

Timed = tuple[float, IpPacket]


def _runs() -> tuple[list[tuple[str, list[Timed]]], str]:
    """Each variant's packets, the client at its own address (10.0.0.N or 2001:db8::N), the runs
    ten seconds apart; and the key log of them all."""
    # 100 Mbit/s spreads a burst over ~0.12 ms a segment; the jitter moves each packet a little
    # (without reordering): the segments a super-segment merges have distinct times.
    link = replace(LinkConfig.from_rtt(0.05), jitter_s=0.0005, rate_bps=100e6, seed=3)
    runs = []
    keylog = ""
    for n, (name, drops) in enumerate(VARIANTS, start=1):
        run = run_sim(CATALOG[name], link, RunOptions(response_bytes=64_000, drops=drops))
        keylog += run.trace.keylog
        v6 = name == V6_RUN
        client, server = (f"2001:db8::{n}", "2001:db8::443") if v6 else (f"10.0.0.{n}", SIM_SERVER)
        packets = []
        for captured in run.trace.packets:
            ip = decode(captured.data)
            ip = replace(ip, src=client if ip.src == SIM_CLIENT else server, dst=client if ip.dst == SIM_CLIENT else server,
                         version=6 if v6 else 4, ident=0 if v6 else ip.ident)
            packets.append((captured.time + 10.0 * n, ip))
        runs.append((name, packets))
    return runs, keylog


def merge_bursts(packets: list[Timed]) -> tuple[list[Timed], list[int], list[int]]:
    """The packets as the sender's capture shows them under TSO: each run of a flow's data
    segments in one direction, contiguous in sequence, with the same ACK number, sent within
    BURST_S of the first and with no data from the other side between them, becomes one packet
    at the first one's time (the other side's pure ACKs stay where they were: they arrive
    while the NIC sends). Returns the packets, for each input packet the index of the packet it
    went into, and how many segments each output packet holds."""
    out: list[Timed] = []
    into: list[int] = []
    held: list[int] = []
    open_burst: dict[tuple, int] = {}  # (src, sport, dst, dport) -> index in out
    for time, ip in packets:
        segment = ip.transport
        if not isinstance(segment, TcpSegment):
            into.append(len(out))
            out.append((time, ip))
            held.append(1)
            continue
        key = (ip.src, segment.sport, ip.dst, segment.dport)
        data = bool(segment.payload) and not segment.flags & (SYN | FIN | RST)
        if segment.payload or segment.flags & (SYN | FIN | RST):
            open_burst.pop((ip.dst, segment.dport, ip.src, segment.sport), None)  # the other side spoke
        at = open_burst.get(key) if data else None
        if at is not None:
            first_time, first = out[at]
            head = first.transport
            assert isinstance(head, TcpSegment)
            size = len(encode(first)) + len(segment.payload)
            if ((head.seq + len(head.payload)) % (1 << 32) == segment.seq and head.ack == segment.ack
                    and time - first_time <= BURST_S and size <= MAX_IP):
                merged = replace(head, payload=head.payload + segment.payload, flags=head.flags | (segment.flags & PSH))
                out[at] = (first_time, replace(first, transport=merged))
                into.append(at)
                held[at] += 1
                continue
        open_burst.pop(key, None)
        if data:
            open_burst[key] = len(out)
        into.append(len(out))
        out.append((time, ip))
        held.append(1)
    return out, into, held


def write(path: Path, packets: list[Timed], held: list[int] | None = None) -> list[int]:
    """A raw-IP pcap; of the super-segments (``held`` > 1), every other one carries length 0 in
    its IP header, the others their true length. Returns the indices of those with 0."""
    zeroed = []
    big = 0
    with PcapWriter(path) as writer:
        for index, (time, ip) in enumerate(packets):
            wire = encode(ip)
            if held is not None and held[index] > 1:
                big += 1
                if big % 2:
                    at = 2 if ip.version == 4 else 4
                    wire = wire[:at] + b"\x00\x00" + wire[at + 2:]
                    zeroed.append(index)
            writer.write(time, wire)
    return zeroed


def endpoint(address: str, port: int) -> str:
    """As `inspect` names one: 10.0.0.1:443, [2001:db8::1]:443."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


@pytest.fixture(scope="module")
def captures(tmp_path_factory) -> dict:
    runs, keylog = _runs()
    packets = sorted((timed for _, run in runs for timed in run), key=lambda timed: timed[0])
    merged, into, held = merge_bursts(packets)
    directory = tmp_path_factory.mktemp("tso")
    mtu, tso = directory / "mtu.pcap", directory / "tso.pcap"
    write(mtu, packets)
    zeroed = write(tso, merged, held)
    return {"mtu": mtu, "tso": tso, "packets": packets, "merged": merged, "into": into, "held": held,
            "zeroed": zeroed, "keylog": parse_keylog(keylog)}


def _rows(path: Path, keylog: KeyLog | None = None) -> dict[str, dict]:
    inspection = inspect_capture(str(path), keylog)
    assert inspection.notes == []
    return {conn.report.client: conn.report.as_dict() for conn in inspection.connections}


def test_the_tso_capture_is_what_a_sending_host_shows(captures):
    """The merge is real TSO: super-segments up to 64 KB, many over the MTU, about half with
    length 0, over IPv4 and IPv6."""
    held, merged, zeroed = captures["held"], captures["merged"], captures["zeroed"]
    big = [index for index, n in enumerate(held) if n > 1]
    sizes = [len(encode(merged[index][1])) for index in big]
    assert len(big) >= 25 and max(sizes) > 24_000 and max(held) >= 17 and max(sizes) <= MAX_IP
    assert len(zeroed) == (len(big) + 1) // 2
    assert {merged[index][1].version for index in zeroed} == {4, 6}
    assert {merged[index][1].version for index in big if index not in zeroed} == {4, 6}


@pytest.mark.parametrize("keys", [False, True], ids=["keyless", "keylog"])
def test_tso_sized_packets_decode_to_the_same_connections(captures, keys):
    keylog = captures["keylog"] if keys else None
    mtu, tso = _rows(captures["mtu"], keylog), _rows(captures["tso"], keylog)
    assert sorted(mtu) == sorted(tso) and len(mtu) >= len(VARIANTS)
    assert any(row["transport"] == "quic" for row in mtu.values())
    same = ("transport", "server", "start_time", "tls_version", "sni", "alpn", "alpn_offered", "cipher", "resumed",
            "early_data", "tfo", "hrr", "quic_version", "retry", "round_trips", "setup_round_trips",
            "round_trips_basis", "causes", "notes")
    for client, row in mtu.items():
        assert {fact: tso[client][fact] for fact in same} == {fact: row[fact] for fact in same}, client
    counted = [row for row in mtu.values() if row["round_trips"] is not None]
    # Without keys, the 0-RTT answer cannot be told from the early data's echo: no count there.
    assert len(counted) == len(mtu) - (0 if keys else 1)
    assert {row["round_trips_basis"] for row in counted} == ({"clear", "decrypted"} if keys else {"clear", "inferred"})
    assert {row["tls_version"] for row in mtu.values()} == {None, "1.2", "1.3"}
    # The 64 KB answer takes more than the initial congestion window: the TLS 1.2 row names the
    # wait at MTU size and with super-segments alike (by bytes in flight, not segments).
    assert any("initial congestion window" in cause for row in tso.values() for cause in row["causes"])


def test_ttfb_is_the_time_of_the_super_segment_that_carries_the_first_byte(captures):
    """The merged packet carries its first segment's time, so the answer is complete at that
    packet's time (to the µs), never later than at MTU size."""
    mtu, tso = _rows(captures["mtu"], captures["keylog"]), _rows(captures["tso"], captures["keylog"])
    packets, merged, into = captures["packets"], captures["merged"], captures["into"]
    for client, row in mtu.items():
        if row["transport"] != "tcp":
            assert tso[client]["ttfb_ms"] == row["ttfb_ms"]  # UDP: nothing merged
            continue
        first = row["start_time"] + row["ttfb_ms"] / 1000
        found = [index for index, (time, ip) in enumerate(packets) if abs(time - first) < 1e-6
                 and endpoint(ip.src, ip.transport.sport) == row["server"]
                 and endpoint(ip.dst, ip.transport.dport) == client and ip.transport.payload]
        assert found, client
        # Packets of a burst may share a time stamp: the super-segment of one of them.
        expected_ms = {round((merged[into[index]][0] - row["start_time"]) * 1000, 3) for index in found}
        assert tso[client]["ttfb_ms"] in expected_ms, client
        assert tso[client]["ttfb_ms"] <= row["ttfb_ms"]


def _merged_away(into: list[int]) -> list[bool]:
    """For each MTU packet, whether it went into a super-segment an earlier packet began."""
    begun: set[int] = set()
    away = []
    for target in into:
        away.append(target in begun)
        begun.add(target)
    return away


def test_byte_counts_differ_by_exactly_the_merged_headers(captures):
    """bytes_client/bytes_server count the IP bytes the capture holds: a super-segment has one
    IP and TCP header where the wire carried one per segment (the NIC writes the others, below
    the capture point), so the TSO capture counts those headers less and the same stream bytes.
    What the capture holds is also what tshark counts (`-z conv,tcp`)."""
    mtu, tso = _rows(captures["mtu"]), _rows(captures["tso"])
    packets = captures["packets"]
    headers_gone: dict[tuple[str, bool], int] = {}
    packets_gone: dict[str, int] = {}
    for (_, ip), away in zip(packets, _merged_away(captures["into"])):
        if not away:
            continue
        segment = ip.transport
        assert isinstance(segment, TcpSegment)
        source = endpoint(ip.src, segment.sport)
        from_client = source in mtu
        client = source if from_client else endpoint(ip.dst, segment.dport)
        side = (client, from_client)
        headers_gone[side] = headers_gone.get(side, 0) + len(encode(ip)) - len(segment.payload)
        packets_gone[client] = packets_gone.get(client, 0) + 1
    assert sum(packets_gone.values()) == len(packets) - len(captures["merged"])
    assert headers_gone
    for client, row in mtu.items():
        assert tso[client]["bytes_client"] == row["bytes_client"] - headers_gone.get((client, True), 0), client
        assert tso[client]["bytes_server"] == row["bytes_server"] - headers_gone.get((client, False), 0), client
        assert tso[client]["packets"] == row["packets"] - packets_gone.get(client, 0), client


TSHARK = shutil.which("tshark")


def _tshark_directions(path: Path) -> dict[tuple[str, str], list[int]]:
    """(source, destination) → [frames, frame bytes, TCP payload bytes] as tshark reads the
    capture (with its ipv6.tso_support on: IPv6 needs it, IPv4's is on by default)."""
    result = subprocess.run([TSHARK, "-r", str(path), "-n", "-o", "ipv6.tso_support:TRUE", "-Y", "tcp",
                             "-T", "fields", "-e", "ip.src", "-e", "ipv6.src", "-e", "tcp.srcport", "-e", "ip.dst",
                             "-e", "ipv6.dst", "-e", "tcp.dstport", "-e", "frame.len", "-e", "tcp.len"],
                            capture_output=True, text=True, check=True)
    found: dict[tuple[str, str], list[int]] = {}
    for line in result.stdout.splitlines():
        src4, src6, sport, dst4, dst6, dport, frame_len, tcp_len = line.split("\t")
        key = (endpoint(src6 or src4, int(sport)), endpoint(dst6 or dst4, int(dport)))
        counts = found.setdefault(key, [0, 0, 0])
        counts[0] += 1
        counts[1] += int(frame_len)
        counts[2] += int(tcp_len)
    return found


@pytest.mark.skipif(TSHARK is None, reason="tshark is not installed (CI: apt-get install tshark)")
def test_tshark_reads_the_tso_capture_as_inspect_does(captures):
    """tshark reads every stream byte of the super-segments (the same TCP payload per direction
    as at MTU size), and counts the frames and bytes inspect counts."""
    at_mtu, with_tso = _tshark_directions(captures["mtu"]), _tshark_directions(captures["tso"])
    assert {key: counts[2] for key, counts in with_tso.items()} == {key: counts[2] for key, counts in at_mtu.items()}
    tso = _rows(captures["tso"])
    tcp_rows = [row for row in tso.values() if row["transport"] == "tcp"]
    assert len(tcp_rows) == len(with_tso) // 2
    for row in tcp_rows:
        sent = with_tso[(row["client"], row["server"])]
        received = with_tso[(row["server"], row["client"])]
        assert (sent[1], received[1], sent[0] + received[0]) == (row["bytes_client"], row["bytes_server"],
                                                                 row["packets"]), row["client"]
