"""`handshake compare --rtt 100ms`, sim engine against kernel engine: wall time and TTFB per variant.

Run by hand, as root (the kernel engine builds network namespaces):
`python bench/bench_engines.py [--repeat N] [--rtt 100ms]`. Prints figures; asserts nothing.

The wall times are the command's, start-up included. The kernel engine's floor is the real
time its round trips take: every variant's warm-up, measured connection and closes at the RTT.
The TTFB difference is what the kernel's real clock holds that the sim's virtual one does not:
computation (TLS, aioquic's pure-Python QUIC) and the shim's delay error.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time


def run_compare(engine: str, rtt: str) -> tuple[float, dict[str, float]]:
    """One `compare --format json` run: (wall seconds, variant -> TTFB ms)."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "handshake", "compare", "--engine", engine, "--rtt", rtt, "--format", "json"],
        check=True, capture_output=True, text=True,
    )
    wall = time.perf_counter() - start
    rows = json.loads(done.stdout)["rows"]
    return wall, {row["variant"]: row["ttfb_ms"] for row in rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rtt", default="100ms")
    args = parser.parse_args()
    walls: dict[str, list[float]] = {"sim": [], "kernel": []}
    ttfbs: dict[str, dict[str, list[float]]] = {"sim": {}, "kernel": {}}
    for _ in range(args.repeat):
        for engine in ("sim", "kernel"):
            wall, ttfb = run_compare(engine, args.rtt)
            walls[engine].append(wall)
            for variant, ms in ttfb.items():
                ttfbs[engine].setdefault(variant, []).append(ms)
    sim_s, kernel_s = statistics.median(walls["sim"]), statistics.median(walls["kernel"])
    variants = list(ttfbs["sim"])
    print(f"handshake compare --rtt {args.rtt} ({len(variants)} variants), {args.repeat} runs each, medians")
    print(f"  wall time: sim {sim_s * 1000:7.1f} ms   kernel {kernel_s * 1000:7.1f} ms   "
          f"ratio kernel/sim {kernel_s / sim_s:5.1f}")
    print(f"  {'variant':15} {'sim TTFB':>9} {'kernel TTFB':>12} {'diff':>8} {'diff %':>7}   kernel spread")
    for variant in variants:
        sim = statistics.median(ttfbs["sim"][variant])
        kernel_runs = ttfbs["kernel"][variant]
        kernel = statistics.median(kernel_runs)
        print(f"  {variant:15} {sim:7.1f} ms {kernel:9.1f} ms {kernel - sim:+6.1f} ms {(kernel - sim) / sim * 100:+6.1f} %"
              f"   {min(kernel_runs):.1f}-{max(kernel_runs):.1f} ms")


if __name__ == "__main__":
    main()
