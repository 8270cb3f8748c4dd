"""hypothesis feeds more than 10,000 mutated and truncated captures (real pcap and pcapng bytes
with bits flipped, bytes set, inserted and deleted, the file cut) through the whole inspect
pipeline: reading, flows, TLS and QUIC analysis with the key log, the output and the ladder.
Nothing escapes but the documented one-line errors.

hypothesis draws which capture and a seed; the seed picks the edits (drawing the edits
themselves through hypothesis strategies cost 6 ms an example, too slow for 10,000 in a test
run). A failure prints the seed, which reproduces it exactly."""

from __future__ import annotations

import io
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handshake.analysis.keylog import parse_keylog
from handshake.errors import UsageError
from handshake.inspect import render
from handshake.analysis.capture import CaptureError, inspect_capture

from .capture_files import raw_packets, reframe, written_run

EXAMPLES = {"pcap": 6_000, "pcapng": 4_200}
"""At least 10,000 in all (the last test checks they ran)."""
ran = {"pcap": 0, "pcapng": 0}


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    """Small real captures: a plain HTTP, a TLS 1.3 0-RTT (with TFO) and a QUIC exchange, with
    their key logs; the pcapng ones re-framed in Ethernet (and IPv6 for one)."""
    directory = tmp_path_factory.mktemp("seeds")
    out = {"pcap": [], "pcapng": []}
    for variant, link, ipv6 in (("http", "sll2", False), ("tfo-tls13-0rtt", "ethernet", True),
                                ("quic", "ethernet", False)):
        written = written_run(directory, variant, options=None)
        keylog = parse_keylog(written.keylog.read_text())
        packets = raw_packets(written.pcap)
        if variant == "tfo-tls13-0rtt":
            packets = packets[len(packets) // 2:]  # the measured connection only: smaller, faster
        out["pcap"].append((reframe(packets), keylog))
        out["pcapng"].append((reframe(packets, link, ipv6=ipv6, pcapng=True), keylog))
    return out


def mutations(rng: random.Random, size: int) -> list[tuple[str, int, object]]:
    """One to four edits, each at a position in the file (as it is when the edit applies)."""
    edits = []
    for _ in range(rng.randint(1, 4)):
        op = rng.choice(("flip", "flip", "set", "insert", "delete", "cut"))
        pos = rng.randrange(max(size, 1))
        if op == "flip":
            arg: object = 1 << rng.randrange(8) if rng.random() < 0.7 else rng.randint(1, 255)
        elif op == "set":
            arg = rng.choice((0, 1, 0x7F, 0x80, 0xFF, rng.randint(0, 255)))
        elif op == "insert":
            arg = bytes(rng.randint(0, 255) for _ in range(rng.randint(1, 8)))
        elif op == "delete":
            arg = rng.randint(1, 64)
        else:
            arg = 0
        edits.append((op, pos, arg))
    return edits


def mutate(data: bytes, edits) -> bytes:
    buf = bytearray(data)
    for op, pos, arg in edits:
        if not buf:
            break
        at = pos % len(buf)
        if op == "flip":
            buf[at] ^= arg
        elif op == "set":
            buf[at] = arg
        elif op == "insert":
            buf[at:at] = arg
        elif op == "delete":
            del buf[at:at + arg]
        else:
            del buf[at:]
    return bytes(buf)


def run_pipeline(data: bytes, keylog) -> None:
    """What `handshake inspect FILE --keylog K [--format F] [--ladder]` does after reading its
    arguments, on the bytes of a file."""
    try:
        inspection = inspect_capture(io.BytesIO(data), keylog, steps=True, name="fuzz.pcap")
    except CaptureError as error:  # the CLI prints it as its one line
        message = str(error)
        assert message and "\n" not in message
        return
    for conn in inspection.connections:
        assert not any("analysis failed" in note for note in conn.report.notes), conn.report.notes
    for fmt in ("json", "table"):
        render(inspection, fmt, ladder=True, name="fuzz.pcap")


def _fuzz(kind: str, seeds, index: int, seed: int) -> None:
    data, keylog = seeds[kind][index]
    ran[kind] += 1
    edits = mutations(random.Random(seed), len(data))
    try:
        run_pipeline(mutate(data, edits), keylog)
    except UsageError as error:
        assert "\n" not in str(error)


_SETTINGS = dict(deadline=None, derandomize=True, database=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@settings(max_examples=EXAMPLES["pcap"], **_SETTINGS)
@given(index=st.integers(0, 2), seed=st.integers(0, 2**32))
def test_mutated_pcap_files_never_raise_past_the_one_line_errors(seeds, index, seed):
    _fuzz("pcap", seeds, index, seed)


@settings(max_examples=EXAMPLES["pcapng"], **_SETTINGS)
@given(index=st.integers(0, 2), seed=st.integers(0, 2**32))
def test_mutated_pcapng_files_never_raise_past_the_one_line_errors(seeds, index, seed):
    _fuzz("pcapng", seeds, index, seed)


def test_more_than_ten_thousand_captures_were_tried():
    if not all(ran.values()):
        pytest.skip("the fuzz tests did not run in this session")
    assert sum(ran.values()) >= 10_000, ran


@pytest.mark.parametrize("kind", ["pcap", "pcapng"])
def test_every_cut_of_a_real_capture(seeds, kind):
    """Not random: the file cut after each of its bytes, as a capture interrupted at any point."""
    data, keylog = seeds[kind][0]
    for end in range(len(data) + 1):
        run_pipeline(data[:end], keylog)
