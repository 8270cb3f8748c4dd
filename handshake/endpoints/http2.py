"""HTTP/2 over a byte stream, with the sans-IO ``h2`` package: one GET on stream 1 and its response.

The same shape as ``http1.ClientExchange``: the TLS clients hand it their plaintext when ALPN
settled "h2" (``http1.client_exchange``). Besides the request, an HTTP/2 client has things to
say on its own -- the SETTINGS acknowledgement, window updates for the body it read -- which
``data_to_send`` carries. The first byte of the response is its HEADERS frame, never the
server's SETTINGS, which a server sends the moment the connection opens (DESIGN.md §6).
"""

from __future__ import annotations

import h2.config
import h2.connection
import h2.events
import h2.exceptions

from .events import ResponseReceived
from .http1 import USER_AGENT


class Http2ClientExchange:
    """The client half of one GET over HTTP/2 (RFC 9113): the connection preface, the client's
    SETTINGS and the request's HEADERS (END_STREAM) leave together."""

    http_version = "2"

    def __init__(self, host: str, path: str = "/") -> None:
        self._h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="latin-1"))
        self._host = host
        self._path = path
        self._stream_id: int | None = None
        self._status = 0
        self._headers: tuple[tuple[str, str], ...] = ()
        self._body = bytearray()
        self.done = False
        self.response_started = False
        """The response's HEADERS have come in."""

    def request(self) -> bytes:
        self._h2.initiate_connection()
        self._stream_id = self._h2.get_next_available_stream_id()
        self._h2.send_headers(self._stream_id, [
            (":method", "GET"), (":scheme", "https"), (":authority", self._host), (":path", self._path),
            ("user-agent", USER_AGENT), ("accept", "*/*"),
        ], end_stream=True)
        return self._h2.data_to_send()

    def data_to_send(self) -> bytes:
        return self._h2.data_to_send()

    def receive(self, data: bytes) -> ResponseReceived | None:
        """Feed the server's bytes; returns the event once the response's stream has ended."""
        if self.done:
            return None
        for event in self._h2.receive_data(data):
            if getattr(event, "stream_id", None) != self._stream_id:
                continue
            if isinstance(event, h2.events.ResponseReceived):
                self.response_started = True
                headers = tuple((str(name), str(value)) for name, value in event.headers)
                self._status = int(dict(headers).get(":status", "0"))
                self._headers = tuple((name, value) for name, value in headers if not name.startswith(":"))
            elif isinstance(event, h2.events.DataReceived):
                self._body += event.data
                self._h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamReset):
                raise h2.exceptions.ProtocolError(f"the server reset the request's stream (error {event.error_code})")
            elif isinstance(event, h2.events.StreamEnded):
                self.done = True
                return ResponseReceived(self._status, bytes(self._body), self._headers, self.http_version)
        return None
