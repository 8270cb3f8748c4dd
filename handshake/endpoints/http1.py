"""HTTP/1.1 over a byte stream, with h11: one ``GET /`` and its 200 response per connection.

The exchange helpers are sans-IO and know nothing of TLS, so the TLS endpoints reuse them
for the bytes inside their records; ``HttpClient`` / ``HttpServer`` carry them over bare TCP
(the ``http`` baseline variant).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import h11

from ._base import EventQueue
from .events import RequestReceived, ResponseAssembly, ResponseReceived

if TYPE_CHECKING:
    from .http2 import Http2ClientExchange, Http2ServerExchange

DEFAULT_BODY_BYTES = 64


def _events(connection: h11.Connection, data: bytes) -> Iterator[object]:
    """Feed ``data`` to h11 and yield the events it completes, until it needs more bytes."""
    connection.receive_data(data)
    while True:
        event = connection.next_event()
        if event is h11.NEED_DATA or event is h11.PAUSED:
            return
        yield event


def response_body(size: int) -> bytes:
    """A readable body of exactly ``size`` bytes."""
    line = b"handshake says hello; this body is padding of a chosen size.\n"
    return (line * (size // len(line) + 1))[:size]


USER_AGENT = "handshake/0.1"
SERVER_NAME = "handshake/0.1"
SERVER_ALPN = ("h2", "http/1.1")
"""What the servers speak over TLS, in their order of preference (nginx's with ``http2 on``)."""
CLIENT_ALPN = {"2": ("h2", "http/1.1"), "1.1": ("http/1.1",)}
"""What a client offers for ``--http``: browsers and curl offer both, h2 first; ``curl --http1.1``
offers http/1.1 alone."""


MAX_UPLOAD_BYTES = 16384
"""The largest ``--post`` body: one HTTP/2 DATA frame at the default SETTINGS_MAX_FRAME_SIZE, well
inside every initial flow-control window."""


@dataclass(frozen=True)
class Upload:
    """A body the first request carries (``--post SIZE``): a POST rather than a GET."""

    size: int
    split: bool = False
    """The client writes the request's header section and its body with two write(2) calls, as
    many programs do (``--split-writes``); otherwise with one, as curl and browsers do."""

    def __post_init__(self) -> None:
        if not 0 < self.size <= MAX_UPLOAD_BYTES:
            raise ValueError(f"a request body of {self.size} bytes: give 1 to {MAX_UPLOAD_BYTES:,} bytes")

    @property
    def body(self) -> bytes:
        return response_body(self.size)

    def writes(self, head: bytes, body: bytes) -> list[bytes]:
        """The request's bytes as the client writes them."""
        return [head, body] if self.split else [head + body]


class ClientExchange:
    """The client half: serialize GETs and parse their responses as they arrive -- the first
    (``request``), then any more (``fetch``), one at a time on the connection (HTTP/1.1
    keep-alive; no browser pipelines), each leaving once the one before is answered.

    The HTTP/2 exchange (``http2.Http2ClientExchange``) has the same shape, so a TLS client picks
    either by the protocol ALPN settled (``client_exchange``)."""

    http_version = "1.1"

    def __init__(self, host: str, path: str = "/", upload: Upload | None = None) -> None:
        self._h11 = h11.Connection(h11.CLIENT)
        self._host = host
        self._path = path
        self._upload = upload
        self._waiting: deque[str] = deque()
        """Targets fetched and not yet asked for: each waits for the answer before it."""
        self._current: ResponseAssembly | None = None
        self._asked = False
        """The first GET has left: the ones fetched follow it."""
        self.response_started = False
        """A byte of the first response has come in (HTTP/1.1 sends nothing else first)."""

    @property
    def done(self) -> bool:
        """Every response asked for is in."""
        return self._current is None and not self._waiting

    def request(self) -> bytes:
        """The first request's bytes, as one."""
        return b"".join(self.request_writes())

    def request_writes(self) -> list[bytes]:
        """The first request (``path``): a GET, or a POST with the upload's body; one item per
        write(2) the client makes."""
        self._asked = True
        upload = self._upload
        if upload is None:
            return [self._get(self._path)]
        self._current = ResponseAssembly(self._path, self.http_version)
        headers = self._headers() + [("Content-Type", "application/octet-stream"),
                                     ("Content-Length", str(upload.size))]
        head = self._h11.send(h11.Request(method="POST", target=self._path, headers=headers))
        return upload.writes(head, self._h11.send(h11.Data(data=upload.body)) + self._h11.send(h11.EndOfMessage()))

    def fetch(self, target: str) -> None:
        """Another GET: it leaves (``data_to_send``) once the connection is free."""
        self._waiting.append(target)

    def data_to_send(self) -> bytes:
        """The next GET fetched, once the answer before it is in."""
        if self._asked and self._current is None and self._waiting:
            return self._get(self._waiting.popleft())
        return b""

    def receive(self, data: bytes) -> list[ResponseReceived]:
        """Feed response bytes; returns the responses they completed."""
        completed: list[ResponseReceived] = []
        current = self._current
        if current is None:
            return completed
        self.response_started = self.response_started or bool(data)
        for event in _events(self._h11, data):
            if isinstance(event, h11.Response):
                current.header_fields([(":status", str(event.status_code))] + [
                    (name.decode("latin-1"), value.decode("latin-1")) for name, value in event.headers])
            elif isinstance(event, h11.Data):
                current.data(event.data)
            elif isinstance(event, h11.EndOfMessage):
                completed.append(current.complete())
                self._current = None
                if self._h11.our_state is h11.DONE and self._h11.their_state is h11.DONE:
                    self._h11.start_next_cycle()  # not after "Connection: close" (MUST_CLOSE): no more GETs here
                break
            elif isinstance(event, h11.ConnectionClosed):
                raise h11.RemoteProtocolError("server closed before the response was complete")
        return completed

    def _get(self, target: str) -> bytes:
        """``GET TARGET HTTP/1.1`` with Host (RFC 9112 §3.2: Host is mandatory in HTTP/1.1)."""
        self._current = ResponseAssembly(target, self.http_version)
        return self._h11.send(h11.Request(method="GET", target=target, headers=self._headers())) + self._h11.send(
            h11.EndOfMessage())

    def _headers(self) -> list[tuple[str, str]]:
        return [("Host", self._host), ("User-Agent", USER_AGENT), ("Accept", "*/*")]


def client_exchange(alpn: str | None, host: str, path: str = "/",
                    upload: Upload | None = None) -> ClientExchange | Http2ClientExchange:
    """The exchange for the protocol ALPN settled: HTTP/2 for "h2", else HTTP/1.1 (h2 is imported
    only then: ``compare --http 1.1`` never loads it)."""
    if alpn == "h2":
        from .http2 import Http2ClientExchange

        return Http2ClientExchange(host, path, upload)
    return ClientExchange(host, path, upload)


def server_exchange(alpn: str | None, body_bytes: int = DEFAULT_BODY_BYTES,
                    server_time_s: float = 0.0) -> ServerExchange | Http2ServerExchange:
    """The server's exchange for the protocol ALPN settled, as ``client_exchange``."""
    if alpn == "h2":
        from .http2 import Http2ServerExchange

        return Http2ServerExchange(body_bytes, server_time_s)
    return ServerExchange(body_bytes, server_time_s)


MAX_OBJECT_BYTES = 1 << 30
"""The largest body a target may ask for (``object_target``)."""


def object_target(index: int, size: int) -> str:
    """The target of a page's object ``index`` with a ``size``-byte body: the servers here answer
    any such target with that many bytes (a test origin, as h2load's and Mahimahi's are)."""
    return f"/object/{index}?bytes={size}"


def requested_bytes(target: str, default: int) -> int | None:
    """The body a target asks for: ``default`` for "/", the size ``object_target`` put in it, or
    None (the server answers 404)."""
    if target == "/":
        return default
    path, _, query = target.partition("?")
    if path.startswith("/object/") and query.startswith("bytes="):
        size = query.removeprefix("bytes=")
        if size.isdigit() and int(size) <= MAX_OBJECT_BYTES:
            return int(size)
    return None


class ServerExchange:
    """The server half: answers each GET on the connection in turn (HTTP/1.1 keep-alive), 200 with
    the body its target asks for (``requested_bytes``) and Content-Length, 404 otherwise.

    ``server_time_s``: how long the server holds each request before its answer is ready, as a
    slow origin behind a proxy would (``respond_at``); 0 answers the moment the request is in.
    No pipelining (no browser pipelines): a request is read once the one before is answered.
    """

    def __init__(self, body_bytes: int = DEFAULT_BODY_BYTES, server_time_s: float = 0.0) -> None:
        self._h11 = h11.Connection(h11.SERVER)
        self._default_bytes = body_bytes
        self._request: h11.Request | None = None
        self._server_time_s = server_time_s
        self._answering: str | None = None
        """The target of the request read and not yet answered."""
        self.respond_at: float | None = None
        """When the answer is ready (the request's time plus the server time); None while no
        request is complete and unanswered."""

    def receive(self, data: bytes, now: float, *, in_early_data: bool = False) -> list[RequestReceived]:
        """Feed request bytes; returns the requests completed by them."""
        completed = []
        for event in _events(self._h11, data):
            if isinstance(event, h11.Request):
                self._request = event
            elif isinstance(event, h11.EndOfMessage) and self._request is not None:
                target = self._request.target.decode()
                completed.append(RequestReceived(self._request.method.decode(), target, in_early_data))
                self._answering, self._request = target, None
                self.respond_at = now + self._server_time_s
            elif isinstance(event, h11.ConnectionClosed):
                break
        return completed

    def data_to_send(self) -> bytes:
        """What the server says beyond its answers: nothing, in HTTP/1.1."""
        return b""

    def due(self, now: float) -> bool:
        """Whether an answer is ready and not yet written."""
        return self.respond_at is not None and self.respond_at <= now

    def response(self) -> bytes:
        """The answer to the request just read (written now: no longer due); the connection is
        then ready for the next request."""
        assert self._answering is not None, "no request to answer"
        size = requested_bytes(self._answering, self._default_bytes)
        self._answering, self.respond_at = None, None
        body = response_body(size or 0)
        headers = [
            ("Content-Type", "text/plain"),
            ("Content-Length", str(len(body))),
            ("Server", SERVER_NAME),
        ]
        out = (self._h11.send(h11.Response(status_code=200 if size is not None else 404, headers=headers))
               + self._h11.send(h11.Data(data=body))
               + self._h11.send(h11.EndOfMessage()))
        if self._h11.our_state is h11.DONE and self._h11.their_state is h11.DONE:
            self._h11.start_next_cycle()
        return out


class HttpClient(EventQueue):
    """Plain HTTP/1.1 client: the request leaves as soon as the connection is up."""

    request_at_start = True

    def __init__(self, host: str = "server.test", path: str = "/", upload: Upload | None = None) -> None:
        super().__init__()
        self._exchange = ClientExchange(host, path, upload)
        self.keeps_writes = upload is not None and upload.split

    @property
    def response_started(self) -> bool:
        return self._exchange.response_started

    def start(self, now: float) -> None:
        for write in self._exchange.request_writes():
            self._outgoing += write
            self.end_write()

    def fetch(self, targets: list[str]) -> None:
        """More GETs on the connection, each once the answer before it is in."""
        for target in targets:
            self._exchange.fetch(target)
        self._outgoing += self._exchange.data_to_send()

    def receive(self, data: bytes, now: float) -> None:
        self._events.extend(self._exchange.receive(data))
        self._outgoing += self._exchange.data_to_send()


class HttpServer(EventQueue):
    """Plain HTTP/1.1 server: answers each request, ``server_time_s`` after it is complete."""

    def __init__(self, body_bytes: int = DEFAULT_BODY_BYTES, server_time_s: float = 0.0) -> None:
        super().__init__()
        self._exchange = ServerExchange(body_bytes, server_time_s)

    def start(self, now: float) -> None:
        pass

    def receive(self, data: bytes, now: float) -> None:
        requests = self._exchange.receive(data, now)
        if requests:
            self._events.extend(requests)
            self.handle_timer(now)

    def get_timer(self) -> float | None:
        return self._exchange.respond_at

    def handle_timer(self, now: float) -> None:
        if self._exchange.due(now):
            self._outgoing += self._exchange.response()
