"""The kernel engine's shim: how late it delivers, how fast it forwards, how long setup takes.

Delay error: a paced stream of small UDP packets (one every 2 ms) from a client socket to a
server socket that echoes each one; both sockets live in this process (a socket keeps the
namespace it was made in). Each send is stamped with ``time.time()`` just before ``sendto`` and
each arrival with the kernel's receive time (``SO_TIMESTAMPNS``), so the one-way figure is the
shim's own error (plus the kernel's path), not this process's wake-up latency; the round-trip
figure is what an application sees (sent to received, on ``time.monotonic()``). Both are
reported as error over the configured value, median and p99, for the shim in a forked process
(the default) and in a thread -- and again with a CPU-bound thread in this process, which is
what the kernel engine's own TLS and QUIC work looks like to a shim thread.

Throughput: one TCP stream through the shim at MTU 1500 and zero delay, sender and receiver in
processes of their own in the two namespaces, and the shim's CPU time per packet.

Run as root: ``python bench/bench_shim.py [--quick]``.
"""

from __future__ import annotations

import argparse
import os
import select
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

from handshake.kernel import SERVER_ADDR, Topology, check_privileges  # noqa: E402
from handshake.net.link import LinkConfig  # noqa: E402

PORT = 9000
_STAMP = struct.Struct("!Id")  # sequence number, send time (time.time())
_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_TS = struct.Struct("@qq")


def _receive(sock: socket.socket) -> tuple[bytes, tuple, float]:
    """(data, peer, kernel receive time in seconds since the epoch)."""
    data, ancillary, _, peer = sock.recvmsg(2048, 64)
    for level, kind, value in ancillary:
        if level == socket.SOL_SOCKET and kind == _TIMESTAMPNS:
            sec, nsec = _TS.unpack(value[:_TS.size])
            return data, peer, sec + nsec / 1e9
    return data, peer, time.time()


def _busy(stop: threading.Event) -> None:
    x = 0
    while not stop.is_set():
        for i in range(1000):
            x += i


def delay_errors_ms(rtt_s: float, isolate: bool, busy: bool, duration_s: float,
                    interval_s: float = 0.002) -> dict[str, float]:
    link = LinkConfig.from_rtt(rtt_s)
    one_way_s = rtt_s / 2
    with Topology(link, isolate_shim=isolate) as topo:
        server = topo.server_socket(socket.SOCK_DGRAM, PORT)
        client = topo.client_socket(socket.SOCK_DGRAM)
        for sock in (server, client):
            sock.setsockopt(socket.SOL_SOCKET, _TIMESTAMPNS, 1)
            sock.setblocking(False)
        stop = threading.Event()
        burner = threading.Thread(target=_busy, args=(stop,), daemon=True)
        if busy:
            burner.start()
        sent_mono: dict[int, float] = {}
        c2s, s2c, rtt = [], [], []
        seq = 0
        started = time.monotonic()
        next_send = started
        end = started + duration_s
        while True:
            now = time.monotonic()
            if now >= next_send and now < end:
                seq += 1
                sent_mono[seq] = time.monotonic()
                client.sendto(_STAMP.pack(seq, time.time()), (SERVER_ADDR, PORT))
                next_send += interval_s
            if now >= end and len(rtt) >= seq or now > end + rtt_s + 1.0:
                break
            timeout = max(0.0, next_send - time.monotonic()) if now < end else 0.05
            ready, _, _ = select.select([server, client], [], [], timeout)
            for sock in ready:
                data, peer, kernel_time = _receive(sock)
                if sock is server:
                    n, sent = _STAMP.unpack(data)
                    c2s.append(kernel_time - sent - one_way_s)
                    server.sendto(_STAMP.pack(n, time.time()), peer)
                else:
                    arrived = time.monotonic()
                    n, sent = _STAMP.unpack(data)
                    s2c.append(kernel_time - sent - one_way_s)
                    rtt.append(arrived - sent_mono[n] - rtt_s)
        stop.set()
        late_max_s = topo.shim.stats.late_s_max
    one_way = sorted(c2s + s2c)
    rtt.sort()
    return {
        "samples": len(rtt),
        "one_way_median": statistics.median(one_way) * 1e3,
        "one_way_p99": one_way[int(0.99 * (len(one_way) - 1))] * 1e3,
        "rtt_median": statistics.median(rtt) * 1e3,
        "rtt_p99": rtt[int(0.99 * (len(rtt) - 1))] * 1e3,
        "late_max": late_max_s * 1e3,
    }


RECEIVER = """
import os, socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((os.environ["HANDSHAKE_SERVER_ADDR"], 5001)); s.listen(); print("up", flush=True)
c, _ = s.accept(); buf = bytearray(1 << 20); n = 0; first = last = None
while True:
    k = c.recv_into(buf)
    if not k: break
    last = time.monotonic(); first = first or last; n += k
print(n, last - first, flush=True)
"""
SENDER = """
import os, socket, time
s = socket.socket(); s.bind((os.environ["HANDSHAKE_CLIENT_ADDR"], 0))
s.connect((os.environ["HANDSHAKE_SERVER_ADDR"], 5001)); block = bytes(1 << 20)
end = time.monotonic() + float(os.environ["BENCH_SECONDS"])
while time.monotonic() < end: s.sendall(block)
s.close()
"""


def throughput(link: LinkConfig, isolate: bool, seconds: float) -> dict[str, float]:
    with Topology(link, isolate_shim=isolate) as topo:
        receiver = topo.popen("server", [sys.executable, "-c", RECEIVER], stdout=subprocess.PIPE, text=True)
        assert receiver.stdout.readline().strip() == "up"
        user0, system0 = topo.shim.cpu_s()
        stats0 = topo.shim.stats
        sender = topo.popen("client", [sys.executable, "-c", SENDER],
                            env=dict(os.environ, BENCH_SECONDS=str(seconds)))
        sender.wait()
        received, elapsed = receiver.stdout.readline().split()
        user1, system1 = topo.shim.cpu_s()
        stats = topo.shim.stats
    packets = stats.read_c2s + stats.read_s2c - stats0.read_c2s - stats0.read_s2c
    elapsed = float(elapsed)
    return {
        "mbit_s": int(received) * 8 / elapsed / 1e6,
        "packets_s": packets / elapsed,
        "user_us": (user1 - user0) / packets * 1e6,
        "system_us": (system1 - system0) / packets * 1e6,
        "cpu_share": (user1 - user0 + system1 - system0) / elapsed,
    }


def setup_ms(n: int) -> tuple[float, float]:
    """Median open (namespaces, TUNs, shim) and close times."""
    opens, closes = [], []
    for _ in range(n):
        topo = Topology(LinkConfig())
        topo.open()
        opens.append(topo.setup_s)
        started = time.perf_counter()
        topo.close()
        closes.append(time.perf_counter() - started)
    return statistics.median(opens) * 1e3, statistics.median(closes) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs")
    args = parser.parse_args()
    check_privileges("bench_shim.py")
    duration = 0.6 if args.quick else 2.0
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; Python {sys.version.split()[0]}")
    opened, closed = setup_ms(5 if args.quick else 20)
    print(f"\nsetup: open {opened:.1f} ms, close {closed:.1f} ms (median)")

    print("\ndelay error over the configured value, ms (one way: kernel receive stamps; rtt: application)")
    print(f"{'rtt':>6} {'shim':>8} {'this process':>13} {'samples':>7} {'1way med':>9} {'1way p99':>9}"
          f" {'rtt med':>8} {'rtt p99':>8} {'late max':>9}")
    for busy in (False, True):
        for rtt_ms in (20, 100, 300):
            for isolate in (True, False):
                r = delay_errors_ms(rtt_ms / 1e3, isolate, busy, duration)
                print(f"{rtt_ms:>4}ms {'process' if isolate else 'thread':>8} {'CPU-bound' if busy else 'idle':>13}"
                      f" {r['samples']:>7} {r['one_way_median']:>9.3f} {r['one_way_p99']:>9.3f}"
                      f" {r['rtt_median']:>8.3f} {r['rtt_p99']:>8.3f} {r['late_max']:>9.3f}")

    seconds = 1.5 if args.quick else 4.0
    print("\nthroughput, one TCP stream, MTU 1500, zero delay")
    for label, link in (("no limit", LinkConfig()), ("rate 100mbit", LinkConfig(rate_bps=100e6))):
        for isolate in (True, False):
            r = throughput(link, isolate, seconds)
            print(f"  {label:<13} {'process' if isolate else 'thread':<8} {r['mbit_s']:7.0f} Mbit/s"
                  f"  {r['packets_s'] / 1e3:6.1f} kpackets/s  shim CPU {r['cpu_share'] * 100:3.0f}%"
                  f" = {r['user_us']:.1f} µs user + {r['system_us']:.1f} µs system per packet")


if __name__ == "__main__":
    main()
