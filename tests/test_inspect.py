"""`handshake inspect`: the capture `compare` wrote for a run says what the run's row says, and
every bad input is one line and exit status 2."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys

import pytest

from handshake.cli import main
from handshake.net.link import LinkConfig
from handshake.runner import RunOptions, row_from_run
from handshake.scenario import scenario_from_mapping
from handshake.variants import CATALOG

from .capture_files import pcap_bytes, raw_packets, written_run

PARITY_KEYS = ("round_trips", "setup_round_trips", "ttfb_ms", "bytes_client", "bytes_server", "packets", "causes",
               "tls_version", "resumed", "early_data", "tfo")
CONN_KEYS = {"transport", "client", "server", "tls_version", "resumed", "early_data", "tfo", "round_trips", "ttfb_ms",
             "causes", "sni", "alpn", "cipher", "hrr", "quic_version", "retry", "setup_round_trips", "bytes_client",
             "bytes_server", "packets", "notes"}
INTENT_CAUSES = ("no session resumed: a full handshake", "no ticket with early data: the request waited for the handshake")
"""Causes a row adds from what its variant meant to do: a capture alone cannot know them."""


def inspect_json(capsys, *argv) -> dict:
    assert main(["inspect", *map(str, argv), "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


def assert_inspect_matches_compare(capsys, directory, variant, link=None, options=None):
    written = written_run(directory, variant, link, options)
    row = row_from_run(written.run).as_dict()
    out = inspect_json(capsys, written.pcap, "--keylog", written.keylog)
    measured = out["connections"][-1]
    assert CONN_KEYS <= set(measured)
    expected = {key: row[key] for key in PARITY_KEYS}
    expected["causes"] = [c for c in row["causes"] if c not in INTENT_CAUSES]
    assert {key: measured[key] for key in PARITY_KEYS} == expected
    assert len(out["connections"]) == 1 + row["warmup_connections"]
    assert measured["transport"] == row["transport"]
    return measured


@pytest.mark.parametrize("variant", list(CATALOG))
def test_inspect_reports_the_row_compare_printed_for_the_same_run(tmp_path, capsys, variant):
    conn = assert_inspect_matches_compare(capsys, tmp_path, variant)
    assert conn["causes"] == []
    assert conn["round_trips"] == CATALOG[variant].expected_round_trips


def _link(**network) -> LinkConfig:
    return scenario_from_mapping({"network": network}, "test", None).link


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("variant", ["tls12", "tls13-0rtt", "tfo-tls13-0rtt", "quic", "quic-0rtt"])
def test_parity_holds_under_jitter_and_loss_to_the_microsecond(tmp_path, capsys, variant, seed):
    # The pcap keeps microseconds; the analysis counts on that grid, so TTFB and the delays
    # quoted in retransmission causes agree to the last digit.
    assert_inspect_matches_compare(capsys, tmp_path, variant, _link(rtt="80ms", jitter="7ms", loss="8%", seed=seed))


@pytest.mark.parametrize(
    "variant, options, cause",
    [
        ("tls13", RunOptions(hrr=True), "HelloRetryRequest"),
        ("quic", RunOptions(retry=True), "Retry"),
        ("tls13-0rtt", RunOptions(accept_early_data=False), "0-RTT rejected"),
        ("quic-0rtt", RunOptions(accept_early_data=False), "0-RTT rejected"),
        ("tls13", RunOptions(key_type="rsa2048", intermediates=16), "initial congestion window"),
        ("quic", RunOptions(key_type="rsa2048", intermediates=4), "anti-amplification"),
        ("tfo-tls13", RunOptions(cold=True), "TFO cookie request"),
        ("tls12", RunOptions(drops=("first-syn",)), "SYN retransmitted"),
        ("quic", RunOptions(drops=("client-initial",)), "client Initial retransmitted"),
    ],
)
def test_parity_holds_for_every_cause(tmp_path, capsys, variant, options, cause):
    conn = assert_inspect_matches_compare(capsys, tmp_path, variant, None, options)
    assert any(cause in c for c in conn["causes"])


def test_connections_come_in_the_order_they_started_with_the_facts_of_each(tmp_path, capsys):
    written = written_run(tmp_path, "tls13-0rtt")
    warm, measured = inspect_json(capsys, written.pcap, "--keylog", written.keylog)["connections"]
    assert warm["start_time"] < measured["start_time"]
    assert (warm["resumed"], warm["early_data"]) == (False, "none")
    assert (measured["resumed"], measured["early_data"]) == (True, "accepted")
    assert measured["sni"] == "server.test" and measured["cipher"].startswith("TLS_")
    assert measured["client"].startswith("198.18.0.1:") and measured["server"] == "198.19.0.1:443"


def test_json_puts_each_connection_on_a_line_of_its_own(tmp_path, capsys):
    """The document parses as a whole, and line by line each connection is one JSON object (with
    --ladder too), in the order of the connections list."""
    written = written_run(tmp_path, "tls13-0rtt")
    for ladder in ([], ["--ladder"]):
        assert main(["inspect", str(written.pcap), "--format", "json", *ladder]) == 0
        text = capsys.readouterr().out
        document = json.loads(text)
        lines = [json.loads(line.strip().rstrip(",")) for line in text.splitlines() if line.startswith("    {")]
        assert lines == document["connections"] and len(lines) == 2
        assert ("ladder" in lines[0]) == bool(ladder)


def test_without_the_key_log_what_needs_keys_is_unknown_not_guessed(tmp_path, capsys):
    written = written_run(tmp_path, "tls13-0rtt")
    measured = inspect_json(capsys, written.pcap)["connections"][-1]
    assert measured["early_data"] == "sent"  # offered; acceptance needs the keys
    assert measured["resumed"] is True  # the ServerHello's pre_shared_key is in the clear
    assert measured["round_trips"] is None and measured["ttfb_ms"] is None
    assert any("key log" in note for note in measured["notes"])
    quic = written_run(tmp_path, "quic-0rtt")
    measured = inspect_json(capsys, quic.pcap)["connections"][-1]
    assert measured["early_data"] == "sent" and measured["round_trips"] is None
    assert measured["quic_version"] == "1" and measured["resumed"] is True


def test_table_markdown_and_csv(tmp_path, capsys):
    written = written_run(tmp_path, "tfo-tls13")
    assert main(["inspect", str(written.pcap), "--keylog", str(written.keylog)]) == 0
    table = capsys.readouterr().out
    assert "2 connections" in table and "TFO cookie used" in table and "cookie-request" in table
    assert main(["inspect", str(written.pcap), "--format", "markdown"]) == 0
    assert capsys.readouterr().out.startswith("| #")
    assert main(["inspect", str(written.pcap), "--format", "csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("transport,client,server,") and len(lines) == 3


# --- bad input: one line, exit 2 ---------------------------------------------------------------

def _one_line_error(capsys, argv) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("handshake: error:"), captured.err
    return lines[0]


@pytest.fixture(scope="module")
def tls13_capture(tmp_path_factory):
    return written_run(tmp_path_factory.mktemp("tls13"), "tls13")


def test_a_missing_file(capsys, tmp_path):
    assert "No such file" in _one_line_error(capsys, ["inspect", str(tmp_path / "nope.pcap")])


def test_a_directory_without_captures(capsys, tmp_path):
    (tmp_path / "notes.txt").write_text("a directory is an archive: its capture files are read (test_inspect_archive.py)")
    assert f"no capture file (.pcap, .pcapng, .cap, .pcap.gz, .pcapng.gz, .cap.gz) under {tmp_path}" in _one_line_error(
        capsys, ["inspect", str(tmp_path)])


def test_an_empty_file(capsys, tmp_path):
    path = tmp_path / "empty.pcap"
    path.write_bytes(b"")
    assert "empty file" in _one_line_error(capsys, ["inspect", str(path)])


def test_not_a_capture(capsys, tmp_path):
    path = tmp_path / "page.pcap"
    path.write_bytes(b"<html><body>not a capture</body></html>")
    assert "not a pcap or pcapng file" in _one_line_error(capsys, ["inspect", str(path)])


def test_a_capture_cut_inside_its_header(capsys, tmp_path, tls13_capture):
    path = tmp_path / "cut.pcap"
    path.write_bytes(tls13_capture.pcap.read_bytes()[:10])
    assert "truncated capture" in _one_line_error(capsys, ["inspect", str(path)])


def test_a_truncated_capture_reports_what_was_read_and_says_so(capsys, tmp_path, tls13_capture):
    data = tls13_capture.pcap.read_bytes()
    path = tmp_path / "cut.pcap"
    path.write_bytes(data[:len(data) - 30])  # inside the last record
    whole = inspect_json(capsys, tls13_capture.pcap, "--keylog", tls13_capture.keylog)["connections"][0]
    out = inspect_json(capsys, path, "--keylog", tls13_capture.keylog)
    (conn,) = out["connections"]
    assert conn["round_trips"] == 3 and conn["packets"] == whole["packets"] - 1
    assert any(note.startswith("truncated capture") for note in out["notes"])
    assert main(["inspect", str(path)]) == 0
    assert "note: truncated capture" in capsys.readouterr().out


def test_a_gzip_compressed_capture_reads_as_the_capture(capsys, tmp_path, tls13_capture):
    import gzip

    path = tmp_path / "run.pcap.gz"
    path.write_bytes(gzip.compress(tls13_capture.pcap.read_bytes()))
    plain = inspect_json(capsys, tls13_capture.pcap, "--keylog", tls13_capture.keylog)
    assert inspect_json(capsys, path, "--keylog", tls13_capture.keylog, "--jobs", "2") == plain


def test_a_cut_gzip_capture_reports_what_was_read_and_says_so(capsys, tmp_path, tls13_capture):
    import gzip

    path = tmp_path / "cut.pcap.gz"
    path.write_bytes(gzip.compress(tls13_capture.pcap.read_bytes())[:-30])  # the trailer and some data
    out = inspect_json(capsys, path, "--keylog", tls13_capture.keylog)
    assert out["connections"] and len(out["notes"]) == 1
    assert out["notes"][0].startswith("truncated capture: ") and "the gzip stream ends early" in out["notes"][0]


def test_a_corrupt_gzip_capture_is_one_line(capsys, tmp_path, tls13_capture):
    import gzip

    packed = bytearray(gzip.compress(tls13_capture.pcap.read_bytes()))
    packed[10] = 0x07  # the first deflate block's type: 3, which does not exist
    path = tmp_path / "corrupt.pcap.gz"
    path.write_bytes(bytes(packed))
    assert "corrupt gzip data: invalid block type" in _one_line_error(capsys, ["inspect", str(path)])


def test_a_capture_with_no_tcp_or_udp(capsys, tmp_path):
    icmp = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28, 0, 0, 64, 1, 0, bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]))
    path = tmp_path / "ping.pcap"
    path.write_bytes(pcap_bytes([(0.0, icmp + b"\x08\0\0\0\0\0\0\0")]))
    assert "no TCP or QUIC connections in" in _one_line_error(capsys, ["inspect", str(path)])


def test_udp_that_is_not_quic_is_no_connection(capsys, tmp_path):
    udp = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 36, 0, 0, 64, 17, 0, bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]))
    path = tmp_path / "dns.pcap"
    path.write_bytes(pcap_bytes([(0.0, udp + struct.pack("!HHHH", 5353, 53, 16, 0) + b"12345678")]))
    assert "no TCP or QUIC connections in" in _one_line_error(capsys, ["inspect", str(path)])


def test_an_empty_but_valid_capture(capsys, tmp_path):
    path = tmp_path / "nothing.pcap"
    path.write_bytes(pcap_bytes([]))
    assert "no TCP or QUIC connections in" in _one_line_error(capsys, ["inspect", str(path)])


def test_an_unknown_link_type(capsys, tmp_path, tls13_capture):
    path = tmp_path / "bluetooth.pcap"
    path.write_bytes(pcap_bytes(raw_packets(tls13_capture.pcap), linktype=187))
    assert "unsupported link type 187" in _one_line_error(capsys, ["inspect", str(path)])


@pytest.mark.parametrize("make", ["missing", "directory"])
def test_a_missing_or_unreadable_key_log(capsys, tmp_path, tls13_capture, make):
    keylog = tmp_path / "keys.log"
    if make == "directory":
        keylog.mkdir()
    line = _one_line_error(capsys, ["inspect", str(tls13_capture.pcap), "--keylog", str(keylog)])
    assert "cannot read key log" in line and str(keylog) in line


def test_a_key_log_without_permission(capsys, monkeypatch, tmp_path, tls13_capture):
    keylog = tmp_path / "keys.log"
    keylog.write_text("")
    keylog.chmod(0)
    if os.geteuid() == 0:
        # Root reads any file, so make the open fail the way it fails for everyone else.
        import builtins

        real_open = builtins.open

        def open_without_permission(file, *args, **kwargs):
            if os.fspath(file) == str(keylog):
                raise PermissionError(13, "Permission denied", str(keylog))
            return real_open(file, *args, **kwargs)

        monkeypatch.setattr(builtins, "open", open_without_permission)
    line = _one_line_error(capsys, ["inspect", str(tls13_capture.pcap), "--keylog", str(keylog)])
    assert "Permission denied" in line and str(keylog) in line


def test_a_key_log_that_is_not_one(capsys, tls13_capture):
    # The capture itself given as the key log: binary, no NSS lines.
    line = _one_line_error(capsys, ["inspect", str(tls13_capture.pcap), "--keylog", str(tls13_capture.pcap)])
    assert "is not an NSS key log" in line


def test_an_empty_key_log_is_a_log_without_secrets(capsys, tmp_path, tls13_capture):
    keylog = tmp_path / "empty.keylog"
    keylog.write_text("# SSL/TLS secrets log file\n")
    conn = inspect_json(capsys, tls13_capture.pcap, "--keylog", keylog)["connections"][0]
    assert conn["tls_version"] == "1.3" and conn["round_trips_basis"] == "inferred"


def test_an_unknown_format(capsys, tls13_capture):
    assert "unknown format 'xml'" in _one_line_error(capsys, ["inspect", str(tls13_capture.pcap), "--format", "xml"])


def test_no_file_given(capsys):
    _one_line_error(capsys, ["inspect"])


def test_the_command_line_entry_point(tls13_capture):
    result = subprocess.run([sys.executable, "-m", "handshake", "inspect", str(tls13_capture.pcap), "--keylog",
                             str(tls13_capture.keylog), "--format", "json"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["connections"][0]["round_trips"] == 3
    result = subprocess.run([sys.executable, "-m", "handshake", "inspect", "/nonexistent.pcap"],
                            capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
