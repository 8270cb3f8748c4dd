"""``probe``'s output: a table (or JSON) of the variants against one server, and its summary."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from tabulate import tabulate

from handshake.probe.measure import ProbeRow
from handshake.probe.run import ProbeResult

__all__ = ["PROBE_FORMATS", "render_probe", "probe_document"]

PROBE_FORMATS = ("table", "markdown", "json")


def probe_document(result: ProbeResult) -> dict[str, Any]:
    target = result.target
    return {
        "target": {"host": target.host, "port": target.port, "path": target.path, "address": target.address},
        "basis": result.basis,
        "basis_note": result.basis_note,
        "rtt_ms": result.rtt_ms,
        "runs": result.runs,
        "http3": {"port": result.quic_port, "source": result.quic_source},
        "rows": [asdict(row) for row in result.rows],
        "summary": result.summary,
        "notes": result.notes,
    }


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _rounds(row: ProbeRow) -> str:
    if row.round_trips is None:
        return "-"
    spread = row.spread or {}
    span = spread.get("round_trips")
    if span and span[0] != span[1]:
        return f"{row.round_trips} ({span[0]}-{span[1]})"
    return str(row.round_trips)


def _ttfb(row: ProbeRow) -> str:
    spread = (row.spread or {}).get("ttfb_ms")
    if spread:
        return f"{spread[1]:.1f} ({spread[0]:.1f}-{spread[2]:.1f})"
    return _ms(row.ttfb_ms)


def _facts(row: ProbeRow) -> str:
    facts = []
    if row.resumed:
        facts.append("resumed")
    if row.early_data in ("accepted", "rejected"):
        facts.append(f"0-RTT {row.early_data}")
    if row.tfo == "data":
        facts.append("TFO data in SYN")
    return ", ".join(facts)


def _notes(row: ProbeRow) -> str:
    parts = list(row.reasons)
    if row.error:
        parts.append(f"failed: {row.error}")
    parts += [f"cause: {cause}" for cause in row.causes]
    return "; ".join(parts)


def render_probe(result: ProbeResult, fmt: str = "table") -> str:
    if fmt == "json":
        return json.dumps(probe_document(result), indent=2)
    target = result.target
    rtt = "-" if result.rtt_ms is None else f"{result.rtt_ms:.1f} ms"
    header = [
        f"probe: https://{target.authority}{target.path} at {target.address}   RTT (handshake): {rtt}"
        + (f"   runs: {result.runs}" if result.runs > 1 else ""),
        f"round trips: {result.basis_note}",
    ]
    table = [[
        row.variant, "yes" if row.supported else "no", row.http_version or "-", row.tls_version or "-",
        _rounds(row), "-" if row.setup_round_trips is None else row.setup_round_trips, _ttfb(row),
        _ms(row.server_ms), _facts(row), _notes(row),
    ] for row in result.rows]
    columns = ["variant", "supported", "HTTP", "TLS", "RTTs to 1st byte", "setup RTT", "TTFB ms", "server ms",
               "seen", "why not / causes"]
    body = tabulate(table, columns, tablefmt="github" if fmt == "markdown" else "simple", disable_numparse=True)
    notes = [f"note: {note}" for note in result.notes]
    return "\n".join([*header, *notes, "", body, "", *result.summary])
