"""`compare` on the virtual-time engine: counted round trips match the catalog (DESIGN.md §2)."""

from __future__ import annotations

import pytest

from handshake.analysis.tcp.flows import tcp_flows
from handshake.net.link import LinkConfig
from handshake.runner import RunOptions, compare, row_from_run, run_sim
from handshake.trace.packet import decode
from handshake.variants import CATALOG, select

COMPUTE_SLACK_MS = 5.0


@pytest.mark.parametrize("rtt_ms", [10, 50, 100, 300])
def test_counted_round_trips_match_the_catalog(rtt_ms):
    rows = compare(select(None), LinkConfig.from_rtt(rtt_ms / 1000))
    assert [r.variant for r in rows] == list(CATALOG)
    for row in rows:
        variant = CATALOG[row.variant]
        assert (row.variant, row.round_trips) == (row.variant, variant.expected_round_trips)
        assert (row.variant, row.setup_round_trips) == (row.variant, variant.expected_setup_round_trips)
        # Virtual time: TTFB is n round trips plus nothing (no rate limit, no compute time).
        assert row.ttfb_ms == pytest.approx(row.round_trips * rtt_ms, abs=COMPUTE_SLACK_MS)
        assert row.causes == []
        assert row.packets > 0 and row.bytes_client > 0 and row.bytes_server > 0


def _syn(run):
    flow = tcp_flows(run.trace.packets)[-1]
    return flow.packets[0].segment


def test_tfo_0rtt_puts_client_hello_and_early_request_in_the_syn():
    run = run_sim(CATALOG["tfo-tls13-0rtt"], LinkConfig.from_rtt(0.1))
    syn = _syn(run)
    assert syn.syn and syn.fastopen_cookie  # a cached cookie
    assert syn.payload[0] == 0x16  # TLS handshake record: the ClientHello
    records = []
    data = syn.payload
    while data:
        records.append(data[0])
        data = data[5 + int.from_bytes(data[3:5], "big") :]
    assert records[0] == 0x16 and 0x17 in records[1:]  # early data rides behind it
    row = row_from_run(run)
    assert row.tfo == "data" and row.early_data == "accepted" and row.setup_round_trips == 0


def test_warm_up_connection_requests_the_tfo_cookie():
    run = run_sim(CATALOG["tfo-tls13"], LinkConfig.from_rtt(0.1))
    warm, measured = tcp_flows(run.trace.packets)
    assert warm.packets[0].segment.fastopen_cookie == b""  # cold: a cookie request
    assert not warm.packets[0].segment.payload  # ... and the ClientHello waits for the handshake
    assert measured.packets[0].segment.fastopen_cookie  # warm: the cookie the server gave
    assert run.warmup_connections == 1


def test_a_lost_packet_is_retransmitted_and_the_run_is_reproducible():
    link = LinkConfig.from_rtt(0.1, loss=0.25, seed=7)
    first = compare(select("tls13,tfo-tls12"), link)
    again = compare(select("tls13,tfo-tls12"), link)
    # Same seed, same network events. Only the bytes may differ a little: ECDSA signatures vary
    # in DER length (70-72 bytes) from one handshake to the next.
    def fate(row):
        return (row.variant, row.round_trips, row.ttfb_ms, row.packets, row.causes)

    assert [fate(r) for r in first] == [fate(r) for r in again]
    for a, b in zip(first, again):
        assert abs(a.bytes_server - b.bytes_server) <= 8
    assert all(r.round_trips is not None for r in first)
    assert any(r.causes for r in first)  # 25 % loss did cost something


def test_every_packet_of_the_trace_decodes():
    run = run_sim(CATALOG["tls12"], LinkConfig.from_rtt(0.05))
    for packet in run.trace.packets:
        decode(packet.data)


@pytest.mark.parametrize("http", ["2", "1.1"])
def test_the_rows_speak_the_http_asked_for_at_the_same_round_trips(http):
    """ALPN settles what the TLS rows speak (read back from the trace's ServerHello or
    EncryptedExtensions); the plain row speaks HTTP/1.1 and QUIC HTTP/3 whatever is asked."""
    rows = compare(select(None), LinkConfig.from_rtt(0.1), options=RunOptions(http=http))
    for row in rows:
        variant = CATALOG[row.variant]
        spoken = "3" if variant.transport == "quic" else "1.1" if variant.tls_version is None else http
        assert (row.variant, row.http, row.round_trips) == (row.variant, spoken, variant.expected_round_trips)


def test_http2_sends_more_bytes_than_http1_for_the_same_answer():
    """Its preface, SETTINGS (both ways), their ACKs and Chrome's window raise are on the wire."""
    link = LinkConfig.from_rtt(0.1)
    (h2_row,) = compare(select("tls13"), link, options=RunOptions(http="2"))
    (h1_row,) = compare(select("tls13"), link, options=RunOptions(http="1.1"))
    assert h2_row.bytes_client > h1_row.bytes_client and h2_row.packets >= h1_row.packets
