"""What an endpoint reports, as small frozen events (the aioquic / h11 style).

Endpoints own no socket and no clock: the engine feeds them the peer's bytes with the current
time and carries away whatever they want to send. Callers match on these event types.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class HandshakeCompleted:
    """The TLS handshake finished on this side."""

    tls_version: str
    """"1.2" or "1.3"."""
    resumed: bool
    """True when a ticket / session id / PSK was accepted (abbreviated handshake)."""
    early_data: str
    """"accepted", "rejected" or "none" (0-RTT data was not offered)."""
    cipher: str
    """The negotiated cipher suite, OpenSSL name."""


@dataclass(frozen=True)
class RequestReceived:
    """The server has read a whole HTTP request."""

    method: str
    target: str
    in_early_data: bool
    """True when the request arrived as TLS 1.3 early data (0-RTT)."""


@dataclass(frozen=True)
class ResponseReceived:
    """The client has read a whole HTTP response."""

    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()
    """The response's header fields, names lower-cased (HTTP/2 and /3 have no others)."""
    http_version: str = "1.1"
    """"1.1", "2" or "3"."""
    target: str = "/"
    """What the GET asked for."""


class ResponseAssembly:
    """One response as it comes in, over any HTTP: its status and header fields, then its body,
    then the event (what the HTTP/1.1, /2 and /3 clients share)."""

    def __init__(self, target: str, http_version: str) -> None:
        self.target = target
        self.http_version = http_version
        self.started = False
        """Its header section has come in."""
        self._status = 0
        self._headers: tuple[tuple[str, str], ...] = ()
        self._body = bytearray()

    def header_fields(self, fields: list[tuple[str, str]]) -> None:
        """A header section (HTTP/2 and /3 put the status in ``:status``; HTTP/1.1 callers too)."""
        self.started = True
        status = dict(fields).get(":status")
        if status is not None:
            self._status = int(status)
        self._headers += tuple((name, value) for name, value in fields if not name.startswith(":"))

    def data(self, data: bytes) -> None:
        self._body += data

    def complete(self) -> ResponseReceived:
        return ResponseReceived(self._status, bytes(self._body), self._headers, self.http_version, self.target)


@dataclass(frozen=True)
class EarlyDataResent:
    """0-RTT was rejected, so the client sent its request again after the handshake."""


Event = HandshakeCompleted | RequestReceived | ResponseReceived | EarlyDataResent


class StreamEndpoint(Protocol):
    """One side of an application protocol over a reliable byte stream (TCP).

    The engine calls ``start`` once when the connection may carry data (a client produces its
    first bytes here: a ClientHello, or a plain GET), then ``receive`` with every chunk of the
    peer's stream, and after each call drains ``data_to_send`` and ``next_event``.

    An endpoint that acts on its own later (a server holding its answer for its server time)
    also has aioquic's timer pair, ``TimedStreamEndpoint``; engines call ``handle_timer`` once
    the clock reaches ``get_timer()`` and then drain as after ``receive``. One that only ever
    answers what it receives may leave them out.
    """

    def start(self, now: float) -> None: ...

    def receive(self, data: bytes, now: float) -> None: ...

    def data_to_send(self) -> bytes: ...

    def next_event(self) -> Event | None: ...


class TimedStreamEndpoint(StreamEndpoint, Protocol):
    """A stream endpoint with a timer: ``get_timer()`` is when it next wants ``handle_timer(now)``
    (None: nothing pending); after the call, what it has to say is in ``data_to_send``."""

    def get_timer(self) -> float | None: ...

    def handle_timer(self, now: float) -> None: ...


class SplitWritesEndpoint(StreamEndpoint, Protocol):
    """A stream endpoint whose writes keep their boundaries (a program that writes a message's
    headers and its body with two write(2) calls), where ``keeps_writes`` is true:
    ``writes_to_send`` replaces ``data_to_send``, one item per write, and the engine hands each
    to TCP, and lets TCP send what it will, before the next (Nagle's algorithm may then hold the
    second back)."""

    keeps_writes: bool

    def writes_to_send(self) -> list[bytes]: ...


def split_writes(endpoint: StreamEndpoint) -> SplitWritesEndpoint | None:
    """The endpoint as a ``SplitWritesEndpoint``, or None when its writes may be coalesced."""
    if getattr(endpoint, "keeps_writes", False) and hasattr(endpoint, "writes_to_send"):
        return endpoint  # type: ignore[return-value]
    return None


def stream_timer(endpoint: StreamEndpoint) -> TimedStreamEndpoint | None:
    """The endpoint as a ``TimedStreamEndpoint``, or None when it has no timer."""
    if hasattr(endpoint, "get_timer") and hasattr(endpoint, "handle_timer"):
        return endpoint  # type: ignore[return-value]
    return None


class DatagramEndpoint(Protocol):
    """One side of a protocol over UDP datagrams (QUIC), in aioquic's shape.

    A client produces its first datagrams after ``start``; a server endpoint stands for the whole
    UDP port and may hold many connections. Addresses are ``(ip, port)`` tuples.
    """

    def start(self, now: float) -> None: ...

    def receive_datagram(self, data: bytes, addr: tuple[str, int], now: float) -> None: ...

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, tuple[str, int]]]: ...

    def get_timer(self) -> float | None: ...

    def handle_timer(self, now: float) -> None: ...

    def next_event(self) -> Event | None: ...
