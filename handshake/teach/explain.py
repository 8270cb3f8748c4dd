"""`explain VARIANT`: run one variant and draw its measured connection, from the trace alone."""

from __future__ import annotations

from dataclasses import dataclass

from handshake.analysis.capture import InspectedConnection, inspect_packets
from handshake.analysis.keylog import parse_keylog
from handshake.net.link import LinkConfig
from handshake.runner import MeasuredPage, Row, RunOptions, measure_run, run_sim
from handshake.variants import Variant


@dataclass
class Explanation:
    row: Row
    """The row `compare` prints for the same run."""
    connection: InspectedConnection
    """The measured connection, with its ladder steps."""
    page: MeasuredPage | None = None
    """With ``--page``: each stream's (or answer's) lane, for the waterfall."""


def explain(variant: Variant, link: LinkConfig, options: RunOptions) -> Explanation:
    run = run_sim(variant, link, options)
    keylog = parse_keylog(run.trace.keylog) if run.trace.keylog else None
    connections = inspect_packets(((p.time, p.data) for p in run.trace.packets), keylog, steps=True)
    row, page = measure_run(run)
    return Explanation(row, connections[-1], page)


def summary(explanation: Explanation) -> str:
    """One line set against the catalog; the ladder's own header gives the facts and causes."""
    row = explanation.row
    return (
        f"{row.variant}: {row.round_trips} round trips counted, {row.expected_round_trips} in the catalog"
        + (f"; {len(row.causes)} cause(s) of extra cost marked below" if row.causes else "")
    )
