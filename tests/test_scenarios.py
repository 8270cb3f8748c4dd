"""Scenario files: every file in scenarios/ runs; a bad file gets one line with its location."""

from __future__ import annotations

from pathlib import Path

import pytest

from handshake.cli import main
from handshake.runner import compare
from handshake.scenario import load_scenario

SCENARIOS = sorted((Path(__file__).parent.parent / "scenarios").glob("*.toml"))


def test_there_are_scenarios():
    assert len(SCENARIOS) >= 8


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_every_scenario_runs_and_its_knob_shows(path):
    scenario = load_scenario(path)
    rows = compare(scenario.variants, scenario.link, options=scenario.options)
    assert rows and all(row.round_trips is not None for row in rows)
    knobs_on = scenario.options != type(scenario.options)()
    if knobs_on:
        # Each scenario exists to show a cost: at least one of its variants pays it, by name.
        assert any(row.causes for row in rows), [row.as_dict() for row in rows]


def test_flags_override_the_scenario(capsys):
    path = next(p for p in SCENARIOS if p.stem == "hello-retry")
    assert main(["compare", "--scenario", str(path), "--variants", "tls13", "--rtt", "20ms", "--format", "json"]) == 0
    out = capsys.readouterr().out
    assert '"rtt_ms": 20.0' in out and "HelloRetryRequest" in out and '"tls12"' not in out


def test_a_scenario_asks_for_http1_and_the_flag_for_http2(tmp_path, capsys):
    path = tmp_path / "h1.toml"
    path.write_text('variants = ["tls13"]\n\n[client]\nhttp = "1.1"\n')
    assert main(["compare", "--scenario", str(path), "--format", "json"]) == 0
    assert '"http": "1.1"' in capsys.readouterr().out
    assert main(["compare", "--scenario", str(path), "--http", "2", "--format", "json"]) == 0
    assert '"http": "2"' in capsys.readouterr().out


@pytest.mark.parametrize(
    "text, words",
    [
        ('[network]\nrtt = "fast"\n', ":2: [network] bad rtt 'fast'"),
        ('[network]\nrtt = "10ms"\n\n[server]\nintermediates = -1\n', ":5: [server] intermediates must be"),
        ('[client]\ndrop = ["first-fin"]\n', ":2: [client] unknown --drop selector 'first-fin'"),
        ('variants = ["tls14"]\n', ":1: unknown variant 'tls14'"),
        ('[netwrok]\nrtt = "1ms"\n', ":1: unknown field 'netwrok'"),
        ("[network\n", "not valid TOML"),
        ('[server]\nresponse_size = "20kq"\n', ":2: [server] bad response_size '20kq'"),
        ('[client]\nhttp = "3"\n', ":2: [client] http '3' is not one of 1.1, 2"),
        ('[client]\nsplit_writes = true\n', "[client] split_writes writes a request's header section"),
        ('[client]\npost = "1MB"\n', ":2: [client] post 1MB is over the 16,384-byte limit"),
        ('[client]\npost = "200B"\nnodelay = "yes"\n', ":3: [client] nodelay"),
    ],
)
def test_a_bad_scenario_is_one_line_with_its_location(tmp_path, capsys, text, words):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    assert main(["compare", "--scenario", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0] and words in err[0], err


def test_a_missing_scenario_file(capsys):
    assert main(["compare", "--scenario", "/nonexistent/x.toml"]) == 2
    assert "cannot read scenario" in capsys.readouterr().err
