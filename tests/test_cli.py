"""The command line: one table per run, JSON as DESIGN.md §3 says, one-line errors with exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from handshake.cli import main
from handshake.variants import CATALOG

ROW_KEYS = {
    "variant",
    "round_trips",
    "expected_round_trips",
    "setup_round_trips",
    "ttfb_ms",
    "bytes_client",
    "bytes_server",
    "packets",
    "causes",
}


def test_json_output_follows_the_contract(capsys):
    assert main(["compare", "--rtt", "100ms", "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["engine"] == "sim"
    assert out["network"]["rtt_ms"] == 100.0
    assert [row["variant"] for row in out["rows"]] == list(CATALOG)
    for row in out["rows"]:
        assert ROW_KEYS <= set(row)
        assert isinstance(row["causes"], list)


def test_table_names_every_variant_and_its_notes(capsys):
    assert main(["compare", "--rtt", "50ms", "--variants", "tls13-0rtt,tfo-tls13"]) == 0
    out = capsys.readouterr().out
    assert "tls13-0rtt" in out and "tfo-tls13" in out and "http " not in out
    assert "0-RTT accepted" in out and "TFO cookie used" in out


def test_csv_and_markdown(capsys):
    assert main(["compare", "--variants", "http", "--format", "csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("variant,") and lines[1].startswith("http,")
    assert main(["compare", "--variants", "http", "--format", "markdown"]) == 0
    assert capsys.readouterr().out.startswith("| variant")


@pytest.mark.parametrize(
    "argv, words",
    [
        (["compare", "--rtt", "abc"], "abc"),
        (["compare", "--rtt", "-5ms"], "negative"),
        (["compare", "--loss", "150%"], "150%"),
        (["compare", "--variants", "tls14"], "unknown variant 'tls14'"),
        (["compare", "--format", "xml"], "unknown format"),
        (["compare", "--rate", "fast"], "fast"),
        (["compare", "--bogus"], "--bogus"),
        (["compare", "--rtt", "10ms", "--delay", "5ms"], "not both"),
        (["frobnicate"], "frobnicate"),
        (["compare", "--http", "3"], "http '3' is not one of 1.1, 2"),
        (["compare", "--split-writes"], "give the body with post (--post SIZE)"),
        (["compare", "--post", "20KB"], "post 20KB is over the 16,384-byte limit"),
        (["compare", "--post", "0"], "post needs a body of 1 byte or more"),
        (["compare", "--post", "200B", "--page", "3x1KB"], "a page is fetched with GETs"),
        # aioquic writes at most 16 KB of handshake messages per epoch: refused before any run
        (["compare", "--key-type", "rsa2048", "--intermediates", "20"], "the QUIC server (aioquic) cannot send"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, argv, words):
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("handshake: error:")
    assert words in lines[0]


def test_a_chain_too_big_for_aioquic_still_runs_over_tcp(capsys):
    assert main(["compare", "--key-type", "rsa2048", "--intermediates", "20", "--variants", "tls13",
                 "--format", "csv"]) == 0
    header, line = capsys.readouterr().out.splitlines()[:2]
    row = dict(zip(header.split(","), line.split(",")))
    assert row["variant"] == "tls13" and int(row["round_trips"]) == 4  # 17 KB of certificates: the initial window stalls


def test_console_entry_point_runs_as_a_module(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "handshake", "compare", "--rtt", "-5ms"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_capture_writes_a_pcap_and_a_private_key_log(tmp_path, capsys):
    assert main(["compare", "--variants", "tls13,http", "--capture", str(tmp_path)]) == 0
    assert (tmp_path / "tls13.pcap").stat().st_size > 24
    keylog = tmp_path / "tls13.keylog"
    assert keylog.stat().st_mode & 0o777 == 0o600
    assert "SERVER_TRAFFIC_SECRET_0" in keylog.read_text()
