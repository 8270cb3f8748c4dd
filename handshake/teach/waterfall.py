"""A page load as a browser's network panel draws it: one lane per stream (HTTP/2, HTTP/3) or per
answer (HTTP/1.1), from the trace alone, with the time a stream's bytes had come but waited
behind another stream's missing ones marked on its lane."""

from __future__ import annotations

from handshake.analysis.http.head_of_line import HeadOfLineBlocking

READ = "█"
HELD = "▒"


def render_waterfall(blocking: HeadOfLineBlocking, start_s: float, *, width: int = 60) -> str:
    """``start_s``: the page's first packet, time 0 of the scale."""
    if not blocking.readable:
        return "(no stream's bytes were read in the trace)"
    end_s = max(last for _, last in blocking.readable.values())
    scale = max(end_s - start_s, 1e-9) / width
    lines = [f"{'lane':>5}  {'first ms':>9}  {'last ms':>9}  0 ms{'':{width - 8}}{(end_s - start_s) * 1000:>6.0f} ms"]
    for lane, (first, last) in sorted(blocking.readable.items(), key=lambda item: item[1]):
        held = blocking.blocked_spans.get(lane, [])
        begin = min([first] + [span[0] for span in held])
        cells = []
        for column in range(width):
            low = start_s + column * scale  # the cell is [low, low + scale)
            if any(low < until and low + scale > since for since, until in held):
                cells.append(HELD)
            elif low <= last and low + scale > begin:
                cells.append(READ)
            else:
                cells.append(" ")
        waited = blocking.waited_s.get(lane)
        note = f"  held {waited * 1000:.0f} ms behind other streams" if waited else ""
        lines.append(f"{lane:>5}  {(first - start_s) * 1000:>9.1f}  {(last - start_s) * 1000:>9.1f}  "
                     f"|{''.join(cells)}|{note}")
    lines.append(f"{READ} its bytes arriving and read   {HELD} arrived, but held behind another stream's "
                 "missing bytes (head-of-line blocking)")
    return "\n".join(lines)
