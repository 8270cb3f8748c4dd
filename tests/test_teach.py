"""budget, sweep and run: answers agree with `compare` at the same network."""

from __future__ import annotations

import json
import struct

import pytest

from handshake.cli import main
from handshake.net.link import LinkConfig
from handshake.page import parse_page
from handshake.runner import RunOptions, compare
from handshake.teach.budget import at_rtt, largest_rtt
from handshake.teach.ranges import parse_rtt_range, rtt_points
from handshake.variants import select
from handshake.errors import UsageError


def test_budget_agrees_with_compare_at_the_same_network(capsys):
    assert main(["budget", "--rtt", "80ms", "--budget", "250ms", "--loss", "3%", "--seed", "5", "--format", "json"]) == 0
    budget = {row["variant"]: row for row in json.loads(capsys.readouterr().out)["rows"]}
    rows = compare(select(None), LinkConfig.from_rtt(0.08, loss=0.03, seed=5))
    assert set(budget) == {row.variant for row in rows}
    for row in rows:
        answer = budget[row.variant]
        assert answer["ttfb_ms"] == row.ttfb_ms
        assert answer["fits"] == (row.ttfb_ms <= 250.0)
        assert answer["margin_ms"] == pytest.approx(250.0 - row.ttfb_ms)
        assert {"variant", "fits", "ttfb_ms", "margin_ms"} <= set(answer)


def test_largest_fitting_rtt_is_where_compare_starts_to_miss():
    link, options = LinkConfig.from_rtt(0.02), RunOptions()
    (tls13,) = largest_rtt(select("tls13"), link, options, 0.25, 0.02, 0.4)
    assert tls13.fits and tls13.max_rtt_ms == pytest.approx(250 / 3, abs=0.02)  # 3 round trips fit
    just_in = compare(select("tls13"), LinkConfig.from_rtt(tls13.max_rtt_ms / 1000))[0]
    just_out = compare(select("tls13"), LinkConfig.from_rtt(tls13.max_rtt_ms / 1000 + 0.0002))[0]
    assert just_in.ttfb_ms <= 250 < just_out.ttfb_ms
    (never,) = largest_rtt(select("tls12"), link, options, 0.05, 0.02, 0.4)
    assert not never.fits and never.max_rtt_ms is None  # 4 × 20 ms is already over 50 ms


def test_budget_at_rtt_uses_counted_times_not_formulas():
    big = at_rtt(select("tls13"), LinkConfig.from_rtt(0.05), RunOptions("rsa2048", 16), 0.2)[0]
    assert big.round_trips == 4 and big.ttfb_ms == 200.0 and big.fits and big.margin_ms == 0.0


def test_rtt_ranges():
    assert parse_rtt_range("10ms:300ms:10ms", with_step=True) == pytest.approx((0.01, 0.3, 0.01))
    assert len(rtt_points(0.01, 0.3, 0.01)) == 30
    for bad in ("10ms", "300ms:10ms", "10ms:x", "10ms:20ms:0ms"):
        with pytest.raises(UsageError):
            parse_rtt_range(bad, with_step=True)


def _png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_sweep_writes_a_plot_and_the_data_behind_it(tmp_path, capsys):
    png = tmp_path / "ttfb.png"
    argv = ["sweep", "--rtt", "20ms:100ms:20ms", "--variants", "tls12,tls13,quic", "--seeds", "3", "--loss", "5%",
            "--jobs", "2", "--plot", str(png), "--format", "json"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    data = json.loads(out[: out.rindex("}") + 1])
    assert set(data["series"]) == {"tls12", "tls13", "quic"}  # one line per variant
    assert len(data["runs"]) == 3 * 5 * 3
    for variant, points in data["series"].items():
        assert [p["rtt_ms"] for p in points] == [20, 40, 60, 80, 100]
        for p in points:
            assert p["ttfb_ms_min"] <= p["ttfb_ms_p10"] <= p["ttfb_ms_median"] <= p["ttfb_ms_p90"] <= p["ttfb_ms_max"]
    clean_tls13 = [p for p in data["runs"] if p["variant"] == "tls13" and p["rtt_ms"] == 40 and p["ttfb_ms"] == 120.0]
    assert clean_tls13  # runs without a loss take exactly three round trips
    width, height = _png_size(png)
    assert width > 400 and height > 300


def test_sweep_one_process_and_many_agree():
    from handshake.teach.sweep import sweep

    args = (select("tls13,quic"), LinkConfig.from_rtt(0.05, loss=0.1), RunOptions(), [0.02, 0.06])
    assert sweep(*args, seeds=2, jobs=1) == sweep(*args, seeds=2, jobs=2)


def test_sweep_against_loss_draws_a_page_per_http_version(tmp_path, capsys):
    """--x loss at one RTT: a line per variant and HTTP version (QUIC's is HTTP/3), page_ms
    against loss, each lossless point the page `compare` loads."""
    png = tmp_path / "page.png"
    argv = ["sweep", "--x", "loss", "--loss", "0%:2%:1%", "--rtt", "100ms", "--page", "10x20KB",
            "--variants", "tls13,quic", "--http", "1.1,2", "--seeds", "2", "--jobs", "2", "--plot", str(png),
            "--format", "json"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    data = json.loads(out[: out.rindex("}") + 1])
    assert list(data["series"]) == ["tls13 HTTP/1.1", "tls13 HTTP/2", "quic HTTP/3"]
    assert len(data["runs"]) == 3 * 3 * 2
    page = parse_page("10x20KB")
    for line, points in data["series"].items():
        assert [p["loss_pct"] for p in points] == [0, 1, 2]
        for p in points:
            assert p["page_ms_min"] <= p["page_ms_median"] <= p["page_ms_max"]
        variant, http = line.split(" HTTP/")
        (row,) = compare(select(variant), LinkConfig.from_rtt(0.1), options=RunOptions(page=page, http=http if http != "3" else "2"))
        assert points[0]["page_ms_median"] == row.page_ms, line
    assert {r["http"] for r in data["runs"] if r["variant"] == "quic"} == {"3"}
    assert all("head_of_line_ms" in r for r in data["runs"] if r["variant"] == "tls13" and r["http"] == "2")
    width, height = _png_size(png)
    assert width > 400 and height > 300


def test_a_loss_sweep_in_one_process_and_many_agree():
    from handshake.teach.sweep import sweep

    args = (select("tls13,quic"), LinkConfig.from_rtt(0.1), RunOptions(page=parse_page("3x5KB")), [0.1])
    how = {"seeds": 2, "losses": [0.0, 0.03], "https": ["1.1", "2"]}
    assert sweep(*args, jobs=1, **how) == sweep(*args, jobs=2, **how)


def test_run_a_scenario_file(capsys):
    assert main(["run", "scenarios/hello-retry.toml", "--format", "json"]) == 0
    rows = {r["variant"]: r for r in json.loads(capsys.readouterr().out)["rows"]}
    assert rows["tls13"]["round_trips"] == 4 and rows["tls12"]["round_trips"] == 4


@pytest.mark.parametrize(
    "argv, words",
    [
        (["sweep", "--rtt", "10ms"], "needs --rtt A:B:STEP"),
        (["sweep", "--rtt", "10ms:5ms:1ms"], "end is below the start"),
        (["budget", "--budget", "soon"], "bad budget 'soon'"),
        (["budget", "--rtt", "80ms"], "--budget"),
        (["run", "nope.toml"], "cannot read scenario"),
        (["sweep", "--rtt", "10ms:20ms:10ms", "--seeds", "0"], "--seeds"),
        (["sweep", "--x", "loss", "--loss", "2%"], "needs --loss A:B:STEP"),
        (["sweep", "--x", "loss", "--loss", "0%:2%:1%", "--rtt", "10ms:20ms:10ms"], "one --rtt"),
        (["sweep", "--x", "loss", "--loss", "3%:2%:1%"], "end is below the start"),
        (["sweep", "--x", "loss", "--loss", "0%:100%:10%"], "100 %"),
        (["sweep", "--x", "loss", "--loss", "0%:2%:0%"], "step must be above zero"),
        (["sweep", "--rtt", "10ms:20ms:10ms", "--http", "1.1,3"], "unknown --http '3'"),
    ],
)
def test_bad_teaching_input_is_one_line(capsys, argv, words):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0], err
