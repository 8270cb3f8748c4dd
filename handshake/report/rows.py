"""Render comparison rows: a table a person reads at a glance, or JSON / CSV / Markdown for scripts.

The JSON shape is a contract (DESIGN.md §3): {"engine", "network", "rows": [ROW, ...]}.
"""

from __future__ import annotations

import json
from typing import Any

from tabulate import tabulate

from handshake.report.csv_out import records_to_csv

FORMATS = ("table", "markdown", "json", "csv")

_COLUMNS = (
    ("variant", "variant"),
    ("transport", "transport"),
    ("tls", "TLS"),
    ("http", "HTTP"),
    ("setup_round_trips", "setup RTT"),
    ("round_trips", "RTTs to 1st byte"),
    ("expected_round_trips", "expected"),
    ("ttfb_ms", "TTFB ms"),
    ("server_ms", "server ms"),
    ("page_ms", "page ms"),
    ("head_of_line_ms", "HoL ms"),
    ("bytes", "bytes c→s / s→c"),
    ("packets", "pkts"),
    ("notes", "notes"),
)


def _cell(row: dict[str, Any], key: str) -> Any:
    if key == "bytes":
        return f"{row['bytes_client']} / {row['bytes_server']}"
    spread = row.get("spread")
    if key == "notes":
        notes = list(row["notes"])
        if spread and spread["ttfb_ms"]:
            low, _, high = spread["ttfb_ms"]
            trips = spread["round_trips"]
            notes.insert(0, f"{spread['complete']}/{spread['runs']} runs: TTFB {low:.0f}–{high:.0f} ms, RTTs {trips[0]}–{trips[1]}")
        return "; ".join(notes + [f"cause: {c}" for c in row["causes"]])
    if key == "ttfb_ms":
        if row["ttfb_ms"] is None:
            return "-"
        return f"{row['ttfb_ms']:.1f}" + (" (median)" if spread else "")
    if key == "tls":
        return row["tls_version"] or "-"
    if key in ("server_ms", "page_ms", "head_of_line_ms"):
        return "-" if row.get(key) is None else f"{row[key]:.1f}" + (" (median)" if spread and key != "server_ms" else "")
    value = row.get(key)
    return "-" if value is None else value


def render(rows: list[dict[str, Any]], fmt: str, *, engine: str, network: dict[str, Any],
           server_time: bool = False) -> str:
    """``server_time``: the run held its answers (``--server-time``), so the table shows the
    server time the analysis read from each trace beside the TTFB (JSON and CSV always have it)."""
    if fmt == "json":
        return json.dumps({"engine": engine, "network": network, "rows": rows}, indent=2)
    if fmt == "csv":
        return records_to_csv(rows)
    page = any(row.get("page_ms") is not None for row in rows)
    columns = [(key, title) for key, title in _COLUMNS
               if (server_time or key != "server_ms") and (page or key not in ("page_ms", "head_of_line_ms"))]
    headers = [title for _, title in columns]
    body = [[_cell(row, key) for key, _ in columns] for row in rows]
    table = tabulate(body, headers=headers, tablefmt="github" if fmt == "markdown" else "simple", disable_numparse=True)
    if fmt == "markdown":
        return table
    summary = ", ".join(f"{k}={v}" for k, v in network.items())
    return f"engine: {engine}   network: {summary}\n\n{table}"
