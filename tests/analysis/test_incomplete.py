"""Captures that hold less than the wire did: each gap is found and named, and no wait is
inferred that the capture cannot show (DESIGN.md §6)."""

from __future__ import annotations

from handshake.analysis.capture import inspect_packets
from handshake.analysis.keylog import parse_keylog
from handshake.analysis.quic.connection import AMPLIFICATION_CAUSE
from handshake.endpoints.certs import make_chain
from handshake.net.link import LinkConfig
from handshake.runner import run_sim
from handshake.trace.packet import TcpSegment, decode
from handshake.variants import CATALOG

from .quic.traffic import CLIENT, LONG_ALPN, run_quic
from .written import tcp_conversation

def _packets(run):
    """(time, IP packet) pairs of a sim run (``trace.packets``) or a QUIC test run (``packets``)."""
    traced = run.trace.packets if hasattr(run, "trace") else run.packets
    return [(p.time, p.data) for p in traced]


def _report(packets, keylog):
    return inspect_packets(packets, keylog)[-1].report


def test_a_capture_that_begins_after_the_syn_says_so():
    run = run_sim(CATALOG["tls12"], LinkConfig.from_rtt(0.1))
    packets = _packets(run)
    report = _report(packets[2:], parse_keylog(run.trace.keylog))  # from the client's ACK of the SYN-ACK on
    assert report.tfo == "unknown"
    assert any(note.startswith("capture incomplete: it began after the client's SYN") for note in report.notes)
    # Its TLS facts are still read; what counts from the SYN is unknown, not counted from elsewhere.
    assert (report.tls_version, report.round_trips, report.ttfb_s, report.setup_round_trips) == ("1.2", None, None, None)


def test_tls_captured_mid_stream_is_tls_not_plain_http():
    """A capture that begins after the handshake sees application data records: no TLS facts,
    no count, and never the first server record taken for a plain-HTTP answer."""
    run = run_sim(CATALOG["tls12"], LinkConfig.from_rtt(0.1))
    packets = _packets(run)
    keylog = parse_keylog(run.trace.keylog)
    whole = inspect_packets(packets, keylog)[-1]
    first_app = next(i for i, (_, data) in enumerate(packets)
                     if _from(data) == whole.report.client and decode(data).transport.payload[:1] == b"\x17")
    report = _report(packets[first_app:], keylog)
    assert report.round_trips is None and report.ttfb_s is None
    assert report.round_trips_basis is None and report.tls_version is None


def test_client_data_the_server_acknowledged_but_the_capture_lacks_is_counted():
    run = run_sim(CATALOG["tls13"], LinkConfig.from_rtt(0.1))
    packets = _packets(run)
    keylog = parse_keylog(run.trace.keylog)
    whole = _report(packets, keylog)
    assert not any(note.startswith("capture incomplete") for note in whole.notes)
    # Leave out the measured connection's ClientHello, as a capture under load drops a packet.
    client = whole.client
    hello = next(i for i, (_, data) in enumerate(packets)
                 if _from(data) == client and isinstance(decode(data).transport, TcpSegment)
                 and decode(data).transport.payload.startswith(b"\x16\x03"))
    lost = len(decode(packets[hello][1]).transport.payload)
    report = _report(packets[:hello] + packets[hello + 1:], keylog)
    assert f"capture incomplete: {lost} bytes the client sent were acknowledged but are not in it" in report.notes


def _from(data: bytes) -> str:
    packet = decode(data)
    return f"{packet.src}:{packet.transport.sport}"


def test_without_the_client_first_initial_the_3x_bound_infers_no_wait():
    """With the first of two client Initials missing, the client's round-0 bytes are undercounted:
    the server's 3x budget would seem spent when it was not (a wrong "anti-amplification" cause
    before). The full capture of a flight that does exceed it keeps the cause."""
    for intermediates, stalls in ((5, False), (8, True)):
        run = run_quic(extra_alpn=LONG_ALPN, chain=make_chain("rsa2048", intermediates))
        packets, keylog = _packets(run), parse_keylog(run.keylog)
        assert (AMPLIFICATION_CAUSE in _report(packets, keylog).causes) == stalls
        first = next(i for i, (_, data) in enumerate(packets) if decode(data).transport.sport == CLIENT[1])
        cut = _report(packets[:first] + packets[first + 1:], keylog)
        assert AMPLIFICATION_CAUSE not in cut.causes
        assert cut.ttfb_s is not None and round(cut.ttfb_s, 6) == round(_report(packets, keylog).ttfb_s, 6)
        assert any(note.startswith("capture incomplete: the client's first Initial is not in it")
                   for note in cut.notes)


def test_server_handshake_data_missing_from_the_middle_is_named():
    run = run_quic(chain=make_chain("rsa2048", 1))
    packets, keylog = _packets(run), parse_keylog(run.keylog)
    server = [i for i, (_, data) in enumerate(packets) if decode(data).transport.sport != CLIENT[1]]
    second = server[1]  # the server's second datagram: Handshake CRYPTO of its certificate chain
    whole, report = _report(packets, keylog), _report(packets[:second] + packets[second + 1:], keylog)
    assert (report.round_trips, report.ttfb_s) == (whole.round_trips, whole.ttfb_s) == (2, whole.ttfb_s)
    notes = " | ".join(report.notes)
    assert "capture incomplete: server Handshake packets were acknowledged but are not in it" in notes
    assert "capture incomplete: never saw server handshake CRYPTO bytes" in notes


# -- what a capture did not see is unknown, never a default (issue 16) -----------------------


def _facts(report) -> dict:
    conn = report.as_dict()
    return {key: conn[key] for key in ("tls_version", "resumed", "early_data", "tfo", "hrr", "round_trips", "ttfb_ms")}


def _tls12_run():
    run = run_sim(CATALOG["tls12"], LinkConfig.from_rtt(0.1))
    packets = _packets(run)
    client = inspect_packets(packets, None)[-1].report.client
    return packets, parse_keylog(run.trace.keylog), client


def _first(packets, client, from_client: bool, first_byte: bytes) -> int:
    """Index of the first packet of that side whose payload begins with ``first_byte``."""
    return next(i for i, (_, data) in enumerate(packets)
                if (_from(data) == client) == from_client and decode(data).transport.payload[:1] == first_byte)


def test_tcp_from_the_server_hello_on_knows_the_servers_facts_only():
    """No SYN, no ClientHello: the version and resumption are the server's to tell; TFO, early
    data and HelloRetryRequest (each needs the client's first packets) are unknown."""
    packets, keylog, client = _tls12_run()
    report = _report(packets[_first(packets, client, False, b"\x16"):], keylog)
    assert _facts(report) == {"tls_version": "1.2", "resumed": False, "early_data": "unknown", "tfo": "unknown",
                              "hrr": None, "round_trips": None, "ttfb_ms": None}
    # The answer is in the capture: no note may say it is not (only that the count cannot start).
    assert not any("no response" in note or "no request" in note for note in report.notes), report.notes


def test_tcp_from_the_middle_of_the_stream_knows_nothing():
    packets, keylog, client = _tls12_run()
    report = _report(packets[_first(packets, client, True, b"\x17"):], keylog)
    assert _facts(report) == {"tls_version": None, "resumed": None, "early_data": "unknown", "tfo": "unknown",
                              "hrr": None, "round_trips": None, "ttfb_ms": None}
    conn = report.as_dict()
    assert (conn["sni"], conn["cipher"], conn["alpn"]) == (None, None, None)


def test_tcp_with_its_syn_but_no_client_hello_says_no_request():
    packets, keylog, client = _tls12_run()
    report = _report(packets[:_first(packets, client, True, b"\x16")], keylog)
    assert _facts(report) == {"tls_version": None, "resumed": None, "early_data": "unknown", "tfo": "none",
                              "hrr": None, "round_trips": None, "ttfb_ms": None}
    assert report.notes == ["no request in the capture"]


def test_tls_with_the_request_but_no_response_says_so():
    packets, keylog, client = _tls12_run()
    cut = packets[:_first(packets, client, True, b"\x17") + 1]
    report = _report(cut, keylog)  # decrypted: the request is read, no answer follows
    assert _facts(report) == {"tls_version": "1.2", "resumed": False, "early_data": "none", "tfo": "none",
                              "hrr": False, "round_trips": None, "ttfb_ms": None}
    assert "no response in the capture" in report.notes
    keyless = _report(cut, None)
    assert keyless.round_trips is None
    assert any(note.endswith("no response in the capture") for note in keyless.notes), keyless.notes


def test_tls_with_the_response_but_no_request_says_so():
    packets, keylog, client = _tls12_run()
    request = _first(packets, client, True, b"\x17")
    report = _report(packets[:request] + packets[request + 1:], keylog)
    assert (report.round_trips, report.ttfb_s) == (None, None)
    assert "no request in the capture" in report.notes
    keyless = _report(packets[:request] + packets[request + 1:], None)
    assert keyless.round_trips is None and any("no request" in note for note in keyless.notes)


def test_quic_from_the_clients_second_initial_on_leaves_the_clients_facts_unknown():
    """The ClientHello began in the Initial the capture lacks: whether early data was offered, a
    HelloRetryRequest or a Retry came (each answers the first Initial) is unknown; the server's
    facts are not."""
    run = run_quic(extra_alpn=LONG_ALPN, client_port=40210)
    packets, keylog = _packets(run), parse_keylog(run.keylog)
    whole = _report(packets, keylog)
    assert (whole.early_data, whole.hrr, whole.retry, whole.resumed) == ("none", False, False, False)
    first = next(i for i, (_, data) in enumerate(packets) if decode(data).transport.sport == 40210)
    cut = _report(packets[:first] + packets[first + 1:], keylog)
    assert (cut.early_data, cut.hrr, cut.retry, cut.resumed, cut.tfo) == ("unknown", None, None, False, "none")
    assert cut.as_dict()["retry"] is None


def test_a_plain_http_connection_has_no_tls_to_resume():
    """Seen from its SYN and plain from its first byte: no TLS, so nothing resumed, no early data,
    no HelloRetryRequest, as facts."""
    packets = tcp_conversation([(True, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"), (False, b"HTTP/1.1 200 OK\r\n\r\n")])
    report = _report(packets, None)
    assert _facts(report) == {"tls_version": None, "resumed": False, "early_data": "none", "tfo": "none",
                              "hrr": False, "round_trips": 2, "ttfb_ms": 150.0}
