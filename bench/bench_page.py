"""Page loads on the sim engine: wall time per page and HTTP version, and what the page cost.

Run by hand: `python bench/bench_page.py [--repeat N] [--rtt 100ms]`. Prints figures; asserts
nothing. Each line is one `run_sim` of a page (warm-up included) through `row_from_run`: the wall
time is what the simulator and the analysis of its trace cost here; page_ms is virtual time, the
page's load as the trace shows it. The ratio column compares each wall time with the 1x64B
page's (one small object: the plain comparison's cost).
"""

from __future__ import annotations

import argparse
import statistics
import time

from handshake.net.link import LinkConfig
from handshake.page import parse_page
from handshake.runner import RunOptions, row_from_run, run_sim
from handshake.units import parse_duration
from handshake.variants import CATALOG

CASES = [("tls13", "1.1"), ("tls13", "2"), ("quic", "2")]
PAGES = ["1x64B", "10x20KB", "30x50KB", "100x10KB"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rtt", default="100ms")
    args = parser.parse_args()
    link = LinkConfig.from_rtt(parse_duration(args.rtt))
    print(f"{'page':>9}  {'variant':>7}  {'http':>4}  {'wall ms (median)':>16}  {'x 1x64B':>7}  "
          f"{'page_ms':>8}  {'packets':>7}")
    base: dict[tuple[str, str], float] = {}
    for page in PAGES:
        for variant, http in CASES:
            options = RunOptions(page=parse_page(page), http=http)
            walls, row = [], None
            for _ in range(args.repeat):
                start = time.perf_counter()
                row = row_from_run(run_sim(CATALOG[variant], link, options))
                walls.append(time.perf_counter() - start)
            assert row is not None
            wall = statistics.median(walls) * 1000
            base.setdefault((variant, http), wall)
            label = "3" if variant == "quic" else http
            print(f"{page:>9}  {variant:>7}  {label:>4}  {wall:16.1f}  {wall / base[(variant, http)]:7.1f}  "
                  f"{row.page_ms or 0:8.1f}  {row.packets:7d}")


if __name__ == "__main__":
    main()
