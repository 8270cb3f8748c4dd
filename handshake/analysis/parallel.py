"""The capture pipeline on several CPUs: connections sharded over worker processes.

Every connection is judged from its own packets only, so the work splits by connection: this
process reads the file (as a stream, as ever) and sends each IP packet to the worker its
addresses and ports hash to; each worker runs a ``CaptureAnalyzer`` on its share and, at the
end, sends back its verdicts, which are merged in start-time order. Memory stays per
connection (in the workers) plus a batch per worker in flight; a pipe that fills makes the
reader wait.

The shard key must put every packet of a connection in the same worker: the sorted
(address, port) pair for IPv4 TCP/UDP (later IPv4 fragments, which carry no ports and which the
analysis skips, by addresses only) and for IPv6 whose next header is TCP or UDP; the address
pair otherwise.
"""

from __future__ import annotations

import multiprocessing
import os
import zlib

from .capture import CaptureAnalyzer, CaptureError, InspectedConnection
from .keylog import KeyLog

BATCH = 2048
"""Packets sent to a worker at a time."""
MAX_JOBS = 16


def available() -> bool:
    """Workers are forked (they inherit the key log and the imports); no fork, no workers."""
    return "fork" in multiprocessing.get_all_start_methods()


def auto_jobs(size_bytes: int | None) -> int:
    """1 for small captures (a worker costs tens of ms to start), else one per CPU."""
    if size_bytes is None or size_bytes < 4_000_000 or not available():
        return 1
    return max(1, min(os.cpu_count() or 1, MAX_JOBS))


def shard_key(ip: bytes) -> bytes:
    if len(ip) >= 20 and ip[0] >> 4 == 4:
        a, b = ip[12:16], ip[16:20]
        ihl = (ip[0] & 0x0F) * 4
        first_fragment = not ((ip[6] & 0x1F) or ip[7])
        if ip[9] in (6, 17) and first_fragment and len(ip) >= ihl + 4:
            a += ip[ihl:ihl + 2]
            b += ip[ihl + 2:ihl + 4]
    elif len(ip) >= 40 and ip[0] >> 4 == 6:
        a, b = ip[8:24], ip[24:40]
        if ip[6] in (6, 17) and len(ip) >= 44:
            a += ip[40:42]
            b += ip[42:44]
    else:
        return b""  # does not decode anyway: any worker will count it
    return a + b if a <= b else b + a


def _worker(packets_in, results_out, keylog: KeyLog | None, steps: bool) -> None:
    analyzer = CaptureAnalyzer(keylog, steps=steps)
    try:
        while True:
            batch = packets_in.recv()
            if batch is None:
                break
            add = analyzer.add
            for position, time, ip, cut, wire_bytes in batch:
                add(time, ip, cut=cut, wire_bytes=wire_bytes, position=position)
        result: tuple = ("ok", analyzer.finish_ordered(), analyzer.undecodable, analyzer.other_udp)
    except BaseException as error:  # noqa: BLE001 - reported by the parent as one line
        result = ("error", f"{type(error).__name__}: {error}")
    results_out.send(result)
    results_out.close()


class ShardedAnalyzer:
    """``CaptureAnalyzer``'s interface (``add``, ``finish``, ``undecodable``) over ``jobs`` workers."""

    def __init__(self, keylog: KeyLog | None = None, *, steps: bool = False, jobs: int = 2) -> None:
        context = multiprocessing.get_context("fork")
        self._jobs = jobs
        self._workers = []
        for _ in range(jobs):
            worker_reads, parent_writes = context.Pipe(duplex=False)
            parent_reads, worker_writes = context.Pipe(duplex=False)
            process = context.Process(target=_worker, args=(worker_reads, worker_writes, keylog, steps), daemon=True)
            process.start()
            worker_reads.close()
            worker_writes.close()
            self._workers.append((process, parent_writes, parent_reads))
        self._batches: list[list[tuple]] = [[] for _ in range(jobs)]
        self._position = 0
        self.undecodable = 0
        self.other_udp = 0

    def add(self, time: float, ip: bytes, *, cut: bool = False, wire_bytes: int | None = None) -> None:
        shard = zlib.crc32(shard_key(ip)) % self._jobs
        batch = self._batches[shard]
        batch.append((self._position, time, ip, cut, wire_bytes))
        self._position += 1
        if len(batch) >= BATCH:
            self._send(shard, batch)
            self._batches[shard] = []

    def _send(self, shard: int, batch: list | None) -> None:
        try:
            self._workers[shard][1].send(batch)
        except (BrokenPipeError, EOFError, OSError):
            raise CaptureError("an analysis worker stopped unexpectedly") from None

    def finish(self) -> list[InspectedConnection]:
        merged = []
        try:
            for shard, batch in enumerate(self._batches):
                if batch:
                    self._send(shard, batch)
                self._send(shard, None)
            for process, _, results_in in self._workers:
                try:
                    result = results_in.recv()
                except EOFError:
                    raise CaptureError(f"an analysis worker stopped unexpectedly (exit status "
                                       f"{process.exitcode})") from None
                if result[0] != "ok":
                    raise CaptureError(f"an analysis worker failed: {result[1]}")
                _, connections, undecodable, other_udp = result
                merged += connections
                self.undecodable += undecodable
                self.other_udp += other_udp
        finally:
            self.close()
        merged.sort(key=lambda item: item[:2])
        return [connection for _, _, connection in merged]

    def close(self) -> None:
        for process, packets_in, results_in in self._workers:
            packets_in.close()
            results_in.close()
            process.join(timeout=1)
            if process.is_alive():
                process.terminate()
                process.join()
        self._workers = []
