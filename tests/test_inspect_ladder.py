"""`inspect --ladder`: each packet with its time, direction, round and what the trace says it
carried (TLS messages, QUIC packets and frames, HTTP request and response), causes marked."""

from __future__ import annotations

import json
import re

import pytest

from handshake.cli import main
from handshake.runner import RunOptions

from .capture_files import written_run


def ladder(capsys, written, *extra) -> str:
    assert main(["inspect", str(written.pcap), "--keylog", str(written.keylog), "--ladder", *extra]) == 0
    return capsys.readouterr().out


def packet_lines(text: str) -> list[str]:
    """One string per packet: its arrow line with the label's continuation lines joined on."""
    out: list[str] = []
    for line in text.splitlines():
        if re.match(r"\s+\d+\.\d{3}\s+\d+\s+\|", line):
            out.append(line)
        elif out and re.match(r"\s+\|.*\|$", line) and "|<" not in line and "|---" not in line:
            out[-1] += " " + line.strip(" |")
    return out


def measured_ladder(capsys, written) -> list[str]:
    text = ladder(capsys, written)
    return packet_lines(text[text.rindex("\n#"):])  # the measured (last) connection


def packet(line: str) -> tuple[float, int, str, str]:
    """(ms, round, "c>s" or "s>c", the line's text)."""
    ms, rnd = line.split()[:2]
    direction = "c>s" if "|---" in line else "s>c"
    return float(ms), int(rnd), direction, line


def find(lines: list[str], *words: str) -> tuple[float, int, str, str]:
    for line in lines:
        if all(word in line for word in words):
            return packet(line)
    raise AssertionError(f"no packet with {words} in\n" + "\n".join(lines))


def in_order(lines: list[str], *names: str) -> None:
    text = "\n".join(lines)
    positions = [text.find(name) for name in names]
    assert -1 not in positions and positions == sorted(positions), (names, text)


H2_GET = "HTTP/2 HEADERS GET (stream 1)"
H2_200 = "HTTP/2 HEADERS :status 200 (stream 1)"
EARLY_GET = "early data: " + H2_GET
"""compare's TLS rows speak HTTP/2 (ALPN h2), as browsers do."""


def test_tls13_full_handshake(tmp_path, capsys):
    lines = measured_ladder(capsys, written_run(tmp_path, "tls13"))
    assert find(lines, "SYN")[:3] == (0.0, 0, "c>s")
    assert find(lines, "SYN-ACK")[:3] == (100.0, 1, "s>c")
    assert find(lines, "ClientHello")[1:3] == (1, "c>s")
    assert find(lines, "ServerHello", "EncryptedExtensions")[:3] == (200.0, 2, "s>c")
    assert find(lines, H2_GET)[1:3] == (2, "c>s")
    assert find(lines, H2_200, "first response byte: 3 round trips")[:3] == (300.0, 3, "s>c")
    in_order(lines, "ClientHello", "ServerHello", "EncryptedExtensions", "Certificate", "CertificateVerify",
             "Finished", H2_GET, "NewSessionTicket", H2_200)


def test_tls13_early_data(tmp_path, capsys):
    lines = measured_ladder(capsys, written_run(tmp_path, "tls13-0rtt"))
    assert find(lines, "ClientHello", EARLY_GET)[1:3] == (1, "c>s")
    answer = find(lines, "ServerHello", H2_200)
    assert answer[:3] == (200.0, 2, "s>c") and "0-RTT accepted" in answer[3] and "resumed" in answer[3]
    assert "Certificate" not in "\n".join(lines)  # a resumed handshake sends no certificate
    in_order(lines, EARLY_GET, "ServerHello", "EndOfEarlyData", "NewSessionTicket")


def test_tfo_tls13_early_data_rides_in_the_syn(tmp_path, capsys):
    lines = measured_ladder(capsys, written_run(tmp_path, "tfo-tls13-0rtt"))
    syn = find(lines, "SYN", "TFO cookie", "ClientHello", EARLY_GET)
    assert syn[:3] == (0.0, 0, "c>s")
    answer = find(lines, H2_200, "first response byte: 1 round trip")
    assert answer[:3] == (100.0, 1, "s>c")


def test_tfo_cold_start_shows_the_cookie_request_and_the_cookie(tmp_path, capsys):
    text = ladder(capsys, written_run(tmp_path, "tfo-tls13-0rtt"))
    first = text[:text.rindex("\n#")]
    assert "SYN, TFO cookie request" in first and "SYN-ACK, TFO cookie" in first


def test_quic_packets_and_frames(tmp_path, capsys):
    lines = measured_ladder(capsys, written_run(tmp_path, "quic"))
    first = find(lines, "Initial[CRYPTO ClientHello")
    assert first[:3] == (0.0, 0, "c>s")
    assert find(lines, "Initial[ACK, CRYPTO ServerHello")[1:3] == (1, "s>c")
    text = "\n".join(lines)
    assert "EncryptedExtensions" in text and "HANDSHAKE_DONE" in text
    assert find(lines, "HEADERS :method GET")[1:3] == (1, "c>s")
    assert find(lines, "HEADERS :status 200", "first response byte: 2 round trips")[1:3] == (2, "s>c")


def test_quic_0rtt_request_rides_in_a_0rtt_packet(tmp_path, capsys):
    lines = measured_ladder(capsys, written_run(tmp_path, "quic-0rtt"))
    assert find(lines, "Initial[CRYPTO ClientHello", "0-RTT[", "HEADERS :method GET")[:3] == (0.0, 0, "c>s")
    answer = find(lines, "HEADERS :status 200")
    assert answer[1:3] == (1, "s>c") and "0-RTT accepted" in answer[3]


@pytest.mark.parametrize(
    "variant, options, words",
    [
        ("tls13", RunOptions(hrr=True), ("HelloRetryRequest", "cause: HelloRetryRequest")),
        ("tls13-0rtt", RunOptions(accept_early_data=False), ("EncryptedExtensions", "0-RTT rejected")),
        ("quic", RunOptions(retry=True), ("Retry", "Retry: the server asked")),
        ("tls13", RunOptions(key_type="rsa2048", intermediates=16), ("initial congestion window",)),
        ("quic", RunOptions(key_type="rsa2048", intermediates=4), ("anti-amplification",)),
        ("tls12", RunOptions(drops=("first-syn",)), ("SYN", "retransmission")),
    ],
)
def test_causes_are_marked_on_the_packet_that_shows_them(tmp_path, capsys, variant, options, words):
    lines = measured_ladder(capsys, written_run(tmp_path, variant, options=options))
    find(lines, *words)


def test_rounds_never_go_back_on_a_clean_link(tmp_path, capsys):
    for variant in ("tls12", "tls13-resume", "quic-0rtt"):
        rounds = [packet(line)[1] for line in measured_ladder(capsys, written_run(tmp_path, variant))]
        assert rounds == sorted(rounds), variant


def test_json_ladder_lists_every_packet(tmp_path, capsys):
    written = written_run(tmp_path, "tls13")
    out = json.loads(ladder(capsys, written, "--format", "json"))
    (conn,) = out["connections"]
    steps = conn["ladder"]
    assert len(steps) == conn["packets"]
    assert steps[0] == {"time_ms": 0.0, "from": "client", "round": 0, "carries": ["SYN"], "marks": [], "bytes": 60}
    response = next(s for s in steps if H2_200 in s["carries"])
    assert response["round"] == conn["round_trips"] and response["time_ms"] == conn["ttfb_ms"]


def test_markdown_ladder_is_fenced(tmp_path, capsys):
    text = ladder(capsys, written_run(tmp_path, "http"), "--format", "markdown")
    assert "```\n#1 tcp" in text and "HTTP GET /" in text and "HTTP 200 response" in text
