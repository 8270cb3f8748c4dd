"""The streaming capture pipeline: any framing of the same packets gives the same verdicts, the
file is read as a stream, and what the analysis keeps does not grow with the connection."""

from __future__ import annotations

import gc
import io
import os
import threading
import tracemalloc
from dataclasses import replace

import pytest

from handshake.analysis import capture
from handshake.analysis.capture import CaptureAnalyzer, inspect_capture
from handshake.analysis.tcp.connection import RECORD_STALL_CAUSE, analyze_tcp_flow
from handshake.analysis.tcp.flows import tcp_flows
from handshake.runner import RunOptions
from handshake.trace.record import TracedPacket
from handshake.analysis.keylog import parse_keylog
from handshake.trace.packet import ACK, PSH, SYN, decode, encode, tcp_packet, timestamp_option
from handshake.variants import CATALOG

from tests.capture_files import LINK_HEADERS, raw_packets, reframe, to_ipv6, written_run

FACTS = ("transport", "tls_version", "resumed", "early_data", "tfo", "round_trips", "setup_round_trips", "ttfb_s",
         "packets", "causes", "sni", "cipher", "alpn")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    directory = tmp_path_factory.mktemp("runs")
    return {name: written_run(directory, name) for name in ("tfo-tls13-0rtt", "quic-0rtt", "tls12")}


def _facts(report) -> dict:
    return {key: getattr(report, key) for key in FACTS}


def _inspect(data: bytes, keylog_path=None):
    keylog = parse_keylog(keylog_path.read_text()) if keylog_path else None
    return inspect_capture(io.BytesIO(data), keylog)


@pytest.mark.parametrize("pcapng", [False, True], ids=["pcap", "pcapng"])
@pytest.mark.parametrize("ipv6", [False, True], ids=["ipv4", "ipv6"])
@pytest.mark.parametrize("link", list(LINK_HEADERS))
@pytest.mark.parametrize("variant", ["tfo-tls13-0rtt", "quic-0rtt", "tls12"])
def test_every_framing_of_the_same_packets_gives_the_same_verdicts(runs, variant, link, ipv6, pcapng):
    written = runs[variant]
    packets = raw_packets(written.pcap)
    original = _inspect(written.pcap.read_bytes(), written.keylog).connections
    framed = _inspect(reframe(packets, link, ipv6=ipv6, pcapng=pcapng), written.keylog)
    assert framed.notes == []
    assert [_facts(c.report) for c in framed.connections] == [_facts(c.report) for c in original]
    for got, want in zip(framed.connections, original):
        # Link padding is not counted; an IPv6 header is 20 bytes longer than an IPv4 one.
        extra = 20 * want.report.packets if ipv6 else 0
        assert got.report.bytes_client + got.report.bytes_server == want.report.bytes_client + want.report.bytes_server + extra
        if ipv6:
            assert got.report.client.startswith("[2001:db8::") and got.report.server.endswith("]:443")
    assert framed.connections[-1].report.round_trips in (1, 4)


def test_scapy_builds_an_ethernet_ipv6_pcapng_that_reads_the_same(runs, tmp_path):
    scapy = pytest.importorskip("scapy.all")
    written = runs["tfo-tls13-0rtt"]
    from tests.capture_files import to_ipv6

    frames = []
    for time, data in raw_packets(written.pcap):
        frame = scapy.Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / scapy.IPv6(to_ipv6(data))
        frame.time = time
        frames.append(frame)
    path = tmp_path / "scapy.pcapng"
    scapy.wrpcapng(str(path), frames)
    got = _inspect(path.read_bytes(), written.keylog).connections
    want = _inspect(written.pcap.read_bytes(), written.keylog).connections
    assert [_facts(c.report) for c in got] == [_facts(c.report) for c in want]


def test_the_file_is_read_as_a_stream_from_a_pipe(runs):
    written = runs["quic-0rtt"]
    read_fd, write_fd = os.pipe()
    data = written.pcap.read_bytes()

    def writer():
        with os.fdopen(write_fd, "wb") as pipe:
            for i in range(0, len(data), 100):
                pipe.write(data[i:i + 100])

    thread = threading.Thread(target=writer)
    thread.start()
    with os.fdopen(read_fd, "rb", buffering=0) as pipe:
        result = inspect_capture(pipe, parse_keylog(written.keylog.read_text()))
    thread.join()
    assert result.connections[-1].report.round_trips == 1


def test_a_snap_length_cut_keeps_the_tcp_count_and_says_the_contents_may_be_missing(runs):
    written = runs["tls12"]
    import struct

    data = written.pcap.read_bytes()
    out, pos = [data[:16] + struct.pack("<I", 80) + data[20:24]], 24
    while pos < len(data):
        sec, usec, incl, orig = struct.unpack_from("<IIII", data, pos)
        frame = data[pos + 16:pos + 16 + incl][:80]
        out.append(struct.pack("<IIII", sec, usec, len(frame), orig) + frame)
        pos += 16 + incl
    result = inspect_capture(io.BytesIO(b"".join(out)))
    (conn,) = result.connections
    (whole,) = inspect_capture(io.BytesIO(data)).connections
    assert any("snap length" in note for note in result.notes)
    # The wire lengths still count; the TLS records do not fit in 80 bytes, so no TLS facts.
    assert (conn.report.packets, conn.report.bytes_client, conn.report.bytes_server) == \
        (whole.report.packets, whole.report.bytes_client, whole.report.bytes_server)
    assert conn.report.tls_version is None and whole.report.tls_version == "1.2"


def test_a_port_reused_for_a_new_connection_is_a_second_connection(runs):
    packets = raw_packets(runs["tls12"].pcap)
    client = decode(packets[0][1]).src

    def new_isn(data: bytes) -> bytes:  # the same conversation with another client ISN
        packet = decode(data)
        segment = packet.transport
        if packet.src == client:
            segment = replace(segment, seq=(segment.seq + 1000) % 2**32)
        elif segment.has_ack:
            segment = replace(segment, ack=(segment.ack + 1000) % 2**32)
        return encode(replace(packet, transport=segment))

    later = [(time + 10, new_isn(data)) for time, data in packets]
    analyzer = CaptureAnalyzer()
    for time, data in packets + later:
        analyzer.add(time, data)
    first, second = analyzer.finish()
    assert first.report.start_time == 0 and second.report.start_time == 10
    assert first.report.packets == second.report.packets == len(packets)
    assert first.report.round_trips == second.report.round_trips == 4


def _long_download(segments: int):
    """A plain-HTTP connection: handshake, request, then ``segments`` server segments with
    timestamps, each acknowledged by the client (built packet by packet, never held)."""
    c, s = ("10.0.0.1", 40000), ("10.0.0.2", 80)
    t = 0.0
    yield t, tcp_packet(c[0], s[0], c[1], s[1], 100, 0, SYN, options=(timestamp_option(1, 0),))
    t += 0.05
    yield t, tcp_packet(s[0], c[0], s[1], c[1], 500, 101, SYN | ACK, options=(timestamp_option(1, 1),))
    t += 0.05
    request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    yield t, tcp_packet(c[0], s[0], c[1], s[1], 101, 501, PSH | ACK, request, options=(timestamp_option(2, 1),))
    seq = 501
    for i in range(segments):
        t += 0.0001
        payload = (b"HTTP/1.1 200 OK\r\n" if i == 0 else b"") + b"x" * 1000
        yield t, tcp_packet(s[0], c[0], s[1], c[1], seq, 101 + len(request), PSH | ACK, payload,
                            options=(timestamp_option(10 + i, 2 + i),))  # echoes the client's latest
        seq += len(payload)
        yield t, tcp_packet(c[0], s[0], c[1], s[1], 101 + len(request), seq, ACK,
                            options=(timestamp_option(3 + i, 10 + i),))


def _measured(segments: int) -> tuple[int, int, object]:
    """(bytes the analysis holds after the download, its peak, the report)."""
    packets = list(_long_download(segments))  # built before measuring: only the analysis counts
    analyzer = CaptureAnalyzer()
    for time, data in packets[:3000]:  # past every bounded structure's cap, and warm caches
        analyzer.add(time, data)
    tracemalloc.start()
    try:
        for time, data in packets[3000:]:
            analyzer.add(time, data)
        held, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return held, peak, analyzer.finish()[0].report


def test_memory_does_not_grow_with_the_connection():
    small, _, report = _measured(4_000)
    large, peak, big_report = _measured(14_000)
    assert report.round_trips == big_report.round_trips == 2
    assert big_report.packets == 3 + 2 * 14_000
    # 20,000 packets more: what the analysis holds stays put (60 bytes a packet kept would be
    # 1.2 MB more), and the peak stays small.
    assert large < small + 100_000, (small, large)
    assert peak < 2_000_000


def test_worker_processes_give_the_same_verdicts_and_ladders_in_the_same_order(runs, tmp_path):
    """Connections sharded over workers by addresses and ports come back identical and in order."""
    from handshake.analysis.parallel import available

    if not available():
        pytest.skip("no fork on this platform")
    records = []
    for copy in range(12):  # the same exchanges from 36 client addresses, interleaved in time
        for index, written in enumerate(runs.values()):
            address = f"10.0.{copy}.{index + 1}"
            for time, data in raw_packets(written.pcap):
                packet = decode(data)
                moved = replace(packet, src=address if packet.src == "198.18.0.1" else packet.src,
                                dst=address if packet.dst == "198.18.0.1" else packet.dst)
                records.append((time + copy * 0.01, encode(moved)))
    records.sort(key=lambda r: r[0])
    from tests.capture_files import pcap_bytes

    data = pcap_bytes(records)
    keylog = parse_keylog("".join(w.keylog.read_text() for w in runs.values()))
    one = inspect_capture(io.BytesIO(data), keylog, steps=True)
    three = inspect_capture(io.BytesIO(data), keylog, steps=True, jobs=3)
    assert len(one.connections) == 12 * 5
    assert [(c.report, c.steps) for c in three.connections] == [(c.report, c.steps) for c in one.connections]
    # A file on disk: each worker opens and reads it for itself. Cut short mid-frame, the notes
    # are those of one reader, and nothing is counted twice.
    path = tmp_path / "interleaved.pcap"
    path.write_bytes(data[:-30])
    alone = inspect_capture(path, keylog)
    shared = inspect_capture(path, keylog, jobs=2)
    assert [c.report for c in shared.connections] == [c.report for c in alone.connections]
    assert (shared.frames, shared.notes) == (alone.frames, alone.notes)
    assert len(alone.notes) == 1 and "truncated" in alone.notes[0]


def test_only_a_source_every_worker_can_read_for_itself_is_shared_out(runs, tmp_path):
    """A regular file or bytes in memory go to workers; a pipe or an open file object (whose
    position the forked workers would share) is read in one process, with the same verdicts."""
    from handshake.analysis import parallel

    if not parallel.available():
        pytest.skip("no fork on this platform")
    pcap = runs["tls12"].pcap
    assert parallel.shardable(pcap) and parallel.shardable(str(pcap)) and parallel.shardable(io.BytesIO(b""))
    assert not parallel.shardable(tmp_path / "missing.pcap")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert not parallel.shardable(fifo)
    with open(pcap, "rb") as file:
        assert not parallel.shardable(file)
        assert inspect_capture(file, jobs=2).connections == inspect_capture(pcap).connections
    writer = threading.Thread(target=lambda: fifo.write_bytes(pcap.read_bytes()))
    writer.start()
    try:
        assert inspect_capture(fifo, jobs=2).connections == inspect_capture(pcap).connections
    finally:
        writer.join()


def test_the_cyclic_gc_is_the_callers_again_after_a_capture_good_or_bad(runs):
    """inspect_capture keeps the cyclic collector off while it reads; the caller gets its own
    setting back, also when the file is refused."""
    assert gc.isenabled()
    try:
        assert inspect_capture(runs["tls12"].pcap).connections
        assert gc.isenabled()
        with pytest.raises(capture.CaptureError):
            inspect_capture(io.BytesIO(b"not a capture at all"), jobs=2)
        assert gc.isenabled()
        gc.disable()
        assert inspect_capture(runs["tls12"].pcap).connections
        assert not gc.isenabled()
    finally:
        gc.enable()


@pytest.mark.parametrize("variant", sorted(CATALOG))
def test_the_analysis_makes_no_reference_cycles(tmp_path, variant):
    """What lets the cyclic collector stay off while a capture is read: with it off, analysing a
    whole exchange (TLS and QUIC decrypted, ladders drawn, connections reused) leaves no garbage
    only it could free, so memory still does not grow with the capture."""
    written = written_run(tmp_path, variant)
    keylog = parse_keylog(written.keylog.read_text())
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        for _ in range(3):
            inspect_capture(written.pcap, keylog, steps=True)
            inspect_capture(written.pcap)
        found = gc.collect()
        kinds = sorted({type(thing).__name__ for thing in gc.garbage})
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert found == 0, kinds


def test_packets_in_memory_give_the_verdicts_of_their_pcap(runs):
    from handshake.analysis.capture import inspect_packets

    for written in runs.values():
        keylog = parse_keylog(written.run.trace.keylog)
        in_memory = inspect_packets(((p.time, p.data) for p in written.run.trace.packets), keylog, steps=True)
        from_file = inspect_capture(written.pcap, keylog, steps=True).connections
        assert [(c.report, c.steps) for c in in_memory] == [(c.report, c.steps) for c in from_file]


@pytest.mark.parametrize("ipv6", [False, True], ids=["ipv4", "ipv6"])
def test_a_long_response_past_its_first_byte_is_counted_without_being_decoded(tmp_path, monkeypatch, ipv6):
    """Once the verdict is in, a connection's later segments are found by their raw 4-tuple and
    only counted: the verdict is the one the packet-by-packet analysis gives, every packet and
    byte is counted, and most of the transfer is never decoded."""
    written = written_run(tmp_path, "tls13", options=RunOptions(response_bytes=300_000))
    packets = [(time, to_ipv6(data) if ipv6 else data) for time, data in raw_packets(written.pcap)]
    keylog = parse_keylog(written.keylog.read_text())
    decoded = []
    real_decode = capture.decode
    monkeypatch.setattr(capture, "decode", lambda ip, **kw: decoded.append(ip) or real_decode(ip, **kw))
    (connection,) = capture.inspect_packets(packets, keylog)
    (flow,) = tcp_flows([TracedPacket(time, data) for time, data in packets])
    one_by_one = analyze_tcp_flow(flow, keylog)
    report = connection.report
    assert report == one_by_one
    assert (report.round_trips, report.packets) == (4, len(packets))
    assert report.causes == [RECORD_STALL_CAUSE]  # the first 16 KB record is 12 segments
    assert report.bytes_client + report.bytes_server == sum(len(data) for _, data in packets)
    assert len(decoded) < len(packets) / 4
