"""A sweep's lines -- TTFB against RTT, or page_ms against loss -- one per variant (and HTTP
version), the median over seeds, with a band from the 10th to the 90th percentile where seeds
differ (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

from handshake.errors import UsageError


AXES = {
    "rtt_ms": "round-trip time (ms)",
    "loss_pct": "loss each way (%)",
    "ttfb_ms": "time to first response byte (ms)",
    "page_ms": "page load: to the last byte of the last object (ms)",
}


def plot_ttfb(series: dict[str, list[dict]], path: str | Path, *, title: str) -> None:
    plot_series(series, path, title=title, x="rtt_ms", y="ttfb_ms")


def plot_series(series: dict[str, list[dict]], path: str | Path, *, title: str, x: str, y: str) -> None:
    """``series``: ``teach.sweep.Series.result()`` with the same ``x`` and ``y``."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError("--plot needs matplotlib: pip install 'handshake[plot]'") from None
    figure, axes = plt.subplots(figsize=(9, 5.5), dpi=110)
    banded = False
    for name, rows in series.items():
        rows = [r for r in rows if r[f"{y}_median"] is not None]
        xs = [r[x] for r in rows]
        (line,) = axes.plot(xs, [r[f"{y}_median"] for r in rows], marker="." if len(xs) < 40 else None, label=name)
        lows = [r[f"{y}_p10"] for r in rows]
        highs = [r[f"{y}_p90"] for r in rows]
        if any(lo != hi for lo, hi in zip(lows, highs)):
            banded = True
            axes.fill_between(xs, lows, highs, color=line.get_color(), alpha=0.15, linewidth=0)
    axes.set_xlabel(AXES[x])
    axes.set_ylabel(AXES[y])
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
