"""The capture pipeline on several CPUs: connections sharded over processes.

Every connection is judged from its own packets only, so the work splits by connection: this
process and a forked worker per further CPU each read the whole file (as a stream, as ever),
keep the IP packets whose addresses and ports hash to them (``shard_of``) and run a
``CaptureAnalyzer`` on those; the workers send their verdicts back at the end, and all are
merged in capture order. Reading and skipping a packet costs a few per cent of analysing it, so
each process reading the file costs less than one reader handing every packet to the others
through pipes (which spent more on pickling than the sharing gained). Memory stays per
connection.

Only a source that can be read again may be sharded: a regular file, or bytes in memory (which
the forked workers inherit). A pipe is read in one process.

The shard key must put every packet of a connection in the same process: the sorted
(address, port) pair for IPv4 TCP/UDP (later IPv4 fragments, which carry no ports and which the
analysis skips, by addresses only) and for IPv6 whose next header is TCP or UDP; the address
pair otherwise.
"""

from __future__ import annotations

import io
import multiprocessing
import os
import stat
import zlib
from typing import Final

from .capture import CaptureAnalyzer, CaptureError, CaptureReading, InspectedConnection, read_capture
from .keylog import KeyLog

MAX_JOBS: Final = 16


def available() -> bool:
    """Workers are forked (they inherit the key log, the imports and bytes in memory); no fork, no workers."""
    return "fork" in multiprocessing.get_all_start_methods()


def auto_jobs(size_bytes: int | None) -> int:
    """1 for small captures (a worker costs tens of ms to start), else one per CPU."""
    if size_bytes is None or size_bytes < 4_000_000 or not available():
        return 1
    return max(1, min(os.cpu_count() or 1, MAX_JOBS))


def shardable(source: object) -> bool:
    """Whether each worker can read ``source`` for itself: a regular file's path, or an
    ``io.BytesIO`` (each forked worker has its own copy, at the caller's position)."""
    if not available():
        return False
    if isinstance(source, io.BytesIO):
        return True
    if isinstance(source, (str, bytes, os.PathLike)):
        try:
            return stat.S_ISREG(os.stat(source).st_mode)
        except (OSError, ValueError):
            return False  # the reader reports it, once
    return False


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
        return b""  # does not decode anyway: one worker counts it
    return a + b if a <= b else b + a


def shard_of(ip: bytes, shards: int) -> int:
    """The worker (0 … shards-1) that analyzes this IP packet's connection."""
    return zlib.crc32(shard_key(ip)) % shards


Result = tuple[CaptureReading, list[tuple[float, int, InspectedConnection]], int]


def _shard(source, shard: int, shards: int, keylog: KeyLog | None, steps: bool, label: str) -> Result:
    analyzer = CaptureAnalyzer(keylog, steps=steps)
    reading = read_capture(source, analyzer, label, shard, shards)
    return reading, analyzer.finish_ordered(), analyzer.undecodable


def _worker(source, shard: int, shards: int, keylog: KeyLog | None, steps: bool, label: str, results_out) -> None:
    try:
        result: tuple = ("ok", _shard(source, shard, shards, keylog, steps, label))
    except CaptureError as error:
        result = ("refused", str(error))
    except BaseException as error:  # noqa: BLE001 - reported by the parent as one line
        result = ("error", f"{type(error).__name__}: {error}")
    results_out.send(result)
    results_out.close()


def inspect_sharded(source, keylog: KeyLog | None, *, steps: bool, label: str,
                    jobs: int) -> tuple[CaptureReading, list[InspectedConnection], int]:
    """``read_capture`` over ``jobs`` processes, this one and ``jobs`` - 1 workers: (the file's
    reading, the verdicts in capture order, undecodable packets). Raises ``CaptureError`` as
    ``read_capture`` does."""
    context = multiprocessing.get_context("fork")
    workers = []
    try:
        for shard in range(1, jobs):
            parent_reads, worker_writes = context.Pipe(duplex=False)
            process = context.Process(target=_worker, args=(source, shard, jobs, keylog, steps, label, worker_writes),
                                      daemon=True)
            process.start()
            worker_writes.close()
            workers.append((process, parent_reads))
        results = [_shard(source, 0, jobs, keylog, steps, label)]  # shard 0 here: no copy of its verdicts
        results += [_result(process, results_in) for process, results_in in workers]
    finally:
        for process, results_in in workers:
            results_in.close()
            process.join(timeout=1)
            if process.is_alive():
                process.terminate()
                process.join()
    merged = []
    undecodable = 0
    for _, connections, shard_undecodable in results:
        merged += connections
        undecodable += shard_undecodable
    merged.sort(key=lambda item: item[:2])
    reading = results[0][0]  # every worker read every frame: the same counts, the same notes
    return reading, [connection for _, _, connection in merged], undecodable


def _result(process, results_in) -> Result:
    try:
        status, payload = results_in.recv()
    except EOFError:
        raise CaptureError(f"an analysis worker stopped unexpectedly (exit status {process.exitcode})") from None
    if status == "refused":
        raise CaptureError(payload)
    if status != "ok":
        raise CaptureError(f"an analysis worker failed: {payload}")
    return payload
