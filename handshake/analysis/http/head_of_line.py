"""Head-of-line blocking on one HTTP/2-over-TCP connection, measured from its packets.

At the client's capture point, a server segment that arrives after a hole in the TCP stream waits
in the receive queue until the hole fills: TCP hands the application its bytes in order. Over
HTTP/2 the bytes held back may belong to other streams than the missing ones, which then wait
for nothing of their own. That wait is head-of-line blocking; HTTP/3 has none, since QUIC
orders each stream on its own.

The unit the client can use is a TLS record (it is decrypted whole) or, over h2c, a frame. For
each unit: when its last byte first arrived; when the stream's in-order point passed its end
(the client could read it); and the hole that held it, the in-order point when it arrived, with
the streams of the unit that hole lies in. A unit's streams that the hole's unit does not carry
waited behind another stream's bytes for the difference. A stream's waits are merged where they
overlap and summed over streams. Stream 0 (the connection's control frames) is nobody's victim.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field

from handshake.analysis.keylog import KeyLog
from handshake.analysis.tcp.flows import StreamAssembler, TcpFlow
from handshake.analysis.tls.conversation import TlsConversation
from handshake.trace.packet import seq_diff

from .http2 import FRAME_HEADER_BYTES, Http2Reader

__all__ = ["HeadOfLineBlocking", "head_of_line_blocking"]


@dataclass
class HeadOfLineBlocking:
    """What each HTTP/2 stream of one connection waited behind other streams' missing bytes."""

    waited_s: dict[int, float] = field(default_factory=dict)
    """Stream id → seconds its arrived bytes could not be read because another's were missing;
    only streams that waited."""
    streams: int = 0
    """Streams the server sent on (stream 0 aside)."""

    @property
    def total_s(self) -> float:
        return sum(self.waited_s.values(), 0.0)

    @property
    def cause(self) -> str | None:
        """The row's cause, or None where no stream waited."""
        if not self.waited_s:
            return None
        count = len(self.waited_s)
        return (f"head-of-line blocking: {count} stream{'s' if count > 1 else ''} of {self.streams} waited "
                f"{self.total_s * 1000:.0f} ms in total behind missing segments of other streams")


@dataclass
class _Unit:
    """A span of the server's TCP stream the client reads whole, with the streams it carries."""

    start: int
    end: int
    plain_start: int
    plain_end: int
    streams: set[int] = field(default_factory=set)
    arrived: float | None = None


def head_of_line_blocking(flow: TcpFlow, keylog: KeyLog | None) -> HeadOfLineBlocking | None:
    """The measure for ``flow`` (packets as the client's interface saw them), or None where it
    is not HTTP/2 or its records cannot be opened (no key for them)."""
    server_base = None
    for packet in flow.packets:
        if packet.segment.syn and not packet.from_client:
            server_base = (packet.segment.seq + 1) % (1 << 32)
            break
    if server_base is None:
        return None
    assemblers = {True: StreamAssembler(expect_syn=True), False: StreamAssembler(expect_syn=True)}
    conversation: TlsConversation | None = None
    clear: bool | None = None  # None until the client's first bytes say TLS or h2c
    preface = Http2Reader(expect_preface=True)
    reader = Http2Reader(expect_preface=False)
    units: list[_Unit] = []
    frames: list[tuple[int, int, int]] = []  # (plaintext start, end, stream id)
    plain = 0
    arrivals: list[tuple[int, int, float]] = []
    advances: list[tuple[float, int]] = []  # (time, the server stream's in-order point then)
    for packet in flow.packets:
        segment = packet.segment
        if not packet.from_client and segment.payload and not segment.syn:
            start = seq_diff(segment.seq, server_base)
            end = start + len(segment.payload)
            if end > 0:
                arrivals.append((max(start, 0), end, packet.time))
        assembler = assemblers[packet.from_client]
        data = assembler.feed(segment)
        if not data:
            continue
        if not packet.from_client:
            advances.append((packet.time, assembler.offset))
        if clear is None:
            if not packet.from_client:
                return None  # the server spoke first: neither TLS nor HTTP/2
            clear = data[:1] != b"\x16"
            conversation = None if clear else TlsConversation(keylog)
        if clear:
            if packet.from_client:
                preface.feed(data)
                if preface.failed:
                    return None
                continue
            for frame in reader.feed(data):
                frames.append((frame.offset, frame.offset + FRAME_HEADER_BYTES + frame.length, frame.stream_id))
                units.append(_Unit(frame.offset, frame.offset + FRAME_HEADER_BYTES + frame.length,
                                   frame.offset, frame.offset + FRAME_HEADER_BYTES + frame.length))
            continue
        assert conversation is not None
        for message in conversation.feed("c2s" if packet.from_client else "s2c", data):
            if packet.from_client or message.kind != "app_data":
                if message.kind == "encrypted":
                    return None
                continue
            if conversation.facts.alpn_selected != "h2" or message.plaintext is None:
                return None
            size = len(message.plaintext)
            units.append(_Unit(message.start_offset, message.end_offset, plain, plain + size))
            for frame in reader.feed(message.plaintext):
                frames.append((frame.offset, frame.offset + FRAME_HEADER_BYTES + frame.length, frame.stream_id))
            plain += size
    if not units:
        return None
    _attribute(units, frames)
    _arrive(units, arrivals)
    return _waits(units, advances)


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


def _arrive(units: list[_Unit], arrivals: list[tuple[int, int, float]]) -> None:
    """When each unit's last byte first arrived: the first moment the segments seen cover it."""
    covered: list[list[int]] = []  # merged [start, end) ranges, sorted
    starts = [unit.start for unit in units]
    for start, end, time in arrivals:
        _cover(covered, start, end)
        index = max(bisect_right(starts, start) - 1, 0)
        while index < len(units) and units[index].start < end:
            unit = units[index]
            if unit.arrived is None and unit.end > start and _holds(covered, unit.start, unit.end):
                unit.arrived = time
            index += 1


def _cover(ranges: list[list[int]], start: int, end: int) -> None:
    index = bisect_left(ranges, [start, start])
    if index and ranges[index - 1][1] >= start:
        index -= 1
    merged = [start, end]
    while index < len(ranges) and ranges[index][0] <= merged[1]:
        merged = [min(merged[0], ranges[index][0]), max(merged[1], ranges[index][1])]
        del ranges[index]
    ranges.insert(index, merged)


def _holds(ranges: list[list[int]], start: int, end: int) -> bool:
    index = bisect_right(ranges, [start, end]) - 1
    for candidate in (index, index + 1):
        if 0 <= candidate < len(ranges) and ranges[candidate][0] <= start and ranges[candidate][1] >= end:
            return True
    return False


def _waits(units: list[_Unit], advances: list[tuple[float, int]]) -> HeadOfLineBlocking:
    """Each unit's wait behind a hole, charged to its streams the hole's unit does not carry."""
    times = [time for time, _ in advances]
    points = [point for _, point in advances]
    starts = [unit.start for unit in units]
    blocked: dict[int, list[tuple[float, float]]] = {}
    for unit in units:
        if unit.arrived is None:
            continue
        ready = bisect_left(points, unit.end)
        if ready == len(points):
            continue  # never read: the capture ends inside a hole
        read_at = times[ready]
        before = bisect_right(times, unit.arrived) - 1
        hole = points[before] if before >= 0 else 0
        if hole >= unit.end or read_at <= unit.arrived:
            continue
        holder = bisect_right(starts, hole) - 1
        others = units[holder].streams if holder >= 0 and units[holder].end > hole else set()
        for stream in unit.streams - others:
            blocked.setdefault(stream, []).append((unit.arrived, read_at))
    result = HeadOfLineBlocking(streams=len(set().union(*(unit.streams for unit in units))))
    for stream, spans in blocked.items():
        result.waited_s[stream] = _union_length(spans)
    return result


def _union_length(spans: list[tuple[float, float]]) -> float:
    total = 0.0
    reach = float("-inf")
    for start, end in sorted(spans):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total
