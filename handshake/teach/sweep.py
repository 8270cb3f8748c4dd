"""Many runs — each RTT (or loss) × variant × seed — in parallel processes, for TTFB-versus-RTT
plots, and page_ms-versus-loss ones: with a page, each variant may run over several HTTP
versions, each a line of its own ("tls13 HTTP/2")."""

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
    loss_pct: float | None = None
    """A loss sweep's point: the loss each way, in percent."""
    http: str | None = None
    """The HTTP version asked for, where the sweep asked for several ("3" for QUIC)."""
    page_ms: float | None = None
    head_of_line_ms: float | None = None

    @property
    def line(self) -> str:
        """The plot line (series) it belongs to."""
        return _line_name(self.variant, self.http)

    def as_dict(self) -> dict:
        out = asdict(self)
        out["causes"] = list(self.causes)
        for key in ("loss_pct", "http", "page_ms", "head_of_line_ms"):
            if out[key] is None:
                del out[key]  # an RTT sweep of one answer keeps its fields (DESIGN.md §3)
        return out


@dataclass(frozen=True)
class _Task:
    variant: str
    rtt_s: float
    seed: int
    loss: float | None = None
    http: str | None = None

    def failed(self, reason: str) -> SweepPoint:
        return SweepPoint(self.variant, round(self.rtt_s * 1000, 6), self.seed, None, None, (), reason,
                          self.loss_pct, self.http)

    @property
    def loss_pct(self) -> float | None:
        return None if self.loss is None else round(self.loss * 100, 6)


def _run(task: _Task, link: LinkConfig, options: RunOptions) -> SweepPoint:
    link = replace(link, delay_s=task.rtt_s / 2, seed=task.seed)
    if task.loss is not None:
        link = replace(link, loss=task.loss)
    if task.http is not None and task.http != "3":
        options = replace(options, http=task.http)
    row = row_from_run(run_sim(CATALOG[task.variant], link, options))
    return SweepPoint(task.variant, round(task.rtt_s * 1000, 6), task.seed, row.round_trips, row.ttfb_ms,
                      tuple(row.causes), None, task.loss_pct, task.http, row.page_ms, row.head_of_line_ms)


def _run_chunk(tasks: list[_Task], link: LinkConfig, options: RunOptions) -> list[SweepPoint]:
    return [_run(task, link, options) for task in tasks]


def _chunks(tasks: list[_Task], size: int) -> list[list[_Task]]:
    return [tasks[start : start + size] for start in range(0, len(tasks), size)]


def _line_name(variant: str, http: str | None) -> str:
    return variant if http is None else f"{variant} HTTP/{http}"


def _versions(variant: Variant, https: list[str] | None) -> list[str | None]:
    """The HTTP versions a variant runs over: QUIC's is HTTP/3 alone; None where none was asked."""
    if not https:
        return [None]
    return ["3"] if variant.transport == "quic" else list(https)


def line_order(variants: list[Variant], https: list[str] | None) -> list[str]:
    """The sweep's lines in task order (a cluster's points come in any)."""
    return [_line_name(variant.name, http) for variant in variants for http in _versions(variant, https)]


def _tasks(variants: list[Variant], link: LinkConfig, rtts_s: list[float], seeds: int,
           losses: list[float] | None, https: list[str] | None) -> list[_Task]:
    """Variant × HTTP version × RTT × loss × seed, in that order."""
    tasks = []
    for variant in variants:
        for http in _versions(variant, https):
            for rtt in rtts_s:
                for loss in (losses or [None]):
                    tasks += [_Task(variant.name, rtt, link.seed + s, loss, http) for s in range(seeds)]
    return tasks


def sweep_chunks(
    variants: list[Variant],
    link: LinkConfig,
    options: RunOptions,
    rtts_s: list[float],
    *,
    seeds: int = 1,
    losses: list[float] | None = None,
    https: list[str] | None = None,
    jobs: int | None = None,
    cluster: Any = None,
    progress: Callable[[int, int], None] | None = None,
) -> Iterator[list[SweepPoint]]:
    """Every (variant, HTTP version, RTT, loss, seed) run, a chunk of points at a time as they
    finish (seeds are link.seed … link.seed+seeds-1), so that a caller can write them and
    forget them. ``losses``: fractions each way, for a loss sweep (else the link's own);
    ``https``: HTTP versions each TCP variant runs over, each a line of its own.

    Local processes (``jobs``; 1: this process) give the chunks in task order; a Dask
    ``cluster`` client in the order they finish, with a failed chunk's runs as points that
    carry the error."""
    tasks = _tasks(variants, link, rtts_s, seeds, losses, https)
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
    """Every run, in task order; ``how``: ``sweep_chunks``'s keywords."""
    points = [point for chunk in sweep_chunks(variants, link, options, rtts_s, **how) for point in chunk]
    tasks = _tasks(variants, link, rtts_s, how.get("seeds", 1), how.get("losses"), how.get("https"))
    order = {(t.variant, t.http, round(t.rtt_s * 1000, 6), t.loss_pct, t.seed): i for i, t in enumerate(tasks)}
    return sorted(points, key=lambda p: order[(p.variant, p.http, p.rtt_ms, p.loss_pct, p.seed)])


class Series:
    """Per line, per x: the median of y and its spread across seeds (what the plot draws), kept
    as the runs come: a packed array of values per point, not the runs themselves. x is
    ``rtt_ms`` or ``loss_pct``, y ``ttfb_ms`` or ``page_ms``."""

    def __init__(self, x: str = "rtt_ms", y: str = "ttfb_ms") -> None:
        self.x, self.y = x, y
        self._values: dict[str, dict[float, array]] = {}
        self._runs: dict[tuple[str, float], int] = {}

    def add(self, points: Iterable[SweepPoint]) -> Series:
        for point in points:
            at = getattr(point, self.x)
            values = self._values.setdefault(point.line, {}).setdefault(at, array("d"))
            self._runs[point.line, at] = self._runs.get((point.line, at), 0) + 1
            value = getattr(point, self.y)
            if value is not None:
                values.append(value)
        return self

    def result(self) -> dict[str, list[dict]]:
        out: dict[str, list[dict]] = {}
        y = self.y
        for line, by_x in self._values.items():
            rows = []
            for at in sorted(by_x):
                values = sorted(by_x[at])
                rows.append(
                    {
                        self.x: at,
                        "runs": self._runs[line, at],
                        "complete": len(values),
                        f"{y}_median": statistics.median(values) if values else None,
                        f"{y}_min": values[0] if values else None,
                        f"{y}_p10": percentile(values, 0.10),
                        f"{y}_p90": percentile(values, 0.90),
                        f"{y}_max": values[-1] if values else None,
                    }
                )
            out[line] = rows
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
