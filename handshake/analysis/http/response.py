"""Which server byte starts the answer to the client's request (DESIGN.md §6).

The first response byte is the first byte of the answer to the request, never what the server
sends on its own. Fed each direction's application bytes in order (decrypted TLS records, or the
clear TCP stream), ``ResponseFinder`` says at which offset of the server's application stream the
answer begins:

- HTTP/1.x (RFC 9112 §4): the server speaks only to answer, so the answer is its first byte sent
  after the client's first byte: the status line. An interim 1xx response (100 Continue, 103 Early
  Hints; RFC 9110 §15.2) counts: it is the server's answer to the request, it proves the request's
  round trip as well as the final status does, it is what HTTP/2 sends as HEADERS on the request
  stream (so both versions agree), and curl's ``time_starttransfer`` stamps the first bytes read,
  interim ones included.
- HTTP/2 (RFC 9113 §8.1): the first HEADERS or DATA frame on the stream of the client's first
  HEADERS frame. Never SETTINGS, WINDOW_UPDATE, PING, GOAWAY, PRIORITY (stream 0 or not),
  PUSH_PROMISE or RST_STREAM: nginx sends its SETTINGS the moment a TLS 1.2 handshake ends, a
  round trip before the answer.

The protocol is HTTP/2 when TLS's ALPN said "h2", or else when the client's stream opens with the
HTTP/2 preface (h2c with prior knowledge, or TLS without ALPN); otherwise HTTP/1.x. Sans-IO.
"""

from __future__ import annotations

from typing import Final

from .http2 import DATA, HEADERS, PREFACE, Http2Frame, Http2Reader

HTTP1: Final = "http/1.x"
HTTP2: Final = "h2"


class ResponseFinder:
    """Both directions' application bytes of one connection, until the answer is found."""

    def __init__(self, alpn: str | None = None) -> None:
        self.protocol: str | None = HTTP2 if alpn == "h2" else HTTP1 if alpn in ("http/1.1", "http/1.0") else None
        """"h2", "http/1.x", or None while the client's first bytes have not told."""
        self.answer_offset: int | None = None
        """Offset in the server's application stream of the answer's first byte, once seen."""
        self.request_stream: int | None = None
        """HTTP/2: the stream of the client's first HEADERS frame."""
        self.server_offset = 0
        """Server application bytes fed so far."""
        self._client_bytes = 0
        self._client = Http2Reader(expect_preface=True)
        self._server = Http2Reader(expect_preface=False)
        self._http1_answer: int | None = None
        """The first server byte after a client byte: the answer if the protocol is HTTP/1.x."""
        self._http2_answer: int | None = None
        self._restarted = False

    def feed(self, from_client: bool, data: bytes) -> list[Http2Frame]:
        """Take the next ``data`` bytes of one direction; returns the HTTP/2 frames they completed
        (for labels; none for HTTP/1.x)."""
        if from_client:
            return self._feed_client(data)
        start = self.server_offset
        self.server_offset += len(data)
        if data and self._client_bytes and self._http1_answer is None:
            self._http1_answer = start
        frames: list[Http2Frame] = []
        if self.protocol != HTTP1:
            frames = self._server.feed(data)
            if self._http2_answer is None and self.request_stream is not None:
                for frame in frames:
                    if frame.stream_id == self.request_stream and frame.frame_type in (HEADERS, DATA):
                        self._http2_answer = frame.offset
                        break
        self._decide()
        return frames

    def early_data_rejected(self) -> None:
        """The client's stream starts again: TLS 1.3 early data the server rejected is sent again
        after the handshake (RFC 8446 §4.2.10), HTTP/2 preface and all. Call it before the first
        bytes after the handshake; later calls change nothing."""
        if self._restarted:
            return
        self._restarted = True
        self._client = Http2Reader(expect_preface=True)
        self.request_stream = None

    def _feed_client(self, data: bytes) -> list[Http2Frame]:
        self._client_bytes += len(data)
        if self.protocol == HTTP1:
            return []
        frames = self._client.feed(data)
        if self.request_stream is None:
            for frame in frames:
                if frame.frame_type == HEADERS:
                    self.request_stream = frame.stream_id
                    break
        if self.protocol is None:
            if self._client.failed:
                self.protocol = HTTP1
            elif self._client.offset >= len(PREFACE):
                self.protocol = HTTP2
        self._decide()
        return frames

    def _decide(self) -> None:
        if self.answer_offset is not None:
            return
        if self.protocol == HTTP1:
            self.answer_offset = self._http1_answer
        elif self.protocol == HTTP2:
            self.answer_offset = self._http2_answer
