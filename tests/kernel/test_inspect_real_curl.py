"""`inspect` against the truth of real peers (issue 11's "Done when"): curl → nginx through the
delay shim (100 ms RTT), captured at the client's edge, inspected with curl's key log and without.

One nginx (`listen ... ssl http2`, TLS 1.2 and 1.3) answers `/` itself (`return 200 "ok"`) and
passes `/slow` to an origin on the server namespace's loopback that sleeps SLEEP_MS before it
answers (slow_origin.py). curl fetches `/` over TLS 1.2 and 1.3, each with `--http1.1` and
`--http2`, and `/slow` with HTTP/1.1 over TLS 1.3 and HTTP/2 over TLS 1.2.

The truth each inspection is held to:
- round trips: DESIGN.md §2's catalog (TLS 1.2: 4, TLS 1.3: 3), whatever the HTTP version, and
  with a slow origin not one more: its time is server time. curl's own clock says the same
  (time_starttransfer, less the origin's sleep, spans that many round trips), and the harness
  checks that first, so a failure below is inspect's.
- TTFB: curl's time_starttransfer within 3 % or 2 ms (whichever is larger; curl's clock holds
  the capture's interval, see real_programs.ttfb_agrees).
- server_ms: the origin's sleep within ±30 ms; where nginx answers itself, under half a round
  trip (real_programs.answers_at_once).
- round_trips_basis: "decrypted" with the key log, "inferred" without.
- causes: none where nothing but round trips and server time made the wait; in particular no
  "initial congestion window" for the slow origin, whose answer is 2 small records.

Each test compares one dict of what inspect says with one of the truth, so a failure shows every
field that is wrong at once, with inspect's and curl's figures in the message.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from handshake.kernel import SERVER_ADDR, Topology
from handshake.net.link import LinkConfig

from .real_programs import (
    NEEDS_CURL, NEEDS_NGINX, NEEDS_OPENSSL, CurlRun, Inspected, curl_fetch, running, running_nginx, self_signed,
    answers_at_once, spans_its_round_trips, ttfb_agrees,
)
from .slow_origin import BODY as ORIGIN_BODY

pytestmark = [NEEDS_NGINX, NEEDS_CURL, NEEDS_OPENSSL]

RTT_MS = 100.0
PORT = 443
ORIGIN_PORT = 8080
SLEEP_MS = 250.0
"""The origin's sleep: issue 11 asks for ≥ 200 ms, more than two round trips' worth."""
SERVER_MS_TOLERANCE = 30.0
"""Issue 11's bound on server_ms against the origin's sleep."""

SERVERS = """\
    server {{
        listen {addr}:{port} ssl http2;
        ssl_certificate {work}/cert.pem;
        ssl_certificate_key {work}/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        location / {{ return 200 "ok"; }}
        location = /slow {{ proxy_pass http://127.0.0.1:{origin_port}; }}
    }}"""

TLS = {"tls12": (["--tlsv1.2", "--tls-max", "1.2"], "1.2", 4), "tls13": (["--tlsv1.3"], "1.3", 3)}
"""name → (curl's options, the version, the catalog's round trips to the first response byte)."""
HTTP = {"http1": (["--http1.1"], "1.1", "http/1.1"), "http2": (["--http2"], "2", "h2")}
"""name → (curl's options, curl's %{http_version}, the ALPN nginx chooses)."""


@dataclass(frozen=True)
class Case:
    tls: str
    http: str
    slow: bool
    """Through nginx's proxy_pass to the origin that sleeps SLEEP_MS."""

    @property
    def name(self) -> str:
        return f"{self.tls}-{self.http}" + ("-proxy" if self.slow else "")

    @property
    def path(self) -> str:
        return "/slow" if self.slow else "/"

    @property
    def server_ms(self) -> float:
        return SLEEP_MS if self.slow else 0.0

    def server_time_agrees(self, server_ms: float | None) -> bool:
        """The origin's sleep within SERVER_MS_TOLERANCE; nginx answering itself, at once."""
        if not self.slow:
            return answers_at_once(server_ms, RTT_MS)
        return server_ms is not None and abs(server_ms - SLEEP_MS) <= SERVER_MS_TOLERANCE


DIRECT = [Case(tls, http, False) for tls in TLS for http in HTTP]
PROXIED = [Case("tls13", "http1", True), Case("tls12", "http2", True)]
KEYS = ["with-keys", "without-keys"]


@pytest.fixture(scope="module")
def curl_runs(tmp_path_factory) -> dict[str, CurlRun]:
    """Every case's fetch, through one nginx and one origin."""
    work: Path = tmp_path_factory.mktemp("curl-nginx")
    self_signed(work)
    servers = SERVERS.format(work=work, addr=SERVER_ADDR, port=PORT, origin_port=ORIGIN_PORT)
    origin = [sys.executable, str(Path(__file__).with_name("slow_origin.py")), "127.0.0.1", str(ORIGIN_PORT),
              str(SLEEP_MS)]
    out: dict[str, CurlRun] = {}
    with Topology(LinkConfig.from_rtt(RTT_MS / 1000), keep_packets=True, purpose="the real-peer tests") as topo:
        with running(topo, origin, work / "origin.log", {("tcp", ORIGIN_PORT)}, "the slow origin"), \
                running_nginx(topo, work, servers, PORT):
            topo.shim.take_packets()
            for case in DIRECT + PROXIED:
                tls_options, http_options = TLS[case.tls][0], HTTP[case.http][0]
                out[case.name] = curl_fetch(topo, work, case.name, [*tls_options, *http_options],
                                            f"https://{SERVER_ADDR}{case.path}")
    origin_requests = (work / "origin.log").read_text().count('"GET /slow')
    assert origin_requests == len(PROXIED), (work / "origin.log").read_text()
    return out


def _harness_checked(run: CurlRun, case: Case) -> int:
    """What must hold whatever inspect says: curl got the right answer, over the version and the
    protocol asked for, in the time the catalog's round trips (plus the origin's sleep) take by
    curl's own clock. Returns the true round trips."""
    _, tls_version, round_trips = TLS[case.tls]
    _, http_version, alpn = HTTP[case.http]
    assert (run.http_code, run.body) == ("200", ORIGIN_BODY if case.slow else b"ok"), run.verbose
    assert (run.tls_version, run.alpn, run.http_version) == (tls_version, alpn, http_version), run.verbose
    assert spans_its_round_trips(run.ttfb_ms - case.server_ms, round_trips, RTT_MS), (run.ttfb_ms, case)
    return round_trips


def _said(inspected: Inspected, run: CurlRun, case: Case) -> str:
    """inspect's figures beside curl's, for the message of a failed comparison."""
    r = inspected.report
    return (f"{case.name}: inspect says {r.round_trips} round trips ({r.round_trips_basis}), TTFB {r.ttfb_ms} ms, "
            f"server {r.server_ms} ms, causes {r.causes}; curl's TTFB {run.ttfb_ms:.1f} ms, origin's sleep "
            f"{case.server_ms:g} ms\n{inspected.ladder}")


def _compare(run: CurlRun, case: Case, keys: str) -> None:
    round_trips = _harness_checked(run, case)
    inspected = run.with_keys if keys == "with-keys" else run.without_keys
    r = inspected.report
    said = {
        "tls_version": r.tls_version,
        "round_trips": r.round_trips,
        "round_trips_basis": r.round_trips_basis,
        "ttfb agrees with curl's (3 % or 2 ms)": ttfb_agrees(r.ttfb_ms, run.ttfb_ms),
        "server_ms agrees with the origin's sleep": case.server_time_agrees(r.server_ms),
        "causes": r.causes,
    }
    truth = {
        "tls_version": TLS[case.tls][1],
        "round_trips": round_trips,
        "round_trips_basis": "decrypted" if keys == "with-keys" else "inferred",
        "ttfb agrees with curl's (3 % or 2 ms)": True,
        "server_ms agrees with the origin's sleep": True,
        "causes": [],
    }
    assert said == truth, _said(inspected, run, case)


@pytest.mark.parametrize("keys", KEYS)
@pytest.mark.parametrize("case", DIRECT, ids=lambda case: case.name)
def test_curl_to_nginx(curl_runs, case, keys):
    """TLS 1.2: 4 round trips, TLS 1.3: 3, over HTTP/1.1 and HTTP/2 alike: nginx's HTTP/2
    SETTINGS (sent as soon as its handshake ends) and TLS 1.3 tickets are not the response."""
    _compare(curl_runs[case.name], case, keys)


@pytest.mark.parametrize("keys", KEYS)
@pytest.mark.parametrize("case", PROXIED, ids=lambda case: case.name)
def test_curl_to_nginx_proxying_a_slow_origin(curl_runs, case, keys):
    """The origin's 250 ms are server time: the catalog's round trips, not one more, server_ms
    the sleep, and no congestion-window cause for a wait that was the server's."""
    _compare(curl_runs[case.name], case, keys)
