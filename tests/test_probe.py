"""`probe`'s parts that need no server: the URL and its address, Alt-Svc, the capture filter, the
inference from the client's clock, the summary, the HTTP/2 exchange, and the command's errors.
Real servers are in tests/kernel/test_probe.py."""

from __future__ import annotations

import ipaddress
import socket
import struct

import h2.config
import h2.connection
import h2.events
import pytest
from hypothesis import given
from hypothesis import strategies as st

from handshake.cli import main
from handshake.endpoints.events import HandshakeCompleted, ResponseReceived
from handshake.endpoints.http2 import Http2ClientExchange
from handshake.errors import UsageError
from handshake.probe.attempt import Attempt, alt_svc_h3_port
from handshake.probe.capture import address_filter
from handshake.probe.https_record import h3_offer
from handshake.probe.connect import Connection
from handshake.probe.measure import Measurement, inferred, probe_row
from handshake.probe.summary import summarize
from handshake.probe.target import parse_resolve, parse_target
from handshake.variants import CATALOG


# --- the target ----------------------------------------------------------------------------------

def test_a_url_names_host_port_path_and_the_address_comes_from_resolve():
    target = parse_target("https://Example.test:8443/a/b?c=d", resolve=["example.test:8443:192.0.2.7"])
    assert (target.host, target.port, target.path, target.address) == ("example.test", 8443, "/a/b?c=d", "192.0.2.7")
    assert target.authority == "example.test:8443" and target.sni == "example.test"
    assert parse_target("https://[2001:db8::1]/").sni is None  # an IP literal: no SNI
    assert parse_target("example.test", resolve=["example.test:443:192.0.2.1"]).path == "/"


def test_a_resolve_for_another_port_is_not_used(monkeypatch):
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: [(socket.AF_INET, 1, 6, "", ("192.0.2.99", 443))])
    assert parse_target("https://example.test/", resolve=["example.test:8443:192.0.2.7"]).address == "192.0.2.99"


@pytest.mark.parametrize("url, message", [
    ("http://example.test/", "only https:// URLs"),
    ("https:///path", "no host"),
    ("https://example.test:99999/", "Port out of range"),
])
def test_a_bad_url_is_one_line(url, message):
    with pytest.raises(UsageError, match=message):
        parse_target(url, resolve=["example.test:443:192.0.2.1"])


def test_a_name_that_does_not_resolve_is_one_line(monkeypatch):
    def fail(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fail)
    with pytest.raises(UsageError, match="cannot resolve nowhere.test: Name or service not known"):
        parse_target("https://nowhere.test/")


@pytest.mark.parametrize("value", ["example.test:443", "example.test:x:192.0.2.1", "example.test:443:not-an-ip"])
def test_a_bad_resolve_is_one_line(value):
    with pytest.raises(UsageError, match="--resolve"):
        parse_resolve(value)


def test_interface_must_match_the_servers_family():
    with pytest.raises(UsageError, match="not of the same family"):
        parse_target("https://example.test/", resolve=["example.test:443:192.0.2.1"], local_address="::1")


# --- Alt-Svc -------------------------------------------------------------------------------------

@pytest.mark.parametrize("value, port", [
    ('h3=":443"; ma=86400', 443),
    ('h3-29=":443", h3=":8443"; ma=60', 8443),
    ('h2=":443"', None),
    ('h3="other.test:443"', None),  # another host: never contacted
    ('h3="example.test:9443"', 9443),
    ("clear", None),
])
def test_alt_svc_offers_http3_on_a_port_of_this_host(value, port):
    assert alt_svc_h3_port((("alt-svc", value),), "example.test") == port


@given(st.text(max_size=200))
def test_alt_svc_parsing_never_fails(value):
    alt_svc_h3_port((("Alt-Svc", value),), "example.test")


@given(st.lists(st.tuples(st.sampled_from(["h2", "h3-29", "quic", "h3"]), st.integers(1, 65535)), max_size=5),
       st.integers(1, 65535))
def test_the_first_h3_entry_wins(entries, port):
    value = ", ".join(f'{protocol}=":{p}"; ma=60' for protocol, p in [*entries, ("h3", port)])
    expected = next(p for protocol, p in [*entries, ("h3", port)] if protocol == "h3")
    assert alt_svc_h3_port((("alt-svc", value),), "example.test") == expected


# --- the HTTPS record ----------------------------------------------------------------------------

def https_records(*texts: str) -> list:
    import dns.rdata
    import dns.rdataclass
    import dns.rdatatype

    return [dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.HTTPS, text) for text in texts]


@pytest.mark.parametrize("texts, port", [
    (['1 . alpn="h3,h2"'], 443),
    (['1 . alpn="h2,h3" port=8443'], 8443),
    (['1 example.test. alpn=h3'], 443),
    (['1 . alpn=h2'], None),
    (['1 cdn.other.test. alpn=h3'], None),  # another host: never contacted
    (['0 cdn.other.test.'], None),  # AliasMode: not followed
    (['2 . alpn=h3 port=9443', '1 . alpn=h3 port=8443'], 8443),  # lowest priority first
])
def test_an_https_record_offers_http3_on_this_host(texts, port):
    offer = h3_offer(https_records(*texts), "example.test", 443)
    assert (offer.port if offer else None) == port


def test_the_https_record_is_asked_for_only_where_the_resolver_gave_the_address(monkeypatch):
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: [(socket.AF_INET, 1, 6, "", ("192.0.2.99", 443))])
    assert parse_target("https://example.test/").from_dns
    assert not parse_target("https://example.test/", resolve=["example.test:443:192.0.2.1"]).from_dns
    assert not parse_target("https://192.0.2.1/").from_dns


# --- the capture's kernel filter -----------------------------------------------------------------

def run_bpf(program: list[tuple[int, int, int, int]], packet: bytes) -> int:
    """A classic-BPF interpreter for the instructions ``address_filter`` uses (as the kernel runs
    them on a cooked packet socket: offsets from the IP header; a load past the end rejects)."""
    accumulator, pc = 0, 0
    while True:
        code, jt, jf, k = program[pc]
        if code == 0x30:  # ldb [k]
            if k >= len(packet):
                return 0
            accumulator = packet[k]
        elif code == 0x20:  # ld [k]
            if k + 4 > len(packet):
                return 0
            accumulator = struct.unpack_from("!I", packet, k)[0]
        elif code == 0x74:  # rsh #k
            accumulator >>= k
        elif code == 0x15:  # jeq #k
            pc += jt if accumulator == k else jf
        elif code == 0x06:  # ret #k
            return k
        else:
            raise AssertionError(f"unexpected opcode {code:#x}")
        pc += 1


addresses_v4 = st.integers(0, 2**32 - 1).map(lambda n: ipaddress.IPv4Address(n))
addresses_v6 = st.integers(0, 2**128 - 1).map(lambda n: ipaddress.IPv6Address(n))


def ip_header(source, destination) -> bytes:
    if source.version == 4:
        return bytes([0x45, 0, 0, 40, 0, 0, 0, 0, 64, 6, 0, 0]) + source.packed + destination.packed + bytes(20)
    return bytes([0x60, 0, 0, 0, 0, 20, 6, 64]) + source.packed + destination.packed + bytes(20)


@given(st.one_of(st.tuples(addresses_v4, addresses_v4, addresses_v4), st.tuples(addresses_v6, addresses_v6, addresses_v6),
                 st.tuples(addresses_v4, addresses_v6, addresses_v6), st.tuples(addresses_v6, addresses_v4, addresses_v4)),
       st.sampled_from(["neither", "source", "destination"]))
def test_the_filter_keeps_exactly_the_packets_from_or_to_the_server(addresses, which):
    server, source, destination = addresses
    if which == "source" and source.version == server.version:
        source = server
    if which == "destination" and destination.version == server.version:
        destination = server
    kept = run_bpf(address_filter(str(server)), ip_header(source, destination)) > 0
    assert kept == (server in (source, destination))


@given(st.binary(max_size=60), addresses_v4 | addresses_v6)
def test_the_filter_never_runs_off_its_program(packet, server):
    run_bpf(address_filter(str(server)), packet)


# --- counts without a capture ----------------------------------------------------------------------

def connection(request_left_s: float, first_byte_s: float, computed_s: float = 0.0) -> Connection:
    """A measured connection whose request could leave at ``request_left_s - computed_s``."""
    made = Connection("measured", "tcp", 40000, 0.0, request_ready_s=request_left_s - computed_s,
                      request_left_s=request_left_s, first_byte_s=first_byte_s,
                      handshake=HandshakeCompleted("1.3", False, "none", "TLS_AES_128_GCM_SHA256"),
                      response=ResponseReceived(200, b"hi", (), "2"))
    return made


def test_inferred_round_trips_are_the_requests_wait_over_the_rtt_plus_the_answers():
    measured = inferred(connection(0.2313, 0.3618, computed_s=0.03), 0.1, tfo_tried=False)
    assert (measured.setup_round_trips, measured.round_trips, measured.basis) == (2, 3, "inferred")
    assert measured.server_ms == pytest.approx(30.5)
    assert (measured.http_version, measured.tls_version, measured.tfo) == ("2", "1.3", "none")


@given(st.integers(0, 5), st.floats(0.001, 0.5), st.floats(0, 2), st.floats(-0.15, 0.75), st.floats(0, 2))
def test_inferred_counts_recover_any_path_and_server_time(setup, rtt_s, server_s, jitter, computing):
    """The request could leave after ``setup`` round trips (plus up to most of one spent computing,
    or a little less where the RTT sample was long), left after the client's computation (any
    length: no round trip), and the answer came a round trip plus the server time later: the count
    is setup + 1, the server time is recovered."""
    ready = max(0.0, setup * rtt_s + jitter * rtt_s)
    left = ready + computing * rtt_s
    measured = inferred(connection(left, left + rtt_s + server_s, left - ready), rtt_s, tfo_tried=False)
    assert (measured.setup_round_trips, measured.round_trips) == (setup, setup + 1)
    assert measured.server_ms == pytest.approx(server_s * 1000, abs=1e-6)


# --- rows and the summary ------------------------------------------------------------------------

def measurement(rounds: int, ttfb_ms: float) -> Measurement:
    return Measurement("counted", rounds, rounds - 1, ttfb_ms, 0.3, "1.3", "2", False, "none", "none")


def test_a_row_holds_the_median_and_the_spread_of_its_runs():
    variant = CATALOG["tls13"]
    attempts = [Attempt(variant, [connection(0.2, 0.3)]) for _ in range(3)]
    row = probe_row(attempts, [measurement(3, 303.0), measurement(3, 301.0), measurement(4, 420.0)])
    assert (row.round_trips, row.ttfb_ms, row.supported) == (3, 303.0, True)
    assert row.spread == {"runs": 3, "complete": 3, "ttfb_ms": [301.0, 303.0, 420.0], "round_trips": [3, 4]}
    assert row.measured_port == 40000


def rows_for(measured: dict[str, tuple[int, float]], refused: dict[str, list[str]]):
    out = []
    for name, (rounds, ttfb) in measured.items():
        out.append(probe_row([Attempt(CATALOG[name], [connection(0.1, 0.2)])], [measurement(rounds, ttfb)]))
    for name, features in refused.items():
        attempt = Attempt(CATALOG[name])
        for feature in features:
            attempt.refuse(feature, f"no {feature}")
        out.append(probe_row([attempt], [None]))
    return out


def test_the_summary_names_the_fastest_and_what_the_server_could_enable():
    rows = rows_for({"tls12": (4, 404.0), "tls13": (3, 303.0), "tls13-resume": (3, 302.0)},
                    {"tls13-0rtt": ["0-rtt"], "tfo-tls13": ["tfo"], "tfo-tls13-0rtt": ["tfo", "0-rtt"],
                     "quic": ["http3"], "quic-0rtt": ["http3"]})
    summary = summarize(rows, 100.0)
    assert summary[0] == ("fastest here: tls13-resume, 3 round trips, TTFB 302 ms; "
                          "against tls12 over TCP it saves 1 round trip, 102 ms")
    assert summary[1:] == [
        "the server could accept TLS 1.3 early data (0-RTT) and enable TCP Fast Open: −2 round trips expected, "
        "≈ 200 ms from here (tfo-tls13-0rtt)",
        "the server could offer HTTP/3 (Alt-Svc or an HTTPS record with h3): −2 round trips expected, "
        "≈ 200 ms from here (quic-0rtt)",
        "the server could accept TLS 1.3 early data (0-RTT): −1 round trip expected, ≈ 100 ms from here (tls13-0rtt)",
        "the server could enable TCP Fast Open: −1 round trip expected, ≈ 100 ms from here (tfo-tls13)",
    ]


def test_a_server_that_gives_everything_gets_no_advice():
    assert summarize(rows_for({"tfo-tls13-0rtt": (1, 101.0), "tls13": (3, 303.0)}, {}), 100.0) == [
        "fastest here: tfo-tls13-0rtt, 1 round trip, TTFB 101 ms"]
    assert summarize([], None) == ["no variant completed against this server"]


# --- HTTP/2 --------------------------------------------------------------------------------------

def test_the_http2_exchange_reads_the_response_not_the_servers_settings():
    client = Http2ClientExchange("example.test", "/page")
    server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
    server.initiate_connection()
    events = server.receive_data(client.request())
    request = next(e for e in events if isinstance(e, h2.events.RequestReceived))
    assert dict(request.headers)[":path"] == "/page" and dict(request.headers)[":authority"] == "example.test"
    assert client.receive(server.data_to_send()) == [] and not client.response_started  # SETTINGS only
    server.receive_data(client.data_to_send())  # the client's SETTINGS ACK
    server.send_headers(request.stream_id, [(":status", "200"), ("alt-svc", 'h3=":443"')])
    server.send_data(request.stream_id, b"hello", end_stream=True)
    (response,) = client.receive(server.data_to_send())
    assert client.response_started and client.done
    assert (response.status, response.body, response.http_version, response.target) == (200, b"hello", "2", "/page")
    assert alt_svc_h3_port(response.headers, "example.test") == 443


# --- the command ---------------------------------------------------------------------------------

@pytest.mark.parametrize("argv, message", [
    (["http://example.test/"], "only https:// URLs"),
    (["https://example.test/", "--runs", "0"], "--runs 0"),
    (["https://example.test/", "--runs", "21"], "--runs 21"),
    (["https://example.test/", "--timeout", "0s"], "--timeout"),
    (["https://example.test/", "--timeout", "5"], "add a unit"),
    (["https://example.test/", "--variants", "tls14"], "unknown variant 'tls14'"),
    (["https://example.test/", "--format", "yaml"], "unknown format"),
    (["https://example.test/", "--cacert", "/nonexistent/ca.pem"], "--cacert /nonexistent/ca.pem"),
    (["https://example.test/", "--insecure", "--cacert", "x.pem"], "--insecure"),
])
def test_bad_input_is_one_line_and_status_2(capsys, argv, message):
    assert main(["probe", *argv, "--resolve", "example.test:443:192.0.2.1"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


def test_interface_is_a_guard_a_socket_that_cannot_bind_there_sends_nothing(capsys, monkeypatch):
    """198.18.0.1 exists only in the kernel engine's client namespace: from here the bind fails, so
    the probe stops before its first packet instead of leaving by the host's default route; with
    --resolve it asks no DNS question either."""
    def no_dns(*args, **kwargs):
        raise AssertionError("a DNS query for a --resolve'd name")

    monkeypatch.setattr("handshake.probe.run.lookup_https_record", no_dns)
    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    assert main(["probe", "https://server.test/", "--resolve", "server.test:443:198.19.0.1", "--interface",
                 "198.18.0.1", "--variants", "tls13"]) == 2
    err = capsys.readouterr().err
    assert "cannot bind to --interface 198.18.0.1" in err and err.count("\n") == 1, err


def test_a_run_over_which_the_system_clock_was_stepped_is_made_again(monkeypatch):
    """The capture's timestamps are on CLOCK_REALTIME: an NTP step in the middle of a run puts its
    packets on two clocks (a CI machine stepped 3 s once: a negative RTT, a connection out of
    order), so that run is discarded and made again, and the result says so."""
    from handshake.probe import run as probe_run

    class FakeCapture:
        unstamped = 0

        def take(self):
            return []

        def close(self):
            pass

    made = []
    monkeypatch.setattr(probe_run, "_open_capture", lambda target, options: (FakeCapture(), "counted"))
    monkeypatch.setattr(probe_run, "attempt_variant", lambda variant, *a, **k: made.append(variant.name) or
                        Attempt(variant))
    offsets = iter([0.0, 3.0, 3.0, 3.0, 3.0, 3.0])  # stepped during the first try of the run only
    monkeypatch.setattr(probe_run, "_wall_offset_s", lambda: next(offsets))
    target = parse_target("https://example.test/", resolve=["example.test:443:192.0.2.1"])
    result = probe_run.run_probe(target, probe_run.ProbeOptions(variants=("tls13", "tls12")))
    assert made == ["tls13", "tls12", "tls13", "tls12"]
    assert result.notes == ["the system clock was stepped during a run, which was made again"]
    assert all(row.spread is None for row in result.rows)  # one attempt kept per variant: the discarded run is gone
