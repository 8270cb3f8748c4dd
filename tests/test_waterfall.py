"""`explain --page`: the page lane by lane, with the time streams were held behind others'."""

from __future__ import annotations

import re

from handshake.analysis.http.head_of_line import HeadOfLineBlocking
from handshake.cli import main
from handshake.teach.waterfall import HELD, READ, render_waterfall

LANE = re.compile(r"^\s*(\d+)\s+([\d.]+)\s+([\d.]+)\s+\|(.*)\|(.*)$")


def test_a_lane_is_read_where_its_bytes_came_and_held_where_it_waited():
    blocking = HeadOfLineBlocking(waited_s={1: 0.25}, streams=2, readable={1: (0.0, 1.0), 3: (0.75, 1.0)},
                                  blocked_spans={1: [(0.5, 0.75)]})
    lanes = [LANE.match(line) for line in render_waterfall(blocking, 0.0, width=8).splitlines()]
    drawn = {int(m.group(1)): (m.group(4), m.group(5).strip()) for m in lanes if m}
    assert drawn == {1: (READ * 4 + HELD * 2 + READ * 2, "held 250 ms behind other streams"),
                     3: (" " * 6 + READ * 2, "")}


def explained(capsys, *argv: str) -> list[re.Match]:
    assert main(["explain", *argv, "--rtt", "100ms", "--page", "10x20KB"]) == 0
    return [m for m in map(LANE.match, capsys.readouterr().out.splitlines()) if m]


def test_explain_draws_a_lane_per_object_and_marks_http2_streams_held_by_a_loss(capsys):
    lanes = explained(capsys, "tls13", "--drop", "server-data:60")
    assert len(lanes) == 10
    held = [m for m in lanes if HELD in m.group(4)]
    assert held and all("behind other streams" in m.group(5) for m in held)
    assert len(held) < 10 and all(float(m.group(2)) <= float(m.group(3)) for m in lanes)


def test_over_http3_the_same_loss_holds_no_lane(capsys):
    lanes = explained(capsys, "quic", "--drop", "server-data:60")
    assert len(lanes) == 10 and not any(HELD in m.group(4) for m in lanes)
