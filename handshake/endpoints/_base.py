"""What every stream endpoint shares: an outgoing byte buffer and an event queue."""

from __future__ import annotations

from collections import deque

from .events import Event


class EventQueue:
    """The ``data_to_send`` / ``next_event`` half every stream endpoint shares."""

    def __init__(self) -> None:
        self._outgoing = bytearray()
        self._events: deque[Event] = deque()

    def data_to_send(self) -> bytes:
        data = bytes(self._outgoing)
        self._outgoing.clear()
        return data

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None


class TlsError(Exception):
    """The TLS layer failed (bad certificate, alert from the peer, unexpected record).

    Any alert this side produced is still in ``data_to_send``, so a caller may deliver it.
    """


TLS_VERSIONS = ("1.2", "1.3")


def check_version(version: str) -> str:
    if version not in TLS_VERSIONS:
        raise ValueError(f"TLS version {version!r}: expected one of {', '.join(TLS_VERSIONS)}")
    return version
