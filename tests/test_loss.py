"""Heavy random loss: every handshake still completes, reproducibly, and the spread is reported."""

from __future__ import annotations

from handshake.net.link import LinkConfig
from handshake.runner import compare
from handshake.variants import select


def test_fifty_tls13_handshakes_at_30_percent_loss_all_complete():
    link = LinkConfig.from_rtt(0.1, loss=0.3, seed=100)
    (row,) = compare(select("tls13"), link, runs=50)
    assert row.spread["runs"] == 50 and row.spread["complete"] == 50
    low, median, high = row.spread["ttfb_ms"]
    assert 300.0 <= low <= median <= high
    assert high > 1000.0  # somebody lost a SYN or a flight and paid an RTO
    assert row.spread["round_trips"][0] == 3  # loss costs time; the exchange itself stays 3 round trips
    assert any("retransmitted" in cause and "of 50 runs" in cause for cause in row.causes)
    again = compare(select("tls13"), link, runs=50)[0]
    assert again.spread == row.spread


def test_fifty_quic_handshakes_at_30_percent_loss_all_complete():
    link = LinkConfig.from_rtt(0.1, loss=0.3, seed=200)
    (row,) = compare(select("quic"), link, runs=50)
    assert row.spread["complete"] == 50
    assert row.spread["ttfb_ms"][0] >= 200.0
    assert row.spread["ttfb_ms"][2] > row.spread["ttfb_ms"][0]  # loss spread the times out
