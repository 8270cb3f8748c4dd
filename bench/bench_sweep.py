"""Wall time of a 1,000-run sweep (all eleven variants × 46 RTTs × 2 seeds, ≈1,012 runs).

Run by hand: `python bench/bench_sweep.py [--jobs N]`. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import time

from handshake.net.link import LinkConfig
from handshake.runner import RunOptions
from handshake.teach.ranges import rtt_points
from handshake.teach.sweep import sweep
from handshake.variants import select

GOAL_S = 60.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=os.cpu_count())
    args = parser.parse_args()
    rtts = rtt_points(0.01, 0.46, 0.01)
    start = time.perf_counter()
    points = sweep(select(None), LinkConfig.from_rtt(0.1), RunOptions(), rtts, seeds=2, jobs=args.jobs)
    wall = time.perf_counter() - start
    print(f"sweep: {len(points)} runs on {args.jobs} processes in {wall:.1f} s "
          f"({wall / len(points) * 1000:.1f} ms per run; goal {GOAL_S:.0f} s -> ratio {wall / GOAL_S:.2f})")


if __name__ == "__main__":
    main()
