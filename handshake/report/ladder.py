"""ASCII ladder diagrams: a connection's packets between a client and a server column.

Each line is one packet (or a run of identical ones) with its time from the connection's first
packet, its round (the round counter's), an arrow in its direction and what it carried, as the
analysis read it from the trace; causes and the first response byte are marked on the right.

       ms  rt   client                                           server
    0.000   0   |--- SYN, TFO cookie, ClientHello, early data ------>|
  100.012   1   |<----- SYN-ACK, ServerHello, ..., HTTP 200 response |  ! first response byte: 1 round trips
"""

from __future__ import annotations

import textwrap
from typing import Any

from handshake.analysis.capture import InspectedConnection
from handshake.analysis.steps import LadderStep

MIN_WIDTH = 44
MAX_WIDTH = 80


def step_dict(step: LadderStep) -> dict[str, Any]:
    return {
        "time_ms": round(step.time_s * 1000, 3),
        "from": "client" if step.from_client else "server",
        "round": step.round,
        "carries": list(step.carries),
        "marks": list(step.marks),
        "bytes": step.wire_bytes,
    }


def _fold(steps: list[LadderStep]) -> list[tuple[LadderStep, int]]:
    """Runs of identical, unmarked packets in one direction and round become one line."""
    out: list[tuple[LadderStep, int]] = []
    for step in steps:
        if out:
            last, count = out[-1]
            if (not step.marks and not last.marks and last.from_client == step.from_client
                    and last.round == step.round and last.carries == step.carries):
                out[-1] = (last, count + 1)
                continue
        out.append((step, 1))
    return out


def _wrap(items: list[str], count: int, width: int) -> list[str]:
    """The items, comma-separated, in lines of about ``width``: an item is never split (a long
    one is cut by words only when it alone exceeds the width)."""
    if count > 1:
        items = items[:-1] + [f"{items[-1]} (x{count})"]
    lines: list[str] = []
    current = ""
    for index, item in enumerate(items):
        piece = item + ("," if index < len(items) - 1 else "")
        if current and len(current) + 1 + len(piece) > width:
            lines.append(current)
            current = ""
        if len(piece) > width:
            parts = textwrap.wrap(piece, width, break_on_hyphens=False)
            lines += [(current + " " + parts[0]).strip()] + parts[1:-1]
            current = parts[-1]
        else:
            current = f"{current} {piece}".strip()
    lines.append(current)
    return lines


def _arrow(label_lines: list[str], from_client: bool, width: int) -> list[str]:
    inner = width - 2
    lines = []
    for index, text in enumerate(label_lines):
        if index == 0:
            pad = max(inner - len(text) - 6, 1)
            body = f"--- {text} {'-' * pad}>" if from_client else f"<{'-' * pad} {text} ---"
        else:
            body = f"    {text}".ljust(inner) if from_client else f"{text}    ".rjust(inner)
        lines.append(f"|{body}|")
    return lines


def _header(connection: InspectedConnection, index: int) -> list[str]:
    r = connection.report
    facts = []
    if getattr(r, "quic_version", None):
        facts.append(f"QUIC v{r.quic_version}")
    facts.append(f"TLS {r.tls_version}" if r.tls_version else "no TLS")
    if r.sni:
        facts.append(f"SNI {r.sni}")
    if r.alpn:
        facts.append(f"ALPN {r.alpn}")
    if r.resumed:
        facts.append("resumed")
    if r.early_data != "none":
        facts.append(f"0-RTT {r.early_data}")
    if r.tfo != "none":
        facts.append(f"TFO {r.tfo}")
    if r.round_trips is None:
        verdict = "no response byte found"
    else:
        setup = "" if r.setup_round_trips is None else f" (request after {r.setup_round_trips})"
        verdict = f"{r.round_trips} round trip{'s' * (r.round_trips != 1)} to the first response byte{setup}, " \
                  f"TTFB {r.ttfb_ms:.1f} ms"
    lines = [f"#{index} {r.transport} {r.client} -> {r.server}: {', '.join(facts)}", f"   {verdict}"]
    lines += [f"   cause: {cause}" for cause in r.causes]
    lines += [f"   note: {note}" for note in r.notes]
    return lines


def render_ladder(connection: InspectedConnection, index: int = 1) -> str:
    """The connection's header (facts, verdict, causes) and its ladder."""
    lines = _header(connection, index)
    folded = _fold(connection.steps)
    labels = [", ".join(step.carries) + (f" (x{count})" if count > 1 else "") for step, count in folded]
    width = min(max([MIN_WIDTH] + [len(text) + 10 for text in labels]), MAX_WIDTH)
    lines.append("")
    lines.append(f"{'ms':>10}  {'rt':>3}   client{' ' * (width - 12)}server")
    highest = 0
    for step, count in folded:
        if step.round > highest:
            highest = step.round
            lines.append(f"{'':>10}  {'':>3}   {f' round {highest} '.center(width, '.')}")
        wrapped = _wrap(list(step.carries), count, width - 10)
        arrow = _arrow(wrapped, step.from_client, width)
        marks = "  ! " + "; ".join(step.marks) if step.marks else ""
        lines.append(f"{step.time_s * 1000:>10.3f}  {step.round:>3}   {arrow[0]}{marks}")
        lines += [f"{'':>10}  {'':>3}   {more}" for more in arrow[1:]]
    if connection.steps_left_out:
        lines.append(f"{'':>10}  {'':>3}   ... {connection.steps_left_out} more packets")
    return "\n".join(lines)
