"""Many runs — each RTT × variant × seed — in parallel processes, for TTFB-versus-RTT plots."""

from __future__ import annotations

import os
import statistics
import sys
from array import array
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from typing import Any

from handshake.net.link import LinkConfig
from handshake.runner import RunOptions, row_from_run, run_sim
from handshake.variants import CATALOG, Variant


@dataclass(frozen=True)
class SweepPoint:
    """One run of the sweep; ``error`` says why a run has no result (its task failed on every try)."""

    variant: str
    rtt_ms: float
    seed: int
    round_trips: int | None
    ttfb_ms: float | None
    causes: tuple[str, ...]
    error: str | None = None

    def as_dict(self) -> dict:
        out = asdict(self)
        out["causes"] = list(self.causes)
        return out


@dataclass(frozen=True)
class _Task:
    variant: str
    rtt_s: float
    seed: int

    def failed(self, reason: str) -> SweepPoint:
        return SweepPoint(self.variant, round(self.rtt_s * 1000, 6), self.seed, None, None, (), reason)


def _run(task: _Task, link: LinkConfig, options: RunOptions) -> SweepPoint:
    run = run_sim(CATALOG[task.variant], replace(link, delay_s=task.rtt_s / 2, seed=task.seed), options)
    row = row_from_run(run)
    return SweepPoint(task.variant, round(task.rtt_s * 1000, 6), task.seed, row.round_trips, row.ttfb_ms, tuple(row.causes))


def _run_chunk(tasks: list[_Task], link: LinkConfig, options: RunOptions) -> list[SweepPoint]:
    return [_run(task, link, options) for task in tasks]


def _chunks(tasks: list[_Task], size: int) -> list[list[_Task]]:
    return [tasks[start : start + size] for start in range(0, len(tasks), size)]


def sweep_chunks(
    variants: list[Variant],
    link: LinkConfig,
    options: RunOptions,
    rtts_s: list[float],
    *,
    seeds: int = 1,
    jobs: int | None = None,
    cluster: Any = None,
    progress: Callable[[int, int], None] | None = None,
) -> Iterator[list[SweepPoint]]:
    """Every (variant, RTT, seed) run, a chunk of points at a time as they finish (seeds are
    link.seed … link.seed+seeds-1), so that a caller can write them and forget them.

    Local processes (``jobs``; 1: this process) give the chunks in task order; a Dask
    ``cluster`` client in the order they finish, with a failed chunk's runs as points that
    carry the error."""
    tasks = [_Task(v.name, rtt, link.seed + s) for v in variants for rtt in rtts_s for s in range(seeds)]
    jobs = jobs or os.cpu_count() or 1
    done = 0
    if cluster is None:
        size = max(1, min(50, len(tasks) // (jobs * 8) or 1))
    else:  # fewer, larger tasks: each costs the scheduler and the network a round of messages
        workers = len(cluster.scheduler_info().get("workers", {})) or 1
        size = max(1, min(1000, len(tasks) // (workers * 4) or 1))
    chunks = _chunks(tasks, size)
    if cluster is not None:
        from handshake.cluster import TaskFailed, run_on_cluster

        outcomes: Iterator[Any] = (
            [task.failed(outcome.reason) for task in chunks[index]] if isinstance(outcome, TaskFailed) else outcome
            for index, outcome in run_on_cluster(cluster, _run_chunk, chunks, link, options)
        )
    elif jobs == 1:
        outcomes = (_run_chunk(chunk, link, options) for chunk in chunks)
    else:
        outcomes = _pool_chunks(chunks, link, options, jobs)
    for points in outcomes:
        done += len(points)
        if progress:
            progress(done, len(tasks))
        yield points


def _pool_chunks(chunks: list[list[_Task]], link: LinkConfig, options: RunOptions, jobs: int) -> Iterator[list[SweepPoint]]:
    """The chunks on the local process pool, in task order, at most a few ahead of the reader."""
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        pending: deque = deque()
        for chunk in chunks:
            pending.append(pool.submit(_run_chunk, chunk, link, options))
            if len(pending) >= jobs * 4:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def sweep(variants: list[Variant], link: LinkConfig, options: RunOptions, rtts_s: list[float],
          **how: Any) -> list[SweepPoint]:
    """Every (variant, RTT, seed) run, in task order; ``how``: ``sweep_chunks``'s keywords."""
    points = [point for chunk in sweep_chunks(variants, link, options, rtts_s, **how) for point in chunk]
    seeds = how.get("seeds", 1)
    order = {(v.name, round(rtt * 1000, 6), link.seed + s): i
             for i, (v, rtt, s) in enumerate((v, rtt, s) for v in variants for rtt in rtts_s for s in range(seeds))}
    return sorted(points, key=lambda p: order[(p.variant, p.rtt_ms, p.seed)])


class Series:
    """Per variant, per RTT: median TTFB and the spread across seeds (what the plot draws), kept
    as the runs come: a packed array of TTFBs per point, not the runs themselves."""

    def __init__(self) -> None:
        self._ttfbs: dict[str, dict[float, array]] = {}
        self._runs: dict[tuple[str, float], int] = {}

    def add(self, points: Iterable[SweepPoint]) -> Series:
        for point in points:
            ttfbs = self._ttfbs.setdefault(point.variant, {}).setdefault(point.rtt_ms, array("d"))
            self._runs[point.variant, point.rtt_ms] = self._runs.get((point.variant, point.rtt_ms), 0) + 1
            if point.ttfb_ms is not None:
                ttfbs.append(point.ttfb_ms)
        return self

    def result(self) -> dict[str, list[dict]]:
        out: dict[str, list[dict]] = {}
        for variant, by_rtt in self._ttfbs.items():
            rows = []
            for rtt_ms in sorted(by_rtt):
                ttfbs = sorted(by_rtt[rtt_ms])
                rows.append(
                    {
                        "rtt_ms": rtt_ms,
                        "runs": self._runs[variant, rtt_ms],
                        "complete": len(ttfbs),
                        "ttfb_ms_median": statistics.median(ttfbs) if ttfbs else None,
                        "ttfb_ms_min": ttfbs[0] if ttfbs else None,
                        "ttfb_ms_p10": percentile(ttfbs, 0.10),
                        "ttfb_ms_p90": percentile(ttfbs, 0.90),
                        "ttfb_ms_max": ttfbs[-1] if ttfbs else None,
                    }
                )
            out[variant] = rows
        return out


def percentile(ordered: list[float], fraction: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default), on sorted data."""
    if not ordered:
        return None
    position = (len(ordered) - 1) * fraction
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


class ProgressBar:
    """tqdm's progress bar on stderr, only when stderr is a terminal; called with (done, total)."""

    def __init__(self, stream=None, unit: str = "run") -> None:
        self.stream = stream or sys.stderr
        self.unit = unit
        self.enabled = self.stream.isatty()
        self._bar = None

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit=self.unit, file=self.stream)
        self._bar.update(done - self._bar.n)
        if done == total:
            self._bar.close()
