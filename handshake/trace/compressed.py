"""Compressed captures: gzip (RFC 1952) and xz, told by their magic and inflated as a stream.

tshark reads a ``.pcap.gz`` as it is, and captures are shared compressed. The file is read a
chunk at a time and never seeks (a pipe works), and the output is produced a bounded piece at
a time, so a small file that inflates to gigabytes is streamed like any large capture.

A stream that ends before its end-of-stream marker is *cut* (``DecompressedStream.cut``): the
capture reader reports the frames before the cut, as it does for a truncated pcap. Damaged
data is a ``CaptureError``. Several members (gzip) or streams (xz) in a row are read one after
the other, as gzip(1) and xz(1) do; zero bytes after the last one are padding.
"""

from __future__ import annotations

import lzma
import zlib
from typing import BinaryIO, Final

__all__ = ["GZIP_MAGIC", "XZ_MAGIC", "MAGIC_BYTES", "DecompressedStream", "compression_of"]

GZIP_MAGIC: Final = b"\x1f\x8b"
XZ_MAGIC: Final = b"\xfd7zXZ\x00"
MAGIC_BYTES: Final = 6
"""Bytes to look at to tell a compressed file (the longest magic)."""

_IN_CHUNK: Final = 1 << 16
"""Compressed bytes read from the file at a time."""
_OUT_CHUNK: Final = 1 << 18
"""Most decompressed bytes produced by one ``read``: bounds memory whatever the ratio."""


def compression_of(prefix: bytes) -> str:
    """"gzip" or "xz" when ``prefix`` (a file's first bytes) starts with its magic, else ""."""
    if prefix[:2] == GZIP_MAGIC:
        return "gzip"
    if prefix[:6] == XZ_MAGIC:
        return "xz"
    return ""


class DecompressedStream:
    """``read(size)`` over the decompressed contents of a gzip or xz file object.

    ``prefix``: bytes already read from the start of ``file`` (to look at the magic). ``read``
    returns b"" only at the end; before it, a non-empty piece, possibly shorter than asked.
    Raises ``CaptureError`` (imported late: ``pcap`` imports this module) for damaged data.
    """

    def __init__(self, file: BinaryIO, prefix: bytes, fmt: str) -> None:
        self.format = fmt
        """"gzip" or "xz"."""
        self.cut = False
        """The file ended inside a member: what came out is all there is."""
        self._file = file
        self._input = prefix
        """Compressed bytes not yet given to the decompressor (zlib's unconsumed tail too)."""
        self._file_ended = False
        self._done = False
        self._gzip: zlib._Decompress | None = None
        self._xz: lzma.LZMADecompressor | None = None
        self._start_member()

    def _start_member(self) -> None:
        if self.format == "gzip":
            self._gzip = zlib.decompressobj(16 + zlib.MAX_WBITS)  # the gzip wrapper, CRC-32 and length checked
        else:
            self._xz = lzma.LZMADecompressor(lzma.FORMAT_XZ)

    def read(self, size: int = -1) -> bytes:
        limit = _OUT_CHUNK if size < 0 else max(1, min(size, _OUT_CHUNK))
        while not self._done:
            if self._member_ended():
                self._next_member()
                continue
            if self._needs_input() and not self._fill():
                out = self._decompress(limit)  # what the decompressor still holds
                if out:
                    return out
                if not self._member_ended():
                    self.cut = True  # the file ended inside a member
                    self._done = True
                continue
            out = self._decompress(limit)
            if out:
                return out
        return b""

    def _needs_input(self) -> bool:
        if self._input:
            return False
        xz = self._xz
        return xz is None or xz.needs_input

    def _member_ended(self) -> bool:
        gzip, xz = self._gzip, self._xz
        return gzip.eof if gzip is not None else xz is not None and xz.eof

    def _decompress(self, limit: int) -> bytes:
        from .pcap import CaptureError

        data = self._input
        try:
            gzip = self._gzip
            if gzip is not None:
                out = gzip.decompress(data, limit)
                self._input = gzip.unconsumed_tail
                return out
            xz = self._xz
            assert xz is not None
            self._input = b""  # the decompressor keeps what it did not use
            return xz.decompress(data, limit)
        except (zlib.error, lzma.LZMAError) as error:
            raise CaptureError(f"corrupt {self.format} data: {_reason(error)}") from None

    def _next_member(self) -> None:
        """After a member's end: another member, zero padding, or the end of the file."""
        from .pcap import CaptureError

        gzip, xz = self._gzip, self._xz
        unused = gzip.unused_data if gzip is not None else xz.unused_data if xz is not None else b""
        rest = unused + self._input
        magic = GZIP_MAGIC if self.format == "gzip" else XZ_MAGIC
        while True:
            rest = rest.lstrip(b"\0")
            if len(rest) >= len(magic) or self._file_ended:
                break
            more = self._read_file()
            if not more:
                break
            rest += more
        if not rest:
            self._done = True
            return
        if not rest.startswith(magic):
            raise CaptureError(f"corrupt {self.format} data: trailing bytes after the end of the "
                               f"compressed stream are not {self.format}")
        self._input = rest
        self._start_member()

    def _fill(self) -> bool:
        more = self._read_file()
        self._input = more
        return bool(more)

    def _read_file(self) -> bytes:
        from .pcap import CaptureError

        if self._file_ended:
            return b""
        try:
            more = self._file.read(_IN_CHUNK)
        except OSError as exc:
            raise CaptureError(f"cannot read capture: {exc.strerror or exc}") from None
        if not more:  # the end (or a non-blocking source with nothing ready: None)
            self._file_ended = True
            return b""
        return bytes(more)


def _reason(error: Exception) -> str:
    """zlib says "Error -3 while decompressing data: invalid block type": keep the reason."""
    text = str(error)
    return text.split(": ", 1)[1] if text.startswith("Error ") and ": " in text else text
