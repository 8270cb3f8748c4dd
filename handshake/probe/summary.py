"""The probe's verdict in a line or two: the fastest variant against this server, what it saves
against TLS 1.2 over TCP, and what the server could enable to save more.

The savings of a variant that ran are its counted (or inferred) round trips and measured TTFB.
What the server refused did not run, so what enabling it would save is the catalog's count for
that variant against the fastest count here, priced at the RTT measured here, and it says so
("expected").
"""

from __future__ import annotations

from .measure import ProbeRow

__all__ = ["summarize", "ADVICE"]

ADVICE = {
    "tls1.3": "enable TLS 1.3",
    "tls1.2": "enable TLS 1.2",
    "resumption": "issue session tickets",
    "0-rtt": "accept TLS 1.3 early data (0-RTT)",
    "tfo": "enable TCP Fast Open",
    "http3": "offer HTTP/3 (Alt-Svc or an HTTPS record with h3)",
    "quic-0rtt": "accept QUIC 0-RTT",
}
"""What to enable, by the feature a refused variant lacked."""


def _rtts(count: int) -> str:
    return f"{count} round trip{'s' if count != 1 else ''}"


def summarize(rows: list[ProbeRow], rtt_ms: float | None) -> list[str]:
    measured = [r for r in rows if r.supported and r.round_trips is not None and r.ttfb_ms is not None]
    if not measured:
        return ["no variant completed against this server"]
    fastest = min(measured, key=lambda r: (r.round_trips, r.ttfb_ms))
    assert fastest.round_trips is not None and fastest.ttfb_ms is not None
    line = f"fastest here: {fastest.variant}, {_rtts(fastest.round_trips)}, TTFB {fastest.ttfb_ms:.0f} ms"
    baseline = next((r for r in measured if r.variant == "tls12"), None)
    if baseline is not None and baseline is not fastest:
        assert baseline.round_trips is not None and baseline.ttfb_ms is not None
        line += (f"; against tls12 over TCP it saves {_rtts(baseline.round_trips - fastest.round_trips)}, "
                 f"{baseline.ttfb_ms - fastest.ttfb_ms:.0f} ms")
    lines = [line]
    advice: dict[str, tuple[int, str]] = {}
    for row in rows:
        missing = [f for f in ADVICE if f in row.refused]
        gain = fastest.round_trips - row.expected_round_trips
        if not missing or gain <= 0:
            continue
        what = " and ".join(ADVICE[f] for f in missing)
        if gain > advice.get(what, (0, ""))[0]:
            advice[what] = (gain, row.variant)
    for what, (gain, variant) in sorted(advice.items(), key=lambda item: -item[1][0]):
        price = f", ≈ {gain * rtt_ms:.0f} ms from here" if rtt_ms else ""
        lines.append(f"the server could {what}: −{_rtts(gain)} expected{price} ({variant})")
    return lines
