"""HTTP/3 as the analysis sees it on a QUIC stream: what frame a request stream starts with."""

from __future__ import annotations

from typing import Final

from ..quic.packets import QuicDecodeError, Reader

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
