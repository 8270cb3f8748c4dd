"""A connection's ladder as a Mermaid sequence diagram (renders in GitHub, GitLab, most wikis)."""

from __future__ import annotations

import re

from handshake.analysis.capture import InspectedConnection

_UNSAFE = re.compile(r"[;#<>{}]")
"""Characters Mermaid's sequence grammar reads as syntax inside a message (statement end, entity, HTML)."""


def _text(value: str) -> str:
    return _UNSAFE.sub(" ", value).strip()


def render_mermaid(connection: InspectedConnection, title: str | None = None) -> str:
    report = connection.report
    lines = ["sequenceDiagram"]
    if title:
        lines.append(f"    title {_text(title)}")
    lines.append(f"    participant C as client {_text(report.client)}")
    lines.append(f"    participant S as server {_text(report.server)}")
    current_round = None
    for step in connection.steps:
        if step.round != current_round:
            current_round = step.round
            lines.append(f"    Note over C,S: round {step.round}")
        arrow = "C->>S" if step.from_client else "S-->>C"
        carries = ", ".join(step.carries) or "packet"
        lines.append(f"    {arrow}: {step.time_s * 1000:.1f} ms {_text(carries)}")
        for mark in step.marks:
            side = "left of C" if step.from_client else "right of S"
            lines.append(f"    Note {side}: {_text(mark)}")
    if connection.steps_left_out:
        lines.append(f"    Note over C,S: {connection.steps_left_out} more packets not drawn")
    return "\n".join(lines)
