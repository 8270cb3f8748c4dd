"""`handshake inspect` over an archive: many capture files, directories and globs, read as one.

A day of rotated captures is thousands of files. Each file is read whole by one process (the
files share nothing: a connection never spans two of them), several files at a time over the
local process pool, and the verdicts come back in the order the files were named. A file that
cannot be read is named with its reason and the others still count, as grep does with files
it cannot open.
"""

from __future__ import annotations

import glob
import os
from array import array
import statistics
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from handshake.analysis.capture import CaptureError, CaptureInspection, inspect_capture
from handshake.analysis.keylog import KeyLog
from handshake.errors import UsageError

__all__ = ["CAPTURE_SUFFIXES", "ArchiveInspection", "Summary", "archive_outcomes", "capture_files", "inspect_archive",
           "summary", "variant_label"]

CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".cap", ".pcap.gz", ".pcapng.gz", ".cap.gz")
"""What a directory's capture files are called (tshark reads the gzipped ones as they are)."""
_GLOB_CHARACTERS = frozenset("*?[")


def _under(directory: str) -> list[str]:
    found = []
    for root, dirs, files in os.walk(directory):
        dirs.sort()
        found.extend(os.path.join(root, name) for name in sorted(files) if name.lower().endswith(CAPTURE_SUFFIXES))
    return found


def capture_files(inputs: Iterable[str]) -> list[str]:
    """The capture files the inputs name, in their order: a file as it is, every capture file
    under a directory (by name), and the matches of a glob the shell left unexpanded
    (``**`` included). Each file once; an input that names nothing is a ``UsageError``."""
    files: list[str] = []
    for given in inputs:
        if os.path.isdir(given):
            matches = _under(given)
            if not matches:
                raise UsageError(f"no capture file ({', '.join(CAPTURE_SUFFIXES)}) under {given}")
        elif os.path.exists(given) or not _GLOB_CHARACTERS & set(given):
            matches = [given]  # a missing file is reported by the reader, with its reason
        else:
            matches = []
            for match in sorted(glob.glob(given, recursive=True)):
                matches.extend(_under(match) if os.path.isdir(match) else [match])
            if not matches:
                raise UsageError(f"no capture file matches {given}")
        files.extend(matches)
    return list(dict.fromkeys(files))


@dataclass
class ArchiveInspection:
    """The verdicts of every file, in the order the files were named."""

    files: list[str]
    inspections: dict[str, CaptureInspection] = field(default_factory=dict)
    """The files that could be read."""
    failures: dict[str, str] = field(default_factory=dict)
    """file -> why it could not be read (one line)."""

    @classmethod
    def collect(cls, files: list[str], outcomes: Iterable[tuple[str, CaptureInspection | str]]) -> ArchiveInspection:
        """The outcomes of ``archive_outcomes``, kept."""
        archive = cls(files)
        for path, outcome in outcomes:
            if isinstance(outcome, str):
                archive.failures[path] = outcome
            else:
                archive.inspections[path] = outcome
        return archive


_shared: tuple[KeyLog | None, bool] = (None, False)
"""The key log and ``steps`` of the running archive: forked workers inherit them, unpickled."""


def _inspect_one(path: str) -> tuple[str, CaptureInspection | str]:
    return _inspect_on_worker(path, *_shared)


def _results(files: list[str], keylog: KeyLog | None, steps: bool, jobs: int) -> Iterator[tuple[str, CaptureInspection | str]]:
    global _shared
    _shared = (keylog, steps)
    try:
        if jobs <= 1:
            yield from map(_inspect_one, files)
            return
        import multiprocessing

        # fork: the workers start with the parsed key log and the compiled modules loaded.
        with multiprocessing.get_context("fork").Pool(jobs) as pool:
            yield from pool.imap(_inspect_one, files)
    finally:
        _shared = (None, False)


def _inspect_on_worker(path: str, keylog: KeyLog | None, steps: bool) -> tuple[str, CaptureInspection | str]:
    """One file, read whole by this process (a Dask worker: by the same path)."""
    try:
        return path, inspect_capture(path, keylog, steps=steps, jobs=1)
    except CaptureError as error:
        return path, str(error)


def _cluster_results(files: list[str], keylog: KeyLog | None, steps: bool, cluster: Any
                     ) -> Iterator[tuple[str, CaptureInspection | str]]:
    from handshake.cluster import TaskFailed, run_on_cluster

    if len(files) == 1:
        yield files[0], _sharded_on_cluster(files[0], keylog, steps, cluster)
        return
    for index, outcome in run_on_cluster(cluster, _inspect_on_worker, files, keylog, steps):
        yield outcome if not isinstance(outcome, TaskFailed) else (files[index], f"failed on every try: {outcome.reason}")


def _sharded_on_cluster(path: str, keylog: KeyLog | None, steps: bool, cluster: Any) -> CaptureInspection | str:
    """One large file over the cluster: every worker reads it whole and judges the connections
    that hash to its shard (``analysis.parallel``'s rule), and the shards merge in capture order."""
    from handshake.analysis.parallel import merge_shards
    from handshake.cluster import TaskFailed, run_on_cluster

    shards = max(1, len(cluster.scheduler_info().get("workers", {})))
    results: list[Any] = [None] * shards
    for index, outcome in run_on_cluster(cluster, _shard_task, list(range(shards)), path, shards, keylog, steps):
        if isinstance(outcome, TaskFailed):
            return f"failed on every try: {outcome.reason}"
        if isinstance(outcome, str):
            return outcome
        results[index] = outcome
    reading, connections, undecodable = merge_shards(results)
    return reading.inspection(connections, undecodable, path)


def _shard_task(shard: int, path: str, shards: int, keylog: KeyLog | None, steps: bool) -> Any:
    from handshake.analysis.parallel import shard_result

    try:
        return shard_result(path, shard, shards, keylog, steps, path)
    except CaptureError as error:
        return str(error)


def archive_outcomes(files: list[str], keylog: KeyLog | None = None, *, steps: bool = False, jobs: int | None = None,
                     progress: bool | None = None, cluster: Any = None
                     ) -> Iterator[tuple[str, CaptureInspection | str]]:
    """(file, its inspection or why it could not be read), file by file as each is done: on
    ``jobs`` processes (None: one per CPU) in the order named, or on the workers of a Dask
    ``cluster`` client as they finish (one file a task; a lone file is shared among them by
    shards); a progress bar on stderr when ``progress`` (None: when stderr is a terminal)."""
    jobs = min(jobs or os.cpu_count() or 1, len(files))
    if progress is None:
        progress = sys.stderr.isatty()
    results: Iterable[tuple[str, CaptureInspection | str]] = (
        _cluster_results(files, keylog, steps, cluster) if cluster is not None else _results(files, keylog, steps, jobs))
    if progress:
        from tqdm import tqdm

        results = tqdm(results, total=len(files), unit="file", file=sys.stderr, leave=False)
    yield from results


def inspect_archive(files: list[str], keylog: KeyLog | None = None, **how: Any) -> ArchiveInspection:
    """Every file's verdicts, kept (``how``: ``archive_outcomes``'s keywords)."""
    return ArchiveInspection.collect(files, archive_outcomes(files, keylog, **how))


def variant_label(conn: dict[str, Any]) -> str:
    """The catalog's name for what a connection did (``tfo-tls13-0rtt``, ``quic``, ``tls12-resume``),
    from its facts; "tcp, no TLS version seen" where the capture does not tell."""
    if conn["transport"] == "quic":
        base = "quic"
    elif conn["tls_version"] is None:
        return "tcp, no TLS version seen"  # plain TCP, or TLS whose ServerHello the capture lacks
    else:
        base = ("tfo-" if conn["tfo"] == "data" else "") + "tls" + conn["tls_version"].replace(".", "")
    early = {"accepted": "-0rtt", "rejected": "-0rtt-rejected", "sent": "-0rtt-unconfirmed"}.get(conn["early_data"])
    if early:
        return base + early  # "unconfirmed": offered, and only the key log tells whether the server took it
    return base + "-resume" if conn["resumed"] and base != "quic" else base


class Summary:
    """Connections, the variants seen, and per transport and TLS version the median round trips
    and TTFB of the connections whose counts the capture holds; kept as counts and packed
    arrays, so that an archive's rows can be written and forgotten."""

    def __init__(self) -> None:
        self.connections = 0
        self._variants: dict[str, int] = {}
        self._groups: dict[tuple[str, str], tuple[list[int], array, array]] = {}

    def add(self, conn: dict[str, Any]) -> None:
        self.connections += 1
        label = variant_label(conn)
        self._variants[label] = self._variants.get(label, 0) + 1
        members, trips, ttfbs = self._groups.setdefault((conn["transport"], conn["tls_version"] or "-"),
                                                        ([0], array("i"), array("d")))
        members[0] += 1
        if conn["round_trips"] is not None and conn["ttfb_ms"] is not None:
            trips.append(conn["round_trips"])
            ttfbs.append(conn["ttfb_ms"])

    def result(self) -> dict[str, Any]:
        by_version = []
        for (transport, version), (members, trips, ttfbs) in sorted(self._groups.items()):
            by_version.append({
                "transport": transport,
                "tls_version": None if version == "-" else version,
                "connections": members[0],
                "counted": len(trips),
                "median_round_trips": statistics.median(trips) if trips else None,
                "median_ttfb_ms": round(statistics.median(ttfbs), 3) if ttfbs else None,
            })
        return {
            "connections": self.connections,
            "variants": dict(sorted(self._variants.items(), key=lambda item: (-item[1], item[0]))),
            "by_tls_version": by_version,
        }


def summary(connections: Iterable[dict[str, Any]]) -> dict[str, Any]:
    totals = Summary()
    for conn in connections:
        totals.add(conn)
    return totals.result()
