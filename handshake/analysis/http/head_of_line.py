"""Head-of-line blocking on one connection, measured from its packets: HTTP/2 and HTTP/1.x over
TCP, HTTP/3.

At the client's capture point, a server segment that arrives after a hole in the TCP stream waits
in the receive queue until the hole fills: TCP hands the application its bytes in order. Over
HTTP/2 the bytes held back may belong to other streams than the missing ones, which then wait
for nothing of their own. That wait is head-of-line blocking; HTTP/3 has none, since QUIC
orders each stream on its own.

The unit the client can use is a TLS record (it is decrypted whole) or, over h2c, a frame. For
each unit: when its last byte first arrived; when the stream's in-order point passed its end
(the client could read it); and the hole that held it, the in-order point when it arrived, with
the streams of the unit that hole lies in. A unit's streams that the hole's unit does not carry
waited behind another stream's bytes for the difference (the rest waited for their own, or for
bytes of no stream: a TLS ticket, HTTP/2 control frames). A stream's waits are merged where they
overlap and summed over streams. Stream 0 (the connection's control frames) is nobody's victim.

HTTP/3 goes through the same count with QUIC's ordering: each stream is a space of its own,
and its units are the stream bytes as they first arrived (aioquic hands a stream's bytes over as
soon as they are contiguous). A hole then always lies in the stream that waits, so the trace
shows no stream waiting for another's, and how long streams waited for their own lost bytes.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field

import sys

from handshake.analysis.intervals import FirstSeenRanges
from handshake.analysis.keylog import KeyLog
from handshake.analysis.quic.decode import QuicDecoder
from handshake.analysis.quic.flows import QuicFlow
from handshake.analysis.quic.frames import StreamFrame
from handshake.analysis.quic.reader import client_bidi
from handshake.analysis.tcp.flows import FlowPacket, StreamAssembler, TcpFlow
from handshake.analysis.tls.conversation import TlsConversation
from handshake.trace.packet import seq_diff

from .http2 import FRAME_HEADER_BYTES, PREFACE, Http2Reader

__all__ = ["HeadOfLineBlocking", "head_of_line_blocking", "quic_head_of_line_blocking", "combined"]


@dataclass
class HeadOfLineBlocking:
    """What each stream (or HTTP/1.x answer) of one connection waited behind other streams'
    missing bytes, and for its own."""

    waited_s: dict[int, float] = field(default_factory=dict)
    """Stream id → seconds its arrived bytes could not be read because another's were missing;
    only streams that waited."""
    streams: int = 0
    """Streams the server sent on (stream 0 aside)."""
    own_waited_s: dict[int, float] = field(default_factory=dict)
    """Stream id → seconds its arrived bytes waited for missing bytes of its own (loss, not
    head-of-line blocking); only streams that waited."""
    readable: dict[int, tuple[float, float]] = field(default_factory=dict)
    """Stream id → (when its first bytes, when its last bytes could be read): a lane of the
    page's waterfall."""
    blocked_spans: dict[int, list[tuple[float, float]]] = field(default_factory=dict)
    """Stream id → when it waited behind another stream, merged (what ``waited_s`` sums)."""

    @property
    def total_s(self) -> float:
        return sum(self.waited_s.values(), 0.0)

    @property
    def own_total_s(self) -> float:
        return sum(self.own_waited_s.values(), 0.0)

    @property
    def cause(self) -> str | None:
        """The row's cause, or None where no stream waited."""
        if not self.waited_s:
            return None
        count = len(self.waited_s)
        return (f"head-of-line blocking: {count} stream{'s' if count > 1 else ''} of {self.streams} waited "
                f"{self.total_s * 1000:.0f} ms in total behind missing segments of other streams")


def combined(parts: list[HeadOfLineBlocking]) -> HeadOfLineBlocking:
    """One page's connections as one figure (HTTP/1.1's six): their streams numbered anew."""
    result = HeadOfLineBlocking(streams=sum(part.streams for part in parts))
    for part in parts:
        renumbered = {stream: len(result.readable) + index + 1 for index, stream in enumerate(part.readable)}
        result.waited_s.update({renumbered[k]: v for k, v in part.waited_s.items()})
        result.own_waited_s.update({renumbered[k]: v for k, v in part.own_waited_s.items()})
        result.blocked_spans.update({renumbered[k]: v for k, v in part.blocked_spans.items()})
        result.readable.update({renumbered[k]: v for k, v in part.readable.items()})
    return result


@dataclass
class _Unit:
    """A span of the server's TCP stream the client reads whole, with the streams it carries."""

    start: int
    end: int
    plain_start: int
    plain_end: int
    streams: set[int] = field(default_factory=set)


def _everything_seen() -> FirstSeenRanges[int]:
    # Kept whole (one piece per segment that brought new bytes): a unit's arrival is read from
    # them once the connection has been read, when merged old pieces would date it too early.
    return FirstSeenRanges(max_pieces=sys.maxsize)


@dataclass
class _Space:
    """One ordered byte space: a TCP direction, or a QUIC stream."""

    units: list[_Unit] = field(default_factory=list)
    """Sorted by start, disjoint."""
    seen: FirstSeenRanges[int] = field(default_factory=_everything_seen)
    """Its bytes as they first came: when, and (TCP) the client stream offset their packet ACKed."""
    advances: list[tuple[float, int]] = field(default_factory=list)
    """(time, the in-order point then), each time it moved."""

    def read_as_it_comes(self, start: int, end: int, time: float) -> None:
        """Bytes [start, end) of a space whose reader takes any contiguous bytes (a QUIC stream):
        the in-order point moves where they close the gap from it."""
        point = self.advances[-1][1] if self.advances else 0
        self.seen.add(start, end, time)
        while (held := self.seen.pieces_over(point, point + 1)) is not None:
            point = held[0][1]
        if point > (self.advances[-1][1] if self.advances else 0):
            self.advances.append((time, point))

    def pieces_as_units(self, streams: set[int] | None = None) -> None:
        """Its units are its bytes as they first came (read as they come, not by record)."""
        self.units = [_Unit(start, end, start, end, set(streams or ())) for start, end, _, _ in self.seen]


def head_of_line_blocking(flow: TcpFlow, keylog: KeyLog | None) -> HeadOfLineBlocking | None:
    """The measure for ``flow`` (packets as the client's interface saw them), or None where it
    is neither HTTP/2 nor HTTP/1.x or its records cannot be opened (no key for them)."""
    server_base = None
    for packet in flow.packets:
        if packet.segment.syn and not packet.from_client:
            server_base = (packet.segment.seq + 1) % (1 << 32)
            break
    if server_base is None:
        return None
    reading = _TcpReading(server_base, keylog)
    for packet in flow.packets:
        if not reading.add(packet):
            return None
    return reading.result()


class _TcpReading:
    """One TCP connection's server stream, cut into the units its client reads whole.

    HTTP/2 (ALPN h2, or h2c with the preface): a unit carries the streams of its frames. HTTP/1.x
    asks one request at a time, so a unit belongs to the answer of the latest request the server
    had when it sent the unit's first byte (its ACK says which): each answer is a stream."""

    def __init__(self, server_base: int, keylog: KeyLog | None) -> None:
        self.server_base = server_base
        self.client_base: int | None = None
        self.keylog = keylog
        self.assemblers = {True: StreamAssembler(expect_syn=True), False: StreamAssembler(expect_syn=True)}
        self.conversation: TlsConversation | None = None
        self.protocol: str | None = None
        """"h2" or "1.1" once the first bytes said; "tls" while a TLS handshake has not."""
        self.preface = Http2Reader(expect_preface=True)
        self.reader = Http2Reader(expect_preface=False)
        self.space = _Space()
        self.frames: list[tuple[int, int, int]] = []  # (plaintext start, end, stream id)
        self.plain = 0
        self.request_ends: list[int] = []
        """HTTP/1.x: client stream offsets where a request's bytes (a record, a delivery) ended."""

    def add(self, packet: FlowPacket) -> bool:
        """Take one packet; False once the connection cannot be measured."""
        segment = packet.segment
        if segment.syn and packet.from_client:
            self.client_base = (segment.seq + 1) % (1 << 32)
        if not packet.from_client and segment.payload and not segment.syn:
            start = seq_diff(segment.seq, self.server_base)
            end = start + len(segment.payload)
            if end > 0:
                base = self.client_base
                acked = seq_diff(segment.ack, base) if base is not None and segment.has_ack else -1
                self.space.seen.add(max(start, 0), end, packet.time, acked)
        assembler = self.assemblers[packet.from_client]
        data = assembler.feed(segment)
        if not data:
            return True
        if not packet.from_client:
            self.space.advances.append((packet.time, assembler.offset))
        if self.protocol is None:
            if not packet.from_client:
                return False  # the server spoke first: not HTTP
            if data[:1] == b"\x16":
                self.protocol = "tls"
                self.conversation = TlsConversation(self.keylog)
            else:
                self.protocol = "h2" if PREFACE.startswith(data[:len(PREFACE)]) else "1.1"
        if self.conversation is None:
            return self._clear(packet, data, assembler.offset)
        return self._records(packet, data)

    def _clear(self, packet: FlowPacket, data: bytes, offset: int) -> bool:
        """Plain HTTP: the client's preface or requests; the server's h2c frames."""
        if packet.from_client:
            if self.protocol == "h2":
                self.preface.feed(data)
                return not self.preface.failed
            self.request_ends.append(offset)
            return True
        if self.protocol == "h2":
            for frame in self.reader.feed(data):
                end = frame.offset + FRAME_HEADER_BYTES + frame.length
                self.frames.append((frame.offset, end, frame.stream_id))
                self.space.units.append(_Unit(frame.offset, end, frame.offset, end))
        return True

    def _records(self, packet: FlowPacket, data: bytes) -> bool:
        conversation = self.conversation
        assert conversation is not None
        for message in conversation.feed("c2s" if packet.from_client else "s2c", data):
            if message.kind == "encrypted":
                return False
            if message.kind != "app_data":
                continue
            if self.protocol == "tls":
                self.protocol = "h2" if conversation.facts.alpn_selected == "h2" else "1.1"
            if packet.from_client:
                if self.protocol == "1.1":
                    self.request_ends.append(message.end_offset)
                continue
            if message.plaintext is None:
                return False
            size = len(message.plaintext)
            self.space.units.append(_Unit(message.start_offset, message.end_offset, self.plain, self.plain + size))
            if self.protocol == "h2":
                for frame in self.reader.feed(message.plaintext):
                    self.frames.append((frame.offset, frame.offset + FRAME_HEADER_BYTES + frame.length,
                                        frame.stream_id))
            self.plain += size
        return True

    def result(self) -> HeadOfLineBlocking | None:
        if self.protocol == "1.1" and self.conversation is None:
            self.space.pieces_as_units()  # plain bytes are read as they come
        units = self.space.units
        if not units:
            return None
        if self.protocol == "h2":
            _attribute(units, self.frames)
        else:
            self._answers()
        units.sort(key=lambda unit: unit.start)
        return _measure([self.space])

    def _answers(self) -> None:
        """HTTP/1.x: each unit's answer, numbered by the requests its first byte's packet ACKed."""
        seen = self.space.seen
        for unit in self.space.units:
            first = seen.pieces_over(unit.start, unit.start + 1)
            acked = first[0][3] if first is not None and first[0][3] is not None else -1
            unit.streams.add(bisect_right(self.request_ends, acked) + 1)


def quic_head_of_line_blocking(flow: QuicFlow, keylog: KeyLog | None) -> HeadOfLineBlocking | None:
    """The measure for an HTTP/3 connection: the server's bytes on each request stream, each
    stream ordered on its own. None where the server's 1-RTT packets could not be opened."""
    decoder = QuicDecoder(flow, keylog)
    spaces: dict[int, _Space] = {}
    for datagram in flow.datagrams:
        decoded = decoder.decode(datagram)
        if datagram.from_client:
            continue
        for packet in decoded.packets:
            if packet.packet.packet_type != "1rtt":
                continue
            if packet.frames is None:
                return None
            for frame in packet.frames:
                if isinstance(frame, StreamFrame) and client_bidi(frame.stream_id) and frame.data:
                    space = spaces.setdefault(frame.stream_id, _Space())
                    space.read_as_it_comes(frame.offset, frame.offset + len(frame.data), datagram.time)
    if not spaces:
        return None
    for stream_id, space in spaces.items():
        space.pieces_as_units({stream_id})
    return _measure(list(spaces.values()))


def _attribute(units: list[_Unit], frames: list[tuple[int, int, int]]) -> None:
    """Give each unit the streams of the frames whose bytes it holds."""
    starts = [unit.plain_start for unit in units]
    for start, end, stream in frames:
        if stream == 0:
            continue
        index = max(bisect_right(starts, start) - 1, 0)
        while index < len(units) and units[index].plain_start < end:
            if units[index].plain_end > start:
                units[index].streams.add(stream)
            index += 1


def _measure(spaces: list[_Space]) -> HeadOfLineBlocking:
    blocked: dict[int, list[tuple[float, float]]] = {}
    own: dict[int, list[tuple[float, float]]] = {}
    readable: dict[int, tuple[float, float]] = {}
    streams: set[int] = set()
    for space in spaces:
        _waits(space, blocked, own, readable)
        for unit in space.units:
            streams |= unit.streams
    result = HeadOfLineBlocking(streams=len(streams), readable=dict(sorted(readable.items(), key=lambda i: i[1])))
    for stream, spans in blocked.items():
        result.blocked_spans[stream] = _merged(spans)
        result.waited_s[stream] = sum(end - start for start, end in result.blocked_spans[stream])
    for stream, spans in own.items():
        result.own_waited_s[stream] = sum(end - start for start, end in _merged(spans))
    return result


def _waits(space: _Space, blocked: dict[int, list[tuple[float, float]]],
           own: dict[int, list[tuple[float, float]]], readable: dict[int, tuple[float, float]]) -> None:
    """Each unit's wait behind a hole: charged to its streams the hole's unit does not carry
    where that unit carries streams (``blocked``), else to the stream itself (``own``)."""
    units = space.units
    times = [time for time, _ in space.advances]
    points = [point for _, point in space.advances]
    starts = [unit.start for unit in units]
    for unit in units:
        pieces = space.seen.pieces_over(unit.start, unit.end)
        if pieces is None:
            continue
        arrived = max(first_seen for _, _, first_seen, _ in pieces)  # when its last byte came
        ready = bisect_left(points, unit.end)
        if ready == len(points):
            continue  # never read: the capture ends inside a hole
        read_at = times[ready]
        for stream in unit.streams:
            first, last = readable.get(stream, (read_at, read_at))
            readable[stream] = (min(first, read_at), max(last, read_at))
        before = bisect_right(times, arrived) - 1
        hole = points[before] if before >= 0 else 0
        if hole >= unit.end or read_at <= arrived:
            continue
        holder = bisect_right(starts, hole) - 1
        held_by = units[holder].streams if holder >= 0 and units[holder].end > hole else set()
        for stream in unit.streams:
            # Behind another stream's bytes; a hole in no stream's (a TLS ticket, HTTP/2
            # control frames) holds a stream up, but not behind another one.
            behind = blocked if held_by and stream not in held_by else own
            behind.setdefault(stream, []).append((arrived, read_at))


def _merged(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The spans joined where they overlap, in order."""
    out: list[tuple[float, float]] = []
    for start, end in sorted(spans):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out
