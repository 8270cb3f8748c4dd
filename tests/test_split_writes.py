"""Nagle's algorithm at the HTTP level (issue 12): a client that writes its request's header
section and body apart, with Nagle on, holds the body until the ACK of the header section. The
row counts the round trip that costs from the packets and names the cause; TCP_NODELAY removes
it; QUIC, which has no Nagle, is unchanged.

What releases the body differs by variant, and the trace tells which: a fresh plain-HTTP
connection is still in Linux's quick-ACK mode (one round trip); over TLS 1.3 the server's
tickets, sent as the client's Finished arrives with the header section, carry the ACK (one round
trip); over TLS 1.2 and HTTP/2 the server's SETTINGS ACK does; over TLS 1.2 and HTTP/1.1 the
server has nothing to say, so it delays its ACK (40-44 ms at Linux's 4 ms ticks) besides."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from handshake.endpoints.http1 import Upload
from handshake.net.link import LinkConfig
from handshake.runner import RunOptions, row_from_run, run_sim
from handshake.trace.record import Trace
from handshake.variants import CATALOG

LINK = LinkConfig.from_rtt(0.1)
BODY = 200
NAGLE = re.compile(r"^Nagle: (?:the request's second write|a client write) waited (\d+) ms for the ACK of "
                   r"(?:its first|the short segment before it)"
                   r"(?:, which the server delayed (\d+) ms|: a round trip)$")
TCP_CASES = [(name, http) for name in ("http", "tls12", "tls13", "tls13-resume", "tls13-0rtt", "tfo-tls13")
             for http in ("1.1", "2")]


def _run(name: str, http: str, *, split: bool, nodelay: bool, keys: bool = True):
    options = RunOptions(http=http, upload=Upload(BODY, split=split), nodelay=nodelay)
    run = run_sim(CATALOG[name], LINK, options)
    if not keys:
        run = replace(run, trace=Trace(run.trace.packets, ""))
    return row_from_run(run)


def _nagle(row) -> re.Match | None:
    found = [m for m in map(NAGLE.match, row.causes) if m]
    assert len(found) <= 1, row.causes
    return found[0] if found else None


@pytest.mark.parametrize("name, http", TCP_CASES)
def test_a_split_request_costs_a_round_trip_with_nagle_and_none_without(name, http):
    expected = CATALOG[name].expected_round_trips
    one_write = _run(name, http, split=False, nodelay=False)
    nodelay = _run(name, http, split=True, nodelay=True)
    nagle = _run(name, http, split=True, nodelay=False)
    for row in (one_write, nodelay):
        assert row.round_trips == expected and _nagle(row) is None, row
    assert nagle.round_trips == expected + 1, nagle
    cause = _nagle(nagle)
    assert cause is not None, nagle.causes
    waited_ms = int(cause.group(1))
    assert nagle.ttfb_ms == pytest.approx(one_write.ttfb_ms + waited_ms, abs=1.0)
    delayed = cause.group(2)
    if (name, http) == ("tls12", "1.1"):
        assert delayed is not None and 40 <= int(delayed) <= 44  # Linux's delayed ACK, in 4 ms ticks
        assert 140 <= waited_ms <= 144
    else:
        assert delayed is None and waited_ms == 100  # the ACK rode on the server's next words at once


@pytest.mark.parametrize("name, http", [("tls12", "1.1"), ("tls12", "2"), ("tls13", "1.1"), ("tls13", "2"),
                                        ("tfo-tls13", "2")])
def test_without_the_key_log_the_stall_counts_the_same(name, http):
    """The records the server sent before the body (tickets, SETTINGS ACK) are not its answer."""
    keyed = _run(name, http, split=True, nodelay=False)
    keyless = _run(name, http, split=True, nodelay=False, keys=False)
    assert (keyless.round_trips, keyless.ttfb_ms) == (keyed.round_trips, keyed.ttfb_ms)
    assert keyless.causes == keyed.causes
    assert any(note.startswith("inferred without a key log") for note in keyless.notes), keyless.notes


def test_quic_has_no_nagle_and_says_so():
    row = _run("quic", "2", split=True, nodelay=False)
    assert row.round_trips == CATALOG["quic"].expected_round_trips and row.causes == []
    assert any("QUIC has no Nagle" in note for note in row.notes)


def test_the_stall_shows_in_the_bytes_the_client_sent():
    """The body goes in a segment of its own a round trip later, and the server ACKs it: two
    packets more than the request written at once, and at least a segment's headers more."""
    one_write = _run("tls13", "1.1", split=False, nodelay=True)
    nagle = _run("tls13", "1.1", split=True, nodelay=False)
    assert nagle.packets == one_write.packets + 2  # the body's segment, and the ACK of it
    assert nagle.bytes_client - one_write.bytes_client >= 40  # IPv4 and TCP headers, at least


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(["http", "tls12", "tls13", "tfo-tls13"]), http=st.sampled_from(["1.1", "2"]),
       rtt_ms=st.integers(10, 300), size=st.integers(1, 12_000), split=st.booleans(), nodelay=st.booleans())
def test_the_cause_is_named_exactly_when_nagle_held_the_request(name, http, rtt_ms, size, split, nodelay):
    """Up to nine segments of body (beyond, the client's congestion window may hold it as well,
    and the watch does not tell them apart): a round trip more and the cause where a split
    request met Nagle, neither otherwise, at any path delay."""
    link = LinkConfig.from_rtt(rtt_ms / 1000)
    options = RunOptions(http=http, upload=Upload(size, split=split), nodelay=nodelay)
    row = row_from_run(run_sim(CATALOG[name], link, options))
    nagle = split and not nodelay
    assert row.round_trips == CATALOG[name].expected_round_trips + nagle, row
    assert (_nagle(row) is not None) == nagle, row.causes
