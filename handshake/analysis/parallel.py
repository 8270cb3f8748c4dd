"""The capture pipeline on several CPUs: connections sharded over processes.

Every connection is judged from its own packets only, so the work splits by connection: this
process and a forked worker per further CPU each read the whole file (as a stream, as ever),
keep the IP packets whose addresses and ports hash to them (``shard_of``) and run a
``CaptureAnalyzer`` on those; the workers send their verdicts back at the end, and all are
merged in capture order. Reading and skipping a packet costs a sixth of analysing one, less
than one reader handing every packet to the others through pipes cost (pickling took about what
the sharing saved). Memory stays per connection.

Only a source that can be read again may be sharded: a regular file, or bytes in memory (which
the forked workers inherit). A pipe is read in one process. A compressed file is inflated by
each worker for itself, and each meets the capture's own key log (pcapng Decryption Secrets
Blocks) where the file holds it, as a single reader would.

The shard must be the same for every packet of a connection, whichever way it goes: it is
computed on the packet the analysis judges (inside a tunnel, the inner one: ``read_capture``
strips tunnels first), from both (address, port) pairs for IPv4 TCP/UDP (later IPv4 fragments, which carry no
ports and which the analysis skips, from the addresses only) and for IPv6 whose next header is
TCP or UDP; from the address pair otherwise.
"""

from __future__ import annotations

import io
import multiprocessing
import os
import stat
from typing import Final

from handshake.trace.integers import u16, u32

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


def shard_of(ip: bytes, shards: int) -> int:
    """The process (0 … shards-1) that analyzes this IP packet's connection.

    Each side's (address, port) is read as one integer and the two are XORed, which is the same
    from either side; a hash then spreads the bits (Linux gives connect() even ports, so the
    low bit alone would put most connections in one shard). Integer arithmetic only: every
    process computes this for every packet of the file.
    """
    size = len(ip)
    version = ip[0] >> 4 if size else 0
    if version == 4 and size >= 20:
        a = u32(ip, 12)
        b = u32(ip, 16)
        header = (ip[0] & 0x0F) * 4
        proto = ip[9]
        first_fragment = not ((ip[6] & 0x1F) or ip[7])
        ports = (proto == 6 or proto == 17) and first_fragment and size >= header + 4
    elif version == 6 and size >= 40:
        a = u32(ip, 8) ^ u32(ip, 12) ^ u32(ip, 16) ^ u32(ip, 20)
        b = u32(ip, 24) ^ u32(ip, 28) ^ u32(ip, 32) ^ u32(ip, 36)
        header = 40
        ports = (ip[6] == 6 or ip[6] == 17) and size >= 44
    else:
        return 0  # does not decode anyway: one process counts it
    if ports:
        a = (a << 16) | u16(ip, header)
        b = (b << 16) | u16(ip, header + 2)
    both = a ^ b
    # A 32-bit integer hash (xor-shift, multiply, twice) with multipliers under 2**29, so that
    # every product stays a machine integer.
    mixed = (both ^ (both >> 24)) & 0xFFFFFFFF
    mixed ^= mixed >> 16
    mixed = (mixed * 0x1B873593) & 0xFFFFFFFF
    mixed ^= mixed >> 15
    mixed = (mixed * 0x19E3779B) & 0xFFFFFFFF
    mixed ^= mixed >> 16
    return mixed % shards


Result = tuple[CaptureReading, list[tuple[float, int, InspectedConnection]], int]


def shard_result(source, shard: int, shards: int, keylog: KeyLog | None, steps: bool, label: str) -> Result:
    """One shard's verdicts (the connections that hash to it): a forked worker's, or a Dask task's."""
    analyzer = CaptureAnalyzer(keylog, steps=steps)
    reading = read_capture(source, analyzer, label, shard, shards)
    return reading, analyzer.finish_ordered(), analyzer.undecodable


def _worker(source, shard: int, shards: int, keylog: KeyLog | None, steps: bool, label: str, results_out) -> None:
    try:
        result: tuple = ("ok", shard_result(source, shard, shards, keylog, steps, label))
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
        results = [shard_result(source, 0, jobs, keylog, steps, label)]  # shard 0 here: no copy of its verdicts
        results += [_result(process, results_in) for process, results_in in workers]
    finally:
        for process, results_in in workers:
            results_in.close()
            process.join(timeout=1)
            if process.is_alive():
                process.terminate()
                process.join()
    return merge_shards(results)


def merge_shards(results: list[Result]) -> tuple[CaptureReading, list[InspectedConnection], int]:
    """Every shard's verdicts in capture order, with the file's reading and undecodable packets."""
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
