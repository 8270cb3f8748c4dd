"""Links and files: the same run read through a tunnel, from a compressed file or with its key
log inside the pcapng gives the same verdicts as the plain capture with ``--keylog``; one
process or several. tshark, reading the same files, finds the same conversations."""

from __future__ import annotations

import gzip
import io
import lzma
import shutil
import struct
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from handshake.analysis import parallel
from handshake.analysis.capture import CaptureAnalyzer, inspect_capture, read_capture
from handshake.analysis.keylog import parse_keylog
from handshake.trace.packet import decode, encode

from tests.capture_files import (
    TLS_KEY_LOG, TUNNELS, pcap_bytes, pcapng_bytes, raw_packets, reframe, secrets_block, written_run,
)

FACTS = ("transport", "client", "server", "tls_version", "resumed", "early_data", "tfo", "round_trips",
         "setup_round_trips", "ttfb_s", "server_s", "round_trips_basis", "packets", "bytes_client", "bytes_server",
         "causes", "notes", "sni", "cipher", "alpn")
TSHARK = shutil.which("tshark")
needs_tshark = pytest.mark.skipif(TSHARK is None, reason="tshark is not installed (CI: apt-get install tshark)")
needs_fork = pytest.mark.skipif(not parallel.available(), reason="no fork on this platform")
WILD = Path(__file__).resolve().parents[1] / "data" / "ja4-http2-with-cookies-first-40.pcapng"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    directory = tmp_path_factory.mktemp("runs")
    return {name: written_run(directory, name) for name in ("tfo-tls13-0rtt", "quic-0rtt", "tls12", "tls13", "quic")}


def facts(inspection) -> list[dict]:
    return [{key: getattr(c.report, key) for key in FACTS} for c in inspection.connections]


def inspect_bytes(data: bytes, keylog_text: str | None = None, **options):
    return inspect_capture(io.BytesIO(data), parse_keylog(keylog_text) if keylog_text is not None else None, **options)


def interleaved(runs, names, copies: int = 8) -> tuple[list[tuple[float, bytes]], str]:
    """The runs' packets from ``copies`` client addresses each, interleaved in time, and one key log."""
    records = []
    for copy in range(copies):
        for index, name in enumerate(names):
            address = f"10.0.{copy}.{index + 1}"
            for time, data in raw_packets(runs[name].pcap):
                packet = decode(data)
                moved = replace(packet, src=address if packet.src == "198.18.0.1" else packet.src,
                                dst=address if packet.dst == "198.18.0.1" else packet.dst)
                records.append((time + copy * 0.01, encode(moved)))
    records.sort(key=lambda r: r[0])
    return records, "".join(runs[name].keylog.read_text() for name in names)


# --- tunnels ---------------------------------------------------------------------------------

@pytest.mark.parametrize("outer_v6", [False, True], ids=["outer-ipv4", "outer-ipv6"])
@pytest.mark.parametrize("inner_v6", [False, True], ids=["inner-ipv4", "inner-ipv6"])
@pytest.mark.parametrize("tunnel", list(TUNNELS))
@pytest.mark.parametrize("variant", ["tfo-tls13-0rtt", "quic-0rtt", "tls12"])
def test_a_tunnelled_run_gives_the_verdicts_of_the_inner_packets(runs, variant, tunnel, inner_v6, outer_v6):
    written = runs[variant]
    packets = raw_packets(written.pcap)
    keys = written.keylog.read_text()
    plain = inspect_bytes(reframe(packets, "raw", ipv6=inner_v6), keys)
    link = "ethernet" if outer_v6 else "raw"
    tunnelled = inspect_bytes(reframe(packets, link, ipv6=inner_v6, tunnel=tunnel, outer_ipv6=outer_v6), keys)
    assert tunnelled.notes == []
    # Addresses, ports, counts and bytes are the inner packets' (the outer headers are not counted).
    assert facts(tunnelled) == facts(plain)
    assert tunnelled.connections[-1].report.round_trips in (1, 4)


@needs_fork
def test_shards_are_chosen_by_the_inner_connection(runs):
    """Every packet travels between the same two tunnel endpoints: sharded by the outer addresses,
    one worker would get every connection. By the inner ones, each gets some, and none twice."""
    records, keys = interleaved(runs, ["tls13", "quic"])
    data = pcap_bytes([(time, TUNNELS["vxlan"](ip, False)) for time, ip in records])
    seen = []
    for shard in range(2):
        analyzer = CaptureAnalyzer(parse_keylog(keys))
        read_capture(io.BytesIO(data), analyzer, "vxlan", shard, 2)
        seen.append({(c.report.client, c.report.server) for c in analyzer.finish()})
    assert seen[0] and seen[1] and not seen[0] & seen[1]
    assert len(seen[0] | seen[1]) == 16
    one = inspect_bytes(data, keys)
    two = inspect_bytes(data, keys, jobs=2)
    assert facts(two) == facts(one) == facts(inspect_bytes(pcap_bytes(records), keys))


def _conversations(path: Path, kind: str) -> set[frozenset]:
    """tshark's TCP or UDP conversations: each a set of its two (address, port)."""
    out = subprocess.run([TSHARK, "-n", "-r", str(path), "-q", "-z", f"conv,{kind}"], capture_output=True,
                         text=True, check=True, timeout=120).stdout
    return {frozenset((_endpoint(line.split()[0]), _endpoint(line.split()[2]))) for line in out.splitlines()
            if "<->" in line}


def _endpoint(text: str) -> tuple[str, str]:
    address, port = text.rsplit(":", 1)
    return address.strip("[]"), port


def assert_tshark_finds_our_connections(path: Path) -> None:
    """tshark's TCP conversations are our TCP connections; its UDP ones our QUIC connections and,
    in a tunnel capture, the tunnel's own outer UDP (VXLAN, Geneve) between the endpoints."""
    ours = {transport: {frozenset((_endpoint(c.report.client), _endpoint(c.report.server)))
                        for c in inspect_capture(path).connections if c.report.transport == transport}
            for transport in ("tcp", "quic")}
    assert len(ours["tcp"]) == len(ours["quic"]) == 2
    assert _conversations(path, "tcp") == ours["tcp"]
    udp = _conversations(path, "udp")
    outer = {pair for pair in udp - ours["quic"]
             if all(address.startswith(("2001:db8:ffff::", "192.0.2.")) for address, _ in pair)}
    assert udp == ours["quic"] | outer


@needs_tshark
@pytest.mark.parametrize("tunnel", list(TUNNELS))
def test_tshark_finds_the_same_conversations_in_the_tunnel_captures(runs, tunnel, tmp_path):
    records, _ = interleaved(runs, ["tls13", "quic"], copies=2)
    path = tmp_path / f"{tunnel}.pcap"
    path.write_bytes(reframe(records, "ethernet", tunnel=tunnel, outer_ipv6=True))
    assert_tshark_finds_our_connections(path)


@needs_tshark
@pytest.mark.parametrize("link", ["ppp", "ppp-compressed", "ppp-hdlc", "cisco-hdlc", "ethernet-mpls"])
@pytest.mark.parametrize("ipv6", [False, True], ids=["ipv4", "ipv6"])
def test_tshark_finds_the_same_conversations_on_the_ppp_and_mpls_links(runs, link, ipv6, tmp_path):
    records, _ = interleaved(runs, ["tls13", "quic"], copies=2)
    path = tmp_path / f"{link}.pcap"
    path.write_bytes(reframe(records, link, ipv6=ipv6))
    assert_tshark_finds_our_connections(path)


@needs_tshark
def test_tshark_finds_the_same_conversations_in_a_gzip_file(runs, tmp_path):
    records, _ = interleaved(runs, ["tls13", "quic"], copies=2)
    path = tmp_path / "capture.pcapng.gz"
    path.write_bytes(gzip.compress(reframe(records, "ethernet", pcapng=True)))
    assert_tshark_finds_our_connections(path)


# --- compressed files ------------------------------------------------------------------------

COMPRESS = {"gzip": lambda data: gzip.compress(data, mtime=0), "xz": lzma.compress}


@pytest.mark.parametrize("fmt", list(COMPRESS))
@pytest.mark.parametrize("pcapng", [False, True], ids=["pcap", "pcapng"])
@pytest.mark.parametrize("variant", ["tfo-tls13-0rtt", "quic-0rtt", "tls12"])
def test_a_compressed_capture_gives_the_verdicts_of_the_plain_one(runs, variant, pcapng, fmt):
    written = runs[variant]
    data = reframe(raw_packets(written.pcap), "ethernet", pcapng=pcapng)
    keys = written.keylog.read_text()
    packed = inspect_bytes(COMPRESS[fmt](data), keys)
    assert packed.notes == [] and packed.frames == len(raw_packets(written.pcap))
    assert facts(packed) == facts(inspect_bytes(data, keys))


@needs_fork
@pytest.mark.parametrize("fmt", list(COMPRESS))
def test_a_compressed_file_is_shared_out_and_each_worker_inflates_it_for_itself(runs, tmp_path, fmt):
    records, keys = interleaved(runs, ["tls12", "tls13", "quic"])
    plain = pcap_bytes(records)
    path = tmp_path / f"capture.pcap.{fmt}"
    path.write_bytes(COMPRESS[fmt](plain))
    assert parallel.shardable(path)
    keylog = parse_keylog(keys)
    one, three = inspect_capture(path, keylog), inspect_capture(path, keylog, jobs=3)
    assert len(one.connections) == 24
    assert facts(three) == facts(one) == facts(inspect_bytes(plain, keys))
    # Cut short: the frames before the cut, a note, the same in one process as in three.
    packed = path.read_bytes()
    path.write_bytes(packed[:len(packed) * 2 // 3])
    alone, shared = inspect_capture(path, keylog), inspect_capture(path, keylog, jobs=3)
    assert facts(shared) == facts(alone) and (shared.frames, shared.notes) == (alone.frames, alone.notes)
    assert 0 < alone.frames < len(records)
    (note,) = alone.notes
    assert f"the {fmt} stream ends early" in note and note.endswith(f"reported the {alone.frames} frames before it")


# --- secrets in the capture ------------------------------------------------------------------

@pytest.mark.parametrize("variant", ["tls13", "quic", "tfo-tls13-0rtt", "quic-0rtt"])
def test_a_pcapng_with_its_key_log_inside_decrypts_without_one_given(runs, variant):
    written = runs[variant]
    packets, keys = raw_packets(written.pcap), written.keylog.read_text()
    inside = inspect_bytes(reframe(packets, secrets=keys.encode()))
    given = inspect_bytes(reframe(packets, pcapng=True), keys)
    neither = inspect_bytes(reframe(packets, pcapng=True))
    assert facts(inside) == facts(given)
    assert facts(neither) != facts(given)  # the keys change the verdict: the test can fail
    secrets = parse_keylog(keys)
    connections = f"{len(secrets)} connection" + ("s" if len(secrets) > 1 else "")
    assert inside.notes == [f"{secrets.secrets()} TLS secrets embedded in the capture (for {connections}) "
                            "were used as a key log"]
    assert given.notes == []


def test_embedded_secrets_reach_the_connections_whose_client_hello_comes_after_them(runs):
    """A block between a connection's SYN and its ClientHello still decrypts it (the key log is
    looked up at the ClientHello); a connection whose ClientHello came before the block is not."""
    written = runs["tls13"]
    packets, keys = raw_packets(written.pcap), written.keylog.read_text()
    given = facts(inspect_bytes(reframe(packets, pcapng=True), keys))
    assert facts(inspect_bytes(reframe(packets, secrets=keys.encode(), secrets_at=1))) == given
    hello = next(i for i, (_, ip) in enumerate(packets) if decode(ip).transport.payload[:1] == b"\x16")
    late = inspect_bytes(reframe(packets, secrets=keys.encode(), secrets_at=hello + 1))
    assert facts(late) == facts(inspect_bytes(reframe(packets, pcapng=True)))


def test_secrets_given_and_secrets_inside_both_apply(runs):
    """One connection's secrets in the file, the other's in --keylog: both are decrypted."""
    first, second = runs["tls13"], runs["quic"]
    packets = raw_packets(first.pcap) + [(time + 5, ip) for time, ip in raw_packets(second.pcap)]
    both_keys = first.keylog.read_text() + second.keylog.read_text()
    expected = facts(inspect_bytes(reframe(packets, pcapng=True), both_keys))
    mixed = inspect_bytes(reframe(packets, secrets=first.keylog.read_text().encode()), second.keylog.read_text())
    assert facts(mixed) == expected
    only_inside = inspect_bytes(reframe(packets, secrets=first.keylog.read_text().encode()))
    assert facts(only_inside) != expected


@needs_fork
def test_every_worker_of_a_sharded_read_uses_the_embedded_secrets(runs, tmp_path):
    records, keys = interleaved(runs, ["tls13", "quic", "tfo-tls13-0rtt"])
    path = tmp_path / "secrets.pcapng"
    path.write_bytes(reframe(records, secrets=keys.encode()))
    one, two = inspect_capture(path), inspect_capture(path, jobs=2)
    expected = facts(inspect_bytes(reframe(records, pcapng=True), keys))
    assert facts(one) == facts(two) == expected
    assert two.notes == one.notes and len(one.notes) == 1 and "TLS secrets embedded in the capture" in one.notes[0]


def test_other_secrets_types_are_skipped_with_a_note(runs):
    written = runs["tls13"]
    framed = [(time, ip) for time, ip in raw_packets(written.pcap)]
    data = pcapng_bytes(framed, secrets=[(0, 0x57474B4C, b"LOCAL_STATIC_PRIVATE_KEY = x\n"),
                                         (2, 0x57474B4C, b""), (3, 0x12345678, b"?")])
    inspection = inspect_bytes(data)
    assert facts(inspection) == facts(inspect_bytes(reframe(framed, pcapng=True)))
    assert inspection.notes == [
        "1 Decryption Secrets Block of type 0x12345678 (unknown type) skipped: only TLS key logs are read",
        "2 Decryption Secrets Blocks of type 0x57474b4c (WireGuard key log) skipped: only TLS key logs are read",
    ]


def test_a_damaged_secrets_block_after_the_frames_stops_the_reading_with_a_note(runs):
    written = runs["tls13"]
    framed = raw_packets(written.pcap)
    data = reframe(framed, pcapng=True) + secrets_block(TLS_KEY_LOG, b"")[:8] + struct.pack("<II", 99, 0) + bytes(8)
    inspection = inspect_bytes(data)
    assert len(inspection.notes) == 1 and "corrupt capture" in inspection.notes[0]


@pytest.mark.skipif(shutil.which("editcap") is None, reason="editcap (Wireshark) is not installed")
def test_secrets_injected_by_editcap_are_read(runs, tmp_path):
    """editcap --inject-secrets writes the block Wireshark reads: an independent writer."""
    written = runs["quic"]
    plain = tmp_path / "plain.pcapng"
    plain.write_bytes(reframe(raw_packets(written.pcap), pcapng=True))
    injected = tmp_path / "injected.pcapng"
    subprocess.run(["editcap", "--inject-secrets", f"tls,{written.keylog}", str(plain), str(injected)],
                   check=True, capture_output=True, timeout=60)
    assert facts(inspect_capture(injected)) == facts(inspect_capture(plain, parse_keylog(written.keylog.read_text())))


def test_a_browser_capture_with_its_own_secrets_is_decrypted_without_a_key_log(tmp_path):
    """The first 40 packets of ja4-http2-with-cookies.pcapng (the JA4+ project's test captures,
    FoxIO-LLC/ja4, folder pcap/; blocks copied unchanged): Chrome fetching youtube.com over
    TLS 1.3 and HTTP/2, with a Decryption Secrets Block of 179 secrets before the packets."""
    data = WILD.read_bytes()
    offset, dsb_length = 192 + 144, struct.unpack_from("<I", data, 192 + 144 + 4)[0]
    assert struct.unpack_from("<I", data, offset)[0] == 0x0A
    keys = data[offset + 16:offset + 16 + struct.unpack_from("<I", data, offset + 12)[0]].decode()
    without_block = data[:offset] + data[offset + dsb_length:]
    inside = inspect_capture(WILD)
    (conn,) = inside.connections
    assert (conn.report.sni, conn.report.tls_version, conn.report.alpn) == ("youtube.com", "1.3", "h2")  # ALPN: decrypted
    assert not any("give the key log" in note for note in conn.report.notes)
    assert inside.notes == ["179 TLS secrets embedded in the capture (for 36 connections) were used as a key log"]
    assert facts(inside) == facts(inspect_bytes(without_block, keys))
    keyless = inspect_bytes(without_block)
    assert keyless.connections[0].report.alpn is None and facts(keyless) != facts(inside)
