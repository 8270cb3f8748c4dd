"""HTTP/2 over a byte stream, with the sans-IO ``h2`` package: one GET on stream 1 and its response.

The same shape as ``http1.ClientExchange`` / ``ServerExchange``: the TLS endpoints hand it their
plaintext when ALPN settled "h2" (``http1.client_exchange`` / ``server_exchange``). Besides the
request and the response, each side has things to say on its own -- SETTINGS and their
acknowledgement, window updates for the body read -- which ``data_to_send`` carries. The first
byte of the response is its HEADERS frame, never the server's SETTINGS, which a server sends the
moment the connection opens (DESIGN.md §6).

The client opens its windows as Chrome does (SETTINGS_INITIAL_WINDOW_SIZE 6 MiB, the
connection's raised by 15 MiB at once), so flow control never holds an answer back on a fast
path; the server still sends only what the windows allow and the rest as they open.
"""

from __future__ import annotations

from collections import deque

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings

from .events import RequestReceived, ResponseAssembly, ResponseReceived
from .http1 import SERVER_NAME, USER_AGENT, Upload, requested_bytes, response_body

CLIENT_STREAM_WINDOW = 6 * 1024 * 1024
"""Chrome's SETTINGS_INITIAL_WINDOW_SIZE (h2's default is RFC 9113's 65,535 bytes)."""
CLIENT_CONNECTION_WINDOW_RAISE = 15 * 1024 * 1024
"""What Chrome adds to the connection's window in its first WINDOW_UPDATE."""


class Http2ClientExchange:
    """The client half of GETs over HTTP/2 (RFC 9113): the connection preface, the client's
    SETTINGS and the first request's HEADERS (END_STREAM) leave together (``request``); any
    more (``fetch``) open their own streams at once, so every answer is under way together."""

    http_version = "2"

    def __init__(self, host: str, path: str = "/", upload: Upload | None = None) -> None:
        self._h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="latin-1"))
        self._host = host
        self._path = path
        self._upload = upload
        self._streams: dict[int, ResponseAssembly] = {}
        """Responses under way, by stream."""
        self.response_started = False
        """The first response's HEADERS have come in."""

    @property
    def done(self) -> bool:
        """Every response asked for is in."""
        return not self._streams

    def request(self) -> bytes:
        """The first request's bytes, as one."""
        return b"".join(self.request_writes())

    def request_writes(self) -> list[bytes]:
        """The preface, SETTINGS and the first request: a GET, or a POST whose body (a DATA frame
        with END_STREAM) is a write of its own where the upload says so; one item per write."""
        self._h2.local_settings = h2.settings.Settings(client=True, initial_values={
            h2.settings.SettingCodes.ENABLE_PUSH: 0,
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: CLIENT_STREAM_WINDOW,
        })
        self._h2.initiate_connection()
        self._h2.increment_flow_control_window(CLIENT_CONNECTION_WINDOW_RAISE)
        upload = self._upload
        if upload is None:
            self.fetch(self._path)
            return [self._h2.data_to_send()]
        stream_id = self._open(self._path, "POST", [("content-type", "application/octet-stream"),
                                                    ("content-length", str(upload.size))])
        head = self._h2.data_to_send()
        self._h2.send_data(stream_id, upload.body, end_stream=True)
        return upload.writes(head, self._h2.data_to_send())

    def fetch(self, target: str) -> None:
        """Another GET, on a stream of its own (its HEADERS leave with ``data_to_send``)."""
        self._open(target, "GET", [])

    def _open(self, target: str, method: str, fields: list[tuple[str, str]]) -> int:
        """A request's HEADERS on a new stream, ending it unless a body follows (``fields``)."""
        stream_id = self._h2.get_next_available_stream_id()
        self._h2.send_headers(stream_id, [
            (":method", method), (":scheme", "https"), (":authority", self._host), (":path", target),
            ("user-agent", USER_AGENT), ("accept", "*/*"), *fields,
        ], end_stream=not fields)
        self._streams[stream_id] = ResponseAssembly(target, self.http_version)
        return stream_id

    def data_to_send(self) -> bytes:
        return self._h2.data_to_send()

    def receive(self, data: bytes) -> list[ResponseReceived]:
        """Feed the server's bytes; returns the responses whose streams they ended."""
        completed = []
        for event in self._h2.receive_data(data):
            response = self._streams.get(getattr(event, "stream_id", 0))
            if response is None:
                continue
            if isinstance(event, h2.events.ResponseReceived):
                self.response_started = True
                response.header_fields([(str(name), str(value)) for name, value in event.headers])
            elif isinstance(event, h2.events.DataReceived):
                response.data(event.data)
                self._h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamReset):
                raise h2.exceptions.ProtocolError(f"the server reset the request's stream (error {event.error_code})")
            elif isinstance(event, h2.events.StreamEnded):
                completed.append(response.complete())
                del self._streams[event.stream_id]
        return completed


class Http2ServerExchange:
    """The server half: SETTINGS the moment the connection opens, then every GET answered on its
    stream, 200 with the body its target asks for (``http1.requested_bytes``; 404 otherwise),
    ``server_time_s`` after the request is complete (``http1.ServerExchange``'s contract).

    Bodies of answers under way share the connection a frame at a time, round robin, within
    each stream's window and the connection's (RFC 9113 §5.3.5: without priorities, a server
    should share fairly), as nginx interleaves its streams.
    """

    def __init__(self, body_bytes: int, server_time_s: float = 0.0) -> None:
        self._h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding="latin-1"))
        self._h2.initiate_connection()
        self._default_bytes = body_bytes
        self._server_time_s = server_time_s
        self._reading: dict[int, tuple[str, str]] = {}
        """Requests whose headers are in and whose stream has not ended: method and path."""
        self._held: deque[tuple[float, int, str]] = deque()
        """Complete requests waiting for their server time: (ready at, stream, path)."""
        self._bodies: dict[int, tuple[bytes, int]] = {}
        """Answers under way: their body and the bytes of it handed to h2 so far."""

    @property
    def respond_at(self) -> float | None:
        """When the next held answer is ready; None while none is held."""
        return self._held[0][0] if self._held else None

    def data_to_send(self) -> bytes:
        """What the server says on its own: SETTINGS, their ACK, bodies as windows open."""
        self._send_bodies()
        return self._h2.data_to_send()

    def receive(self, data: bytes, now: float, *, in_early_data: bool = False) -> list[RequestReceived]:
        """Feed the client's bytes; returns the requests completed by them."""
        completed = []
        for event in self._h2.receive_data(data):
            if isinstance(event, h2.events.RequestReceived):
                fields = {str(name): str(value) for name, value in event.headers}
                self._reading[event.stream_id] = (fields.get(":method", ""), fields.get(":path", ""))
            elif isinstance(event, h2.events.DataReceived):
                self._h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded) and event.stream_id in self._reading:
                method, target = self._reading.pop(event.stream_id)
                completed.append(RequestReceived(method, target, in_early_data))
                self._held.append((now + self._server_time_s, event.stream_id, target))
        return completed

    def due(self, now: float) -> bool:
        return bool(self._held) and self._held[0][0] <= now

    def response(self) -> bytes:
        """The HEADERS of every answer now due, and as much of the bodies as the windows allow
        (the rest leaves with ``data_to_send`` as the client opens them)."""
        assert self._held, "no request to answer"
        ready = self._held[0][0]
        while self._held and self._held[0][0] <= ready:
            _, stream_id, target = self._held.popleft()
            size = requested_bytes(target, self._default_bytes)
            body = response_body(size or 0)
            self._h2.send_headers(stream_id, [
                (":status", "200" if size is not None else "404"), ("content-type", "text/plain"),
                ("content-length", str(len(body))), ("server", SERVER_NAME),
            ], end_stream=not body)
            if body:
                self._bodies[stream_id] = (body, 0)
        return self.data_to_send()

    def _send_bodies(self) -> None:
        """One frame per stream in turn until the windows or the bodies run out."""
        moved = True
        while moved and self._bodies:
            moved = False
            for stream_id, (body, sent) in list(self._bodies.items()):
                room = min(self._h2.local_flow_control_window(stream_id), self._h2.max_outbound_frame_size)
                if room <= 0:
                    continue
                chunk = body[sent:sent + room]
                sent += len(chunk)
                self._h2.send_data(stream_id, chunk, end_stream=sent == len(body))
                moved = True
                if sent == len(body):
                    del self._bodies[stream_id]
                else:
                    self._bodies[stream_id] = (body, sent)
