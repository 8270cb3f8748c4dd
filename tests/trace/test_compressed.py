"""Compressed captures: a gzip or xz file (told by its magic, whatever its name) reads as the
capture inside it, from a path or a pipe; a cut stream yields the frames before the cut and
then says it was cut; damaged data is one CaptureError line."""

from __future__ import annotations

import gzip
import io
import lzma
import math
import os
import random
import threading
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from handshake.trace import compressed
from handshake.trace.packet import ACK, PSH, SYN, tcp_packet
from handshake.trace.pcap import CaptureError, TruncatedCapture, iter_capture

from tests.trace.test_pcap import classic_pcap, two_section_pcapng

PACKETS = [tcp_packet("10.0.0.1", "10.0.0.2", 40000, 443, i, 0, SYN if i == 0 else PSH | ACK, bytes([i % 256]) * (i % 1400))
           for i in range(400)]
PCAP = classic_pcap([(i, 0, packet) for i, packet in enumerate(PACKETS)])
PCAPNG, PCAPNG_FRAMES = two_section_pcapng()

COMPRESS = {
    "gzip": lambda data: gzip.compress(data, mtime=0),
    "xz": lambda data: lzma.compress(data, format=lzma.FORMAT_XZ),
}


def frames(data: bytes) -> list[tuple[float | None, int, bytes, int]]:
    """(time, link type, data, length on the wire); None for a Simple Packet Block's time (NaN)."""
    return [(None if math.isnan(f.time) else f.time, f.linktype, f.data, f.orig_len)
            for f in iter_capture(io.BytesIO(data))]


def read_until_error(data: bytes) -> tuple[list[bytes], CaptureError | None]:
    seen = []
    try:
        for frame in iter_capture(io.BytesIO(data)):
            seen.append(frame.data)
    except CaptureError as error:
        return seen, error
    return seen, None


@pytest.mark.parametrize("fmt", list(COMPRESS))
@pytest.mark.parametrize("capture", [PCAP, PCAPNG], ids=["pcap", "pcapng"])
def test_a_compressed_capture_reads_as_the_capture_inside(fmt, capture):
    packed = COMPRESS[fmt](capture)
    assert compressed.compression_of(packed[:6]) == fmt
    assert frames(packed) == frames(capture) and len(frames(capture)) in (400, len(PCAPNG_FRAMES))


@pytest.mark.parametrize("fmt", list(COMPRESS))
def test_a_compressed_file_is_told_by_its_magic_not_its_name(tmp_path, fmt):
    path = tmp_path / "capture.pcap"  # no .gz / .xz
    path.write_bytes(COMPRESS[fmt](PCAP))
    assert [f.data for f in iter_capture(path)] == PACKETS


@pytest.mark.parametrize("fmt", list(COMPRESS))
def test_a_compressed_capture_streams_from_a_pipe_that_cannot_seek(fmt):
    data = COMPRESS[fmt](PCAP)
    read_fd, write_fd = os.pipe()

    def writer():
        with os.fdopen(write_fd, "wb") as pipe:
            for i in range(0, len(data), 3):  # the magic arrives a few bytes at a time
                pipe.write(data[i:i + 3])

    thread = threading.Thread(target=writer)
    thread.start()
    with os.fdopen(read_fd, "rb", buffering=0) as pipe:
        assert not pipe.seekable()
        got = [f.data for f in iter_capture(pipe)]
    thread.join()
    assert got == PACKETS


def test_concatenated_gzip_members_and_zero_padding_read_as_one_file():
    """gzip(1) reads members one after the other (RFC 1952 §2.2), and tape blocking pads with zeros."""
    half = 24 + sum(16 + len(p) for p in PACKETS[:200])
    data = gzip.compress(PCAP[:half]) + gzip.compress(PCAP[half:]) + bytes(512)
    assert [f.data for f in iter_capture(io.BytesIO(data))] == PACKETS
    xz = lzma.compress(PCAP[:half]) + bytes(8) + lzma.compress(PCAP[half:])
    assert [f.data for f in iter_capture(io.BytesIO(xz))] == PACKETS


@pytest.mark.parametrize("fmt", list(COMPRESS))
def test_output_is_produced_a_bounded_piece_at_a_time(fmt):
    """A small file that inflates a thousandfold is still read a piece at a time."""
    packed = COMPRESS[fmt](bytes(20_000_000))
    stream = compressed.DecompressedStream(io.BytesIO(packed[6:]), packed[:6], fmt)
    sizes = []
    while piece := stream.read(1 << 30):
        sizes.append(len(piece))
    assert sum(sizes) == 20_000_000 and max(sizes) <= 1 << 18 and not stream.cut


@pytest.mark.parametrize("fmt", list(COMPRESS))
@pytest.mark.parametrize("keep", [0.3, 0.7, 0.999])
def test_a_cut_stream_yields_the_frames_before_the_cut_then_says_so(fmt, keep):
    packed = COMPRESS[fmt](PCAP)
    seen, error = read_until_error(packed[:int(len(packed) * keep)])
    assert isinstance(error, TruncatedCapture), error
    assert f"the {fmt} stream ends early" in str(error) and "\n" not in str(error)
    assert error.frames == len(seen) and 0 < len(seen) <= len(PACKETS)  # near the end: the trailer is what is missing
    assert seen == PACKETS[:len(seen)]


def test_a_stream_cut_exactly_at_a_record_edge_is_still_a_truncation():
    """The pcap records look whole; only the missing gzip trailer tells."""
    edge = 24 + sum(16 + len(p) for p in PACKETS[:100])
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    cut = compressor.compress(PCAP[:edge]) + compressor.flush(zlib.Z_SYNC_FLUSH)  # no final block, no trailer
    seen, error = read_until_error(cut)
    assert seen == PACKETS[:100]
    assert isinstance(error, TruncatedCapture)
    assert str(error) == f"truncated capture: the gzip stream ends early, after byte {edge} of the capture"


@pytest.mark.parametrize("data, message", [
    (b"\x1f\x8b", "truncated capture: gzip-compressed file at byte 0 cut short"),
    (gzip.compress(b""), "empty gzip-compressed file"),
    (gzip.compress(b"<html><body>"), r"gzip-compressed data is not a pcap or pcapng file \(magic 0x3c68746d\)"),
    (lzma.compress(b"<html><body>"), r"xz-compressed data is not a pcap or pcapng file"),
    (b"\x1f\x8b\x09" + gzip.compress(PCAP)[3:], "corrupt gzip data: unknown compression method"),
    (gzip.compress(PCAP)[:10] + b"\x07" + gzip.compress(PCAP)[11:], "corrupt gzip data: invalid block type"),
    (b"\xfd7zXZ\x00" + bytes(40), "corrupt xz data"),
])
def test_damaged_compressed_files_are_one_line_errors_before_any_frame(data, message):
    seen, error = read_until_error(data)
    assert seen == [] and error is not None
    assert __import__("re").search(message, str(error)), str(error)
    assert "\n" not in str(error)


def test_damage_after_good_frames_is_an_error_after_them():
    """The frames inflated before the damage was found have been yielded (the capture reader
    reports them with a note, as for a damaged pcap block); the error names the damage."""
    many = [PACKETS[i % 400] for i in range(4000)]
    big = classic_pcap([(i, 0, packet) for i, packet in enumerate(many)])  # 1 MB: inflated a piece at a time
    packed = bytearray(gzip.compress(big))
    packed[-8] ^= 0xFF  # the CRC-32 in the trailer: the check fails at the very end
    seen, error = read_until_error(bytes(packed))
    assert 0 < len(seen) < len(many) and seen == many[:len(seen)]
    assert not isinstance(error, TruncatedCapture) and str(error) == "corrupt gzip data: incorrect data check"
    seen, error = read_until_error(gzip.compress(PCAP) + b"not gzip")
    assert str(error) == "corrupt gzip data: trailing bytes after the end of the compressed stream are not gzip"


def _mutate(data: bytes, seed: int) -> bytes:
    rng = random.Random(seed)
    buf = bytearray(data)
    for _ in range(rng.randrange(4)):
        buf[rng.randrange(len(buf))] = rng.randrange(256)
    if rng.random() < 0.4:
        del buf[rng.randrange(len(buf) + 1):]
    return bytes(buf)


SEEDS = [COMPRESS[fmt](capture) for fmt in COMPRESS for capture in (PCAP[:3000], PCAPNG)]


@settings(max_examples=1500, deadline=None)
@given(st.sampled_from(SEEDS), st.integers(0, 2**64))
def test_mutated_compressed_captures_raise_only_capture_errors(capture, seed):
    try:
        for _ in iter_capture(io.BytesIO(_mutate(capture, seed)), lambda kind, data: None):
            pass
    except CaptureError as error:
        assert "\n" not in str(error)
