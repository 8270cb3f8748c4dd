"""The first response byte is the answer to the request, never the server's own chatter
(DESIGN.md §6): HTTP/1.x's status line, HTTP/2's HEADERS or DATA on the request's stream."""

from __future__ import annotations

import h2.config
import h2.connection
import hyperframe.frame
from hypothesis import given, settings
from hypothesis import strategies as st

from handshake.analysis.http.response import HTTP1, HTTP2, ResponseFinder

from .test_http2 import REQUEST, chunked

GET = b"GET / HTTP/1.1\r\nHost: example.test\r\n\r\n"


def test_http1_the_first_server_byte_after_the_request_and_an_interim_response_counts():
    finder = ResponseFinder()
    finder.feed(True, GET)
    assert finder.protocol == HTTP1 and finder.answer_offset is None
    finder.feed(False, b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n")
    assert finder.answer_offset == 0
    finder.feed(False, b"HTTP/1.1 200 OK\r\n\r\n")
    assert finder.answer_offset == 0


def test_http1_server_bytes_before_any_request_answer_nothing():
    finder = ResponseFinder("http/1.1")
    finder.feed(False, b"220 banner\r\n")
    assert finder.answer_offset is None
    finder.feed(True, GET)
    finder.feed(False, b"HTTP/1.1 200 OK\r\n\r\n")
    assert finder.answer_offset == len(b"220 banner\r\n")


class H2:
    """A real client and server (h2 library); each call returns the bytes that side wrote."""

    def __init__(self) -> None:
        self.client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        self.started = False

    def server_settings(self) -> bytes:
        self.server.initiate_connection()
        return self.server.data_to_send()

    def request(self, stream: int = 1) -> bytes:
        if not self.started:
            self.client.initiate_connection()
            self.started = True
        self.client.send_headers(stream, REQUEST, end_stream=True)
        data = self.client.data_to_send()
        self.server.receive_data(data)
        return data

    def chatter(self) -> bytes:
        """What a server sends besides answers: SETTINGS ACK (already due), PING, WINDOW_UPDATE."""
        self.server.ping(b"12345678")
        self.server.increment_flow_control_window(1 << 20)
        return self.server.data_to_send()

    def answer(self, stream: int = 1) -> bytes:
        self.server.send_headers(stream, [(":status", "200")])
        self.server.send_data(stream, b"hello", end_stream=True)
        return self.server.data_to_send()


def test_http2_settings_ping_and_window_updates_are_not_the_answer_headers_on_the_request_stream_are():
    h2c = H2()
    finder = ResponseFinder("h2")
    settings_bytes = h2c.server_settings()
    finder.feed(False, settings_bytes)  # nginx: SETTINGS as the handshake ends, before any request
    finder.feed(True, h2c.request())
    chatter = h2c.chatter()
    finder.feed(False, chatter)
    assert finder.answer_offset is None and finder.request_stream == 1
    finder.feed(False, h2c.answer())
    assert finder.answer_offset == len(settings_bytes) + len(chatter)


def test_without_alpn_the_preface_tells_http2_and_anything_else_http1():
    h2c = H2()
    finder = ResponseFinder()
    request = h2c.request()
    finder.feed(True, request[:10])
    assert finder.protocol is None
    finder.feed(True, request[10:])
    assert finder.protocol == HTTP2
    server_bytes = h2c.server_settings()
    finder.feed(False, server_bytes)
    assert finder.answer_offset is None
    finder.feed(False, h2c.answer())
    assert finder.answer_offset == len(server_bytes)
    http1 = ResponseFinder()
    http1.feed(True, b"PRI * HTTP/1.1\r\n")
    assert http1.protocol == HTTP1


def test_pushes_and_other_streams_are_not_the_answer():
    h2c = H2()
    finder = ResponseFinder("h2")
    finder.feed(True, h2c.request())
    server_bytes = h2c.server_settings()
    h2c.server.push_stream(1, 2, [(":method", "GET"), (":path", "/s.css"), (":scheme", "https"),
                                  (":authority", "example.test")])
    h2c.server.send_headers(2, [(":status", "200")])
    h2c.server.send_data(2, b"body{}", end_stream=True)
    server_bytes += h2c.server.data_to_send()
    finder.feed(False, server_bytes)
    assert finder.answer_offset is None  # PUSH_PROMISE on stream 1, HEADERS and DATA on stream 2
    finder.feed(False, h2c.answer())
    assert finder.answer_offset == len(server_bytes)


def test_a_reset_is_no_answer_and_data_on_the_request_stream_is_one():
    finder = ResponseFinder("h2")
    finder.feed(True, H2().request(stream=3))
    reset = hyperframe.frame.RstStreamFrame(3, error_code=7).serialize()
    data = hyperframe.frame.DataFrame(3, data=b"x").serialize()
    finder.feed(False, reset)
    assert finder.request_stream == 3 and finder.answer_offset is None
    finder.feed(False, data)
    assert finder.answer_offset == len(reset)


def test_the_request_resent_after_rejected_early_data_is_read_from_its_own_preface():
    early, late = H2(), H2()
    finder = ResponseFinder("h2")
    finder.feed(True, early.request(stream=1))  # 0-RTT data the server then rejected
    finder.early_data_rejected()
    finder.feed(True, late.request(stream=3))  # sent again after the handshake, here on stream 3
    assert finder.request_stream == 3
    settings_bytes = late.server_settings()
    finder.feed(False, settings_bytes + late.answer(stream=3))
    assert finder.answer_offset == len(settings_bytes)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=400), max_size=20),
       st.lists(st.integers(min_value=0, max_value=200), max_size=10), st.sampled_from([None, "h2"]))
def test_the_answer_is_the_same_byte_whatever_the_chunking(server_cuts, client_cuts, alpn):
    h2c = H2()
    request = h2c.request()
    server_bytes = h2c.server_settings() + h2c.chatter() + h2c.answer()
    whole = ResponseFinder(alpn)
    whole.feed(True, request)
    whole.feed(False, server_bytes)
    finder = ResponseFinder(alpn)
    for chunk in chunked(request, client_cuts):
        finder.feed(True, chunk)
    for chunk in chunked(server_bytes, server_cuts):
        finder.feed(False, chunk)
    assert finder.answer_offset == whole.answer_offset is not None
