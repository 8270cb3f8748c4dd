"""`handshake inspect` packets per second on a ~100k-packet capture, beside tshark on the same file.

Run by hand: `python bench/bench_inspect.py [--packets N] [--repeat N] [--keep DIR]`. Prints
figures; asserts nothing.

The captures: every variant of the catalog run on the sim engine with a few seeds (jitter, so
the copies differ), then copied with client addresses 10.0.0.0/8 and start times spread over a
minute until it holds about N packets: thousands of TCP and QUIC connections, interleaved as on
a busy server's link, all in one raw-IP pcap with one key log for all of them. Two of them:
64-byte responses (all handshake) and 64 KB responses (page loads; see COMPOSITIONS).

Compared, on the same file and the same machine (wall time, including start-up):
- `handshake inspect FILE --format json`, with and without `--keylog KEYS` (decrypts TLS 1.3 and
  QUIC), on one CPU (`--jobs 1`) and with its default (a process per CPU for a file this size);
- `tshark -r FILE -q -z conv,tcp` (a per-connection summary, the nearest tshark has) and plain
  `tshark -r FILE` to /dev/null (one line per packet), each also with the key log.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout, uninstalled


def build_capture(directory: Path, packets_wanted: int, response_bytes: int) -> tuple[Path, Path, int, int]:
    """(pcap, key log, packets, connections)."""
    from handshake.analysis.tcp.flows import tcp_flows
    from handshake.analysis.quic.flows import quic_flows
    from handshake.net.link import LinkConfig
    from handshake.runner import RunOptions, run_sim
    from handshake.trace.packet import decode, encode
    from handshake.trace.pcap import PcapWriter
    from handshake.variants import CATALOG

    runs = []
    connections_per_copy = 0
    for seed in range(1, 4):
        link = replace(LinkConfig.from_rtt(0.05), jitter_s=0.002, seed=seed)
        for variant in CATALOG.values():
            run = run_sim(variant, link, RunOptions(response_bytes=response_bytes))
            runs.append(([(p.time, decode(p.data)) for p in run.trace.packets], run.trace.keylog))
            connections_per_copy += len(tcp_flows(run.trace.packets)) + len(quic_flows(run.trace.packets))
    per_copy = sum(len(packets) for packets, _ in runs)
    copies = max(1, round(packets_wanted / per_copy))
    records: list[tuple[float, bytes]] = []
    keylog_text = "".join(keylog for _, keylog in runs)
    connections = connections_per_copy * copies
    client = "198.18.0.1"
    for copy in range(copies):
        for index, (packets, _) in enumerate(runs):
            n = copy * len(runs) + index
            address = str(ipaddress.IPv4Address(0x0A000001 + n))  # 10.0.0.1, 10.0.0.2, ...
            offset = 60.0 * n / (copies * len(runs))
            for time_s, packet in packets:
                moved = replace(packet, src=address if packet.src == client else packet.src,
                                dst=address if packet.dst == client else packet.dst)
                records.append((offset + time_s, encode(moved)))
    records.sort(key=lambda r: r[0])
    pcap = directory / f"bench-{response_bytes}.pcap"
    with PcapWriter(pcap) as writer:
        for time_s, data in records:
            writer.write(time_s, data)
    keylog = directory / f"bench-{response_bytes}.keylog"
    keylog.write_text(keylog_text)
    return pcap, keylog, len(records), connections


def wall(command: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


COMPOSITIONS = {
    "handshakes": 64,
    "page loads": 64_000,
}
"""Response body per connection: 64 bytes makes nearly every packet part of a handshake (the
hardest case: each one needs the full analysis); 64 KB is closer to a web server's link, where
most packets carry the response after its first byte."""


def bench_one(directory: Path, label: str, response_bytes: int, packets_wanted: int, repeat: int) -> None:
    start = time.perf_counter()
    pcap, keylog, packets, connections = build_capture(directory, packets_wanted, response_bytes)
    built = time.perf_counter() - start
    size_mb = pcap.stat().st_size / 1e6
    print(f"{label} ({response_bytes:,}-byte responses): {packets} packets, {connections} connections, "
          f"{size_mb:.1f} MB (built in {built:.1f} s)")
    from handshake.analysis.parallel import auto_jobs

    jobs = auto_jobs(pcap.stat().st_size)
    inspect = [sys.executable, "-m", "handshake", "inspect", str(pcap), "--format", "json"]
    rows = [("handshake inspect --jobs 1", wall(inspect + ["--jobs", "1"], repeat)),
            ("handshake inspect --jobs 1 --keylog", wall(inspect + ["--jobs", "1", "--keylog", str(keylog)], repeat)),
            (f"handshake inspect ({jobs} jobs)", wall(inspect, repeat)),
            (f"handshake inspect ({jobs} jobs) --keylog", wall(inspect + ["--keylog", str(keylog)], repeat))]
    tshark = shutil.which("tshark")
    if tshark:
        keys = ["-o", f"tls.keylog_file:{keylog}"]
        rows += [
            ("tshark -q -z conv,tcp", wall([tshark, "-r", str(pcap), "-q", "-z", "conv,tcp"], repeat)),
            ("tshark -q -z conv,tcp + key log", wall([tshark, "-r", str(pcap), "-q", "-z", "conv,tcp"] + keys, repeat)),
            ("tshark -r (text) > /dev/null", wall([tshark, "-r", str(pcap)], repeat)),
            ("tshark -r (text) + key log", wall([tshark, "-r", str(pcap)] + keys, repeat)),
        ]
    reference = dict(rows).get("tshark -q -z conv,tcp")
    for name, seconds in rows:
        ratio = f"   {reference / seconds:5.2f}x tshark conv" if reference else ""
        print(f"  {name:38s} {seconds:7.2f} s  {packets / seconds:9,.0f} packets/s{ratio}")
    if not tshark:
        print("  tshark not installed: no comparison (apt-get install tshark)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--packets", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", choices=sorted(COMPOSITIONS), help="one capture composition, not both")
    parser.add_argument("--keep", metavar="DIR", help="write the captures here and keep them")
    args = parser.parse_args()
    directory = Path(args.keep or tempfile.mkdtemp(prefix="bench-inspect-"))
    directory.mkdir(parents=True, exist_ok=True)
    print(f"median of {args.repeat} runs, wall time incl. start-up; {os.cpu_count()} CPUs")
    try:
        for label, response_bytes in COMPOSITIONS.items():
            if args.only in (None, label):
                bench_one(directory, label, response_bytes, args.packets, args.repeat)
    finally:
        if not args.keep:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
