"""QUIC frames (RFC 9000 §19) as aioquic writes them, and garbage that must not raise."""

from __future__ import annotations

from aioquic.buffer import Buffer
from aioquic.quic.packet import push_ack_frame
from aioquic.quic.rangeset import RangeSet
from hypothesis import given, settings
from hypothesis import strategies as st

from handshake.analysis.quic.frames import (
    AckFrame,
    ConnectionCloseFrame,
    CryptoFrame,
    HandshakeDoneFrame,
    NewConnectionIdFrame,
    NewTokenFrame,
    OtherFrame,
    PaddingFrame,
    PingFrame,
    StreamFrame,
    parse_frames,
)


def _varint(value: int) -> bytes:
    buf = Buffer(capacity=8)
    buf.push_uint_var(value)
    return buf.data


def test_ack_ranges_are_read_highest_first():
    ranges = RangeSet()
    for start, stop in ((0, 3), (5, 6), (10, 20)):
        ranges.add(start, stop)
    buf = Buffer(capacity=64)
    buf.push_uint_var(0x02)
    push_ack_frame(buf, ranges, 25, 64)
    (frame,) = parse_frames(buf.data).frames
    assert isinstance(frame, AckFrame)
    assert frame.ranges == ((10, 19), (5, 5), (0, 2)) and frame.ack_delay == 25 and frame.largest == 19


def test_ack_with_ecn_counts_and_impossible_ranges():
    frame = parse_frames(b"\x03\x05\x00\x00\x01\x07\x08\x09").frames[0]
    assert isinstance(frame, AckFrame) and frame.ranges == ((4, 5),) and frame.ecn_counts == (7, 8, 9)
    # A first range past packet number 0 cannot be: the frame (and the rest) is not read.
    parsed = parse_frames(b"\x01\x02\x05\x00\x00\x06")
    assert parsed.frames == (PingFrame(),) and not parsed.complete


def test_stream_frame_bits_say_offset_length_and_fin():
    payload = b"\x0f" + _varint(4) + _varint(1000) + _varint(3) + b"abc" + b"\x08" + _varint(8) + b"rest"
    first, second = parse_frames(payload).frames
    assert first == StreamFrame(4, 1000, b"abc", True, frame_type=0x0F)
    # Without LEN the data runs to the end of the packet.
    assert second == StreamFrame(8, 0, b"rest", False, frame_type=0x08)


def test_the_other_frames():
    payload = b"".join([
        b"\x00\x00\x00",
        b"\x06" + _varint(70000) + _varint(2) + b"hi",
        b"\x07" + _varint(3) + b"tok",
        b"\x18" + _varint(1) + _varint(0) + b"\x04" + b"cid!" + bytes(16),
        b"\x04" + _varint(4) + _varint(0) + _varint(9),
        b"\x11" + _varint(8) + _varint(5000),
        b"\x10" + _varint(1 << 20),
        b"\x1a" + bytes(8),
        b"\x1e",
        b"\x1c" + _varint(0x0A) + _varint(0x06) + _varint(3) + b"bad",
        b"\x1d" + _varint(0x100) + _varint(0),
    ])
    parsed = parse_frames(payload)
    assert parsed.complete
    assert parsed.frames == (
        PaddingFrame(3),
        CryptoFrame(70000, b"hi"),
        NewTokenFrame(b"tok"),
        NewConnectionIdFrame(1, 0, b"cid!", bytes(16)),
        OtherFrame(0x04, 4),
        OtherFrame(0x11, 8),
        OtherFrame(0x10),
        OtherFrame(0x1A),
        HandshakeDoneFrame(),
        ConnectionCloseFrame(0x0A, 0x06, "bad"),
        ConnectionCloseFrame(0x100, None, "", frame_type=0x1D),
    )
    assert parsed.frames[-1].application and not parsed.frames[-2].application


def test_an_unknown_frame_type_ends_the_packet():
    parsed = parse_frames(b"\x01" + _varint(0x21) + b"\x01")
    assert parsed.frames == (PingFrame(),) and not parsed.complete


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_frames_never_raise(payload):
    parsed = parse_frames(payload)
    for frame in parsed.frames:
        if isinstance(frame, AckFrame):
            assert all(0 <= low <= high for low, high in frame.ranges)
            assert all(a[0] > b[1] + 1 for a, b in zip(frame.ranges, frame.ranges[1:]))
