"""Termination signals become exceptions, so ``finally`` and ``__exit__`` clean up.

SIGTERM's and SIGHUP's default action ends the process at once, leaving namespaces and child
processes behind; Ctrl-C already raises KeyboardInterrupt. While a run is open the two raise
``Terminated`` instead (only where nobody installed a handler of their own), and while it is
torn down every such signal, Ctrl-C included, waits until the teardown is finished.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

__all__ = ["Terminated", "raise_on_termination", "deferred_signals"]

_TERMINATING = (signal.SIGTERM, signal.SIGHUP)


class Terminated(BaseException):
    """The process got SIGTERM or SIGHUP; a BaseException so ``except Exception`` lets it pass."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"terminated by {signal.Signals(signum).name}")
        self.signum = signum

    @property
    def exit_status(self) -> int:
        """The shell's status for death by this signal: 128 + its number."""
        return 128 + self.signum


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated(signum)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def raise_on_termination() -> Iterator[None]:
    """SIGTERM and SIGHUP raise ``Terminated`` in the block (main thread, default handlers only)."""
    previous = {}
    if _in_main_thread():
        for signum in _TERMINATING:
            if signal.getsignal(signum) is signal.SIG_DFL:
                previous[signum] = signal.signal(signum, _raise_terminated)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextlib.contextmanager
def deferred_signals() -> Iterator[None]:
    """Hold Ctrl-C, SIGTERM and SIGHUP until the block is done, then raise for the first one.

    Only handlers that raise are replaced (Python's Ctrl-C handler, ``Terminated``'s); a
    signal that was ignored stays ignored.
    """
    if not _in_main_thread():
        yield
        return
    pending: list[int] = []

    def hold(signum: int, frame: object) -> None:
        pending.append(signum)

    previous = {}
    for signum in (signal.SIGINT, *_TERMINATING):
        handler = signal.getsignal(signum)
        if handler is signal.default_int_handler or handler is _raise_terminated:
            previous[signum] = signal.signal(signum, hold)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if pending:
        if pending[0] == signal.SIGINT:
            raise KeyboardInterrupt
        raise Terminated(pending[0])
