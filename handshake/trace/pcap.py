"""Capture files: write classic pcap, read pcap and pcapng as a stream of frames.

Reading is a generator over records, so memory does not grow with the file. Every problem
with the file is a ``CaptureError`` whose message is one line for the CLI. Formats:
classic pcap per draft-ietf-opsawg-pcap, pcapng per draft-ietf-opsawg-pcapng, either of them
gzip- or xz-compressed (``compressed``). The link layers inside the frames are ``links``' (its
names are re-exported here); pcapng Decryption Secrets Blocks go to the reader's ``secrets``
callback as the file reaches them.
"""

from __future__ import annotations

import math
import os
import struct
from dataclasses import dataclass
from typing import BinaryIO, Callable, Final, Iterator

from .compressed import MAGIC_BYTES, DecompressedStream, compression_of
from .integers import u32, u32le
from .links import (
    LINKTYPE_ETHERNET,
    LINKTYPE_IPV4,
    LINKTYPE_IPV6,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_LOOP,
    LINKTYPE_NULL,
    LINKTYPE_PPP,
    LINKTYPE_PPP_HDLC,
    LINKTYPE_RAW,
    SUPPORTED_LINKTYPES,
    ip_payload,
)

__all__ = [
    "LINKTYPE_NULL", "LINKTYPE_ETHERNET", "LINKTYPE_PPP", "LINKTYPE_PPP_HDLC", "LINKTYPE_RAW",
    "LINKTYPE_LOOP", "LINKTYPE_LINUX_SLL", "LINKTYPE_LINUX_SLL2", "LINKTYPE_IPV4", "LINKTYPE_IPV6",
    "SUPPORTED_LINKTYPES", "SECRETS_TLS_KEY_LOG", "SECRETS_TYPE_NAMES",
    "CaptureError", "TruncatedCapture", "UnsupportedLinkType",
    "CapturedFrame", "PcapWriter", "SecretsCallback", "iter_capture", "ip_payload", "check_linktype",
]

_PCAP_MAGIC_US: Final = 0xA1B2C3D4
_PCAP_MAGIC_NS: Final = 0xA1B23C4D
_PCAP_MAGIC_KUZNETZOV: Final = 0xA1B2CD34  # Alexey Kuznetzov's patched libpcap: 8 more bytes a record
_PCAPNG_SHB: Final = 0x0A0D0D0A
_PCAPNG_BOM: Final = 0x1A2B3C4D
_PCAPNG_IDB, _PCAPNG_PB, _PCAPNG_SPB, _PCAPNG_EPB = 1, 2, 3, 6
_PCAPNG_DSB: Final = 0x0000000A
_OPT_IF_TSRESOL, _OPT_IF_TSOFFSET = 9, 14

_MAX_RECORD: Final = 1 << 26
"""A record claiming more than 64 MiB is corruption, not data: refuse before reading it."""

_REC_LE: Final = struct.Struct("<IIII")

SECRETS_TLS_KEY_LOG: Final = 0x544C534B
"""Decryption Secrets Block type "TLSK": NSS key log text (pcapng spec §4.7)."""
SECRETS_TYPE_NAMES: Final = {
    SECRETS_TLS_KEY_LOG: "TLS key log",
    0x57474B4C: "WireGuard key log",
    0x5A4E574B: "ZigBee NWK key",
    0x5A415053: "ZigBee APS key",
    0x4F50434B: "OPC UA key log",
}
"""The secrets types the pcapng spec registers, by name (for notes about those we skip)."""

SecretsCallback = Callable[[int, bytes], None]
"""Called with (secrets type, secrets data) for each Decryption Secrets Block, before the
frames that follow it in the file are yielded."""


class CaptureError(ValueError):
    """The file is not a capture we can read; the message is one line for the user."""


class TruncatedCapture(CaptureError):
    """The file ends inside a header or record. Raised only after every complete record was
    yielded, so a reader may report what it has and show this as a warning."""

    def __init__(self, message: str, offset: int, frames: int) -> None:
        super().__init__(message)
        self.offset = offset
        """Byte offset of the header or record that was cut short."""
        self.frames = frames
        """How many complete frames were yielded before it."""


class UnsupportedLinkType(CaptureError):
    """A link type ``ip_payload`` cannot strip (see ``check_linktype``)."""

    def __init__(self, linktype: int) -> None:
        super().__init__(f"unsupported link type {linktype} "
                         "(see https://www.tcpdump.org/linktypes.html)")
        self.linktype = linktype


# Made once per packet: its __init__ is written out, as TcpSegment's is (handshake.trace.packet).
@dataclass(slots=True, unsafe_hash=True, init=False)
class CapturedFrame:
    """One captured frame, link layer included."""

    time: float
    """Seconds since the epoch (or since the simulation's start); NaN for a pcapng Simple
    Packet Block, which carries no timestamp."""
    linktype: int
    """LINKTYPE_* value of the interface it was captured on."""
    data: bytes
    """The captured bytes (at most the snap length)."""
    orig_len: int
    """The frame's length on the wire; more than ``len(data)`` when the snap length cut it."""
    interface: int = 0
    """pcapng interface index within its section; 0 for classic pcap."""

    def __init__(self, time: float, linktype: int, data: bytes, orig_len: int, interface: int = 0) -> None:
        self.time = time
        self.linktype = linktype
        self.data = data
        self.orig_len = orig_len
        self.interface = interface


class PcapWriter:
    """Classic pcap writer (little-endian, version 2.4).

    Takes a path (the file is created mode 0644 whatever the umask: captures are shared,
    unlike key logs) or a binary file object, which stays open when the writer closes.
    """

    def __init__(self, file: str | os.PathLike | BinaryIO, linktype: int = LINKTYPE_RAW,
                 snaplen: int = 262144, nanosecond: bool = False) -> None:
        if isinstance(file, (str, bytes, os.PathLike)):
            fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                os.fchmod(fd, 0o644)
            except OSError:  # not every file system has modes
                pass
            self._file: BinaryIO = os.fdopen(fd, "wb")
            self._owned = True
        else:
            self._file = file
            self._owned = False
        self.snaplen = snaplen
        self._scale = 1_000_000_000 if nanosecond else 1_000_000
        magic = _PCAP_MAGIC_NS if nanosecond else _PCAP_MAGIC_US
        self._file.write(struct.pack("<IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype))

    def write(self, timestamp_s: float, data: bytes, orig_len: int | None = None) -> None:
        """One record; data beyond the snap length is cut and ``orig_len`` keeps the truth."""
        ticks = round(timestamp_s * self._scale)
        if ticks < 0:
            raise ValueError(f"negative timestamp {timestamp_s}")
        sec, frac = divmod(ticks, self._scale)
        if len(data) > self.snaplen:
            orig_len = len(data) if orig_len is None else orig_len
            data = data[:self.snaplen]
        self._file.write(_REC_LE.pack(sec, frac, len(data),
                                      len(data) if orig_len is None else orig_len))
        self._file.write(data)

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        if self._owned:
            self._file.close()
        else:
            self._file.flush()

    def __enter__(self) -> PcapWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# --- reading ---------------------------------------------------------------------------------

def iter_capture(source: str | os.PathLike | BinaryIO,
                 secrets: SecretsCallback | None = None) -> Iterator[CapturedFrame]:
    """Yield the frames of a pcap or pcapng file (path or binary file object), in file order;
    a gzip- or xz-compressed one is decompressed as it is read (told by its magic, not its name).

    ``secrets`` receives the contents of each pcapng Decryption Secrets Block when the reader
    reaches it. Raises ``CaptureError`` for a file that is not a readable capture, and
    ``TruncatedCapture`` after the last complete frame when the file (or its compressed
    stream) is cut short.
    """
    if isinstance(source, (str, bytes, os.PathLike)):
        try:
            file = open(source, "rb")
        except OSError as exc:
            raise CaptureError(f"cannot open {os.fsdecode(source)}: {exc.strerror}") from None
        with file:
            yield from _iter_file(file, secrets)
    else:
        yield from _iter_file(source, secrets)


_CHUNK: Final = 1 << 17
"""Bytes read from the file at a time; records are cut out of them."""


def _prefix(file: BinaryIO) -> bytes:
    """The file's first chunk, at least ``MAGIC_BYTES`` long unless the file is shorter, read
    without seeking (a pipe may return less than asked, so read on). A whole chunk, not just
    the magic: later reads then start on a chunk boundary, which the file's buffer serves
    without an extra copy."""
    parts: list[bytes] = []
    have = 0
    try:
        while have < MAGIC_BYTES:
            more = file.read(_CHUNK - have)
            if not more:
                break
            parts.append(bytes(more))
            have += len(more)
    except OSError as exc:
        raise CaptureError(f"cannot read capture: {exc.strerror or exc}") from None
    return b"".join(parts)


class _Reader:
    """Reads exact sizes from a file, a chunk at a time, and keeps the offset for messages."""

    __slots__ = ("file", "offset", "frames", "_buffer", "_position")

    def __init__(self, file: BinaryIO | DecompressedStream, buffered: bytes = b"") -> None:
        self.file = file
        self.offset = 0
        self.frames = 0
        self._buffer = buffered
        """Read from the file, not yet by the caller (from ``_position`` on)."""
        self._position = 0

    def read(self, size: int) -> bytes:
        """``size`` bytes, fewer only at the end of the file."""
        position = self._position
        end = position + size
        buffer = self._buffer
        if end > len(buffer):
            buffer = self._refill(size)
            position, end = 0, size
        chunk = buffer[position:end]
        self._position = position + len(chunk)
        self.offset += len(chunk)
        return chunk

    def _refill(self, size: int) -> bytes:
        """The unread rest of the buffer and then at least a chunk more (or up to the end of
        the file): a pipe or socket may return less than asked before its end, so read on."""
        rest = self._buffer[self._position:]
        self._buffer = b""
        parts = [rest] if rest else []
        have = len(rest)
        try:
            while have < size:
                more = self.file.read(max(size - have, _CHUNK))
                if not more:  # the end, or a non-blocking source with nothing ready (None): the end too
                    break
                parts.append(more)
                have += len(more)
        except OSError as exc:
            raise CaptureError(f"cannot read capture: {exc.strerror or exc}") from None
        self._buffer = parts[0] if len(parts) == 1 else b"".join(parts)
        self._position = 0
        return self._buffer

    def truncated(self, what: str, at: int) -> TruncatedCapture:
        return TruncatedCapture(f"truncated capture: {what} at byte {at} cut short", at,
                                self.frames)


def _iter_file(file: BinaryIO, secrets: SecretsCallback | None) -> Iterator[CapturedFrame]:
    prefix = _prefix(file)
    compression = compression_of(prefix)
    stream = DecompressedStream(file, prefix, compression) if compression else None
    reader = _Reader(file, prefix) if stream is None else _Reader(stream)
    # The frames come straight from _iter_pcap / _iter_pcapng: mypyc resumes a generator it
    # knows natively, so each generator level here costs on every frame only a little.
    try:
        order, magic, head = _file_kind(reader, f"{compression}-compressed " if compression else "")
        if magic == _PCAPNG_SHB:
            yield from _iter_pcapng(reader, head, secrets)
        else:
            yield from _iter_pcap(reader, order, magic)
    except TruncatedCapture as error:
        if stream is not None and stream.cut:
            raise TruncatedCapture(f"{error} (the {compression} stream ends early)", error.offset,
                                   error.frames) from None
        raise
    if stream is not None and stream.cut:  # cut at a record's edge: the records look whole
        raise TruncatedCapture(f"truncated capture: the {compression} stream ends early, after byte "
                               f"{reader.offset} of the capture", reader.offset, reader.frames)


def _file_kind(reader: _Reader, compressed: str) -> tuple[str, int, bytes]:
    """(byte order, magic, first 4 bytes) of a pcap file; magic ``_PCAPNG_SHB`` for pcapng.
    ``compressed`` ("gzip-compressed ", say) goes into the messages."""
    head = reader.read(4)
    if not head:
        if isinstance(reader.file, DecompressedStream) and reader.file.cut:
            raise reader.truncated(f"{compressed}file", 0)
        raise CaptureError(f"empty {compressed}file")
    if len(head) < 4:
        raise reader.truncated("file header", 0)
    for order in ("<", ">"):
        magic = struct.unpack(order + "I", head)[0]
        if magic in (_PCAP_MAGIC_US, _PCAP_MAGIC_NS, _PCAP_MAGIC_KUZNETZOV):
            return order, magic, head
    if struct.unpack("<I", head)[0] == _PCAPNG_SHB:
        return "<", _PCAPNG_SHB, head
    if compressed:
        raise CaptureError(f"{compressed}data is not a pcap or pcapng file (magic 0x{head.hex()})")
    raise CaptureError(f"not a pcap or pcapng file (magic 0x{head.hex()})")


def _iter_pcap(reader: _Reader, order: str, magic: int) -> Iterator[CapturedFrame]:
    """Classic pcap: a 24-byte file header, then 16-byte record headers (+8 for Kuznetzov's)."""
    rest = reader.read(20)
    if len(rest) < 20:
        raise reader.truncated("file header", 0)
    _, _, _, _, snaplen, network = struct.unpack(order + "HHiIII", rest)
    linktype = network & 0xFFFF  # the upper bits hold FCS length flags (pcap spec §4)
    scale = 1e9 if magic == _PCAP_MAGIC_NS else 1e6
    little_endian = order == "<"
    extra = 8 if magic == _PCAP_MAGIC_KUZNETZOV else 0
    head_len = 16 + extra
    while True:
        at = reader.offset
        head = reader.read(head_len)
        if not head:
            return
        if len(head) < head_len:
            raise reader.truncated("record", at)
        if little_endian:
            sec, frac = u32le(head, 0), u32le(head, 4)
            incl_len, orig_len = u32le(head, 8), u32le(head, 12)
        else:
            sec, frac = u32(head, 0), u32(head, 4)
            incl_len, orig_len = u32(head, 8), u32(head, 12)
        if incl_len > _MAX_RECORD:
            raise CaptureError(f"corrupt capture: record at byte {at} claims {incl_len} bytes")
        data = reader.read(incl_len)
        if len(data) < incl_len:
            raise reader.truncated("record", at)
        reader.frames += 1
        yield CapturedFrame(sec + frac / scale, linktype, data, orig_len)


class _Interface:
    __slots__ = ("linktype", "snaplen", "units_per_s", "offset_s")

    def __init__(self, linktype: int, snaplen: int, units_per_s: int, offset_s: int) -> None:
        self.linktype = linktype
        self.snaplen = snaplen
        self.units_per_s = units_per_s
        self.offset_s = offset_s

    def time(self, high: int, low: int) -> float:
        return ((high << 32) | low) / self.units_per_s + self.offset_s


def _iter_pcapng(reader: _Reader, first_type: bytes, secrets: SecretsCallback | None) -> Iterator[CapturedFrame]:
    """pcapng: blocks of (type, total length, body, total length); a Section Header Block
    fixes the byte order and starts a fresh interface list (pcapng spec §4.1)."""
    order = "<"
    interfaces: list[_Interface] = []
    raw_type = first_type
    while True:
        at = reader.offset - 4
        is_shb = raw_type == b"\x0a\x0d\x0d\x0a"  # a palindrome: readable before the byte order
        head_len = 8 if is_shb else 4  # the SHB's length is read with its byte-order magic
        head = reader.read(head_len)
        if len(head) < head_len:
            raise reader.truncated("block", at)
        if is_shb:
            if head[4:8] == b"\x4d\x3c\x2b\x1a":
                order = "<"
            elif head[4:8] == b"\x1a\x2b\x3c\x4d":
                order = ">"
            else:
                raise CaptureError(f"corrupt capture: section header at byte {at} "
                                   f"has byte-order magic 0x{head[4:8].hex()}")
            interfaces = []
        block_type = struct.unpack(order + "I", raw_type)[0]
        total_len = struct.unpack(order + "I", head[:4])[0]
        min_len = 28 if is_shb else 12
        if total_len < min_len or total_len % 4 or total_len > _MAX_RECORD:
            raise CaptureError(f"corrupt capture: block at byte {at} has length {total_len}")
        body_len = total_len - 12
        body = (head[4:] if is_shb else b"") + reader.read(body_len - (4 if is_shb else 0))
        trailer = reader.read(4)
        if len(body) < body_len or len(trailer) < 4:
            raise reader.truncated("block", at)
        if struct.unpack(order + "I", trailer)[0] != total_len:
            raise CaptureError(f"corrupt capture: block at byte {at} has mismatched lengths")
        frame: CapturedFrame | None
        if block_type == _PCAPNG_DSB:
            if secrets is not None:
                kind, data = _secrets_block(body, order, at)
                secrets(kind, data)
            frame = None
        else:
            frame = _pcapng_block(block_type, body, order, interfaces, at)
        if frame is not None:
            reader.frames += 1
            yield frame
        raw_type = reader.read(4)
        if not raw_type:
            return
        if len(raw_type) < 4:
            raise reader.truncated("block", reader.offset - len(raw_type))


def _pcapng_block(block_type: int, body: bytes, order: str, interfaces: list[_Interface],
                  at: int) -> CapturedFrame | None:
    """Interpret one block body; IDBs update ``interfaces``, packet blocks give a frame."""
    if block_type == _PCAPNG_IDB:
        if len(body) < 8:
            raise CaptureError(f"corrupt capture: interface block at byte {at} is too short")
        linktype, _, snaplen = struct.unpack_from(order + "HHI", body)
        units, offset_s = _interface_options(body[8:], order, at)
        interfaces.append(_Interface(linktype, snaplen, units, offset_s))
        return None
    if block_type == _PCAPNG_EPB or block_type == _PCAPNG_PB:
        if len(body) < 20:
            raise CaptureError(f"corrupt capture: packet block at byte {at} is too short")
        if block_type == _PCAPNG_EPB:
            if_id, high, low, cap_len, orig_len = struct.unpack_from(order + "IIIII", body)
        else:
            if_id, _, high, low, cap_len, orig_len = struct.unpack_from(order + "HHIIII", body)
        if cap_len > len(body) - 20:
            raise CaptureError(f"corrupt capture: packet block at byte {at} "
                               f"claims {cap_len} bytes")
        iface = _interface(interfaces, if_id, at)
        return CapturedFrame(iface.time(high, low), iface.linktype, body[20:20 + cap_len],
                             orig_len, if_id)
    if block_type == _PCAPNG_SPB:
        if len(body) < 4:
            raise CaptureError(f"corrupt capture: packet block at byte {at} is too short")
        iface = _interface(interfaces, 0, at)
        orig_len = struct.unpack_from(order + "I", body)[0]
        cap_len = min(orig_len, len(body) - 4)  # spec §4.4: snaplen and block length bound it
        if iface.snaplen:
            cap_len = min(cap_len, iface.snaplen)
        return CapturedFrame(math.nan, iface.linktype, body[4:4 + cap_len], orig_len, 0)
    return None  # SHB (already handled), NRB, ISB, custom blocks: nothing to yield


def _secrets_block(body: bytes, order: str, at: int) -> tuple[int, bytes]:
    """(secrets type, secrets data) of a Decryption Secrets Block (pcapng spec §4.7): type and
    length, then the data padded to 32 bits, then options (none we need)."""
    if len(body) < 8:
        raise CaptureError(f"corrupt capture: decryption secrets block at byte {at} is too short")
    kind, length = struct.unpack_from(order + "II", body)
    if length > len(body) - 8:
        raise CaptureError(f"corrupt capture: decryption secrets block at byte {at} claims {length} bytes")
    return kind, body[8:8 + length]


def _interface(interfaces: list[_Interface], if_id: int, at: int) -> _Interface:
    if if_id >= len(interfaces):
        raise CaptureError(f"corrupt capture: packet block at byte {at} names "
                           f"interface {if_id}, but the section has {len(interfaces)}")
    return interfaces[if_id]


def _interface_options(raw: bytes, order: str, at: int) -> tuple[int, int]:
    """(timestamp units per second, offset in seconds) from IDB options (pcapng spec §4.2):
    if_tsresol is 10**-v, or 2**-(v & 0x7f) when its top bit is set; default microseconds."""
    units, offset_s = 1_000_000, 0
    pos = 0
    while pos + 4 <= len(raw):
        code, length = struct.unpack_from(order + "HH", raw, pos)
        value = raw[pos + 4:pos + 4 + length]
        if code == 0 or len(value) < length:
            break
        if code == _OPT_IF_TSRESOL and length == 1:
            exponent = value[0] & 0x7F
            if exponent > 60:  # finer than a zeptosecond fits no 64-bit clock: corruption
                raise CaptureError(f"corrupt capture: interface block at byte {at} has "
                                   f"if_tsresol {value[0]}")
            units = 2 ** exponent if value[0] & 0x80 else 10 ** exponent
        elif code == _OPT_IF_TSOFFSET and length == 8:
            offset_s = struct.unpack(order + "q", value)[0]
        pos += 4 + length + (-length % 4)
    return units, offset_s


# --- link layers -----------------------------------------------------------------------------

def check_linktype(linktype: int) -> None:
    """Raise ``UnsupportedLinkType`` unless ``ip_payload`` can strip this link type."""
    if linktype not in SUPPORTED_LINKTYPES:
        raise UnsupportedLinkType(linktype)
