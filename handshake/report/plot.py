"""TTFB against RTT, one line per variant (the median over seeds), with a band from the 10th to
the 90th percentile where seeds differ (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

from handshake.errors import UsageError


def plot_ttfb(series: dict[str, list[dict]], path: str | Path, *, title: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError("--plot needs matplotlib: pip install 'handshake[plot]'") from None
    figure, axes = plt.subplots(figsize=(9, 5.5), dpi=110)
    banded = False
    for variant, rows in series.items():
        rtts = [r["rtt_ms"] for r in rows if r["ttfb_ms_median"] is not None]
        medians = [r["ttfb_ms_median"] for r in rows if r["ttfb_ms_median"] is not None]
        (line,) = axes.plot(rtts, medians, marker="." if len(rtts) < 40 else None, label=variant)
        lows = [r["ttfb_ms_p10"] for r in rows if r["ttfb_ms_median"] is not None]
        highs = [r["ttfb_ms_p90"] for r in rows if r["ttfb_ms_median"] is not None]
        if any(lo != hi for lo, hi in zip(lows, highs)):
            banded = True
            axes.fill_between(rtts, lows, highs, color=line.get_color(), alpha=0.15, linewidth=0)
    axes.set_xlabel("round-trip time (ms)")
    axes.set_ylabel("time to first response byte (ms)")
    axes.set_title(title + ("\nlines: median over seeds, bands: 10th–90th percentile" if banded else ""))
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize="small", ncol=2)
    figure.tight_layout()
    try:
        figure.savefig(path)
    except OSError as error:
        raise UsageError(f"cannot write plot {path}: {error.strerror or error}") from None
    finally:
        plt.close(figure)
