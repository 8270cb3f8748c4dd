"""QUIC frames (RFC 9000 §19): a decrypted packet payload in, the frames it carries out.

Only what the analysis reads gets its own class (ACK, CRYPTO, STREAM, CONNECTION_CLOSE, ...);
every other frame is an ``OtherFrame`` with its type and, where it has one, its stream ID.
A frame type this reader does not know cannot be skipped (frames carry no length of their own,
§12.4), so it ends the list, as does a truncated frame: ``parse_frames`` never raises.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from .packets import QuicDecodeError, Reader

PADDING: Final = 0x00
PING: Final = 0x01
ACK: Final = 0x02
ACK_ECN: Final = 0x03
RESET_STREAM: Final = 0x04
STOP_SENDING: Final = 0x05
CRYPTO: Final = 0x06
NEW_TOKEN: Final = 0x07
STREAM: Final = 0x08  # 0x08-0x0f: the low three bits are OFF, LEN, FIN
MAX_DATA: Final = 0x10
MAX_STREAM_DATA: Final = 0x11
MAX_STREAMS_BIDI: Final = 0x12
MAX_STREAMS_UNI: Final = 0x13
DATA_BLOCKED: Final = 0x14
STREAM_DATA_BLOCKED: Final = 0x15
STREAMS_BLOCKED_BIDI: Final = 0x16
STREAMS_BLOCKED_UNI: Final = 0x17
NEW_CONNECTION_ID: Final = 0x18
RETIRE_CONNECTION_ID: Final = 0x19
PATH_CHALLENGE: Final = 0x1A
PATH_RESPONSE: Final = 0x1B
CONNECTION_CLOSE: Final = 0x1C
CONNECTION_CLOSE_APP: Final = 0x1D
HANDSHAKE_DONE: Final = 0x1E
DATAGRAM: Final = 0x30  # RFC 9221: 0x30 runs to the packet's end, 0x31 has a length
DATAGRAM_LEN: Final = 0x31

FRAME_NAMES: Final = {
    PADDING: "PADDING", PING: "PING", ACK: "ACK", ACK_ECN: "ACK_ECN", RESET_STREAM: "RESET_STREAM",
    STOP_SENDING: "STOP_SENDING", CRYPTO: "CRYPTO", NEW_TOKEN: "NEW_TOKEN", MAX_DATA: "MAX_DATA",
    MAX_STREAM_DATA: "MAX_STREAM_DATA", MAX_STREAMS_BIDI: "MAX_STREAMS", MAX_STREAMS_UNI: "MAX_STREAMS",
    DATA_BLOCKED: "DATA_BLOCKED", STREAM_DATA_BLOCKED: "STREAM_DATA_BLOCKED",
    STREAMS_BLOCKED_BIDI: "STREAMS_BLOCKED", STREAMS_BLOCKED_UNI: "STREAMS_BLOCKED",
    NEW_CONNECTION_ID: "NEW_CONNECTION_ID", RETIRE_CONNECTION_ID: "RETIRE_CONNECTION_ID",
    PATH_CHALLENGE: "PATH_CHALLENGE", PATH_RESPONSE: "PATH_RESPONSE", CONNECTION_CLOSE: "CONNECTION_CLOSE",
    CONNECTION_CLOSE_APP: "CONNECTION_CLOSE", HANDSHAKE_DONE: "HANDSHAKE_DONE", DATAGRAM: "DATAGRAM",
    DATAGRAM_LEN: "DATAGRAM",
}

_MAX_VARINT: Final = (1 << 62) - 1


# Frames are made for every packet: their __init__s are written out, as TcpSegment's is
# (handshake.trace.packet), so that they are compiled.
@dataclass(slots=True, unsafe_hash=True, init=False)
class PaddingFrame:
    length: int
    """A run of PADDING bytes counts as one frame."""
    frame_type: int = PADDING

    def __init__(self, length: int, frame_type: int = PADDING) -> None:
        self.length = length
        self.frame_type = frame_type


@dataclass(slots=True, unsafe_hash=True, init=False)
class PingFrame:
    frame_type: int = PING

    def __init__(self, frame_type: int = PING) -> None:
        self.frame_type = frame_type


@dataclass(slots=True, unsafe_hash=True, init=False)
class AckFrame:
    ranges: tuple[tuple[int, int], ...]
    """Acknowledged packet numbers as (smallest, largest), highest range first (§19.3.1)."""
    ack_delay: int
    """Encoded delay: microseconds shifted right by the sender's ack_delay_exponent."""
    ecn_counts: tuple[int, int, int] | None = None
    frame_type: int = ACK

    def __init__(self, ranges: tuple[tuple[int, int], ...], ack_delay: int,
                 ecn_counts: tuple[int, int, int] | None = None, frame_type: int = ACK) -> None:
        self.ranges = ranges
        self.ack_delay = ack_delay
        self.ecn_counts = ecn_counts
        self.frame_type = frame_type

    @property
    def largest(self) -> int:
        return self.ranges[0][1]


@dataclass(slots=True, unsafe_hash=True, init=False)
class CryptoFrame:
    offset: int
    data: bytes
    frame_type: int = CRYPTO

    def __init__(self, offset: int, data: bytes, frame_type: int = CRYPTO) -> None:
        self.offset = offset
        self.data = data
        self.frame_type = frame_type


@dataclass(slots=True, unsafe_hash=True, init=False)
class StreamFrame:
    stream_id: int
    offset: int
    data: bytes
    fin: bool
    frame_type: int = STREAM

    def __init__(self, stream_id: int, offset: int, data: bytes, fin: bool, frame_type: int = STREAM) -> None:
        self.stream_id = stream_id
        self.offset = offset
        self.data = data
        self.fin = fin
        self.frame_type = frame_type


@dataclass(slots=True, unsafe_hash=True, init=False)
class NewTokenFrame:
    token: bytes
    frame_type: int = NEW_TOKEN

    def __init__(self, token: bytes, frame_type: int = NEW_TOKEN) -> None:
        self.token = token
        self.frame_type = frame_type


@dataclass(slots=True, unsafe_hash=True, init=False)
class NewConnectionIdFrame:
    sequence_number: int
    retire_prior_to: int
    connection_id: bytes
    stateless_reset_token: bytes
    frame_type: int = NEW_CONNECTION_ID

    def __init__(self, sequence_number: int, retire_prior_to: int, connection_id: bytes, stateless_reset_token: bytes,
                 frame_type: int = NEW_CONNECTION_ID) -> None:
        self.sequence_number = sequence_number
        self.retire_prior_to = retire_prior_to
        self.connection_id = connection_id
        self.stateless_reset_token = stateless_reset_token
        self.frame_type = frame_type


@dataclass(slots=True, unsafe_hash=True, init=False)
class ConnectionCloseFrame:
    error_code: int
    closing_frame_type: int | None
    """The frame type that caused a transport error (0x1c only)."""
    reason: str
    frame_type: int = CONNECTION_CLOSE

    def __init__(self, error_code: int, closing_frame_type: int | None, reason: str,
                 frame_type: int = CONNECTION_CLOSE) -> None:
        self.error_code = error_code
        self.closing_frame_type = closing_frame_type
        self.reason = reason
        self.frame_type = frame_type

    @property
    def application(self) -> bool:
        return self.frame_type == CONNECTION_CLOSE_APP


@dataclass(slots=True, unsafe_hash=True, init=False)
class HandshakeDoneFrame:
    frame_type: int = HANDSHAKE_DONE

    def __init__(self, frame_type: int = HANDSHAKE_DONE) -> None:
        self.frame_type = frame_type


@dataclass(slots=True, unsafe_hash=True, init=False)
class OtherFrame:
    frame_type: int
    stream_id: int | None = None
    """For RESET_STREAM, STOP_SENDING, MAX_STREAM_DATA, STREAM_DATA_BLOCKED."""

    def __init__(self, frame_type: int, stream_id: int | None = None) -> None:
        self.frame_type = frame_type
        self.stream_id = stream_id


Frame = (PaddingFrame | PingFrame | AckFrame | CryptoFrame | StreamFrame | NewTokenFrame | NewConnectionIdFrame
         | ConnectionCloseFrame | HandshakeDoneFrame | OtherFrame)


@dataclass(slots=True, unsafe_hash=True, init=False)
class ParsedFrames:
    frames: tuple[Frame, ...]
    complete: bool
    """False when a frame could not be read; ``frames`` then holds those before it."""

    def __init__(self, frames: tuple[Frame, ...], complete: bool) -> None:
        self.frames = frames
        self.complete = complete


def parse_frames(payload: bytes) -> ParsedFrames:
    """The frames of a decrypted packet payload, in order."""
    reader = Reader(bytes(payload))
    frames: list[Frame] = []
    while reader.remaining:
        start = reader.position
        try:
            frame = _frame(reader)
        except QuicDecodeError:
            return ParsedFrames(tuple(frames), False)
        if frame is None:
            return ParsedFrames(tuple(frames), False)
        if isinstance(frame, PaddingFrame):
            # PADDING is one byte per frame (§19.1); a run is reported as one frame.
            end = start + 1
            data = reader.data
            while end < reader.end and data[end] == 0:
                end += 1
            reader.position = end
            frame = PaddingFrame(end - start)
        frames.append(frame)
    return ParsedFrames(tuple(frames), True)


def _frame(reader: Reader) -> Frame | None:
    kind = reader.varint()
    if kind == PADDING:
        return PaddingFrame(1)
    if kind == PING:
        return PingFrame()
    if kind in (ACK, ACK_ECN):
        return _ack(reader, kind)
    if kind == CRYPTO:
        offset = reader.varint()
        data = reader.bytes(reader.varint())
        if offset + len(data) > _MAX_VARINT:
            return None  # §19.6: FRAME_ENCODING_ERROR
        return CryptoFrame(offset, data)
    if STREAM <= kind <= STREAM | 0x07:
        stream_id = reader.varint()
        offset = reader.varint() if kind & 0x04 else 0
        data = reader.bytes(reader.varint()) if kind & 0x02 else reader.bytes(reader.remaining)
        if offset + len(data) > _MAX_VARINT:
            return None  # §19.8: FRAME_ENCODING_ERROR
        return StreamFrame(stream_id, offset, data, bool(kind & 0x01), frame_type=kind)
    if kind == NEW_TOKEN:
        return NewTokenFrame(reader.bytes(reader.varint()))
    if kind == RESET_STREAM:
        stream_id = reader.varint()
        reader.varint()  # application error code
        reader.varint()  # final size
        return OtherFrame(kind, stream_id)
    if kind in (STOP_SENDING, MAX_STREAM_DATA, STREAM_DATA_BLOCKED):
        stream_id = reader.varint()
        reader.varint()
        return OtherFrame(kind, stream_id)
    if kind in (MAX_DATA, MAX_STREAMS_BIDI, MAX_STREAMS_UNI, DATA_BLOCKED, STREAMS_BLOCKED_BIDI,
                STREAMS_BLOCKED_UNI, RETIRE_CONNECTION_ID):
        reader.varint()
        return OtherFrame(kind)
    if kind == NEW_CONNECTION_ID:
        sequence = reader.varint()
        retire_prior_to = reader.varint()
        length = reader.uint8()
        if not 1 <= length <= 20:
            return None  # §19.15
        return NewConnectionIdFrame(sequence, retire_prior_to, reader.bytes(length), reader.bytes(16))
    if kind in (PATH_CHALLENGE, PATH_RESPONSE):
        reader.bytes(8)
        return OtherFrame(kind)
    if kind in (CONNECTION_CLOSE, CONNECTION_CLOSE_APP):
        code = reader.varint()
        closing = reader.varint() if kind == CONNECTION_CLOSE else None
        reason = reader.bytes(reader.varint()).decode("utf-8", "replace")
        return ConnectionCloseFrame(code, closing, reason, frame_type=kind)
    if kind == HANDSHAKE_DONE:
        return HandshakeDoneFrame()
    if kind == DATAGRAM:
        reader.bytes(reader.remaining)
        return OtherFrame(kind)
    if kind == DATAGRAM_LEN:
        reader.bytes(reader.varint())
        return OtherFrame(kind)
    return None


def _ack(reader: Reader, kind: int) -> AckFrame | None:
    """§19.3: largest, delay, range count, first range, then (gap, length) pairs; each range
    ends ``gap + 2`` below the previous one's smallest (§19.3.1)."""
    largest = reader.varint()
    delay = reader.varint()
    count = reader.varint()
    first_range = reader.varint()
    smallest = largest - first_range
    if smallest < 0:
        return None
    ranges = [(smallest, largest)]
    for _ in range(count):
        gap = reader.varint()
        length = reader.varint()
        high = smallest - gap - 2
        low = high - length
        if low < 0:
            return None
        ranges.append((low, high))
        smallest = low
    ecn = (reader.varint(), reader.varint(), reader.varint()) if kind == ACK_ECN else None
    return AckFrame(tuple(ranges), delay, ecn, frame_type=kind)
