"""The TLS record layer of one direction of a TCP stream: bytes in, whole records out.

RFC 8446 §5.1 / RFC 5246 §6.2.1: a record is a 5-byte header (content type, legacy version,
length) and a fragment of that length. Records carry their stream offsets, because the
round-trip counter maps "the record that finished the response" back to TCP segments.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from handshake.trace.integers import u16

CHANGE_CIPHER_SPEC: Final = 20
ALERT: Final = 21
HANDSHAKE: Final = 22
APPLICATION_DATA: Final = 23

CONTENT_TYPES: Final = (CHANGE_CIPHER_SPEC, ALERT, HANDSHAKE, APPLICATION_DATA)
SSL2_CLIENT_HELLO: Final = 0x180
"""Not a content type on the wire: the ``TlsRecord.content_type`` of an SSLv2-format
ClientHello (RFC 5246 appendix E.2), which old clients send as their stream's first record to
offer SSL 3.0 or TLS; its ``fragment`` is the message from msg_type on."""
_SSL2_MSG_CLIENT_HELLO: Final = 1
_SSL2_FIXED_BYTES: Final = 9
"""msg_type, version, cipher_spec_length, session_id_length, challenge_length."""

HEADER_BYTES: Final = 5
MAX_FRAGMENT_BYTES: Final = 2**14 + 2048
"""RFC 5246 §6.2.3: a TLSCiphertext fragment is at most 2^14 + 2048 bytes (TLS 1.3 allows
less, 2^14 + 256, §5.2); anything longer is not a TLS stream."""


# Made once per packet: its __init__ is written out, as TcpSegment's is (handshake.trace.packet).
@dataclass(unsafe_hash=True, init=False)
class TlsRecord:
    """One record as it was on the wire."""

    content_type: int
    """The outer content type (20 CCS, 21 alert, 22 handshake, 23 application data)."""
    legacy_version: int
    """The header's version field, e.g. 0x0303 (meaningless in TLS 1.3, §5.1)."""
    header: bytes
    """The 5 header bytes: TLS 1.3 authenticates them as additional data (§5.2)."""
    fragment: bytes
    start_offset: int
    """Stream offset of the first header byte."""
    end_offset: int
    """Stream offset just past the fragment."""

    def __init__(self, content_type: int, legacy_version: int, header: bytes, fragment: bytes,
                 start_offset: int, end_offset: int) -> None:
        self.content_type = content_type
        self.legacy_version = legacy_version
        self.header = header
        self.fragment = fragment
        self.start_offset = start_offset
        self.end_offset = end_offset


@dataclass(frozen=True)
class NotTls:
    """The stream stopped looking like TLS records at ``start_offset``."""

    start_offset: int
    end_offset: int
    """Stream offset just past the bytes seen so far."""
    first_byte: int


class RecordReader:
    """Frames one direction's stream into records; partial records wait for more bytes.

    Once the bytes stop looking like a record header (unknown content type, a version whose
    major byte is not 3, an oversized length) the reader reports ``NotTls`` once and then
    ignores the rest of the stream: there is no way to find the next record boundary.
    """

    def __init__(self, offset: int = 0) -> None:
        self._buffer = bytearray()
        self._buffer_offset = offset
        """Stream offset of ``_buffer[0]`` (the first record's: TLS after a prelude begins past 0)."""
        self.not_tls: NotTls | None = None

    @property
    def offset(self) -> int:
        """Stream offset just past the bytes fed so far."""
        return self._buffer_offset + len(self._buffer)

    def feed(self, data: bytes) -> tuple[list[TlsRecord], NotTls | None]:
        """Records completed by ``data``, and a NotTls the first time the stream goes bad."""
        if self.not_tls is not None:
            self._buffer_offset += len(data)
            return [], None
        if self._buffer:
            self._buffer += data
            buffer = bytes(self._buffer)
            self._buffer = bytearray()
        else:
            buffer = data  # the usual case, whole records in one segment: read them in place
        records: list[TlsRecord] = []
        position = 0
        size = len(buffer)
        while True:
            available = size - position
            if available and position == 0 and self._buffer_offset == 0 and buffer[0] & 0x80:
                # The stream's first byte with its high bit set: no TLS content type, but an
                # SSLv2-format record header (RFC 5246 appendix E.2) if a ClientHello follows.
                if available < 5:
                    break
                end = _ssl2_client_hello_end(buffer)
                if end is not None:
                    if end > size:
                        break
                    records.append(TlsRecord(SSL2_CLIENT_HELLO, u16(buffer, 3), buffer[:2], buffer[2:end], 0, end))
                    position = end
                    continue
            if available and not _plausible_header(buffer, position, available):
                start = self._buffer_offset + position
                self.not_tls = NotTls(start, self._buffer_offset + size, buffer[position])
                self._buffer_offset += size
                return records, self.not_tls
            if available < HEADER_BYTES:
                break
            length = u16(buffer, position + 3)
            end = position + HEADER_BYTES + length
            if end > size:
                break
            start = self._buffer_offset + position
            records.append(TlsRecord(buffer[position], u16(buffer, position + 1),
                                     buffer[position:position + HEADER_BYTES], buffer[position + HEADER_BYTES:end],
                                     start, self._buffer_offset + end))
            position = end
        if position < size:
            self._buffer = bytearray(buffer[position:])
        self._buffer_offset += position
        return records, None


def _plausible_header(data: bytes, position: int, available: int) -> bool:
    """Whether the (possibly partial) header at ``data[position:]`` can start a record; checked
    as soon as each byte arrives."""
    if data[position] not in CONTENT_TYPES:
        return False
    if available >= 2 and data[position + 1] != 3:
        return False
    if available >= 3 and data[position + 2] > 4:
        return False
    if available >= 5 and u16(data, position + 3) > MAX_FRAGMENT_BYTES:
        return False
    return True


def ssl2_client_hello_start(data: bytes) -> bool:
    """Whether a stream's first bytes (five or more) are an SSLv2-format ClientHello offering
    SSL 3.0 or TLS: a two-byte header with the high bit set, msg_type 1, version 3.x (RFC 5246
    appendix E.2; RFC 6101 appendix E.1)."""
    return len(data) >= 5 and _ssl2_client_hello_end(data) is not None


def _ssl2_client_hello_end(data: bytes) -> int | None:
    """Where the SSLv2-format ClientHello at the start of ``data`` ends (it may be past the bytes
    so far), or None if these bytes are not one."""
    if not data[0] & 0x80 or data[2] != _SSL2_MSG_CLIENT_HELLO or data[3] != 3 or data[4] > 4:
        return None
    length = ((data[0] & 0x7F) << 8) | data[1]
    return None if length < _SSL2_FIXED_BYTES else 2 + length
