"""Render `inspect` verdicts: a table a person reads at a glance, or JSON / CSV / Markdown for scripts.

The JSON shape is a contract (DESIGN.md §3): {"connections": [CONN, ...]}, connections in the
order they started; each CONN has transport, client, server, tls_version, resumed, early_data,
tfo, round_trips, ttfb_ms and causes, and more besides.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from typing import Any, TextIO

from tabulate import tabulate

from handshake.analysis.capture import CaptureInspection, InspectedConnection
from handshake.archive import ArchiveInspection, Summary, summary
from handshake.analysis.report import ConnectionReport
from handshake.report.csv_out import csv_cells, records_to_csv

from .ladder import render_ladder, step_dict

FORMATS = ("table", "markdown", "json", "csv", "jsonl")
STREAMED = ("csv", "jsonl")
"""An archive's rows in these formats are written file by file as the files are read."""


def conn_dict(report: ConnectionReport) -> dict[str, Any]:
    """The CONN object of DESIGN.md §3."""
    return report.as_dict()


_COLUMNS = (
    ("index", "#"),
    ("transport", "transport"),
    ("endpoints", "client → server"),
    ("tls", "TLS"),
    ("sni", "SNI"),
    ("resumed", "resumed"),
    ("early_data", "0-RTT"),
    ("tfo", "TFO"),
    ("setup_round_trips", "setup RTT"),
    ("round_trips", "RTTs to 1st byte"),
    ("ttfb_ms", "TTFB ms"),
    ("server_ms", "server ms"),
    ("bytes", "bytes c→s / s→c"),
    ("packets", "pkts"),
    ("notes", "notes"),
)


def _cell(index: int, conn: dict[str, Any], key: str) -> Any:
    if key == "index":
        return index
    if key == "endpoints":
        return f"{conn['client']} → {conn['server']}"
    if key == "bytes":
        return f"{conn['bytes_client']} / {conn['bytes_server']}"
    if key == "tls":
        version = conn["tls_version"] or "-"
        return f"{version} QUIC v{conn['quic_version']}" if conn["quic_version"] else version
    if key == "resumed":
        return {True: "yes", False: "no", None: "?"}[conn["resumed"]]
    if key == "sni" and conn["sni"] is None:
        # Absent from a ClientHello that was seen, or no ClientHello seen at all.
        return "-" if conn["early_data"] != "unknown" else "?"
    if key == "round_trips":
        if conn["round_trips"] is None:
            return "?"  # not in the capture (the notes say what is missing)
        return f"{conn['round_trips']} (inferred)" if conn["round_trips_basis"] == "inferred" else conn["round_trips"]
    if key == "ttfb_ms":
        return "?" if conn[key] is None else f"{conn[key]:.1f}"
    if key == "server_ms":
        return "-" if conn[key] is None else f"{conn[key]:.1f}"
    if key == "notes":
        return "; ".join(conn["notes"] + [f"cause: {c}" for c in conn["causes"]])
    value = conn.get(key)
    return "-" if value is None else value


def _json_one_connection_a_line(connections: list[dict[str, Any]], notes: list[str], **more: Any) -> str:
    """``{"connections": [...], "notes": [...], **more}`` with each connection on a line of its own:
    easy to grep and to diff, and written by json's C encoder (indented output goes through its
    Python one, which took longer than the analysis of a handshake-dense capture)."""
    lines = ",\n    ".join(json.dumps(conn) for conn in connections)
    body = f"[\n    {lines}\n  ]" if connections else "[]"
    rest = "".join(f',\n  "{key}": {json.dumps(value)}' for key, value in more.items())
    return f'{{\n  "connections": {body},\n  "notes": {json.dumps(notes)}{rest}\n}}'


def render_inspection(inspection: CaptureInspection, fmt: str, *, ladder: bool = False, name: str = "") -> str:
    connections = [conn_dict(c.report) for c in inspection.connections]
    if fmt == "json":
        if ladder:
            for conn, inspected in zip(connections, inspection.connections):
                conn["ladder"] = [step_dict(step) for step in inspected.steps]
                if inspected.steps_left_out:
                    conn["ladder_left_out"] = inspected.steps_left_out
        return _json_one_connection_a_line(connections, list(inspection.notes))
    if fmt == "csv":
        return records_to_csv(connections)
    if fmt == "jsonl":
        return "\n".join(json.dumps(conn) for conn in connections)
    headers = [title for _, title in _COLUMNS]
    body = [[_cell(i, conn, key) for key, _ in _COLUMNS] for i, conn in enumerate(connections, 1)]
    table = tabulate(body, headers=headers, tablefmt="github" if fmt == "markdown" else "simple",
                     disable_numparse=True)
    parts = []
    if fmt == "table":
        count = len(connections)
        parts.append(f"{name}: {inspection.frames} frames, {count} connection{'s' * (count != 1)}")
    parts.append(table)
    if inspection.notes:
        parts.append("\n".join(("- " if fmt == "markdown" else "note: ") + note for note in inspection.notes))
    if ladder:
        for index, inspected in enumerate(inspection.connections, 1):
            text = render_ladder(inspected, index)
            parts.append(f"```\n{text}\n```" if fmt == "markdown" else text)
    return "\n\n".join(parts)



def render_archive(archive: ArchiveInspection, fmt: str, *, ladder: bool = False) -> str:
    """Every file's connections in one table, CSV or JSON document, each tagged with its file,
    then the summary (connections, variants seen, medians per transport and TLS version)."""
    connections: list[dict[str, Any]] = []
    inspected: list[InspectedConnection] = []
    notes: list[str] = []
    frames = 0
    for path in archive.files:
        outcome = archive.failures.get(path) or archive.inspections[path]
        notes.extend(_file_notes(path, outcome))
        if isinstance(outcome, CaptureInspection):
            frames += outcome.frames
            connections.extend(_tagged(path, outcome))
            inspected.extend(outcome.connections)
    totals = summary(connections)
    if fmt == "json":
        if ladder:
            for conn, connection in zip(connections, inspected):
                conn["ladder"] = [step_dict(step) for step in connection.steps]
        return _json_one_connection_a_line(connections, notes, files=archive.files, summary=totals)
    if fmt == "csv":
        return records_to_csv(connections)
    columns = (("file", "file"),) + _COLUMNS
    body_rows = [[conn["file"] if key == "file" else _cell(i, conn, key) for key, _ in columns]
                 for i, conn in enumerate(connections, 1)]
    table = tabulate(body_rows, headers=[title for _, title in columns],
                     tablefmt="github" if fmt == "markdown" else "simple", disable_numparse=True)
    read = len(archive.files) - len(archive.failures)
    parts = [f"{read} of {len(archive.files)} files read, {frames} frames, {len(connections)} connections"
             if fmt == "table" else "", table]
    if notes:
        parts.append("\n".join(("- " if fmt == "markdown" else "note: ") + note for note in notes))
    parts.append(summary_text(totals))
    if ladder:
        for index, connection in enumerate(inspected, 1):
            text = render_ladder(connection, index)
            parts.append(f"```\n{text}\n```" if fmt == "markdown" else text)
    return "\n\n".join(part for part in parts if part)


def summary_text(totals: dict[str, Any]) -> str:
    seen = ", ".join(f"{label} {count}" for label, count in totals["variants"].items()) or "none"
    lines = [f"summary: {totals['connections']} connections; variants seen: {seen}"]
    for group in totals["by_tls_version"]:
        name = f"{group['transport']} TLS {group['tls_version']}" if group["tls_version"] else f"{group['transport']}, no TLS version seen"
        counts = (f"median {group['median_round_trips']:g} round trips, TTFB {group['median_ttfb_ms']:.1f} ms"
                  if group["counted"] else "no round trips in the capture")
        plural = "s" * (group["connections"] != 1)
        lines.append(f"  {name}: {group['connections']} connection{plural}, {group['counted']} counted: {counts}")
    return "\n".join(lines)


def stream_archive(outcomes: Iterable[tuple[str, CaptureInspection | str]], fmt: str, out: TextIO
                   ) -> tuple[dict[str, str], list[str], dict[str, Any]]:
    """Write an archive's connections as CSV or JSON lines, file by file as each is read, keeping
    nothing but the summary: (failures by file, notes, summary)."""
    totals = Summary()
    failures: dict[str, str] = {}
    notes: list[str] = []
    writer: csv.DictWriter | None = None
    for path, outcome in outcomes:
        notes.extend(_file_notes(path, outcome))
        if isinstance(outcome, str):
            failures[path] = outcome
            continue
        for conn in _tagged(path, outcome):
            totals.add(conn)
            if fmt == "jsonl":
                out.write(json.dumps(conn) + "\n")
                continue
            if writer is None:
                writer = csv.DictWriter(out, fieldnames=list(conn), lineterminator="\n")
                writer.writeheader()
            writer.writerow(csv_cells(conn))
        out.flush()
    return failures, notes, totals.result()


def _file_notes(path: str, outcome: CaptureInspection | str) -> list[str]:
    """A file's notes in an archive: why it was not read, or what its reading found."""
    if isinstance(outcome, str):
        return [f"{path}: not read: {outcome}"]
    return [f"{path}: {note}" for note in outcome.notes]


def _tagged(path: str, inspection: CaptureInspection) -> list[dict[str, Any]]:
    """A file's CONN objects, each with the file first."""
    return [{"file": path, **conn_dict(connection.report)} for connection in inspection.connections]
