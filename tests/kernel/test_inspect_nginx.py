"""`inspect` on a real web server and a real client: curl against nginx through the delay shim
(100 ms RTT), captured at the client's edge, with curl's own key log (SSLKEYLOGFILE).

The server: one nginx (`master_process off; daemon off;`, its config, logs and pid file in a
tmp dir) listening on SERVER_ADDR:443 with `ssl fastopen=256`, answering every request with
`return 200 "ok"`. The client: `curl --tlsv1.2 --tls-max 1.2`, `--tlsv1.3`, and
`--tcp-fastopen` twice from the same client namespace -- the first SYN asks for a cookie, the
second carries the ClientHello -- plus a warm TFO fetch with TLS 1.2, and a 64 KB file over TLS
1.3, whose first 16 KB record costs a round trip the small answer does not.

curl's own clock (`-w '%{time_appconnect} %{time_starttransfer}'`) and its own words (`-v`:
"SSL connection using TLSv1.x") are checked beside what inspect reads from the packets: the TTFB
must agree with time_starttransfer within a few ms, the setup round trips with time_appconnect,
and the round trips with DESIGN.md §2's catalog. The openssl tests cover s_server; this is the
same question asked of the server most people actually run.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from handshake.analysis.report import ConnectionReport
from handshake.analysis.tcp.connection import RECORD_STALL_CAUSE
from handshake.kernel import SERVER_ADDR, Topology
from handshake.net.link import LinkConfig

from .real_programs import (
    NEEDS_CURL, NEEDS_NGINX, NEEDS_OPENSSL, CurlRun, curl_fetch, running_nginx, self_signed, spans_its_round_trips,
)

pytestmark = [NEEDS_NGINX, NEEDS_CURL, NEEDS_OPENSSL]

RTT_S = 0.1
PORT = 443
URL = f"https://{SERVER_ADDR}/"
TTFB_LAG_MS = RTT_S * 1000 / 2
"""How much later than inspect's TTFB curl's time_starttransfer may be: under half a round trip,
so a miscounted one (100 ms) cannot pass. inspect counts from the SYN leaving to the first
response byte entering the client's TUN; curl's clock starts earlier (its own set-up; with TFO
the SYN waits for the ClientHello it carries: 2-4 ms here) and stops later (reading and
decrypting the byte): 0.5-4 ms on a quiet machine, 10 ms with both cores oversubscribed, 17 ms
once in CI. Never earlier: both clocks are CLOCK_MONOTONIC, in µs."""

SERVERS = """\
    server {{
        listen {addr}:{port} ssl fastopen=256;
        ssl_certificate {work}/cert.pem;
        ssl_certificate_key {work}/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        location / {{ return 200 "ok"; }}
        location = /big.bin {{ root {work}; }}
    }}"""

CASES: list[tuple[str, list[str], str]] = [
    ("tls12", ["--tlsv1.2", "--tls-max", "1.2"], "/"),
    ("tls13", ["--tlsv1.3"], "/"),
    ("tfo-cold", ["--tcp-fastopen", "--tlsv1.3"], "/"),  # no cookie yet: the SYN asks for one
    ("tfo-tls13", ["--tcp-fastopen", "--tlsv1.3"], "/"),  # the cookie: the ClientHello rides in the SYN
    ("tfo-tls12", ["--tcp-fastopen", "--tlsv1.2", "--tls-max", "1.2"], "/"),
    ("tls13-64k", ["--tlsv1.3"], "/big.bin"),  # nginx writes 16 KB records (ssl_buffer_size)
]
BIG_BODY = bytes(range(256)) * 250
"""64,000 bytes: the first 16 KB record of the answer no longer fits the initial window."""
BODIES = {"/": b"ok", "/big.bin": BIG_BODY}


@pytest.fixture(scope="module")
def nginx_runs(tmp_path_factory) -> dict[str, CurlRun]:
    work: Path = tmp_path_factory.mktemp("nginx")
    self_signed(work)  # key.pem and cert.pem, which the config names
    (work / "big.bin").write_bytes(BIG_BODY)
    out: dict[str, CurlRun] = {}
    with Topology(LinkConfig.from_rtt(RTT_S), keep_packets=True, purpose="the nginx tests") as topo:
        with running_nginx(topo, work, SERVERS.format(work=work, addr=SERVER_ADDR, port=PORT), PORT):
            topo.shim.take_packets()
            for name, options, path in CASES:
                out[name] = curl_fetch(topo, work, name, options, URL + path.lstrip("/"))
    return out


def _checked(nginx_runs: dict[str, CurlRun], name: str, tls_version: str, path: str = "/") -> ConnectionReport:
    """The one connection's report, after what every fetch must show: curl got nginx's 200, both
    curl and inspect name the same TLS version, and inspect's TTFB and setup agree with curl's
    clock."""
    run = nginx_runs[name]
    report, ladder = run.with_keys.report, run.with_keys.ladder
    assert (run.http_code, run.body) == ("200", BODIES[path])
    assert run.tls_version == tls_version, run.verbose
    assert report.transport == "tcp" and report.server == f"{SERVER_ADDR}:{PORT}"
    assert report.tls_version == tls_version
    assert (report.resumed, report.early_data, report.hrr) == (False, "none", False)
    assert report.sni is None  # curl sends no SNI for an IP address (RFC 6066 §3)
    assert report.alpn == "http/1.1"  # curl offers h2 too; this nginx does not listen with http2
    assert -0.01 <= run.ttfb_ms - report.ttfb_ms <= TTFB_LAG_MS, (report.ttfb_ms, run.time_starttransfer_s, ladder)
    assert spans_its_round_trips(report.ttfb_ms, report.round_trips, RTT_S * 1000), ladder
    # curl's handshake is done when the request can leave: its setup, in round trips.
    assert round(run.time_appconnect_s / RTT_S) == report.setup_round_trips
    return report


def test_tls12_full_handshake(nginx_runs):
    report = _checked(nginx_runs, "tls12", "1.2")
    assert report.tfo == "none"
    assert (report.setup_round_trips, report.round_trips) == (3, 4)  # TCP 1 + TLS 2, then the request
    assert report.causes == []


def test_tls13_full_handshake(nginx_runs):
    report = _checked(nginx_runs, "tls13", "1.3")
    assert report.tfo == "none"
    assert (report.setup_round_trips, report.round_trips) == (2, 3)
    assert report.causes == []


def test_curl_asks_nginx_for_a_tfo_cookie_first(nginx_runs):
    report = _checked(nginx_runs, "tfo-cold", "1.3")
    assert report.tfo == "cookie-request"
    assert (report.setup_round_trips, report.round_trips) == (2, 3)  # tfo-tls13's 2, +1: no cookie yet
    assert any("TFO cookie request" in cause for cause in report.causes), report.causes


def test_curl_sends_its_client_hello_to_nginx_in_the_syn(nginx_runs):
    report = _checked(nginx_runs, "tfo-tls13", "1.3")
    assert report.tfo == "data"
    assert (report.setup_round_trips, report.round_trips) == (1, 2)  # TFO saves the TCP handshake's round trip
    assert report.causes == [] and "TFO cookie used" in report.notes


def test_tfo_with_tls12(nginx_runs):
    report = _checked(nginx_runs, "tfo-tls12", "1.2")
    assert report.tfo == "data"
    assert (report.setup_round_trips, report.round_trips) == (2, 3)
    assert report.causes == []


def test_a_first_record_over_the_initial_window_costs_a_round_trip_and_is_named(nginx_runs):
    """64 KB over TLS 1.3: nginx's first 16 KB record (12 segments) does not fit what the initial
    window has left after the tickets, and no byte of a record can be read before its last one.
    curl's own clock agrees: its first byte came a round trip later than the 3 of a small answer."""
    report = _checked(nginx_runs, "tls13-64k", "1.3", "/big.bin")
    assert (report.setup_round_trips, report.round_trips) == (2, 4)
    assert report.causes == [RECORD_STALL_CAUSE]
