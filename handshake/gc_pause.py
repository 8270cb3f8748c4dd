"""Keep Python's cyclic garbage collector out of a stretch of work.

Reference counting still frees everything that is not part of a cycle; only the collector that
looks for cycles stops. Worth it where the work makes no cycles and the collector's passes cost:
on a big heap one pass takes milliseconds, and it traverses every live object again and again.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def cyclic_gc_paused(*, collect_first: bool) -> Iterator[None]:
    """Off for the block (``collect_first``: after one collection now); the caller's setting after."""
    if collect_first:
        gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
