"""The HTTP/2 frame reader on streams the h2 library (python-hyper) wrote, checked against
hyperframe's own parser, cut into chunks of every size, and fed garbage."""

from __future__ import annotations

import h2.config
import h2.connection
import hpack
import hyperframe.frame
from hypothesis import given, settings
from hypothesis import strategies as st

from handshake.analysis.http.http2 import (
    DATA,
    HEADERS,
    PREFACE,
    PUSH_PROMISE,
    SETTINGS,
    WINDOW_UPDATE,
    Http2Frame,
    Http2Reader,
)

REQUEST = [(":method", "GET"), (":path", "/"), (":scheme", "https"), (":authority", "example.test")]


def conversation() -> tuple[bytes, bytes]:
    """(client stream, server stream) of one GET answered with a body, a server push and a
    WINDOW_UPDATE, as the h2 library writes them."""
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    client.initiate_connection()
    client.send_headers(1, REQUEST, end_stream=True)
    client_bytes = client.data_to_send()
    server.initiate_connection()
    server.receive_data(client_bytes)
    server.push_stream(1, 2, [(":method", "GET"), (":path", "/style.css"), (":scheme", "https"),
                              (":authority", "example.test")])
    server.send_headers(2, [(":status", "200")])
    server.send_headers(1, [(":status", "200"), ("content-type", "text/plain")])
    server.send_data(1, b"x" * 16384)
    server.send_data(1, b"x" * 3616, end_stream=True)
    server.increment_flow_control_window(65535)
    server_bytes = server.data_to_send()
    client.receive_data(server_bytes)
    client_bytes += client.data_to_send()
    return client_bytes, server_bytes


CLIENT_STREAM, SERVER_STREAM = conversation()


def hyperframe_view(stream: bytes, preface: bool) -> list[tuple[int, int, int, int]]:
    """(offset, type, stream id, length) of every frame, by hyperframe's parser."""
    position = len(PREFACE) if preface else 0
    found = []
    while position + 9 <= len(stream):
        frame, length = hyperframe.frame.Frame.parse_frame_header(memoryview(stream[position:position + 9]))
        found.append((position, frame.type, frame.stream_id, length))
        position += 9 + length
    return found


def frames(reader_input: list[bytes], preface: bool) -> list[Http2Frame]:
    reader = Http2Reader(expect_preface=preface)
    return [frame for chunk in reader_input for frame in reader.feed(chunk)]


def test_every_frame_of_a_real_conversation_as_hyperframe_reads_it():
    for stream, preface in ((CLIENT_STREAM, True), (SERVER_STREAM, False)):
        mine = frames([stream], preface)
        assert [(f.offset, f.frame_type, f.stream_id, f.length) for f in mine] == hyperframe_view(stream, preface)


def test_labels_name_the_frame_its_stream_and_the_static_fields():
    client_labels = [f.label for f in frames([CLIENT_STREAM], True)]
    assert client_labels[:2] == ["HTTP/2 SETTINGS", "HTTP/2 HEADERS GET / (stream 1)"]
    assert "HTTP/2 SETTINGS ACK" in client_labels
    server_labels = [f.label for f in frames([SERVER_STREAM], False)]
    assert server_labels[0] == "HTTP/2 SETTINGS"
    assert "HTTP/2 PUSH_PROMISE GET (stream 1)" in server_labels  # :path /style.css is Huffman-coded
    assert "HTTP/2 HEADERS :status 200 (stream 2)" in server_labels
    assert "HTTP/2 HEADERS :status 200 (stream 1)" in server_labels
    assert server_labels.count("HTTP/2 DATA (stream 1)") == 2  # 20000 bytes in 16384-byte frames
    assert "HTTP/2 WINDOW_UPDATE" in server_labels


def headers_frame(fields, flags=("END_HEADERS",), huffman=True, stream=1, **attributes) -> bytes:
    frame = hyperframe.frame.HeadersFrame(stream, data=hpack.Encoder().encode(fields, huffman=huffman), flags=flags)
    for name, value in attributes.items():
        setattr(frame, name, value)
    return frame.serialize()


def label(data: bytes) -> str:
    (frame,) = frames([data], False)
    return frame.label


def test_literals_show_unless_huffman_coded_and_padding_and_priority_are_stepped_over():
    assert label(headers_frame([(":status", "103")], huffman=False)) == "HTTP/2 HEADERS :status 103 (stream 1)"
    assert label(headers_frame([(":status", "301")])) == "HTTP/2 HEADERS (stream 1)"
    assert label(headers_frame([(":status", "404")], flags=("END_HEADERS", "PADDED", "PRIORITY"), pad_length=7,
                               depends_on=3, stream_weight=200)) == "HTTP/2 HEADERS :status 404 (stream 1)"
    assert label(headers_frame([(":method", "POST"), (":path", "/upload")], huffman=False, stream=5)) == \
        "HTTP/2 HEADERS POST /upload (stream 5)"
    # RFC 7541 §6.3: a dynamic table size update may lead the block.
    assert label(b"\x00\x00\x02\x01\x04\x00\x00\x00\x01\x3f\x88") == "HTTP/2 HEADERS (stream 1)"
    assert label(b"\x00\x00\x02\x01\x04\x00\x00\x00\x01\x20\x88") == "HTTP/2 HEADERS :status 200 (stream 1)"


def test_a_stream_without_the_preface_is_not_http2():
    reader = Http2Reader(expect_preface=True)
    assert reader.feed(b"PRI * HTTP/2.0\r\n") == [] and not reader.failed and not reader.preface_seen
    assert reader.feed(b"\r\nXX") == [] and reader.failed
    assert reader.feed(SERVER_STREAM) == []
    assert Http2Reader(expect_preface=True).feed(b"GET / HTTP/1.1\r\n") == []


def test_a_header_split_across_chunks_is_placed_at_its_first_byte():
    settings_frame = hyperframe.frame.SettingsFrame(0, settings={4: 65535}).serialize()
    ping = hyperframe.frame.PingFrame(0, opaque_data=b"12345678").serialize()
    reader = Http2Reader(expect_preface=False)
    assert reader.feed(settings_frame + ping[:4]) == [Http2Frame(0, SETTINGS, 0, 0, 6, b"")]
    (split,) = reader.feed(ping[4:])
    assert split.offset == len(settings_frame) and split.label == "HTTP/2 PING"
    assert reader.offset == len(settings_frame) + len(ping)


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(cut, len(data)) for cut in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in zip(edges, edges[1:])]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(SERVER_STREAM)), max_size=40),
       st.lists(st.integers(min_value=0, max_value=len(CLIENT_STREAM)), max_size=40))
def test_the_same_frames_whatever_the_chunking(server_cuts, client_cuts):
    assert frames(chunked(SERVER_STREAM, server_cuts), False) == frames([SERVER_STREAM], False)
    assert frames(chunked(CLIENT_STREAM, client_cuts), True) == frames([CLIENT_STREAM], True)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600), st.lists(st.integers(min_value=0, max_value=600), max_size=12), st.booleans())
def test_arbitrary_bytes_never_raise_and_chunking_never_changes_what_they_give(data, cuts, preface):
    whole = frames([data], preface)
    assert frames(chunked(data, cuts), preface) == whole
    for frame in whole:
        assert frame.label.startswith("HTTP/2 ")  # labels and fields read any head without raising
        assert 0 <= frame.stream_id < 2**31 and frame.length < 2**24


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([DATA, HEADERS, PUSH_PROMISE, WINDOW_UPDATE, 0x42]),
                          st.integers(0, 2**31 - 1), st.binary(max_size=80)), max_size=8),
       st.lists(st.integers(min_value=0, max_value=1000), max_size=10))
def test_well_formed_frames_of_any_type_come_out_as_written(written, cuts):
    stream = b"".join(len(payload).to_bytes(3, "big") + bytes((kind, 0)) + stream_id.to_bytes(4, "big") + payload
                      for kind, stream_id, payload in written)
    read = frames(chunked(stream, cuts), False)
    assert [(f.frame_type, f.stream_id, f.length) for f in read] == [(k, s, len(p)) for k, s, p in written]
