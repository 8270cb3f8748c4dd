"""QUIC + HTTP/3 round trips counted from real aioquic traffic, as DESIGN §2 states them:
a full handshake answers in 2 round trips, 0-RTT in 1; a Retry, Version Negotiation and a
server flight over the anti-amplification limit each cost one more; a lost client Initial
costs a PTO but no round trip. tshark decodes the same traces as an independent oracle."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handshake.analysis.keylog import parse_keylog
from handshake.analysis.quic.connection import (
    AMPLIFICATION_CAUSE,
    RETRY_CAUSE,
    VERSION_NEGOTIATION_CAUSE,
    ZERO_RTT_REJECTED_CAUSE,
    QuicConnectionReport,
    analyze_quic_flow,
    quic_datagram_rounds,
    quic_flows,
)
from handshake.analysis.quic.crypto import PacketProtection, initial_protections, protect
from handshake.analysis.quic.frames import CryptoFrame, parse_frames
from handshake.analysis.quic.packets import VERSION_2, parse_datagram
from handshake.analysis.quic.reader import QuicFlowReader
from handshake.endpoints.certs import make_chain
from handshake.trace.packet import decode, udp_packet
from handshake.trace.pcap import PcapWriter
from handshake.trace.record import TracedPacket

from .traffic import CLIENT, LONG_ALPN, SERVER, QuicRun, run_quic

ONE_WAY_S = 0.05
RTT_S = 2 * ONE_WAY_S


@pytest.fixture(scope="module")
def runs() -> dict[str, QuicRun]:
    store: dict = {}
    warm = run_quic(ticket_store=store, client_port=40000)
    assert warm.session_ticket is not None
    return {
        "full": warm,
        "0rtt": run_quic(ticket_store=store, session_ticket=warm.session_ticket, early_request=True, client_port=40001),
        "retry": run_quic(retry=True, client_port=40002),
        "big-chain": run_quic(chain=make_chain("rsa2048", 4), client_port=40003),
        "initial-lost": run_quic(drop=lambda from_client, index, data: from_client and index == 0, client_port=40004),
        "version-negotiation": run_quic(versions=[0x5A5A5A5A, 1], client_port=40005),
        "v2": run_quic(versions=[VERSION_2], client_port=40006),
        "0rtt-rejected": run_quic(ticket_store={}, session_ticket=warm.session_ticket, early_request=True,
                                  client_port=40007),
    }


def _report(run: QuicRun, keys: bool = True) -> QuicConnectionReport:
    flows = quic_flows(run.packets)
    assert len(flows) == 1
    report = analyze_quic_flow(flows[0], parse_keylog(run.keylog) if keys else None)
    assert not any("not read" in note for note in report.notes), report.notes
    return report


def _measured_round_trips(run: QuicRun) -> int:
    """The client's own clock: when its HTTP/3 layer got the response, in RTTs (fixed delay)."""
    assert run.response_at is not None
    return round((run.response_at - run.packets[0].time) / RTT_S)


def test_a_full_handshake_answers_in_two_round_trips(runs):
    run = runs["full"]
    report = _report(run)
    assert (report.round_trips, report.setup_round_trips) == (2, 1) == (_measured_round_trips(run), 1)
    assert report.ttfb_s == pytest.approx(2 * RTT_S)
    assert (report.transport, report.tls_version, report.quic_version, report.alpn) == ("quic", "1.3", "1", "h3")
    assert (report.sni, report.cipher) == ("server.test", "TLS_AES_256_GCM_SHA384")
    assert (report.resumed, report.early_data, report.tfo) == (False, "none", "none")
    assert not report.hrr and not report.retry
    assert report.causes == []
    assert (report.client, report.server) == ("10.0.0.1:40000", "10.0.0.2:443")
    client = [p for p in run.packets if decode(p.data).transport.sport == 40000]
    assert report.bytes_client == sum(len(p.data) for p in client)
    assert report.bytes_server == sum(len(p.data) for p in run.packets) - report.bytes_client
    assert report.packets == len(run.packets)


def test_without_the_key_log_the_count_is_inferred_from_short_headers_and_times(runs):
    """Only Initials open, yet the client's first 1-RTT packet is the request and the server's
    first 1-RTT packet that left after it could arrive is the answer: the same count and TTFB."""
    keyed, report = _report(runs["full"]), _report(runs["full"], keys=False)
    assert (report.round_trips, report.setup_round_trips, report.ttfb_s) == \
        (keyed.round_trips, keyed.setup_round_trips, keyed.ttfb_s) == (2, 1, keyed.ttfb_s)
    assert (keyed.round_trips_basis, report.round_trips_basis) == ("decrypted", "inferred")
    assert (report.sni, report.cipher, report.resumed) == ("server.test", "TLS_AES_256_GCM_SHA384", False)
    assert any(note.startswith("inferred without a key log") for note in report.notes)


def test_zero_rtt_answers_in_one_round_trip(runs):
    run = runs["0rtt"]
    report = _report(run)
    assert (report.round_trips, report.setup_round_trips) == (1, 0)
    assert _measured_round_trips(run) == 1
    assert (report.early_data, report.resumed, report.causes) == ("accepted", True, [])
    blind = _report(run, keys=False)
    assert (blind.early_data, blind.resumed, blind.round_trips) == ("sent", True, None)


def test_rejected_zero_rtt_is_named(runs):
    # aioquic resends the refused request only when loss detection notices (DESIGN §2: 3 RTT).
    run = runs["0rtt-rejected"]
    report = _report(run)
    assert report.early_data == "rejected" and report.resumed is False
    assert ZERO_RTT_REJECTED_CAUSE in report.causes
    assert report.round_trips == _measured_round_trips(run) == 3
    assert report.setup_round_trips == 2
    # The ServerHello took no PSK: rejected, even without the key log (RFC 8446 §4.2.10).
    assert _report(run, keys=False).early_data == "rejected"


def test_a_retry_costs_one_round_trip(runs):
    run = runs["retry"]
    report = _report(run)
    assert (report.round_trips, report.setup_round_trips) == (3, 2) == (_measured_round_trips(run), 2)
    assert report.retry and report.causes == [RETRY_CAUSE]
    blind = _report(run, keys=False)
    assert blind.retry and blind.causes == [RETRY_CAUSE] and blind.sni == "server.test"


def test_version_negotiation_costs_one_round_trip(runs):
    run = runs["version-negotiation"]
    report = _report(run)
    assert report.round_trips == _measured_round_trips(run) == 3
    assert report.causes == [VERSION_NEGOTIATION_CAUSE]
    assert report.version_negotiation and report.quic_version == "1"


def test_quic_v2_counts_like_v1(runs):
    report = _report(runs["v2"])
    assert (report.round_trips, report.setup_round_trips, report.quic_version) == (2, 1, "2")


def test_a_server_flight_over_three_times_the_client_initial_waits_a_round_trip(runs):
    chain = make_chain("rsa2048", 4)
    assert chain.chain_der_bytes > 3200  # DESIGN §2: about 3.2 KB of DER costs +1
    run = runs["big-chain"]
    report = _report(run)
    assert report.round_trips == _measured_round_trips(run) == 3
    assert report.setup_round_trips == 2
    assert report.causes == [AMPLIFICATION_CAUSE]
    # The server's datagrams after the stall are at round 2 only by the 3x argument.
    rounds = quic_datagram_rounds(quic_flows(run.packets)[0], parse_keylog(run.keylog))
    stalled = [r.round for r in rounds
               if not r.decoded.datagram.from_client and r.round.round > r.round.round_by_evidence]
    assert stalled and all(r.round == 2 for r in stalled)
    # Proven without the key log too: Initial ACKs and byte counts are in the clear.
    assert _report(run, keys=False).causes == [AMPLIFICATION_CAUSE]


def test_a_small_chain_fits_the_anti_amplification_limit(runs):
    report = _report(runs["full"])  # p256, one intermediate
    assert make_chain("p256", 1).chain_der_bytes < 1500
    assert report.round_trips == 2 and AMPLIFICATION_CAUSE not in report.causes


def test_a_lost_client_initial_costs_a_pto_not_a_round_trip(runs):
    run = runs["initial-lost"]
    assert run.dropped == 1
    report = _report(run)
    assert report.round_trips == 2 and report.setup_round_trips == 1
    assert report.causes == ["client Initial retransmitted (first after 0.200 s)"]
    assert report.ttfb_s == pytest.approx(0.2 + 2 * RTT_S)


def test_the_amplification_limit_sits_between_two_chain_sizes():
    # DESIGN §2: with a 1200-byte client Initial, about 3.2 KB of DER or more costs +1.
    below, above = make_chain("rsa2048", 2), make_chain("rsa2048", 3)
    assert below.chain_der_bytes < 3200 < above.chain_der_bytes
    for chain, expected, causes in ((below, 2, []), (above, 3, [AMPLIFICATION_CAUSE])):
        run = run_quic(chain=chain)
        report = _report(run)
        assert (report.round_trips, report.causes) == (expected, causes)
        assert _measured_round_trips(run) == expected


def test_a_lost_server_flight_is_named_by_the_client_probe():
    # The capture point is the client's: a server datagram lost on the way is never seen, but
    # the client's PTO probe (a PING alone in a Handshake packet, RFC 9002 §6.2.4) is.
    run = run_quic(drop=lambda from_client, index, data: not from_client and index == 1)
    report = _report(run)
    assert report.round_trips == 2
    assert report.causes == ["client Handshake PTO probe (first at 0.300 s)"]


def test_a_key_update_is_followed():
    run = run_quic(key_update=True)
    rounds = quic_datagram_rounds(quic_flows(run.packets)[0], parse_keylog(run.keylog))
    packets = [p for r in rounds for p in r.decoded.packets]
    assert all(p.opened for p in packets)
    assert any(p.key_phase == 1 for p in packets)  # aioquic updates once the handshake is confirmed
    assert _report(run).round_trips == 2


def test_an_error_close_after_the_response_is_still_read():
    """Past the first response byte datagrams are only counted, not placed in rounds, but they
    are still opened: a CONNECTION_CLOSE with an error, sent after the answer, is reported."""
    run = run_quic(close_error=0x10C)  # H3_REQUEST_CANCELLED
    report = _report(run)
    assert report.round_trips == 2
    assert "closed by the client: error 0x10c (enough)" in report.notes
    assert report.packets == len(run.packets)
    assert report.bytes_client + report.bytes_server == sum(len(p.data) for p in run.packets)


@pytest.mark.parametrize("one_way_s", [0.004, 0.15])
def test_the_count_does_not_depend_on_the_delay(one_way_s):
    for chain, expected in ((make_chain("p256", 1), 2), (make_chain("rsa2048", 4), 3)):
        run = run_quic(chain=chain, one_way_s=one_way_s)
        report = _report(run)
        assert report.round_trips == expected
        assert report.ttfb_s == pytest.approx(expected * 2 * one_way_s, abs=0.0025)


# -- flows ---------------------------------------------------------------------------------


def test_connections_are_told_apart_by_port_and_by_a_new_dcid():
    first = run_quic(client_port=41000)
    second = run_quic(client_port=41001, start_s=1.05)  # overlaps the first
    reuse = run_quic(client_port=41000, start_s=5.0)  # same 4-tuple, a new DCID
    packets = sorted(first.packets + second.packets + reuse.packets, key=lambda p: p.time)
    noise = [
        TracedPacket(0.5, udp_packet(CLIENT[0], "10.0.0.53", 41002, 53, bytes.fromhex("abcd01000001000000000000"))),
        TracedPacket(0.6, udp_packet(CLIENT[0], SERVER[0], 41003, 443, b"\xc0\x00\x00\x00\x01\x08" + bytes(1200))),
        TracedPacket(0.7, b"\x45garbage"),
    ]
    flows = quic_flows(noise + packets)
    assert [(f.client[1], len(f.datagrams)) for f in flows] == [
        (41000, len(first.packets)), (41001, len(second.packets)), (41000, len(reuse.packets))
    ]
    keylog = parse_keylog(first.keylog + second.keylog + reuse.keylog)
    assert [analyze_quic_flow(f, keylog).round_trips for f in flows] == [2, 2, 2]


def test_ipv6_works_the_same(runs):
    run = runs["full"]
    addresses = {CLIENT[0]: "fd00::1", SERVER[0]: "fd00::2"}
    packets = []
    for packet in run.packets:
        ip = decode(packet.data)
        udp = ip.transport
        packets.append(replace(packet, data=udp_packet(addresses[ip.src], addresses[ip.dst], udp.sport, udp.dport,
                                                       udp.payload)))
    (flow,) = quic_flows(packets)
    report = analyze_quic_flow(flow, parse_keylog(run.keylog))
    assert (report.client, report.server, report.round_trips) == ("[fd00::1]:40000", "[fd00::2]:443", 2)


def test_a_retry_stays_in_its_connection(runs):
    (flow,) = quic_flows(runs["retry"].packets)
    assert len(flow.datagrams) == len(runs["retry"].packets)
    assert flow.client == (CLIENT[0], 40002)


# -- tshark as the oracle -----------------------------------------------------------------


def _fields(decoded) -> tuple[str, str, str]:
    packets = decoded.packets
    return (
        ",".join(str(p.packet.type_code) for p in packets if p.packet.type_code is not None),
        ",".join(str(p.packet_number) for p in packets if p.packet_number is not None),
        ",".join(str(f.frame_type) for p in packets for f in (p.frames or ())),
    )


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed (apt-get install -y tshark)")
def test_tshark_sees_the_same_packets_numbers_and_frames(runs, tmp_path):
    names = list(runs)
    packets: list[TracedPacket] = []
    for index, name in enumerate(names):
        packets += [replace(p, time=p.time + 10 * index) for p in runs[name].packets]
    keylog_text = "".join(run.keylog for run in runs.values())
    pcap, keylog_file = tmp_path / "quic.pcap", tmp_path / "keys.log"
    with PcapWriter(pcap) as writer:
        for packet in packets:
            writer.write(packet.time, packet.data)
    keylog_file.write_text(keylog_text)
    out = subprocess.run(
        ["tshark", "-n", "-r", str(pcap), "-o", f"tls.keylog_file:{keylog_file}", "-T", "fields",
         "-e", "frame.number", "-e", "quic.long.packet_type", "-e", "quic.packet_number", "-e", "quic.frame_type"],
        capture_output=True, text=True, check=True, timeout=60, env={**os.environ, "LC_ALL": "C"},
    ).stdout
    theirs = {}
    for line in out.splitlines():
        number, *fields = (line.split("\t") + ["", "", ""])[:4]
        theirs[int(number)] = tuple(fields)
    keylog = parse_keylog(keylog_text)
    frame_number = 0
    compared = 0
    for flow, name in zip(quic_flows(packets), names, strict=True):
        for item in quic_datagram_rounds(flow, keylog):
            frame_number += 1
            mine = _fields(item.decoded)
            theirs_here = theirs[frame_number]
            if name in ("retry", "version-negotiation"):
                # tshark 4.0 cannot follow these: after a Retry aioquic sends a new ClientHello
                # (a new random, so tshark keeps the wrong secrets), and it reads a first attempt
                # in an unknown version as a v1 Initial. Long-header types still agree.
                if name == "retry":
                    assert mine[0] == theirs_here[0], (name, frame_number)
                continue
            if name == "v2":
                mine = ("", *mine[1:])  # tshark 4.0 does not show v2's long-header types
            assert mine == theirs_here, (name, frame_number)
            compared += 1
    assert frame_number == len(packets) and compared > 40


# -- robustness ---------------------------------------------------------------------------


def _rebuild(run: QuicRun, payloads: list[bytes | None]) -> list[TracedPacket]:
    out = []
    for packet, payload in zip(run.packets, payloads):
        if payload is None:
            continue
        ip = decode(packet.data)
        udp = ip.transport
        out.append(TracedPacket(packet.time, udp_packet(ip.src, ip.dst, udp.sport, udp.dport, payload)))
    return out


def _analyze_all(packets: list[TracedPacket], keylog_text: str) -> None:
    keylog = parse_keylog(keylog_text)
    for flow in quic_flows(packets):
        for keys in (keylog, None):
            report = analyze_quic_flow(flow, keys)
            assert not any("not read" in note for note in report.notes), report.notes


_MUTATION = st.tuples(
    st.sampled_from(["flip", "truncate", "drop", "duplicate", "swap", "random", "splice"]),
    st.integers(0, 10_000), st.integers(0, 10_000), st.binary(min_size=1, max_size=64),
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(["full", "0rtt", "retry", "big-chain"]), st.lists(_MUTATION, min_size=1, max_size=6))
def test_mutated_datagrams_never_raise(runs, name, mutations):
    run = runs[name]
    payloads: list[bytes | None] = [decode(p.data).transport.payload for p in run.packets]
    for kind, where, amount, data in mutations:
        index = where % len(payloads)
        payload = payloads[index]
        if payload is None:
            continue
        if kind == "flip":
            position = amount % len(payload)
            payloads[index] = payload[:position] + bytes([payload[position] ^ data[0]]) + payload[position + 1 :]
        elif kind == "truncate":
            payloads[index] = payload[: amount % len(payload)] or b"\x00"
        elif kind == "drop":
            payloads[index] = None
        elif kind == "duplicate":
            payloads.insert(index, payload)
        elif kind == "swap":
            other = amount % len(payloads)
            payloads[index], payloads[other] = payloads[other], payload
        elif kind == "random":
            payloads[index] = data
        else:
            position = amount % len(payload)
            payloads[index] = payload[:position] + data + payload[position:]
    times = run.packets + [run.packets[-1]] * (len(payloads) - len(run.packets))
    rebuilt = _rebuild(QuicRun(times, run.keylog, None, None), payloads)
    _analyze_all(rebuilt, run.keylog)


def _protections(run: QuicRun):
    """Every packet key of the run's connection, by (packet type, from client)."""
    fields = {line.split()[0]: bytes.fromhex(line.split()[2]) for line in run.keylog.splitlines() if line.strip()}
    flow = quic_flows(run.packets)[0]
    client_initial, server_initial = initial_protections(flow.original_dcid, flow.version)
    out = {("initial", True): client_initial, ("initial", False): server_initial}
    for kind, side, label in (("0rtt", True, "CLIENT_EARLY_TRAFFIC_SECRET"),
                              ("handshake", True, "CLIENT_HANDSHAKE_TRAFFIC_SECRET"),
                              ("handshake", False, "SERVER_HANDSHAKE_TRAFFIC_SECRET"),
                              ("1rtt", True, "CLIENT_TRAFFIC_SECRET_0"), ("1rtt", False, "SERVER_TRAFFIC_SECRET_0")):
        if label in fields:
            out[(kind, side)] = PacketProtection(fields[label], flow.version)
    return flow, out


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(["full", "0rtt", "big-chain"]),
       st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 10_000),
                          st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=8)),
                min_size=1, max_size=4))
def test_mutated_plaintext_in_packets_that_still_open_never_raises(runs, name, edits):
    """The datagram mutations above rarely survive decryption; these edit the frames inside and
    seal the packet again, so the frame parsers, the TLS reader and the counter meet garbage."""
    run = runs[name]
    flow, protections = _protections(run)
    decoded = quic_datagram_rounds(flow, parse_keylog(run.keylog))
    payloads = [item.decoded.datagram.payload for item in decoded]
    for datagram_index, packet_index, changes in edits:
        item = decoded[datagram_index % len(decoded)]
        packets = item.decoded.packets
        opened_packets = [p for p in packets if p.packet_number is not None]
        if not opened_packets:
            continue
        target = opened_packets[packet_index % len(opened_packets)]
        protection = protections[(target.packet.packet_type, item.decoded.datagram.from_client)]
        opened = protection.open(target.packet, target.packet_number - 1)
        assert opened is not None
        plaintext = bytearray(opened.payload)
        for position, value in changes:
            plaintext[position % len(plaintext)] = value
        pn_length = (opened.header[0] & 0x03) + 1
        sealed = protect(protection.key, opened.header, pn_length, opened.packet_number, bytes(plaintext))
        index = datagram_index % len(decoded)
        parts = [sealed if p is target else p.packet.data for p in packets]
        payloads[index] = b"".join(parts) + payloads[index][sum(len(p.packet.data) for p in packets):]
    client = flow.client
    rebuilt = []
    for item, payload in zip(decoded, payloads):
        source, destination = (client, flow.server) if item.decoded.datagram.from_client else (flow.server, client)
        rebuilt.append(TracedPacket(item.decoded.datagram.time,
                                    udp_packet(source[0], destination[0], source[1], destination[1], payload)))
    assert parse_datagram(payloads[0]).packets  # still QUIC
    _analyze_all(rebuilt, run.keylog)


# -- retransmission counts ------------------------------------------------------------------


def _varint(value: int) -> bytes:
    """RFC 9000 §16: a two-byte varint (values below 16384, all this test needs)."""
    assert value < 1 << 14
    return (0x4000 | value).to_bytes(2, "big")


def test_initials_resent_with_the_clienthello_in_several_crypto_frames_count_once_each(runs):
    """Chrome splits its ClientHello over several CRYPTO frames in every Initial; a capture of
    N client Initials (the first and N-1 copies sent on PTO, RFC 9002 §6.2) is N-1
    retransmitted packets, not N-1 times the frames each held."""
    run = runs["full"]
    flow, protections = _protections(run)
    protection = protections[("initial", True)]
    first = next(item for item in quic_datagram_rounds(flow, parse_keylog(run.keylog))
                 if item.decoded.datagram.from_client)
    initial = first.decoded.packets[0]
    opened = protection.open(initial.packet, -1)
    assert opened is not None and opened.packet_number == 0
    crypto = [frame for frame in parse_frames(opened.payload).frames if isinstance(frame, CryptoFrame)]
    assert len(crypto) == 1 and crypto[0].offset == 0
    hello = crypto[0].data
    thirds = [(0, hello[:100]), (100, hello[100:200]), (200, hello[200:])]
    plaintext = b"".join(b"\x06" + _varint(offset) + _varint(len(part)) + part for offset, part in reversed(thirds))
    plaintext += bytes(max(0, len(opened.payload) - len(plaintext)))  # PADDING
    header = bytearray(opened.header)
    pn_length = (header[0] & 0x03) + 1
    assert header[-pn_length - 2] & 0xC0 == 0x40  # the Length field (RFC 9000 §17.2.2): two bytes
    header[-pn_length - 2:-pn_length] = _varint(pn_length + len(plaintext) + 16)
    copies = 5
    client, server = flow.client, flow.server
    packets = []
    for number in range(copies):
        header[-pn_length:] = number.to_bytes(pn_length, "big")
        sealed = protect(protection.key, bytes(header), pn_length, number, plaintext)
        packets.append(TracedPacket(0.2 * number, udp_packet(client[0], server[0], client[1], server[1], sealed)))
    report = analyze_quic_flow(quic_flows(packets)[0], None)
    resent = [line for line in report.notes if "client Initial retransmitted" in line]
    assert resent == [f"client Initial retransmitted {copies - 1} times (first after 0.200 s)"]


def test_the_ack_of_half_a_clienthello_and_the_flight_after_it_are_no_packet_pair():
    """Chromium's ClientHello fills two Initials; on a loaded CI machine it sent them 6 ms apart,
    and aioquic acknowledged the first alone before it sent its one-datagram flight. That ACK and
    the flight are no packet pair: taken for one, a 5 µs/byte "bottleneck" made the 2.6 ms pause
    before the HTTP/3 answer the wire's own, and inspect without keys took HANDSHAKE_DONE's
    packet for the answer."""
    run = run_quic(extra_alpn=LONG_ALPN, client_spacing_s=0.006, chain=make_chain("p256", 0), client_port=40300)
    reader = QuicFlowReader(quic_flows(run.packets)[0], None)
    server = [item.decoded for item in reader if not item.decoded.datagram.from_client]
    first, flight = server[0], server[1]
    assert [packet.packet.packet_type for packet in first.packets] == ["initial"]
    assert not any(isinstance(frame, CryptoFrame) for frame in first.packets[0].frames)
    assert flight.datagram.time - first.datagram.time == pytest.approx(0.006)
    assert [packet.packet.packet_type for packet in flight.packets] == ["initial", "handshake", "1rtt"]
    assert reader.path.s_per_byte is None  # one flight datagram: no pair at all
