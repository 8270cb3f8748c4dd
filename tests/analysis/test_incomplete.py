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

from .quic.traffic import CLIENT, run_quic

LONG_ALPN = tuple(f"x-{i:02d}-" + "p" * 40 for i in range(30))
"""Offered before h3, they make a ClientHello that needs two Initials (as Chrome's post-quantum
key shares do)."""


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
