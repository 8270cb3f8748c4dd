"""What every stream endpoint shares: an outgoing byte buffer and an event queue."""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from .events import Event

if TYPE_CHECKING:
    from .http1 import ClientExchange, Upload
    from .http2 import Http2ClientExchange


class EventQueue:
    """The ``data_to_send`` / ``next_event`` half every stream endpoint shares, and
    ``writes_to_send`` for one whose writes keep their boundaries (``keeps_writes``)."""

    keeps_writes = False
    """Whether the engine must hand TCP each write apart (``events.SplitWritesEndpoint``)."""

    def __init__(self) -> None:
        self._outgoing = bytearray()
        self._write_ends: list[int] = []
        """Offsets in ``_outgoing`` where a write(2) ended (``end_write``)."""
        self._events: deque[Event] = deque()

    def data_to_send(self) -> bytes:
        data = bytes(self._outgoing)
        self._outgoing.clear()
        self._write_ends.clear()
        return data

    def end_write(self) -> None:
        """What is in ``_outgoing`` so far is one write: what follows is the next."""
        if self._outgoing and (not self._write_ends or self._write_ends[-1] != len(self._outgoing)):
            self._write_ends.append(len(self._outgoing))

    def writes_to_send(self) -> list[bytes]:
        """What ``data_to_send`` gives, cut where each write ended."""
        ends = self._write_ends + [len(self._outgoing)]
        data = self.data_to_send()
        writes, start = [], 0
        for end in ends:
            if end > start:
                writes.append(data[start:end])
                start = end
        return writes

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


class TlsExchangeClient(EventQueue):
    """The HTTP half of a TLS client, whichever TLS stack carries it (stdlib ``ssl``, libssl):
    its exchange, made once ALPN has settled the protocol, reads the decrypted bytes; ``fetch``
    asks for more (HTTP/2 streams at once, HTTP/1.1 one at a time after the first), held until
    then when asked before. The TLS class beside it in the bases provides ``_write``, ``_flush``
    and ``handshake_complete``."""

    def __init__(self, *args: object, upload: Upload | None = None) -> None:
        super().__init__(*args)  # the TLS class's own (libssl's takes its context)
        self._upload = upload
        self.keeps_writes = upload is not None and upload.split
        self._exchange: ClientExchange | Http2ClientExchange | None = None
        self._fetched: list[str] = []
        """Targets fetched before the handshake settled the protocol."""

    if TYPE_CHECKING:
        handshake_complete: bool

        def _write(self, data: bytes) -> None: ...

        def _flush(self) -> None: ...

    @property
    def response_started(self) -> bool:
        return self._exchange is not None and self._exchange.response_started

    def fetch(self, targets: list[str]) -> None:
        """More GETs on the connection."""
        if self._exchange is None or not self.handshake_complete:
            self._fetched.extend(targets)
            return
        for target in targets:
            self._exchange.fetch(target)
        try:
            self._write_more()
        finally:
            self._flush()

    def _fetch_held(self) -> None:
        """The handshake is done: what was fetched before it leaves now."""
        if self._fetched:
            fetched, self._fetched = self._fetched, []
            self.fetch(fetched)

    def _on_plaintext(self, data: bytes, now: float) -> None:
        assert self._exchange is not None
        responses = self._exchange.receive(data)
        self._write_more()
        self._events.extend(responses)

    def _write_request(self, writes: list[bytes]) -> None:
        """The first request, write by write (each a TLS record or more of its own)."""
        for write in writes:
            self._write(write)
            self._flush()
            self.end_write()

    def _write_more(self) -> None:
        """HTTP/2: SETTINGS ACK, WINDOW_UPDATE, new streams; HTTP/1.1: the next GET."""
        assert self._exchange is not None
        more = self._exchange.data_to_send()
        if more:
            self._write(more)
