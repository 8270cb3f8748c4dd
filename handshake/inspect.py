"""`handshake inspect FILE`: explain the handshakes in any capture.

Reads the capture as a stream (``analysis.capture``), judges each connection with the analyzers
`compare` counts its rows with, and renders the verdicts (``report.inspect_view``, and the
ladders of ``report.ladder``). Every problem with the inputs is a ``UsageError``: one line on
stderr, exit status 2.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from handshake.analysis.capture import CaptureError, CaptureInspection, inspect_capture
from handshake.analysis.keylog import KeyLog, parse_keylog
from handshake.analysis.parallel import MAX_JOBS, auto_jobs
from handshake.errors import UsageError

__all__ = ["check_format", "archive_of", "inspect_file", "is_archive", "read_keylog", "render"]

_KEYLOG_LABELS = ("CLIENT_RANDOM", "_SECRET", "_TRAFFIC_SECRET_")


def read_keylog(path: str | os.PathLike) -> KeyLog:
    """An NSS key log file; an empty one (or comments only) is a log without secrets."""
    name = os.fsdecode(path)
    try:
        with open(path, "rb") as file:
            raw = file.read()
    except OSError as error:
        raise UsageError(f"cannot read key log {name}: {error.strerror or error}") from None
    text = raw.decode("utf-8", errors="replace")
    keylog = parse_keylog(text)
    meaningful = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if meaningful and not len(keylog):
        if any(label in line for line in meaningful for label in _KEYLOG_LABELS):
            raise UsageError(f"key log {name} has no well-formed line (LABEL <64 hex digits> <hex secret>)")
        raise UsageError(f"{name} is not an NSS key log (no CLIENT_RANDOM or *_TRAFFIC_SECRET lines)")
    return keylog


def inspect_file(path: str | os.PathLike, keylog_path: str | os.PathLike | None = None, *,
                 steps: bool = False, jobs: int | None = None) -> CaptureInspection:
    """The verdicts on every connection in the capture at ``path``.

    ``jobs``: worker processes (None: one per CPU for a capture over 4 MB, else none)."""
    keylog = read_keylog(keylog_path) if keylog_path is not None else None
    if jobs is None:
        try:
            size = os.stat(path).st_size if os.path.isfile(path) else None
        except (OSError, TypeError, ValueError):
            size = None
        jobs = auto_jobs(size)
    elif not 1 <= jobs <= MAX_JOBS:
        raise UsageError(f"--jobs must be from 1 to {MAX_JOBS}, not {jobs}")
    try:
        return inspect_capture(path, keylog, steps=steps, jobs=jobs)
    except CaptureError as error:
        raise UsageError(str(error)) from None


def is_archive(inputs: list[str]) -> bool:
    """Several inputs, a directory or a glob: read as one archive, each connection tagged with its file."""
    from handshake.archive import capture_files

    if len(inputs) > 1 or os.path.isdir(inputs[0]):
        return True
    return not os.path.exists(inputs[0]) and capture_files(inputs) != inputs


@contextlib.contextmanager
def archive_of(inputs: list[str], keylog_path: str | os.PathLike | None = None, *, steps: bool = False,
               jobs: int | None = None, cluster: str | None = None) -> Iterator[tuple[list[str], Iterator[Any]]]:
    """The capture files the inputs name (files, directories, globs) and their verdicts file by
    file, read a file per process or per task on the Dask cluster at ``cluster`` (``--cluster``),
    which stays connected while the verdicts are read."""
    from handshake.archive import archive_outcomes, capture_files

    keylog = read_keylog(keylog_path) if keylog_path is not None else None
    if jobs is not None and not 1 <= jobs <= MAX_JOBS:
        raise UsageError(f"--jobs must be from 1 to {MAX_JOBS}, not {jobs}")
    files = capture_files(inputs)
    connected: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
    if cluster is not None:
        from handshake.cluster import cluster_client

        connected = cluster_client(cluster)
    with connected as client:
        yield files, archive_outcomes(files, keylog, steps=steps, jobs=jobs, cluster=client)


def check_format(fmt: str) -> None:
    """Refuse an output format ``render`` does not know (the CLI asks before reading the file)."""
    from handshake.report.inspect_view import FORMATS

    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r}: choose from " + ", ".join(FORMATS))


def render(inspection: CaptureInspection, fmt: str, *, ladder: bool = False, name: str = "") -> str:
    from handshake.report.inspect_view import render_inspection

    check_format(fmt)
    return render_inspection(inspection, fmt, ladder=ladder, name=name)
