"""`explain` draws the ladder from the trace: the same round trips as `compare`, real message names."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from handshake.cli import main
from handshake.net.link import LinkConfig
from handshake.report.mermaid import render_mermaid
from handshake.runner import RunOptions, compare
from handshake.teach.explain import explain
from handshake.variants import CATALOG, select

MERMAID_CHECK = Path(__file__).parent / "mermaid" / "check.mjs"
MERMAID_READY = shutil.which("node") is not None and (MERMAID_CHECK.parent / "node_modules" / "mermaid").exists()

# What each variant's ladder must show, read from its packets.
MUST_CARRY = {
    "http": ["SYN", "HTTP GET /", "HTTP 200 response"],
    "tls12": ["ClientHello", "ServerHello", "ServerHelloDone", "ClientKeyExchange", "Finished"],
    "tls12-resume": ["ClientHello", "ServerHello", "Finished"],
    "tls13": ["ClientHello", "ServerHello", "EncryptedExtensions", "Certificate", "Finished", "NewSessionTicket"],
    "tls13-resume": ["ClientHello", "ServerHello", "Finished"],
    "tls13-0rtt": ["ClientHello", "early data", "EndOfEarlyData"],
    "tfo-tls12": ["TFO cookie", "ClientHello"],
    "tfo-tls13": ["TFO cookie", "ClientHello"],
    "tfo-tls13-0rtt": ["TFO cookie", "ClientHello", "early data"],
    "quic": ["Initial", "Handshake"],
    "quic-0rtt": ["0-RTT"],
}


@pytest.mark.parametrize("name", list(CATALOG))
def test_explain_counts_like_compare_and_names_what_the_packets_carried(name):
    link = LinkConfig.from_rtt(0.1)
    explanation = explain(CATALOG[name], link, RunOptions())
    (row,) = compare(select(name), link)
    assert explanation.row.round_trips == row.round_trips == CATALOG[name].expected_round_trips
    assert explanation.connection.report.round_trips == row.round_trips
    steps = explanation.connection.steps
    assert max(step.round for step in steps) >= row.round_trips
    carried = " | ".join(item for step in steps for item in step.carries)
    for words in MUST_CARRY[name]:
        assert words in carried, (words, carried)
    marked = [step for step in steps if any("first response byte" in m for m in step.marks)]
    assert len(marked) == 1 and marked[0].round == row.round_trips and not marked[0].from_client


def test_causes_are_marked_on_the_ladder(capsys):
    assert main(["explain", "tls13", "--hrr"]) == 0
    out = capsys.readouterr().out
    assert "HelloRetryRequest" in out and "4 round trips counted, 3 in the catalog" in out


def test_a_record_that_waits_shows_its_segments_arriving_before_it_can_be_read():
    explanation = explain(CATALOG["tls13"], LinkConfig.from_rtt(0.1), RunOptions(response_bytes=20_000))
    steps = explanation.connection.steps
    first_byte = next(step for step in steps if any("first response byte" in m for m in step.marks))
    partial = [step for step in steps if step.time_s < first_byte.time_s
               and any(item.endswith("bytes of a TLS record") for item in step.carries)]
    # The record's first segments come in round 3; only its last, in round 4, makes it readable.
    assert {step.round for step in partial} == {3} and len(partial) >= 9
    assert first_byte.round == 4 and "HTTP/2 HEADERS :status 200 (stream 1)" in first_byte.carries


@pytest.mark.skipif(not MERMAID_READY, reason="Mermaid's parser is not installed (.ci/run runs npm ci in tests/mermaid)")
@pytest.mark.parametrize("name", ["tls13", "tfo-tls13-0rtt", "quic-0rtt"])
def test_the_mermaid_diagram_parses_as_a_sequence_diagram(tmp_path, name):
    explanation = explain(CATALOG[name], LinkConfig.from_rtt(0.05), RunOptions(hrr=name == "tls13"))
    path = tmp_path / f"{name}.mmd"
    path.write_text(render_mermaid(explanation.connection, f"{name} at 50 ms"))
    result = subprocess.run(["node", str(MERMAID_CHECK), str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert '"diagramType":"sequence"' in result.stdout


def test_unknown_variant_is_one_line(capsys):
    assert main(["explain", "tls14"]) == 2
    assert "unknown variant 'tls14'" in capsys.readouterr().err
