"""`handshake compare --rtt 100ms`, sim engine against kernel engine: wall time and TTFB per variant.

Run by hand, as root (the kernel engine builds network namespaces):
`python bench/bench_engines.py [--repeat N] [--rtt 100ms]`. Prints figures; asserts nothing.

The wall times are the command's, start-up included. The kernel engine's floor is the real
time its round trips take: every variant's warm-up, measured connection and closes at the RTT.
The TTFB difference is what the kernel's real clock holds that the sim's virtual one does not:
computation (TLS, aioquic's pure-Python QUIC) and the shim's delay error. Each kernel row says how
long the endpoints' own code ran before the first response byte ("endpoint code ran X ms"); the
last columns take that off, leaving what the network alone took.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time


ENDPOINT_NOTE = re.compile(r"endpoint code ran ([0-9.]+) ms")


def run_compare(engine: str, rtt: str) -> tuple[float, dict[str, tuple[float, float]]]:
    """One `compare --format json` run: (wall seconds, variant -> (TTFB ms, endpoint ms))."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "handshake", "compare", "--engine", engine, "--rtt", rtt, "--format", "json"],
        check=True, capture_output=True, text=True,
    )
    wall = time.perf_counter() - start
    out = {}
    for row in json.loads(done.stdout)["rows"]:
        found = [ENDPOINT_NOTE.search(note) for note in row["notes"]]
        busy = next((float(match.group(1)) for match in found if match), 0.0)
        out[row["variant"]] = (row["ttfb_ms"], busy)
    return wall, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rtt", default="100ms")
    args = parser.parse_args()
    walls: dict[str, list[float]] = {"sim": [], "kernel": []}
    ttfbs: dict[str, dict[str, list[tuple[float, float]]]] = {"sim": {}, "kernel": {}}
    for _ in range(args.repeat):
        for engine in ("sim", "kernel"):
            wall, ttfb = run_compare(engine, args.rtt)
            walls[engine].append(wall)
            for variant, pair in ttfb.items():
                ttfbs[engine].setdefault(variant, []).append(pair)
    sim_s, kernel_s = statistics.median(walls["sim"]), statistics.median(walls["kernel"])
    variants = list(ttfbs["sim"])
    print(f"handshake compare --rtt {args.rtt} ({len(variants)} variants), {args.repeat} runs each, medians")
    print(f"  wall time: sim {sim_s * 1000:7.1f} ms   kernel {kernel_s * 1000:7.1f} ms   "
          f"ratio kernel/sim {kernel_s / sim_s:5.1f}")
    print(f"  {'variant':15} {'sim TTFB':>9} {'kernel TTFB':>12} {'diff %':>7} {'spread':>14}"
          f" {'endpoint':>9} {'network':>10} {'diff %':>7}")
    for variant in variants:
        sim = statistics.median(ttfb for ttfb, _ in ttfbs["sim"][variant])
        kernel_runs = ttfbs["kernel"][variant]
        kernel = statistics.median(ttfb for ttfb, _ in kernel_runs)
        busy = statistics.median(busy for _, busy in kernel_runs)
        network = statistics.median(ttfb - busy for ttfb, busy in kernel_runs)
        spread = f"{min(t for t, _ in kernel_runs):.1f}-{max(t for t, _ in kernel_runs):.1f}"
        print(f"  {variant:15} {sim:7.1f} ms {kernel:9.1f} ms {(kernel - sim) / sim * 100:+6.1f} % {spread:>14}"
              f" {busy:6.1f} ms {network:7.1f} ms {(network - sim) / sim * 100:+6.1f} %")


if __name__ == "__main__":
    main()
