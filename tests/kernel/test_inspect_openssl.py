"""`inspect` on programs nobody here wrote: OpenSSL's s_client and s_server talking through the
delay shim (100 ms RTT), captured at the client's edge, with s_client's own key log.

The server side: one `s_server -early_data` (and one without, whose tickets the client cannot
use), answering each "GET /" it prints with a fixed HTTP/1.0 response written to its stdin.
The client: `s_client -sess_out/-sess_in [-early_data FILE] -keylogfile`, TLS 1.3 and 1.2.

What OpenSSL itself says (its "Reused" / "Early data was accepted" lines) is checked beside
what inspect reads from the capture; the round trips are those of the packets. s_server reads
0-RTT data but writes only once the handshake is complete, so its 0-RTT answer still takes 3
round trips: the capture shows the request leaving in round 1 and the answer after the client's
Finished. That is the kind of fact this command exists to show.
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from handshake.kernel import SERVER_ADDR, Topology
from handshake.net.link import LinkConfig

from .real_programs import OPENSSL, answer_each_get, inspect_what_crossed, self_signed, spans_its_round_trips

pytestmark = pytest.mark.skipif(OPENSSL is None, reason="openssl (the command) is not installed")

REQUEST = b"GET / HTTP/1.0\r\nHost: server.test\r\n\r\n"
EARLY_PORT, PLAIN_PORT = 4433, 4434
RTT_MS = 100.0


def _read_until(process: subprocess.Popen, marker: bytes, timeout_s: float) -> bytes:
    out = b""
    deadline = time.monotonic() + timeout_s
    while marker not in out and time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], 0.1)
        if ready:
            chunk = os.read(process.stdout.fileno(), 65536)
            if not chunk:
                break
            out += chunk
    return out


@pytest.fixture(scope="module")
def openssl_runs(tmp_path_factory):
    """name → (inspected connections, what s_client printed)."""
    work: Path = tmp_path_factory.mktemp("openssl")
    key, cert = self_signed(work)
    (work / "request.txt").write_bytes(REQUEST)
    cases = [
        ("tls13", EARLY_PORT, ["-sess_out", "s1.pem"]),
        ("tls13-resume", EARLY_PORT, ["-sess_in", "s1.pem", "-sess_out", "s2.pem"]),
        ("tls13-0rtt", EARLY_PORT, ["-sess_in", "s2.pem", "-early_data", "request.txt", "-sess_out", "s3.pem"]),
        ("tls13-0rtt-rejected", PLAIN_PORT, ["-sess_in", "s3.pem", "-early_data", "request.txt"]),
        ("tls12", EARLY_PORT, ["-tls1_2", "-sess_out", "t1.pem"]),
        ("tls12-resume", EARLY_PORT, ["-tls1_2", "-sess_in", "t1.pem"]),
    ]
    out = {}
    with Topology(LinkConfig.from_rtt(RTT_MS / 1000), keep_packets=True, purpose="the openssl tests") as topo:
        for port, extra in ((EARLY_PORT, ["-early_data"]), (PLAIN_PORT, [])):
            server = topo.popen("server", [OPENSSL, "s_server", "-accept", f"{SERVER_ADDR}:{port}", "-cert", str(cert),
                                           "-key", str(key), "-num_tickets", "1", *extra],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            threading.Thread(target=answer_each_get, args=(server,), daemon=True).start()
        deadline = time.monotonic() + 5
        while {("tcp", EARLY_PORT), ("tcp", PLAIN_PORT)} - topo.listening("server"):
            assert time.monotonic() < deadline, "s_server did not start listening"
            time.sleep(0.01)
        topo.shim.take_packets()
        for name, port, extra in cases:
            keylog = work / f"{name}.keylog"
            client = topo.popen("client", [OPENSSL, "s_client", "-connect", f"{SERVER_ADDR}:{port}", "-servername",
                                           "server.test", "-keylogfile", str(keylog), *extra],
                                cwd=work, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            if "-early_data" not in extra or name.endswith("rejected"):
                # s_client sends stdin once the handshake is done: the request, or (early data
                # refused: OpenSSL does not resend it) the request again.
                client.stdin.write(REQUEST)
                client.stdin.flush()
            printed = _read_until(client, b"\r\n\r\nok", 10)
            time.sleep(0.25)  # the ticket's ACK, and anything else in flight
            client.stdin.close()  # s_client sends close_notify and exits
            client.wait(timeout=10)
            printed += client.stdout.read()
            time.sleep(0.3)
            inspection = inspect_what_crossed(topo, work / f"{name}.pcap", keylog)
            out[name] = (inspection.connections, printed.decode(errors="replace"))
    return out


def _one(openssl_runs, name):
    connections, printed = openssl_runs[name]
    assert "HTTP/1.0 200 OK" in printed, printed
    (conn,) = connections
    return conn.report, printed


def test_tls13_full_handshake(openssl_runs):
    report, printed = _one(openssl_runs, "tls13")
    assert "New, TLSv1.3" in printed
    assert (report.tls_version, report.resumed, report.early_data, report.tfo) == ("1.3", False, "none", "none")
    assert (report.setup_round_trips, report.round_trips) == (2, 3) and report.causes == []
    assert report.sni == "server.test" and spans_its_round_trips(report.ttfb_ms, report.round_trips, RTT_MS)


def test_tls13_resumption(openssl_runs):
    report, printed = _one(openssl_runs, "tls13-resume")
    assert "Reused, TLSv1.3" in printed
    assert (report.tls_version, report.resumed, report.early_data) == ("1.3", True, "none")
    assert (report.setup_round_trips, report.round_trips) == (2, 3)


def test_tls13_early_data_accepted_but_answered_after_the_handshake(openssl_runs):
    report, printed = _one(openssl_runs, "tls13-0rtt")
    assert "Early data was accepted" in printed
    assert (report.tls_version, report.resumed, report.early_data) == ("1.3", True, "accepted")
    assert report.setup_round_trips == 1  # the request left with the ClientHello ...
    assert report.round_trips == 3  # ... but s_server answers only after the client's Finished
    assert report.causes == []


def test_tls13_early_data_rejected_by_a_server_that_cannot_resume(openssl_runs):
    report, printed = _one(openssl_runs, "tls13-0rtt-rejected")
    assert "Early data was rejected" in printed
    assert (report.tls_version, report.resumed, report.early_data) == ("1.3", False, "rejected")
    assert any("0-RTT rejected" in cause for cause in report.causes)
    assert (report.setup_round_trips, report.round_trips) == (2, 3)


def test_tls12_full_and_resumed(openssl_runs):
    full, printed = _one(openssl_runs, "tls12")
    assert "New, TLSv1.2" in printed
    assert (full.tls_version, full.resumed, full.setup_round_trips, full.round_trips) == ("1.2", False, 3, 4)
    resumed, printed = _one(openssl_runs, "tls12-resume")
    assert "Reused, TLSv1.2" in printed
    assert (resumed.tls_version, resumed.resumed, resumed.setup_round_trips, resumed.round_trips) == ("1.2", True, 2, 3)


# --- TCP Fast Open: curl against s_server ------------------------------------------------------

CURL = shutil.which("curl")
TFO_PORT = 4435
TFO_ALL_LISTENERS = 0x403
"""net.ipv4.tcp_fastopen: client (1) and server (2) support, and 0x400: Fast Open on every
listener without the TCP_FASTOPEN socket option (Linux ip-sysctl.rst), because OpenSSL 3.0's
s_server has no -tfo flag."""


@pytest.fixture(scope="module")
def curl_runs(tmp_path_factory):
    """Two `curl --tcp-fastopen` fetches from one client namespace: the first asks for a cookie,
    the second sends its ClientHello in the SYN. name → (connections, what curl printed)."""
    if CURL is None:
        pytest.skip("curl is not installed")
    work: Path = tmp_path_factory.mktemp("curl")
    key, cert = self_signed(work)
    out = {}
    with Topology(LinkConfig.from_rtt(RTT_MS / 1000), keep_packets=True, tcp_fastopen=TFO_ALL_LISTENERS,
                  purpose="the curl tests") as topo:
        server = topo.popen("server", [OPENSSL, "s_server", "-accept", f"{SERVER_ADDR}:{TFO_PORT}", "-cert", str(cert),
                                       "-key", str(key), "-num_tickets", "1"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        threading.Thread(target=answer_each_get, args=(server,), daemon=True).start()
        deadline = time.monotonic() + 5
        while ("tcp", TFO_PORT) not in topo.listening("server"):
            assert time.monotonic() < deadline, "s_server did not start listening"
            time.sleep(0.01)
        topo.shim.take_packets()
        for name in ("cold", "warm"):
            keylog = work / f"{name}.keylog"
            env = dict(os.environ, SSLKEYLOGFILE=str(keylog))
            client = topo.popen("client", [CURL, "-sS", "-k", "--tcp-fastopen", "--tlsv1.3", "-o", "/dev/null", "-w",
                                           "%{http_code}", f"https://{SERVER_ADDR}:{TFO_PORT}/"],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            printed = client.communicate(timeout=20)[0].decode(errors="replace")
            time.sleep(0.3)
            out[name] = (inspect_what_crossed(topo, work / f"{name}.pcap", keylog).connections, printed)
    return out


def test_curl_asks_for_a_tfo_cookie_first(curl_runs):
    (conn,), printed = curl_runs["cold"]
    report = conn.report
    assert printed == "200"
    assert (report.tls_version, report.tfo, report.resumed) == ("1.3", "cookie-request", False)
    assert (report.setup_round_trips, report.round_trips) == (2, 3)
    assert any("TFO cookie request" in cause for cause in report.causes)


def test_curl_sends_its_client_hello_in_the_syn_with_the_cookie(curl_runs):
    (conn,), printed = curl_runs["warm"]
    report = conn.report
    assert printed == "200"
    assert (report.tls_version, report.tfo) == ("1.3", "data")
    assert (report.setup_round_trips, report.round_trips) == (1, 2)  # TFO saves the handshake's round trip
    assert report.causes == [] and "TFO cookie used" in report.notes
    assert spans_its_round_trips(report.ttfb_ms, report.round_trips, RTT_MS)
