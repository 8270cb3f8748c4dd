"""Page loads (issue 12, first part): the HTML, then every other object at once -- HTTP/2 and
HTTP/3 on one connection, a stream each; HTTP/1.1 over up to six connections -- checked against
tshark's decryption of the same trace, with ``page_ms`` read from the packets."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from handshake.analysis.quic.flows import quic_flows
from handshake.analysis.tcp.flows import tcp_flows
from handshake.cli import main
from handshake.errors import UsageError
from handshake.net.link import LinkConfig
from handshake.page import HTTP1_CONNECTIONS, Page, after_the_html, http1_shares, page_end, parse_page
from handshake.runner import RunOptions, row_from_run, run_sim, write_capture
from handshake.variants import CATALOG

TSHARK = shutil.which("tshark")
NEEDS_TSHARK = pytest.mark.skipif(TSHARK is None, reason="tshark is not installed (CI installs it)")


def _page_run(variant: str, page: str, http: str = "2", rtt_s: float = 0.1):
    run = run_sim(CATALOG[variant], LinkConfig.from_rtt(rtt_s), RunOptions(page=parse_page(page), http=http))
    assert run.error is None
    return run, row_from_run(run)


def _tshark(pcap, keylog, display_filter: str, *fields: str) -> list[list[str]]:
    command = [TSHARK, "-r", str(pcap), "-o", f"tls.keylog_file:{keylog}", "-Y", display_filter, "-T", "fields"]
    for field in fields:
        command += ["-e", field]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return [line.split("\t") for line in out.splitlines() if line]


# --- the page itself -------------------------------------------------------------------------------

@pytest.mark.parametrize("text, sizes", [("30x20KB", (20_000,) * 30), ("1×64", (64,)), (" 3 x 1KiB ", (1024,) * 3)])
def test_a_page_is_count_by_size(text, sizes):
    assert parse_page(text).sizes == sizes


@pytest.mark.parametrize("text, words", [("30", "expected COUNTxSIZE"), ("0x1KB", "1 to 1000 objects"),
                                         ("1001x1KB", "1 to 1000 objects"), ("3x20kq", "unknown unit")])
def test_a_bad_page_says_what_is_wrong(text, words):
    with pytest.raises(UsageError, match=words):
        parse_page(text)


@given(st.lists(st.integers(0, 10**6), min_size=0, max_size=200), st.integers(1, 12))
def test_http1_deals_every_object_once_over_at_most_its_connections(targets, connections):
    names = [str(t) for t in range(len(targets))]
    shares = http1_shares(names, connections)
    assert sorted(name for share in shares for name in share) == sorted(names)
    assert len(shares) == min(connections, len(names)) and all(shares)
    assert max(map(len, shares), default=0) - min(map(len, shares), default=0) <= 1


@given(st.integers(1, 40), st.booleans())
def test_after_the_html_every_other_object_is_asked_for_once(count, multiplexed):
    targets = Page((100,) * count).targets
    plan = after_the_html(targets, multiplexed)
    assert sorted(t for share in plan for t in share) == sorted(targets[1:])
    assert len(plan) == (1 if multiplexed else max(1, min(HTTP1_CONNECTIONS, count - 1)))
    assert all(plan[1:])  # a new connection has something to ask for


def test_the_html_comes_first():
    assert Page((30_000, 5, 6)).targets == ["/object/0?bytes=30000", "/object/1?bytes=5", "/object/2?bytes=6"]


# --- loaded in the sim, read back by tshark --------------------------------------------------------

@NEEDS_TSHARK
def test_http2_asks_for_every_object_once_on_one_connection(tmp_path):
    run, row = _page_run("tls13", "10x20KB")
    pcap, keylog = write_capture(run, tmp_path)
    gets = _tshark(pcap, keylog, "http2.headers.method == \"GET\"", "tcp.srcport", "http2.headers.path")
    paths = [path for _, row_paths in gets for path in row_paths.split(",")]
    assert sorted(paths) == sorted(parse_page("10x20KB").targets)
    assert len({port for port, _ in gets}) == 1
    answers = _tshark(pcap, keylog, "http2.headers.status == 200", "http2.headers.status")
    assert sum(len(a[0].split(",")) for a in answers) == 10
    assert row.http == "2" and row.page_ms is not None and row.page_ms > row.ttfb_ms


@NEEDS_TSHARK
def test_http1_spreads_the_objects_over_six_connections_each_asking_in_turn(tmp_path):
    run, row = _page_run("tls13", "10x20KB", http="1.1")
    pcap, keylog = write_capture(run, tmp_path)
    gets = _tshark(pcap, keylog, "http.request.method == \"GET\"", "tcp.srcport", "http.request.uri")
    assert sorted(uri for _, uri in gets) == sorted(parse_page("10x20KB").targets)
    per_connection = {}
    for port, uri in gets:
        per_connection.setdefault(port, []).append(uri)
    assert len(per_connection) == HTTP1_CONNECTIONS
    assert len(_tshark(pcap, keylog, "http.response.code == 200", "http.response.code")) == 10
    assert row.http == "1.1"


def test_http3_asks_on_a_stream_each():
    run, row = _page_run("quic", "10x20KB")
    (flow,) = quic_flows(run.trace.packets)
    assert row.http == "3" and row.page_ms is not None and row.page_ms > row.ttfb_ms
    assert page_end(flow) is not None


def test_the_page_is_over_when_the_last_byte_of_the_last_object_is_in():
    """page_ms is the server's last data segment before the client's FIN on any of the page's
    connections: no later server packet carries data before that FIN, and one does at that time."""
    run, row = _page_run("tls13", "10x20KB", http="1.1")
    flows = tcp_flows(run.trace.packets)
    start = flows[0].packets[0].time
    ends = [page_end(flow) for flow in flows]
    assert row.page_ms == pytest.approx((max(e for e in ends if e is not None) - start) * 1000)
    for flow in flows:
        fin = next(p.time for p in flow.packets if p.from_client and p.segment.fin)
        data = [p.time for p in flow.packets if not p.from_client and p.segment.payload and p.time <= fin]
        assert page_end(flow) == max(data)


def test_more_objects_take_longer_and_http2_beats_six_http1_handshakes():
    small = {http: _page_run("tls13", "10x20KB", http=http)[1].page_ms for http in ("2", "1.1")}
    large = {http: _page_run("tls13", "30x50KB", http=http)[1].page_ms for http in ("2", "1.1")}
    assert all(large[http] > small[http] for http in small)
    assert small["2"] < small["1.1"] and large["2"] < large["1.1"]


def test_warm_variants_warm_up_once_and_measure_the_first_page_connection():
    for name in ("tls13-0rtt", "tfo-tls13", "quic-0rtt"):
        run, row = _page_run(name, "5x1KB")
        expected = CATALOG[name].expected_round_trips
        assert (row.round_trips, row.warmup_connections) == (expected, 1), row.as_dict()
        assert row.page_ms is not None and row.page_ms >= row.ttfb_ms


# --- the command -----------------------------------------------------------------------------------

def test_a_page_row_shows_page_ms_and_a_plain_one_does_not(capsys):
    assert main(["compare", "--variants", "tls13", "--page", "3x1KB", "--format", "json"]) == 0
    assert '"page_ms"' in capsys.readouterr().out
    assert main(["compare", "--variants", "tls13", "--format", "json"]) == 0
    assert '"page_ms"' not in capsys.readouterr().out
    assert main(["compare", "--variants", "tls13", "--page", "3x1KB"]) == 0
    assert "page ms" in capsys.readouterr().out


@pytest.mark.parametrize("argv, words", [
    (["--page", "many"], "bad page 'many'"),
    (["--page", "3x1KB", "--http", "1.0"], "http '1.0' is not one of 1.1, 2"),
])
def test_bad_page_input_is_one_line_and_exit_2(capsys, argv, words):
    assert main(["compare", "--variants", "tls13", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0], err


def test_a_scenario_page_of_mixed_sizes(tmp_path, capsys):
    path = tmp_path / "page.toml"
    path.write_text('variants = ["tls13"]\n\n[page]\nsizes = ["30KB", "2KB", "90KB"]\n')
    assert main(["compare", "--scenario", str(path), "--format", "json"]) == 0
    assert '"page_ms"' in capsys.readouterr().out
    path.write_text('[page]\nsizes = ["30KB"]\nobjects = "3x1KB"\n')
    assert main(["compare", "--scenario", str(path)]) == 2
    assert "objects or sizes, not both" in capsys.readouterr().err


def test_a_quic_page_is_the_same_in_every_process():
    """Virtual time is deterministic across processes too: the certificates' sizes are fixed
    (full-length ECDSA signatures, fixed-length serials), so aioquic packs the same packets and
    the page ends at the same instant (it differed by up to 7 ms before). Over TCP the byte
    count may still differ by the length of the CertificateVerify OpenSSL signs, which TCP's
    timing does not feel."""
    command = [sys.executable, "-m", "handshake", "compare", "--rtt", "100ms", "--page", "10x20KB",
               "--variants", "quic,tls13", "--format", "json"]
    outputs = [json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
               for _ in range(2)]
    rows = [[(row["variant"], row["page_ms"], row["packets"]) + ((row["bytes_server"],) if row["variant"] == "quic" else ())
             for row in out["rows"]] for out in outputs]
    assert rows[0] == rows[1] and len(rows[0]) == 2
