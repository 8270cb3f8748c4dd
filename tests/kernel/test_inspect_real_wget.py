"""Nagle's algorithm in a real client (issue 12): GNU wget writes a POST's header section and its
body with two write(2) calls and never sets TCP_NODELAY, so its body waits for the ACK of its
header section. wget → nginx (which passes the whole body on to an origin before it answers)
through the delay shim at 100 ms RTT, captured at the client's edge, inspected with wget's key
log (GnuTLS honours SSLKEYLOGFILE) and without.

The truth, as read from the ladders and checked against wget's writes (strace: wget 1.21 writes
the header section and the body apart; the captures show GnuTLS writing its TLS 1.3
ChangeCipherSpec, 6 bytes, apart from its Finished):
- plain HTTP: the body waits for nginx's ACK of the header section, sent at once (a fresh
  connection quick-ACKs): one round trip more than the catalog's 2;
- TLS 1.2: the body waits for the ACK of the header section, which nginx, with nothing to say,
  delays 40 ms and more: the catalog's 4 plus one, and the delay (the sim's tls12 with
  ``--post 200B --split-writes --http 1.1`` says the same: 5 round trips, 542 ms);
- TLS 1.3: the Finished, and the whole request behind it, waits for the ACK of the
  ChangeCipherSpec, which nginx delays: the catalog's 3 plus one, and the delay.
curl, which sends a small POST whole with TCP_NODELAY, is the control: the catalog's round trips
and no Nagle cause (strace: curl 7.88 writes it in one)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from handshake.kernel import CLIENT_ADDR, SERVER_ADDR, Topology
from handshake.net.link import LinkConfig

from .real_programs import (
    NEEDS_CURL, NEEDS_NGINX, NEEDS_OPENSSL, CURL, client_environment, inspected_both_ways, owner_only, private_file,
    running, running_nginx, self_signed, spans_its_round_trips, write_capture,
)
from .slow_origin import BODY as ORIGIN_BODY

WGET = shutil.which("wget")
pytestmark = [NEEDS_NGINX, NEEDS_CURL, NEEDS_OPENSSL,
              pytest.mark.skipif(WGET is None, reason="wget is not installed (CI installs it)")]

RTT_MS = 100.0
ORIGIN_PORT = 8080
UPLOAD = b"u" * 200
SERVERS = """\
    server {{
        listen {addr}:80;
        listen {addr}:443 ssl;
        ssl_certificate {work}/cert.pem;
        ssl_certificate_key {work}/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        location / {{ proxy_pass http://127.0.0.1:{origin_port}; }}
    }}"""
CASES = {"http": ("http", [], 2), "tls12": ("https", ["--ciphers=NORMAL:-VERS-ALL:+VERS-TLS1.2"], 4),
         "tls13": ("https", ["--secure-protocol=TLSv1_3"], 3)}
"""name → (scheme, wget's TLS options, the catalog's round trips). wget's ``--secure-protocol=TLSv1_2``
means TLS 1.2 or later; GnuTLS's priority string pins the version."""
WGET_PAYS = {"http": ("the request's second write", False), "tls12": ("the request's second write", True),
             "tls13": ("a client write", True)}
"""name → (what Nagle held, whether nginx delayed the ACK that released it); each costs the
catalog's round trips and one more."""
NAGLE = re.compile(r"^Nagle: (?:the request's second write|a client write) waited (\d+) ms for the ACK of "
                   r"(?:its first|the short segment before it)"
                   r"(?:, which the server delayed (\d+) ms|: a round trip)$")


def _post(topo: Topology, work: Path, name: str, argv: list[str]) -> Path:
    """Run a client in the client namespace with SSLKEYLOGFILE; its capture, as NAME.pcap."""
    keylog = private_file(work / f"{name}.keylog")
    client = topo.popen("client", argv, env=client_environment(keylog), stdin=subprocess.DEVNULL,
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, stderr = client.communicate(timeout=20)
    assert client.returncode == 0, stderr.decode(errors="replace")
    time.sleep(0.3)  # the FINs
    return write_capture(topo, work / f"{name}.pcap")


@pytest.fixture(scope="module")
def captures(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    work: Path = tmp_path_factory.mktemp("wget-nginx")
    self_signed(work)
    (work / "upload").write_bytes(UPLOAD)
    servers = SERVERS.format(work=work, addr=SERVER_ADDR, origin_port=ORIGIN_PORT)
    origin = [sys.executable, str(Path(__file__).with_name("slow_origin.py")), "127.0.0.1", str(ORIGIN_PORT), "0"]
    out = {}
    with Topology(LinkConfig.from_rtt(RTT_MS / 1000), keep_packets=True, purpose="the wget tests") as topo:
        with running(topo, origin, work / "origin.log", {("tcp", ORIGIN_PORT)}, "the origin"), \
                running_nginx(topo, work, servers, 443):
            topo.shim.take_packets()
            for name, (scheme, protocol, _) in CASES.items():
                url = f"{scheme}://{SERVER_ADDR}/"
                for client, argv in (
                    ("wget", [WGET, "-q", "-t", "1", "--no-proxy", "--no-check-certificate",
                              f"--bind-address={CLIENT_ADDR}", *protocol,
                              f"--post-file={work / 'upload'}", "-O", str(work / f"wget-{name}.body"), url]),
                    ("curl", [CURL, "-q", "-sS", "-k", "--noproxy", "*", "--interface", CLIENT_ADDR, "--http1.1",
                              *(["--tlsv1.2", "--tls-max", "1.2"] if name == "tls12" else []),
                              *(["--tlsv1.3"] if name == "tls13" else []),
                              "--data-binary", f"@{work / 'upload'}", "-o", str(work / f"curl-{name}.body"), url]),
                ):
                    out[f"{client}-{name}"] = (_post(topo, work, f"{client}-{name}", argv), work / f"{client}-{name}.keylog")
                    assert (work / f"{client}-{name}.body").read_bytes() == ORIGIN_BODY
    posts = (work / "origin.log").read_text().count('"POST / ')
    assert posts == 2 * len(CASES), (work / "origin.log").read_text()
    return out


def _nagle(causes: list[str]) -> re.Match | None:
    found = [m for m in map(NAGLE.match, causes) if m]
    return found[0] if found else None


@pytest.mark.parametrize("keys", ["with-keys", "without-keys"])
@pytest.mark.parametrize("name", CASES)
def test_wget_pays_nagle_a_round_trip_and_inspect_names_it(captures, name, keys):
    pcap, keylog = captures[f"wget-{name}"]
    with_keys, without_keys = inspected_both_ways(pcap, keylog)
    inspected = with_keys if keys == "with-keys" else without_keys
    report = inspected.report
    said = f"{report.round_trips} round trips, TTFB {report.ttfb_ms} ms, causes {report.causes}\n{inspected.ladder}"
    assert report.tls_version == {"http": None, "tls12": "1.2", "tls13": "1.3"}[name], said
    assert report.round_trips == CASES[name][2] + 1, said
    assert spans_its_round_trips(report.ttfb_ms, report.round_trips, RTT_MS), said
    cause = _nagle(report.causes)
    assert cause is not None, said
    waited_ms, delayed_ms = int(cause.group(1)), cause.group(2)
    held, delayed = WGET_PAYS[name]
    assert cause.group(0).startswith(f"Nagle: {held} "), said
    if delayed:
        assert delayed_ms is not None and 40 <= int(delayed_ms) < RTT_MS / 2, said  # nginx's delayed ACK
        assert waited_ms == pytest.approx(RTT_MS + int(delayed_ms), abs=3), said
    else:
        assert delayed_ms is None and waited_ms == pytest.approx(RTT_MS, abs=3), said
    assert owner_only(pcap) and (name == "http" or owner_only(keylog))


@pytest.mark.parametrize("name", CASES)
def test_curl_writes_its_post_at_once_and_pays_nothing(captures, name):
    pcap, keylog = captures[f"curl-{name}"]
    for inspected in inspected_both_ways(pcap, keylog):
        report = inspected.report
        assert report.round_trips == CASES[name][2] and _nagle(report.causes) is None, \
            f"{report.round_trips} {report.causes}\n{inspected.ladder}"
