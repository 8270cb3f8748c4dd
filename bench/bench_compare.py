"""Wall time of `handshake compare --rtt 100ms` (all variants), as a user sees it and in-process.

Run by hand: `python bench/bench_compare.py [--repeat N]`. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time


def cli_wall_times(repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "handshake", "compare", "--rtt", "100ms"], check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return times


def in_process_times(repeat: int) -> tuple[list[float], int]:
    from handshake.net.link import LinkConfig
    from handshake.runner import compare
    from handshake.variants import select

    link = LinkConfig.from_rtt(0.1)
    compare(select(None), link)  # warm: certificate chain cache, imports
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        rows = compare(select(None), link)
        times.append(time.perf_counter() - start)
    return times, len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    start = time.perf_counter()
    import handshake.runner  # noqa: F401  (what `compare` imports before its first run)

    import_s = time.perf_counter() - start
    cli = cli_wall_times(args.repeat)
    inproc, variants = in_process_times(args.repeat)
    print(f"handshake compare --rtt 100ms ({variants} variants), {args.repeat} runs each")
    print(f"  command wall time   median {statistics.median(cli) * 1000:7.1f} ms   max {max(cli) * 1000:7.1f} ms")
    print(f"  in-process          median {statistics.median(inproc) * 1000:7.1f} ms   "
          f"({statistics.median(inproc) / variants * 1000:.1f} ms per variant)")
    print(f"  import of the runner          {import_s * 1000:7.1f} ms")
    print(f"  goal: under 1 s on 2 cores -> {'met' if statistics.median(cli) < 1.0 else 'NOT met'} "
          f"(ratio to goal {statistics.median(cli) / 1.0:.2f})")


if __name__ == "__main__":
    main()
