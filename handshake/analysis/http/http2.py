"""HTTP/2 framing as the analysis sees it: one direction's frames, from bytes fed in chunks of any size.

RFC 9113 §3.4: the client's stream opens with the 24-byte preface, then frames; the server's
stream is frames from its first byte (its preface is a SETTINGS frame). §4.1: every frame is a
9-byte header (24-bit payload length, type, flags, a reserved bit and a 31-bit stream id) and the
payload. The same reader serves TLS (ALPN "h2") and h2c with prior knowledge (§3.3, the preface in
clear over TCP).

Only the frame headers are read, and of HEADERS and PUSH_PROMISE the first few bytes of the field
block, for a label: the HPACK static-table entries (RFC 7541 Appendix A) and plain-text literals at
its head name the method, path or status. HPACK is not decoded in general (no dynamic table, no
Huffman), which is all a count needs: a frame's type and stream say whether it answers a request.

Sans-IO and total: any bytes give frames or nothing, never an exception. The client's reader stops
at the first byte that breaks the preface (the stream is not HTTP/2); afterwards any 9 bytes make a
header, so garbage yields garbage frames, with no resynchronisation (as on the wire).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from handshake.trace.integers import u32, uint

PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
FRAME_HEADER_BYTES: Final = 9

DATA: Final = 0x0
HEADERS: Final = 0x1
PRIORITY: Final = 0x2
RST_STREAM: Final = 0x3
SETTINGS: Final = 0x4
PUSH_PROMISE: Final = 0x5
PING: Final = 0x6
GOAWAY: Final = 0x7
WINDOW_UPDATE: Final = 0x8
CONTINUATION: Final = 0x9

FRAME_NAMES: Final = {
    DATA: "DATA", HEADERS: "HEADERS", PRIORITY: "PRIORITY", RST_STREAM: "RST_STREAM", SETTINGS: "SETTINGS",
    PUSH_PROMISE: "PUSH_PROMISE", PING: "PING", GOAWAY: "GOAWAY", WINDOW_UPDATE: "WINDOW_UPDATE",
    CONTINUATION: "CONTINUATION", 0x10: "PRIORITY_UPDATE",
}

FLAG_ACK: Final = 0x1
"""SETTINGS and PING (RFC 9113 §6.5, §6.7)."""
FLAG_END_STREAM: Final = 0x1
FLAG_PADDED: Final = 0x8
FLAG_PRIORITY: Final = 0x20

HEAD_BYTES: Final = 48
"""Payload bytes of a HEADERS or PUSH_PROMISE frame kept for its label."""

# RFC 7541 Appendix A: the static-table entries that are pseudo-header fields with a value.
_STATIC_FIELDS: Final = {
    2: (":method", "GET"), 3: (":method", "POST"), 4: (":path", "/"), 5: (":path", "/index.html"),
    6: (":scheme", "http"), 7: (":scheme", "https"), 8: (":status", "200"), 9: (":status", "204"),
    10: (":status", "206"), 11: (":status", "304"), 12: (":status", "400"), 13: (":status", "404"),
    14: (":status", "500"),
}
_STATIC_NAMES: Final = {1: ":authority", 2: ":method", 3: ":method", 4: ":path", 5: ":path", 6: ":scheme",
                        7: ":scheme", 8: ":status", 9: ":status", 10: ":status", 11: ":status", 12: ":status",
                        13: ":status", 14: ":status"}
_FIELDS_READ: Final = 4
"""Field lines read at the head of a block: a request's :method and :path come in its first four."""


# Made once per frame: its __init__ is written out, as TcpSegment's is (handshake.trace.packet).
@dataclass(unsafe_hash=True, init=False)
class Http2Frame:
    """One frame's header (and the head of a HEADERS or PUSH_PROMISE payload)."""

    offset: int
    """Stream offset of the frame's first header byte (the client's counts the preface)."""
    frame_type: int
    flags: int
    stream_id: int
    length: int
    """Payload bytes, as the header says."""
    head: bytes
    """HEADERS, PUSH_PROMISE: the payload's first bytes (up to HEAD_BYTES); empty otherwise."""

    def __init__(self, offset: int, frame_type: int, flags: int, stream_id: int, length: int, head: bytes) -> None:
        self.offset = offset
        self.frame_type = frame_type
        self.flags = flags
        self.stream_id = stream_id
        self.length = length
        self.head = head

    @property
    def name(self) -> str:
        return FRAME_NAMES.get(self.frame_type, f"frame type 0x{self.frame_type:x}")

    @property
    def label(self) -> str:
        """"HTTP/2 SETTINGS", "HTTP/2 HEADERS GET / (stream 1)", "HTTP/2 HEADERS :status 200 (stream 1)"."""
        words = [f"HTTP/2 {self.name}"]
        if self.frame_type in (SETTINGS, PING) and self.flags & FLAG_ACK:
            words.append("ACK")
        if self.frame_type in (HEADERS, PUSH_PROMISE):
            fields = self.fields()
            if ":status" in fields:
                words.append(f":status {fields[':status']}")
            elif ":method" in fields:
                words.append(fields[":method"])
                if ":path" in fields:
                    words.append(fields[":path"])
        if self.stream_id:
            words.append(f"(stream {self.stream_id})")
        return " ".join(words)

    def fields(self) -> dict[str, str]:
        """The pseudo-header fields readable at the head of the field block: static-table
        entries, and literals whose name is in the static table and whose value is not
        Huffman-coded (RFC 7541 §6). Stops at the first line it cannot read."""
        head = self.head
        position = 0
        if self.flags & FLAG_PADDED:
            position += 1
        if self.frame_type == HEADERS and self.flags & FLAG_PRIORITY:
            position += 5
        if self.frame_type == PUSH_PROMISE:
            position += 4
        found: dict[str, str] = {}
        lines = 0
        while position < len(head) and lines < _FIELDS_READ:
            byte = head[position]
            if byte & 0xE0 == 0x20:  # §6.3 dynamic table size update: not a field line
                read = _integer(head, position, 5)
                if read is None:
                    break
                position = read[1]
                continue
            lines += 1
            if byte & 0x80:  # §6.1 indexed field line
                read = _integer(head, position, 7)
                if read is None or read[0] not in _STATIC_FIELDS:
                    break
                name, value = _STATIC_FIELDS[read[0]]
                found.setdefault(name, value)
                position = read[1]
                continue
            # §6.2: a literal, with an indexed name (incremental indexing: 6-bit prefix; without
            # or never indexed: 4-bit prefix).
            read = _integer(head, position, 6 if byte & 0x40 else 4)
            if read is None or read[0] not in _STATIC_NAMES or read[1] >= len(head):
                break
            name = _STATIC_NAMES[read[0]]
            position = read[1]
            if head[position] & 0x80:  # Huffman-coded value: not decoded here
                break
            length = _integer(head, position, 7)
            if length is None or length[1] + length[0] > len(head):
                break
            raw = head[length[1]:length[1] + length[0]]
            position = length[1] + length[0]
            if all(0x21 <= c < 0x7F for c in raw):
                found.setdefault(name, raw.decode("ascii"))
        return found


def _integer(data: bytes, position: int, prefix_bits: int) -> tuple[int, int] | None:
    """RFC 7541 §5.1: an integer with an N-bit prefix at ``data[position]``; (value, position
    after it), or None when it runs past the bytes at hand (or past 2^28, which no index is)."""
    limit = (1 << prefix_bits) - 1
    value = data[position] & limit
    position += 1
    if value < limit:
        return value, position
    shift = 0
    while position < len(data) and shift <= 21:
        byte = data[position]
        position += 1
        value += (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, position
    return None


class Http2Reader:
    """One direction's HTTP/2 frames, fed in chunks of any size."""

    def __init__(self, expect_preface: bool) -> None:
        self._preface_left = len(PREFACE) if expect_preface else 0
        self._pending = bytearray()
        """The header (and head) of the frame being read, while incomplete."""
        self._skip = 0
        """Payload bytes of the current frame still to pass over."""
        self.offset = 0
        """Stream bytes fed so far."""
        self.failed = False
        """The stream did not start with the preface: not HTTP/2, and nothing more is read."""

    @property
    def preface_seen(self) -> bool:
        """The whole client preface has arrived (always true for a server's reader)."""
        return not self._preface_left and not self.failed

    def feed(self, data: bytes) -> list[Http2Frame]:
        """The frames whose header (and, for HEADERS and PUSH_PROMISE, head) ``data`` completed."""
        start = self.offset
        size = len(data)
        self.offset += size
        frames: list[Http2Frame] = []
        if self.failed:
            return frames
        position = 0
        while position < size:
            if self._preface_left:
                done = len(PREFACE) - self._preface_left
                take = min(self._preface_left, size - position)
                if data[position:position + take] != PREFACE[done:done + take]:
                    self.failed = True
                    return frames
                self._preface_left -= take
                position += take
                continue
            if self._skip:
                step = min(self._skip, size - position)
                self._skip -= step
                position += step
                continue
            if not self._pending and size - position >= FRAME_HEADER_BYTES:
                # The usual case: the whole header (and head) lies in this chunk; read in place.
                need = FRAME_HEADER_BYTES + _head_bytes(data, position)
                if size - position >= need:
                    frame = _frame(data, position, start + position)
                    frames.append(frame)
                    position += need
                    self._skip = frame.length - len(frame.head)
                    continue
            pending = self._pending
            want = FRAME_HEADER_BYTES - len(pending)
            if want <= 0:
                want = FRAME_HEADER_BYTES + _head_bytes(bytes(pending), 0) - len(pending)
            take = min(want, size - position)
            pending += data[position:position + take]
            position += take
            if len(pending) < FRAME_HEADER_BYTES:
                continue
            header = bytes(pending)
            if len(header) < FRAME_HEADER_BYTES + _head_bytes(header, 0):
                continue
            frames.append(_frame(header, 0, start + position - len(header)))
            self._pending = bytearray()
            self._skip = frames[-1].length - len(frames[-1].head)
        return frames


def _head_bytes(data: bytes, position: int) -> int:
    """How much of the payload the label of the frame at ``data[position]`` wants (its 9 header
    bytes are there)."""
    if data[position + 3] not in (HEADERS, PUSH_PROMISE):
        return 0
    return min(uint(data, position, position + 3), HEAD_BYTES)


def _frame(data: bytes, position: int, offset: int) -> Http2Frame:
    """The frame whose header (and head) start at ``data[position]`` (all of it there)."""
    length = uint(data, position, position + 3)
    head_bytes = _head_bytes(data, position)
    head_start = position + FRAME_HEADER_BYTES
    return Http2Frame(offset, data[position + 3], data[position + 4], u32(data, position + 5) & 0x7FFFFFFF, length,
                      data[head_start:head_start + head_bytes])
