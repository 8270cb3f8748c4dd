"""Sim against kernel under random loss: the two engines' TTFB distributions over many seeds.

Run by hand, as root: `python bench/bench_loss.py [--seeds 200] [--loss 2%,10%]
[--variants tls13,tls12,quic] [--rtt 100ms] [--save runs.jsonl] [--load runs.jsonl]`.
Prints figures; asserts nothing. About 1 s of real time per kernel run (1,200 runs: 20 min);
the sim's runs take milliseconds. `--save` keeps every run (engine, loss, variant, seed, TTFB,
causes) as JSON lines and `--load` reuses them, so a changed sim can be held against kernel runs
made once.

The same seed does not drop the same packets in both engines (their packet sequences differ), so
only distributions compare: per variant and loss, the median, p90, p99 and maximum TTFB of each
engine and the ratios kernel/sim. The kernel's real clock also holds what its endpoints' own code
took before the first response byte (TLS, aioquic's pure-Python QUIC: 2-7 ms a run, which the
sim's virtual clock does not count); the "network" ratios take it off, run by run. The goal
(issue 15): medians within 3 %, p90 within 10 %.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from handshake.net.link import LinkConfig
from handshake.runner import RunOptions, row_from_run, run_sim
from handshake.teach.sweep import percentile
from handshake.units import parse_duration, parse_percent
from handshake.variants import select

MEDIAN_GOAL = 0.03
P90_GOAL = 0.10
ENDPOINT_NOTE = re.compile(r"endpoint code ran ([0-9.]+) ms")


def runs(run_variant: Any, engine: str, variant: Any, link: LinkConfig, loss: str, seeds: int) -> Iterator[dict]:
    """One record per seed 1..seeds: TTFB (None when no response came), endpoint time, causes."""
    for seed in range(1, seeds + 1):
        row = row_from_run(run_variant(variant, replace(link, seed=seed), RunOptions()))
        busy = next((float(m.group(1)) for m in map(ENDPOINT_NOTE.search, row.notes) if m), 0.0)
        yield {"engine": engine, "loss": loss, "variant": variant.name, "seed": seed,
               "ttfb_ms": row.ttfb_ms, "endpoint_ms": busy, "round_trips": row.round_trips, "causes": row.causes}


def figures(values: list[float]) -> tuple[float, float, float, float]:
    """Median, p90, p99 and maximum, of a non-empty list."""
    ordered = sorted(values)
    return statistics.median(ordered), percentile(ordered, 0.9), percentile(ordered, 0.99), ordered[-1]  # type: ignore[return-value]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=200)
    parser.add_argument("--loss", default="2%,10%")
    parser.add_argument("--variants", default="tls13,tls12,quic")
    parser.add_argument("--rtt", default="100ms")
    parser.add_argument("--engines", default="sim,kernel")
    parser.add_argument("--save", help="write every run here as JSON lines")
    parser.add_argument("--load", help="take the runs this file holds instead of running them again")
    args = parser.parse_args()
    engines = args.engines.split(",")
    rtt = parse_duration(args.rtt)
    stored: dict[tuple[str, str, str], list[dict]] = {}
    if args.load:
        with open(args.load) as lines:
            for record in map(json.loads, lines):
                stored.setdefault((record["engine"], record["loss"], record["variant"]), []).append(record)
    save = open(args.save, "w") if args.save else None
    session = None
    try:
        print(f"TTFB over {args.seeds} seeds at RTT {args.rtt}, ms; ratios kernel÷sim, 'network' without endpoint code")
        for loss in args.loss.split(","):
            link = replace(LinkConfig.from_rtt(rtt), loss=parse_percent(loss))
            for variant in select(args.variants):
                results: dict[str, list[dict]] = {}
                for engine in engines:
                    start = time.perf_counter()
                    records = stored.get((engine, loss, variant.name), [])[: args.seeds]
                    if len(records) < args.seeds:
                        if engine == "kernel" and session is None:
                            from handshake.kernel.engine import KernelSession

                            session = KernelSession(LinkConfig.from_rtt(rtt))
                            session.__enter__()
                        run_variant = run_sim if engine == "sim" else session.run  # type: ignore[union-attr]
                        records = list(runs(run_variant, engine, variant, link, loss, args.seeds))
                    if save is not None:
                        save.writelines(json.dumps(record) + "\n" for record in records)
                        save.flush()
                    results[engine] = records
                    done = [r["ttfb_ms"] for r in records if r["ttfb_ms"] is not None]
                    median, p90, p99, top = figures(done)
                    print(f"  {loss:>4} {variant.name:6} {engine:8} median {median:7.1f}  p90 {p90:7.1f}"
                          f"  p99 {p99:7.1f}  max {top:7.1f}  complete {len(done)}/{len(records)}"
                          f"  ({time.perf_counter() - start:.0f} s)", flush=True)
                if len(results) == 2:
                    compare(loss, variant.name, results["sim"], results["kernel"])
    finally:
        if session is not None:
            session.__exit__(*sys.exc_info())
        if save is not None:
            save.close()


def compare(loss: str, variant: str, sim: list[dict], kernel: list[dict]) -> None:
    sim_ttfb = [r["ttfb_ms"] for r in sim if r["ttfb_ms"] is not None]
    raw = [r["ttfb_ms"] for r in kernel if r["ttfb_ms"] is not None]
    network = [r["ttfb_ms"] - r["endpoint_ms"] for r in kernel if r["ttfb_ms"] is not None]
    s_med, s_p90, s_p99, s_max = figures(sim_ttfb)
    for name, values in (("ratio", raw), ("network", network)):
        k_med, k_p90, k_p99, k_max = figures(values)
        ok = abs(k_med / s_med - 1) <= MEDIAN_GOAL and abs(k_p90 / s_p90 - 1) <= P90_GOAL
        print(f"  {loss:>4} {variant:6} {name:8} median {k_med / s_med:7.3f}  p90 {k_p90 / s_p90:7.3f}"
              f"  p99 {k_p99 / s_p99:7.3f}  max {k_max / s_max:7.3f}  {'within' if ok else 'OUTSIDE'} the goal", flush=True)


if __name__ == "__main__":
    main()
