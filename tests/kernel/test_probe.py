"""`handshake probe` against real servers in the server namespace, never beyond it (issue 14).

One topology at 50 ms RTT; in its server namespace:
- nginx on :443 with everything on (TLS 1.2/1.3, tickets, `ssl_early_data on`, `fastopen`, HTTP/2,
  `Alt-Svc: h3=":443"`) and qh3 -- a second QUIC stack -- on UDP :443 with a ticket store (0-RTT);
- nginx on :8443 with early data and TFO off and no HTTP/3 advertised;
- nginx on :9443 with tickets off, advertising HTTP/3 on UDP :9443, where qh3 keeps no ticket store;
- openssl s_server on :4433 with `-early_data`, and on :4434 without (each GET it prints is
  answered through its stdin).

The probe runs in the client namespace as a user would run it (a process, `--format json`),
bound to the client's address (`--interface`), sending only to 198.19.0.1 (`--resolve`). Its rows
are held against what each server was configured to do, against `inspect` of the capture it
wrote, against `compare` at the same RTT, and, run without CAP_NET_RAW, against itself.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from handshake.analysis.capture import inspect_capture
from handshake.analysis.keylog import parse_keylog
from handshake.endpoints.certs import make_chain
from handshake.kernel import CLIENT_ADDR, SERVER_ADDR, Topology
from handshake.net.link import LinkConfig
from handshake.runner import compare
from handshake.variants import CATALOG

from .real_programs import (NEEDS_NGINX, NEEDS_OPENSSL, NGINX, NGINX_CONF, owner_only, running, running_nginx,
                            running_s_server, spans_its_round_trips)

pytestmark = [NEEDS_NGINX, NEEDS_OPENSSL]

RTT_S = 0.05
RTT_MS = RTT_S * 1000
NAME = "server.test"
QH3_ORIGIN = Path(__file__).with_name("qh3_origin.py")

NGINX_SERVER = """\
    server {{
        listen {addr}:{port} ssl http2{fastopen};
        server_name {name};
        ssl_certificate {files.chain};
        ssl_certificate_key {files.key};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_early_data {early};
        ssl_session_tickets {tickets};
        location / {{ {alt_svc}return 200 "hello\\n"; }}
    }}
"""


def nginx_server(files, port: int, *, early: bool = True, tfo: bool = True, tickets: bool = True,
                 h3_port: int | None = None) -> str:
    return NGINX_SERVER.format(
        addr=SERVER_ADDR, port=port, name=NAME, files=files, fastopen=" fastopen=256" if tfo else "",
        early="on" if early else "off", tickets="on" if tickets else "off",
        alt_svc=f"add_header Alt-Svc 'h3=\":{h3_port}\"; ma=60'; " if h3_port else "",
    )


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """The topology with every server running; yields (topology, work directory, CA file)."""
    pytest.importorskip("qh3")
    work = tmp_path_factory.mktemp("probe")
    files = make_chain(server_name=NAME).write(work)
    blocks = "".join([nginx_server(files, 443, h3_port=443), nginx_server(files, 8443, early=False, tfo=False),
                      nginx_server(files, 9443, tickets=False, h3_port=9443)])
    with Topology(LinkConfig.from_rtt(RTT_S), purpose="probe tests") as topo:
        (work / "nginx").mkdir()
        with running_nginx(topo, work / "nginx", blocks, 443), \
                running(topo, [sys.executable, str(QH3_ORIGIN), SERVER_ADDR, "443", str(files.chain), str(files.key)],
                        work / "qh3.out", {("udp", 443)}, "qh3"), \
                running(topo, [sys.executable, str(QH3_ORIGIN), SERVER_ADDR, "9443", str(files.chain),
                               str(files.key), "--no-tickets"], work / "qh3-no-tickets.out", {("udp", 9443)}, "qh3"), \
                running_s_server(topo, 4433, files.chain, files.key, ["-early_data"]), \
                running_s_server(topo, 4434, files.chain, files.key, []):
            warm_up((topo, work, files.ca))
            yield topo, work, files.ca


def warm_up(servers) -> None:
    """One connection to each server process first: a fresh one spends its first handshakes
    loading and initialising (nginx 14-17 ms, qh3 50 ms here), which a server in service has
    long done; the tests measure the path, not a cold start."""
    for port, variants in ((443, "tls13,quic"), (9443, "quic"), (4433, "tls13"), (4434, "tls13")):
        probe(servers, port, "--variants", variants, *(["--quic"] if "quic" in variants else []), name="warm-up",
              capture=False)


def probe(servers, port: int, *extra: str, name: str, capture: bool = True, privileged: bool = True,
          status: int = 0) -> dict:
    """Run `handshake probe` in the client namespace; its JSON document, with "pcap"/"keylog" paths.
    ``status``: the exit status expected (1 when no variant completes)."""
    topo, work, ca = servers
    topo.flush_tcp_metrics("client")  # every probe starts with no TFO cookie, as a first visit does
    pcap, keylog = work / f"{name}.pcap", work / f"{name}.keylog"
    argv = [sys.executable, "-m", "handshake", "probe", f"https://{NAME}:{port}/",
            "--resolve", f"{NAME}:{port}:{SERVER_ADDR}", "--interface", CLIENT_ADDR, "--cacert", str(ca),
            "--format", "json", "--keylog", str(keylog), *extra]
    if capture:
        argv += ["--capture", str(pcap)]
    if not privileged:  # root without a single capability: no CAP_NET_RAW, so no packet socket
        argv = [shutil.which("setpriv"), "--bounding-set=-all", "--inh-caps=-all", "--", *argv]
    process = topo.popen("client", argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == status, stderr.decode() + stdout.decode()
    document = json.loads(stdout)
    document["pcap"], document["keylog"] = pcap, keylog
    return document


def rows(document: dict) -> dict[str, dict]:
    return {row["variant"]: row for row in document["rows"]}


@pytest.fixture(scope="module")
def everything_on(servers) -> dict:
    return probe(servers, 443, name="all-on")


def test_every_variant_is_supported_and_counted_from_the_packets(everything_on):
    document = everything_on
    assert document["basis"] == "counted"
    assert abs(document["rtt_ms"] - RTT_MS) < 2
    assert document["http3"] == {"port": 443, "source": "alt-svc"}
    for name, row in rows(document).items():
        assert row["supported"], (name, row["reasons"], row["error"])
        assert row["basis"] == "counted"
        assert row["http_version"] == ("3" if row["transport"] == "quic" else "2"), row  # nginx chose h2 by ALPN
        assert spans_its_round_trips(row["ttfb_ms"], row["round_trips"], RTT_MS), row
        assert row["server_ms"] is not None and row["server_ms"] < RTT_MS / 2, row
    seen = rows(document)
    assert seen["tls13-0rtt"]["early_data"] == "accepted" and seen["tls13-0rtt"]["resumed"]
    assert seen["quic-0rtt"]["early_data"] == "accepted"
    assert {seen[n]["tfo"] for n in ("tfo-tls12", "tfo-tls13", "tfo-tls13-0rtt")} == {"data"}
    assert document["summary"][0].startswith("fastest here: ")
    assert seen["tfo-tls13-0rtt"]["round_trips"] == 1 and "saves 3 round trips" in document["summary"][0]


def test_the_counts_are_those_of_compare_at_the_same_rtt(everything_on):
    simulated = {row.variant: row for row in compare([CATALOG[n] for n in rows(everything_on)],
                                                    LinkConfig.from_rtt(RTT_S))}
    for name, row in rows(everything_on).items():
        assert (row["round_trips"], row["setup_round_trips"]) == (
            simulated[name].round_trips, simulated[name].setup_round_trips), name


def test_the_counts_are_those_of_inspect_on_the_capture_it_wrote(everything_on):
    pcap, keylog = everything_on["pcap"], everything_on["keylog"]
    assert owner_only(pcap) and owner_only(keylog)
    inspection = inspect_capture(pcap, parse_keylog(keylog.read_text()))
    by_port = {(c.report.transport, int(c.report.client.rpartition(":")[2])): c.report for c in inspection.connections}
    # Warm variants make two connections, the others one.
    assert len(inspection.connections) == sum(1 + CATALOG[n].warm for n in rows(everything_on))
    for name, row in rows(everything_on).items():
        report = by_port[(row["transport"], row["measured_port"])]
        assert (report.round_trips, report.ttfb_ms, report.early_data, report.resumed) == (
            row["round_trips"], row["ttfb_ms"], row["early_data"], row["resumed"]), name


def test_a_server_without_early_data_tfo_or_http3_is_told_what_to_enable(servers):
    document = probe(servers, 8443, name="features-off")
    seen = rows(document)
    assert seen["tls13-resume"]["supported"] and seen["tls13-resume"]["resumed"]
    assert seen["tls13-0rtt"]["refused"] == ["0-rtt"]
    assert "allows no early data" in seen["tls13-0rtt"]["reasons"][0]
    for name in ("tfo-tls12", "tfo-tls13"):
        assert seen[name]["refused"] == ["tfo"] and "granted none" in seen[name]["reasons"][0], seen[name]
        assert seen[name]["tfo"] == "cookie-request"
    assert sorted(seen["tfo-tls13-0rtt"]["refused"]) == ["0-rtt", "tfo"]
    assert seen["quic"]["refused"] == ["http3"] and "no HTTP/3 advertised" in seen["quic"]["reasons"][0]
    # The fastest it allows takes 3 round trips (TLS 1.3, or resumed TLS 1.2); 0-RTT would save one.
    assert ", 3 round trips, TTFB" in document["summary"][0]
    advice = "\n".join(document["summary"][1:])
    assert "accept TLS 1.3 early data (0-RTT): −1 round trip expected" in advice
    assert "accept TLS 1.3 early data (0-RTT) and enable TCP Fast Open: −2 round trips expected" in advice
    assert "offer HTTP/3 (Alt-Svc or an HTTPS record with h3)" in advice


def test_a_server_without_tickets_resumes_nothing(servers):
    document = probe(servers, 9443, "--variants", "tls12-resume,tls13-resume,quic,quic-0rtt", name="tickets-off")
    seen = rows(document)
    for name in ("tls12-resume", "tls13-resume"):
        assert seen[name]["refused"] == ["resumption"] and seen[name]["resumed"] is False, seen[name]
    assert seen["quic"]["supported"] and document["http3"] == {"port": 9443, "source": "alt-svc"}
    # qh3 with no ticket store issues no ticket at all: nothing to send 0-RTT with.
    assert seen["quic-0rtt"]["refused"] == ["quic-0rtt"] and seen["quic-0rtt"]["early_data"] == "none"
    assert seen["quic-0rtt"]["reasons"] == ["QUIC 0-RTT: the server issued no ticket"]


@pytest.mark.parametrize("port, early", [(4433, True), (4434, False)])
def test_openssl_s_server_with_and_without_early_data(servers, port, early):
    document = probe(servers, port, "--variants", "tls12,tls13,tls13-0rtt", name=f"s_server-{port}")
    seen = rows(document)
    assert seen["tls12"]["supported"] and seen["tls12"]["round_trips"] == 4
    assert seen["tls13"]["http_version"] == "1.1"  # s_server selects no ALPN
    if early:
        # Accepted, but s_server writes only once the handshake is complete (no 0.5-RTT data), so
        # the early request saves nothing: 3 round trips, as a full TLS 1.3 handshake.
        assert seen["tls13-0rtt"]["supported"] and seen["tls13-0rtt"]["early_data"] == "accepted", json.dumps(seen["tls13-0rtt"])
        assert seen["tls13-0rtt"]["round_trips"] == 3
    else:
        assert seen["tls13-0rtt"]["refused"] == ["0-rtt"] and seen["tls13-0rtt"]["round_trips"] == 3


def test_without_cap_net_raw_it_infers_the_same_counts(servers, everything_on):
    document = probe(servers, 443, name="unprivileged", capture=False, privileged=False)
    assert document["basis"] == "inferred" and "CAP_NET_RAW" in document["basis_note"]
    assert abs(document["rtt_ms"] - RTT_MS) < 2
    counted = rows(everything_on)
    for name, row in rows(document).items():
        assert row["supported"] and row["basis"] == "inferred", row
        assert (row["round_trips"], row["setup_round_trips"]) == (
            counted[name]["round_trips"], counted[name]["setup_round_trips"]), name
        assert spans_its_round_trips(row["ttfb_ms"], row["round_trips"], RTT_MS), row  # the client's own clock


def test_through_handshake_shim(tmp_path):
    """As the README runs it: `handshake shim --server 'nginx ...' -- handshake probe ...`."""
    files = make_chain(server_name=NAME).write(tmp_path)
    (tmp_path / "temp").mkdir()
    conf = tmp_path / "nginx.conf"
    conf.write_text(NGINX_CONF.format(work=tmp_path, servers=nginx_server(files, 443)))
    result = subprocess.run(
        [sys.executable, "-m", "handshake", "shim", "--rtt", "50ms",
         "--server", f"exec {NGINX} -p {tmp_path} -c {conf} -e {tmp_path}/error.log", "--",
         sys.executable, "-m", "handshake", "probe", f"https://{NAME}/", "--resolve", f"{NAME}:443:{SERVER_ADDR}",
         "--interface", CLIENT_ADDR, "--cacert", str(files.ca), "--variants", "tls13,tfo-tls13", "--format", "json"],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    seen = rows(json.loads(result.stdout))
    assert (seen["tls13"]["round_trips"], seen["tfo-tls13"]["round_trips"]) == (3, 2)


def test_a_refused_port_and_an_unverified_certificate_are_one_line_each_naming_the_variant(servers):
    topo, work, _ = servers
    for port, extra, expected in ((7, [], "Connection refused"),
                                  (443, ["--cacert", str(work / "nginx" / "nginx.conf")], "--cacert"),
                                  (443, [], "certificate verify failed")):
        process = topo.popen("client", [
            sys.executable, "-m", "handshake", "probe", f"https://{NAME}:{port}/", "--resolve",
            f"{NAME}:{port}:{SERVER_ADDR}", "--interface", CLIENT_ADDR, "--variants", "tls12,tls13-0rtt,tfo-tls13",
            "--format", "json", *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        stdout, stderr = process.communicate(timeout=60)
        if expected == "--cacert":  # a file with no certificate in it: the user's error, before any connection
            assert process.returncode == 2 and expected in stderr and stderr.count("\n") == 1, stderr
            continue
        assert process.returncode == 1, stderr  # nothing completed
        for row in json.loads(stdout)["rows"]:
            assert not row["supported"] and expected in row["error"] and "\n" not in row["error"], row


def test_quic_tried_where_nothing_answers_is_refused_once_not_waited_for_twice(servers):
    document = probe(servers, 8443, "--quic", "--variants", "quic,quic-0rtt", name="quic-silent", status=1)
    assert document["http3"] == {"port": 8443, "source": "--quic"}
    seen = rows(document)
    for name in ("quic", "quic-0rtt"):
        assert seen[name]["refused"] == ["http3"], seen[name]
        assert seen[name]["reasons"] == ["no HTTP/3: nothing answered on UDP port 8443 in 3 s"]
    assert seen["quic-0rtt"]["measured_port"] is None  # the silent port was not tried again
