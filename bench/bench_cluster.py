"""`sweep` on Dask against the local process pool, and a 10^5-run sweep's peak memory.

Run by hand: `python bench/bench_cluster.py [--runs 10000] [--big 100000] [--variants http,tls13]`.
Prints figures; asserts nothing (issue 13's goals: Dask's overhead within 15 % of the pool's wall
time; the big sweep streams its rows with a peak RSS under 500 MB).

1. The same `--runs` sweep (RTT points × seeds) on the process pool (2 processes) and on a
   LocalCluster of 2 workers already running, as a cluster's scheduler would be: wall times and
   their ratio. The cluster's start-up is printed apart.
2. `handshake sweep --format csv` of `--big` runs into /dev/null, as a subprocess: its wall time
   and the peak RSS of the command and of its largest worker process.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from handshake.cluster import cluster_client
from handshake.net.link import LinkConfig
from handshake.runner import RunOptions
from handshake.teach.sweep import sweep
from handshake.variants import select

RTTS = [rtt_ms / 1000 for rtt_ms in range(10, 210)]  # 200 RTT points, 1 ms apart


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--big", type=int, default=100_000)
    parser.add_argument("--variants", default="http,tls13")
    args = parser.parse_args()
    variants = select(args.variants)
    link, options = LinkConfig.from_rtt(0.1, loss=0.02), RunOptions()
    seeds = max(1, args.runs // (len(variants) * len(RTTS)))
    runs = seeds * len(variants) * len(RTTS)

    start = time.perf_counter()
    pool = sweep(variants, link, options, RTTS, seeds=seeds, jobs=2)
    pool_s = time.perf_counter() - start
    start = time.perf_counter()
    with cluster_client("local:2") as client:
        client.wait_for_workers(2)
        startup_s = time.perf_counter() - start
        start = time.perf_counter()
        on_dask = sweep(variants, link, options, RTTS, seeds=seeds, cluster=client)
        dask_s = time.perf_counter() - start
    assert on_dask == pool, "the cluster's runs differ from the pool's"
    print(f"{runs} runs ({args.variants}): process pool {pool_s:.1f} s, Dask LocalCluster {dask_s:.1f} s "
          f"(ratio {dask_s / pool_s:.3f}; overhead {(dask_s / pool_s - 1) * 100:+.1f} %, goal ≤ +15 %); "
          f"starting the cluster took {startup_s:.1f} s more")

    if not args.big:
        return
    big_seeds = max(1, args.big // (len(variants) * len(RTTS)))
    big_runs = big_seeds * len(variants) * len(RTTS)
    command = [sys.executable, "-m", "handshake", "sweep", "--rtt", "10ms:209ms:1ms", "--variants", args.variants,
               "--loss", "2%", "--seeds", str(big_seeds), "--format", "csv"]
    # Measured from a fresh process, so that the pool and cluster workers above do not count.
    measure = ("import os, resource, subprocess, sys, time; start = time.perf_counter(); "
               "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
               "print(time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    done = subprocess.run([sys.executable, "-c", measure, *command], check=True, capture_output=True, text=True)
    wall_text, peak_kb = done.stdout.split()
    wall, peak_mb = float(wall_text), int(peak_kb) / 1024
    print(f"{big_runs} runs streamed as CSV: {wall:.0f} s, peak RSS of the largest process (the command or a "
          f"worker) {peak_mb:.0f} MB (goal < 500 MB)")


if __name__ == "__main__":
    main()
