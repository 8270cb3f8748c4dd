"""Many runs — each RTT × variant × seed — in parallel processes, for TTFB-versus-RTT plots."""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace

from handshake.net.link import LinkConfig
from handshake.runner import RunOptions, row_from_run, run_sim
from handshake.variants import CATALOG, Variant


@dataclass(frozen=True)
class SweepPoint:
    """One run of the sweep."""

    variant: str
    rtt_ms: float
    seed: int
    round_trips: int | None
    ttfb_ms: float | None
    causes: tuple[str, ...]

    def as_dict(self) -> dict:
        out = asdict(self)
        out["causes"] = list(self.causes)
        return out


@dataclass(frozen=True)
class _Task:
    variant: str
    rtt_s: float
    seed: int


def _run(task: _Task, link: LinkConfig, options: RunOptions) -> SweepPoint:
    run = run_sim(CATALOG[task.variant], replace(link, delay_s=task.rtt_s / 2, seed=task.seed), options)
    row = row_from_run(run)
    return SweepPoint(task.variant, round(task.rtt_s * 1000, 6), task.seed, row.round_trips, row.ttfb_ms, tuple(row.causes))


def _run_chunk(tasks: list[_Task], link: LinkConfig, options: RunOptions) -> list[SweepPoint]:
    return [_run(task, link, options) for task in tasks]


def _chunks(tasks: list[_Task], size: int) -> Iterator[list[_Task]]:
    for start in range(0, len(tasks), size):
        yield tasks[start : start + size]


def sweep(
    variants: list[Variant],
    link: LinkConfig,
    options: RunOptions,
    rtts_s: list[float],
    *,
    seeds: int = 1,
    jobs: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[SweepPoint]:
    """Run every (variant, RTT, seed); seeds are link.seed … link.seed+seeds-1. Results in task order."""
    tasks = [_Task(v.name, rtt, link.seed + s) for v in variants for rtt in rtts_s for s in range(seeds)]
    jobs = jobs or os.cpu_count() or 1
    done = 0
    results: list[SweepPoint] = []
    if jobs == 1:
        for task in tasks:
            results.append(_run(task, link, options))
            done += 1
            if progress:
                progress(done, len(tasks))
        return results
    size = max(1, min(50, len(tasks) // (jobs * 8) or 1))
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(_run_chunk, chunk, link, options) for chunk in _chunks(tasks, size)]
        for future in futures:
            chunk = future.result()
            results.extend(chunk)
            done += len(chunk)
            if progress:
                progress(done, len(tasks))
    return results


def series(points: list[SweepPoint]) -> dict[str, list[dict]]:
    """Per variant, per RTT: median TTFB and the spread across seeds (what the plot draws)."""
    grouped: dict[str, dict[float, list[SweepPoint]]] = {}
    for point in points:
        grouped.setdefault(point.variant, {}).setdefault(point.rtt_ms, []).append(point)
    out: dict[str, list[dict]] = {}
    for variant, by_rtt in grouped.items():
        rows = []
        for rtt_ms in sorted(by_rtt):
            ttfbs = sorted(p.ttfb_ms for p in by_rtt[rtt_ms] if p.ttfb_ms is not None)
            rows.append(
                {
                    "rtt_ms": rtt_ms,
                    "runs": len(by_rtt[rtt_ms]),
                    "complete": len(ttfbs),
                    "ttfb_ms_median": statistics.median(ttfbs) if ttfbs else None,
                    "ttfb_ms_min": ttfbs[0] if ttfbs else None,
                    "ttfb_ms_p10": _percentile(ttfbs, 0.10),
                    "ttfb_ms_p90": _percentile(ttfbs, 0.90),
                    "ttfb_ms_max": ttfbs[-1] if ttfbs else None,
                }
            )
        out[variant] = rows
    return out


def _percentile(ordered: list[float], fraction: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default), on sorted data."""
    if not ordered:
        return None
    position = (len(ordered) - 1) * fraction
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


class ProgressBar:
    """A one-line progress bar on stderr, only when stderr is a terminal."""

    def __init__(self, stream=None, width: int = 30) -> None:
        self.stream = stream or sys.stderr
        self.width = width
        self.enabled = self.stream.isatty()
        self._start = time.monotonic()

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        filled = int(self.width * done / total) if total else self.width
        elapsed = time.monotonic() - self._start
        self.stream.write(f"\r[{'#' * filled}{'.' * (self.width - filled)}] {done}/{total} runs, {elapsed:.1f} s")
        if done == total:
            self.stream.write("\n")
        self.stream.flush()
