"""One packet as a ladder diagram shows it: when, which way, in which round, what it carried.

The analyzers (``connection``, ``quic``) emit these while they count, from the same bytes they
count with, so a ladder never shows what a template expects but what the trace holds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from mypy_extensions import mypyc_attr

from .quic_packets import QuicDecodeError, Reader


@mypyc_attr(native_class=False)  # pickled between worker processes, which a compiled frozen class is not
@dataclass(frozen=True, slots=True)
class LadderStep:
    """One packet (TCP segment or UDP datagram) of a connection."""

    time_s: float
    """Seconds since the connection's first packet."""
    from_client: bool
    round: int
    """Round trips the client had completed when the packet was sent (the round counter's)."""
    carries: tuple[str, ...]
    """What it carried, in wire order: "SYN", "ClientHello", "HTTP GET /", "Initial[CRYPTO …]"."""
    marks: tuple[str, ...] = ()
    """What this packet shows about the cost: a cause, a retransmission, the first response byte."""
    wire_bytes: int = 0


_REQUEST_LINE: Final = re.compile(rb"^([A-Z]{3,10}) (\S{1,40})")
_STATUS_LINE: Final = re.compile(rb"^HTTP/\d(?:\.\d)? (\d{3})")


def http1_label(data: bytes) -> str | None:
    """"HTTP GET /index.html" or "HTTP 200 response" when ``data`` starts an HTTP/1 message."""
    match = _STATUS_LINE.match(data)
    if match:
        return f"HTTP {match.group(1).decode()} response"
    match = _REQUEST_LINE.match(data)
    if match and (b" HTTP/" in data[:80] or len(data) < 80):
        return f"HTTP {match.group(1).decode()} {match.group(2).decode(errors='replace')}"
    return None


# RFC 9204 Appendix A: static-table lines for :method and :status.
_QPACK_STATIC: Final = {
    15: ":method CONNECT", 16: ":method DELETE", 17: ":method GET", 18: ":method HEAD", 19: ":method OPTIONS",
    20: ":method POST", 21: ":method PUT", 24: ":status 103", 25: ":status 200", 26: ":status 304",
    27: ":status 404", 28: ":status 503", 63: ":status 100", 64: ":status 204", 65: ":status 206",
    66: ":status 302", 67: ":status 400", 68: ":status 403", 69: ":status 421", 70: ":status 425",
    71: ":status 500",
}
_H3_FRAMES: Final = {0x0: "DATA", 0x1: "HEADERS", 0x3: "CANCEL_PUSH", 0x4: "SETTINGS", 0x5: "PUSH_PROMISE",
              0x7: "GOAWAY", 0xD: "MAX_PUSH_ID"}


def h3_label(data: bytes) -> str | None:
    """The first HTTP/3 frame at the start of a request stream (RFC 9114 §7.2): "HEADERS
    :method GET", "HEADERS :status 200", "DATA"; None if ``data`` does not start with one."""
    reader = Reader(data)
    try:
        kind = reader.varint()
    except QuicDecodeError:
        return None
    name = _H3_FRAMES.get(kind)
    if name is None:
        return None
    if kind != 0x1:
        return name
    try:
        reader.varint()  # the frame's length
    except QuicDecodeError:
        return name
    pos = reader.position
    # QPACK field section (RFC 9204 §4.5): Required Insert Count, Delta Base, then lines; the
    # first line that is an indexed static reference (pattern 11xxxxxx) names the method or status.
    section = data[pos + 2:pos + 4]
    if section and section[0] & 0xC0 == 0xC0:
        index = section[0] & 0x3F
        if index == 0x3F:  # a longer index: 6-bit prefix full, then a continuation byte
            index = 0x3F + section[1] if len(section) > 1 and section[1] < 0x80 else -1
        line = _QPACK_STATIC.get(index)
        if line:
            return f"{name} {line}"
    return name
