"""Work bigger than one machine: the same tasks on a Dask cluster instead of the local process pool.

`--cluster tcp://host:8786` sends them to a running Dask scheduler (its workers on any machines:
by hand, dask-jobqueue, Kubernetes); `--cluster local:N` starts a LocalCluster of N worker
processes here. Dask does the scheduling, the retries and the rescheduling of a lost worker's
tasks; this module only connects and turns each task's outcome into a result or a failure.
Nothing imports Dask unless `--cluster` was given: it is an optional extra
(``pip install 'handshake[cluster]'``).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from handshake.errors import UsageError

__all__ = ["TASK_RETRIES", "TaskFailed", "cluster_client", "run_on_cluster"]

TASK_RETRIES = 2
"""Times Dask runs a task again after it raised; a lost worker's tasks are rescheduled besides
(Dask's ``distributed.scheduler.allowed-failures``), and only then is the task reported failed."""
_LOCAL = re.compile(r"local:(\d+)$")


class TaskFailed:
    """A task that failed on every try, with Dask's reason: reported, never silently missing."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __repr__(self) -> str:
        return f"TaskFailed({self.reason!r})"


@contextlib.contextmanager
def cluster_client(address: str, *, connect_timeout_s: float = 5.0) -> Iterator[Any]:
    """A Dask client for ``address`` (``tcp://host:port``, or ``local:N`` for N local workers)."""
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise UsageError("--cluster needs Dask: pip install 'handshake[cluster]'") from None
    local = _LOCAL.match(address)
    if local:
        workers = int(local.group(1))
        if not 1 <= workers <= 256:
            raise UsageError(f"--cluster local:N takes 1 to 256 workers, not {workers}")
        import dask

        # Without the workers' sampling profiler (a stack sample every 10 ms), and with larger
        # tasks, Dask's overhead on this 2-core machine went from +40 % to +3..9 % of the pool's.
        with dask.config.set({"distributed.worker.profile.enabled": False}), \
                LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
            with Client(cluster) as client:
                yield client
        return
    if "://" not in address and ":" not in address:
        raise UsageError(f"--cluster takes a scheduler address (tcp://host:8786) or local:N, not {address!r}")
    try:
        client = Client(address, timeout=f"{connect_timeout_s}s")
    except (OSError, TimeoutError, ValueError) as error:
        raise UsageError(f"cannot reach the Dask scheduler at {address}: {error}") from None
    with client:
        yield client


def _call(function: Callable[..., Any], chunk: Any, args: tuple[Any, ...]) -> Any:
    return function(chunk, *args)


def run_on_cluster(client: Any, function: Callable[..., Any], chunks: Sequence[Any], *args: Any
                   ) -> Iterator[tuple[int, Any]]:
    """(index, result or TaskFailed) for ``function(chunk, *args)`` of every chunk, as each finishes."""
    from dask.distributed import as_completed

    count = len(chunks)
    futures = client.map(_call, [function] * count, list(chunks), [args] * count, retries=TASK_RETRIES, pure=False)
    index_of = {future.key: index for index, future in enumerate(futures)}
    for future in as_completed(futures):
        index = index_of[future.key]
        if future.status == "finished":
            yield index, future.result()
        else:
            yield index, TaskFailed(repr(future.exception()))
        future.release()
