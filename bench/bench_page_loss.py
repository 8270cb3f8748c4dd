"""Pages under random loss, sim against kernel: page_ms and head-of-line blocking over many seeds.

Run by hand, as root: `python bench/bench_page_loss.py [--seeds 50] [--loss 2%] [--page 10x20KB]
[--rtt 100ms] [--engines sim,kernel]`. Prints figures; asserts nothing. About 1-3 s of real time
per kernel page; the sim's take a few hundred ms.

For tls13 over HTTP/1.1 (six connections), tls13 over HTTP/2 and quic (HTTP/3): per engine the
median and p90 page_ms, the median head-of-line blocking (``head_of_line_ms``: streams waiting
behind other streams' missing bytes) and in how many runs it was above zero, and the ratio of the
kernel's median page_ms to the sim's (issue 12's goal: within 15 %). The same seed does not drop
the same packets in both engines, so only distributions compare.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace

from handshake.net.link import LinkConfig
from handshake.page import parse_page
from handshake.runner import RunOptions, row_from_run, run_sim
from handshake.teach.sweep import percentile
from handshake.units import parse_duration, parse_percent
from handshake.variants import CATALOG

CASES = {"tls13 + HTTP/1.1": ("tls13", "1.1"), "tls13 + HTTP/2": ("tls13", "2"), "quic + HTTP/3": ("quic", "2")}
GOAL = 0.15


def runs(engine: str, link: LinkConfig, seeds: int, options: dict[str, RunOptions]) -> dict[str, list]:
    """Rows per case, seeds 0..seeds-1."""
    out: dict[str, list] = {name: [] for name in CASES}
    session = None
    if engine == "kernel":
        from handshake.kernel.engine import KernelSession
        session = KernelSession(link)
        session.__enter__()
    try:
        for seed in range(seeds):
            seeded = replace(link, seed=seed)
            for name, (variant, _) in CASES.items():
                if session is None:
                    run = run_sim(CATALOG[variant], seeded, options[name])
                else:
                    run = session.run(CATALOG[variant], seeded, options[name])
                out[name].append(row_from_run(run))
    finally:
        if session is not None:
            session.__exit__(None, None, None)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=50)
    parser.add_argument("--loss", default="2%")
    parser.add_argument("--page", default="10x20KB")
    parser.add_argument("--rtt", default="100ms")
    parser.add_argument("--engines", default="sim,kernel")
    args = parser.parse_args()
    link = LinkConfig(delay_s=parse_duration(args.rtt) / 2, loss=parse_percent(args.loss))
    page = parse_page(args.page)
    options = {name: RunOptions(page=page, http=http) for name, (_, http) in CASES.items()}
    medians: dict[tuple[str, str], float] = {}
    print(f"{args.page} at {args.rtt} RTT, {args.loss} loss each way, {args.seeds} seeds")
    print(f"{'engine':7} {'case':18} {'done':>5} {'page ms p50':>12} {'p90':>8} {'HoL ms p50':>11} {'runs HoL>0':>11} {'wall s':>7}")
    for engine in args.engines.split(","):
        began = time.perf_counter()
        rows = runs(engine, link, args.seeds, options)
        wall = time.perf_counter() - began
        for name, case_rows in rows.items():
            pages = sorted(row.page_ms for row in case_rows if row.page_ms is not None)
            blocked = [row.head_of_line_ms for row in case_rows if row.head_of_line_ms is not None]
            if not pages:
                print(f"{engine:7} {name:18} {0:>5}")
                continue
            medians[engine, name] = statistics.median(pages)
            hol = f"{statistics.median(blocked):11.1f}" if blocked else f"{'-':>11}"
            above = sum(1 for b in blocked if b > 0)
            print(f"{engine:7} {name:18} {len(pages):>5} {medians[engine, name]:12.1f} "
                  f"{percentile(pages, 0.9):8.1f} {hol} {above:>11} {wall / len(rows):7.1f}")
    for name in CASES:
        if ("sim", name) in medians and ("kernel", name) in medians:
            ratio = medians["kernel", name] / medians["sim", name]
            verdict = "within" if abs(ratio - 1) <= GOAL else "outside"
            print(f"{name:18} kernel/sim median page_ms {ratio:.3f} ({verdict} {GOAL:.0%})")


if __name__ == "__main__":
    main()
