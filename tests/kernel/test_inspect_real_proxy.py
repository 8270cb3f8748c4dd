"""`inspect` on HTTPS through a forward proxy, against the truth of real peers (issue 16's "Done
when"): curl → a proxy → nginx, through the delay shim (100 ms RTT), captured at the client's edge,
inspected with curl's key log and without.

The proxy (forward_proxy.py, asyncio) runs in the server namespace beside nginx: curl's
``--proxy http://…`` sends it an HTTP CONNECT, ``--socks5 …`` a SOCKS5 greeting and CONNECT
request; once it answered, curl runs TLS 1.2 or 1.3 with nginx inside the tunnel. The capture
holds one TCP connection, curl's to the proxy.

The truth each inspection is held to, from the protocols:
- round trips: TCP's 1, the proxy's (CONNECT: 1; SOCKS5: 2, the method negotiation and the
  CONNECT request), TLS's (1.2: 2, 1.3: 1), the request's 1. curl's own clock says the same
  (time_starttransfer spans that many round trips), checked first, so a failure below is
  inspect's.
- the row: the inner session's TLS version (curl asks for an address: no SNI), the prelude named
  ("http-connect", "socks5"), and its round trips as the first cause; no other cause.
- TTFB: curl's time_starttransfer within 3 % or 2 ms (real_programs.ttfb_agrees).
- server_ms: nginx answers at once (the proxy's hop to it is on the server's loopback).
- round_trips_basis: "decrypted" with the key log, "inferred" without.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from handshake.kernel import SERVER_ADDR, Topology
from handshake.net.link import LinkConfig

from .real_programs import (
    NEEDS_CURL, NEEDS_NGINX, NEEDS_OPENSSL, CurlRun, answers_at_once, curl_fetch, running, running_nginx, self_signed,
    spans_its_round_trips, ttfb_agrees,
)

pytestmark = [NEEDS_NGINX, NEEDS_CURL, NEEDS_OPENSSL]

RTT_MS = 100.0
PORT = 443
CONNECT_PORT = 3128
SOCKS_PORT = 1080

SERVERS = """\
    server {{
        listen {addr}:{port} ssl http2;
        ssl_certificate {work}/cert.pem;
        ssl_certificate_key {work}/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        location / {{ return 200 "ok"; }}
    }}"""

TLS = {"tls12": (["--tlsv1.2", "--tls-max", "1.2"], "1.2", 2), "tls13": (["--tlsv1.3"], "1.3", 1)}
"""name → (curl's options, the version, TLS's round trips before the request)."""
PROXIES = {
    "connect": (["--proxy", f"http://{SERVER_ADDR}:{CONNECT_PORT}"], "http-connect", 1,
                "through an HTTP proxy: CONNECT cost 1 round trip"),
    "socks5": (["--socks5", f"{SERVER_ADDR}:{SOCKS_PORT}"], "socks5", 2, "through a SOCKS5 proxy: 2 round trips"),
}
"""name → (curl's options, the prelude inspect names, its round trips, the cause it gives)."""
HTTP = {"http1": (["--http1.1"], "1.1"), "http2": (["--http2"], "2")}


@dataclass(frozen=True)
class Case:
    proxy: str
    tls: str
    http: str

    @property
    def name(self) -> str:
        return f"{self.proxy}-{self.tls}-{self.http}"

    @property
    def round_trips(self) -> int:
        """TCP, the proxy's, TLS's, the request's."""
        return 1 + PROXIES[self.proxy][2] + TLS[self.tls][2] + 1


CASES = [Case(proxy, tls, http) for proxy, http in (("connect", "http1"), ("socks5", "http2")) for tls in TLS]
KEYS = ["with-keys", "without-keys"]


@pytest.fixture(scope="module")
def curl_runs(tmp_path_factory) -> dict[str, CurlRun]:
    """Every case's fetch, through the two proxies and one nginx."""
    work: Path = tmp_path_factory.mktemp("curl-proxy-nginx")
    self_signed(work)
    servers = SERVERS.format(work=work, addr=SERVER_ADDR, port=PORT)
    script = str(Path(__file__).with_name("forward_proxy.py"))
    connect = [sys.executable, script, "connect", SERVER_ADDR, str(CONNECT_PORT)]
    socks = [sys.executable, script, "socks5", SERVER_ADDR, str(SOCKS_PORT)]
    out: dict[str, CurlRun] = {}
    with Topology(LinkConfig.from_rtt(RTT_MS / 1000), keep_packets=True, purpose="the proxy tests") as topo:
        with running(topo, connect, work / "connect.log", {("tcp", CONNECT_PORT)}, "the CONNECT proxy"), \
                running(topo, socks, work / "socks.log", {("tcp", SOCKS_PORT)}, "the SOCKS5 proxy"), \
                running_nginx(topo, work, servers, PORT):
            topo.shim.take_packets()
            for case in CASES:
                options = [*TLS[case.tls][0], *HTTP[case.http][0]]
                out[case.name] = curl_fetch(topo, work, case.name, options, f"https://{SERVER_ADDR}/",
                                            proxy=PROXIES[case.proxy][0])
    tunnels = {name: (work / f"{name}.log").read_text() for name in ("connect", "socks")}
    assert tunnels["connect"].count(f"CONNECT {SERVER_ADDR}:{PORT}") == 2, tunnels
    assert tunnels["socks"].count(f"SOCKS5 CONNECT {SERVER_ADDR}:{PORT}") == 2, tunnels
    return out


@pytest.mark.parametrize("keys", KEYS)
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_curl_through_a_proxy_to_nginx(curl_runs, case, keys):
    run = curl_runs[case.name]
    _, version, _ = TLS[case.tls]
    # What must hold whatever inspect says: curl got nginx's answer through the proxy, over the
    # version asked for, in the time the protocols' round trips take by its own clock.
    assert (run.http_code, run.body, run.tls_version, run.http_version) == ("200", b"ok", version,
                                                                            HTTP[case.http][1]), run.verbose
    assert spans_its_round_trips(run.ttfb_ms, case.round_trips, RTT_MS), (run.ttfb_ms, case)
    inspected = run.with_keys if keys == "with-keys" else run.without_keys
    r = inspected.report
    said = {
        "prelude": r.prelude,
        "tls_version": r.tls_version,
        "round_trips": r.round_trips,
        "setup_round_trips": r.setup_round_trips,
        "round_trips_basis": r.round_trips_basis,
        "ttfb agrees with curl's (3 % or 2 ms)": ttfb_agrees(r.ttfb_ms, run.ttfb_ms),
        "nginx answered at once": answers_at_once(r.server_ms, RTT_MS),
        "causes": r.causes,
    }
    truth = {
        "prelude": PROXIES[case.proxy][1],
        "tls_version": version,
        "round_trips": case.round_trips,
        "setup_round_trips": case.round_trips - 1,
        "round_trips_basis": "decrypted" if keys == "with-keys" else "inferred",
        "ttfb agrees with curl's (3 % or 2 ms)": True,
        "nginx answered at once": True,
        "causes": [PROXIES[case.proxy][3]],
    }
    assert said == truth, (f"{case.name}: inspect says {r.round_trips} round trips, TTFB {r.ttfb_ms} ms, "
                           f"server {r.server_ms} ms; curl's TTFB {run.ttfb_ms:.1f} ms\n{inspected.ladder}")
