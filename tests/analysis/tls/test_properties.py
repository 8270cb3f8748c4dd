"""Properties: the analyzer never raises, and how the bytes are chunked does not change what it finds."""

from __future__ import annotations

import functools
import json
import ssl
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handshake.analysis.keylog import KeyLog, parse_keylog
from handshake.analysis.tls.conversation import TlsConversation, TlsMessage
from handshake.analysis.tls.messages import DecodeError, parse_server_hello

from . import builders as b

from .exchange import make_contexts, run_exchange, write_self_signed_certificate

KINDS = {"handshake", "ccs", "alert", "app_data", "early_data", "encrypted", "garbage"}
Chunks = list[tuple[str, bytes]]


@functools.cache
def corpus() -> tuple[tuple[Chunks, KeyLog], ...]:
    """Real conversations: stdlib TLS 1.2 and 1.3 (full and resumed) and the openssl 0-RTT ones."""
    conversations: list[tuple[Chunks, KeyLog]] = []
    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)
        cert_file, key_file = write_self_signed_certificate(directory)
        for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
            keylog_file = directory / f"{version.name}.log"
            client, server = make_contexts(cert_file, key_file, keylog_file, version)
            full = run_exchange(client, server)
            resumed = run_exchange(client, server, session=full.session)
            keylog = parse_keylog(keylog_file.read_text())
            conversations += [(full.chunks, keylog), (resumed.chunks, keylog)]
    fixture = json.loads((Path(__file__).parent / "data" / "tls13_openssl_0rtt.json").read_text())
    keylog = parse_keylog(fixture["keylog"])
    for chunks in fixture["connections"].values():
        conversations.append(([(d, bytes.fromhex(data)) for d, data in chunks], keylog))
    return tuple(conversations)


def feed_all(chunks: Chunks, keylog: KeyLog | None) -> tuple[TlsConversation, list[TlsMessage]]:
    conversation = TlsConversation(keylog)
    messages = []
    for direction, data in chunks:
        messages += conversation.feed(direction, data)
    check_invariants(chunks, messages)
    return conversation, messages


def check_invariants(chunks: Chunks, messages: list[TlsMessage]) -> None:
    for direction in ("c2s", "s2c"):
        fed = sum(len(data) for d, data in chunks if d == direction)
        mine = [m for m in messages if m.direction == direction]
        ends = [m.end_offset for m in mine]
        assert ends == sorted(ends)
        assert all(0 <= m.start_offset < m.end_offset <= fed or m.end_offset == m.start_offset == fed for m in mine)
        assert all(m.kind in KINDS and m.length >= 0 for m in mine)
        garbage = [i for i, m in enumerate(mine) if m.kind == "garbage" and m.name == "NotTls"]
        assert garbage in ([], [len(mine) - 1])


def rechunk(chunks: Chunks, cuts: list[int]) -> Chunks:
    """The same streams, each chunk cut at the given fractions."""
    result = []
    for i, (direction, data) in enumerate(chunks):
        cut = cuts[i % len(cuts)] % (len(data) + 1) if cuts else len(data)
        result += [(direction, part) for part in (data[:cut], data[cut:]) if part]
    return result


conversation_index = st.integers(min_value=0, max_value=8)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["c2s", "s2c"]), st.binary(max_size=64)), max_size=20), st.booleans())
def test_random_bytes_never_raise(chunks, with_keys):
    feed_all(chunks, corpus()[0][1] if with_keys else None)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conversation_index, st.lists(st.integers(min_value=0, max_value=5000), max_size=8))
def test_chunk_boundaries_do_not_change_the_messages_or_facts(index, cuts):
    chunks, keylog = corpus()[index % len(corpus())]
    expected_conversation, expected = feed_all(chunks, keylog)
    conversation, messages = feed_all(rechunk(chunks, cuts), keylog)
    assert messages == expected
    assert conversation.facts == expected_conversation.facts


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    conversation_index,
    st.lists(st.tuples(st.integers(min_value=0), st.integers(min_value=0, max_value=255)), max_size=6),
    st.integers(min_value=0),
    st.booleans(),
    st.randoms(use_true_random=False),
)
def test_mutated_truncated_and_reordered_conversations_never_raise(index, flips, keep, with_keys, random):
    chunks, keylog = corpus()[index % len(corpus())]
    streams = {d: bytearray(b"".join(data for dd, data in chunks if dd == d)) for d in ("c2s", "s2c")}
    for position, value in flips:
        stream = streams["c2s" if position % 2 else "s2c"]
        if stream:
            stream[position // 2 % len(stream)] = value
    mutated: Chunks = []
    offsets = {"c2s": 0, "s2c": 0}
    for direction, data in chunks:
        start = offsets[direction]
        offsets[direction] += len(data)
        mutated.append((direction, bytes(streams[direction][start : start + len(data)])))
    mutated = mutated[: keep % (len(mutated) + 1)]
    if random.random() < 0.3:
        random.shuffle(mutated)  # per-direction order broken too: still must not raise
    feed_all(mutated, keylog if with_keys else None)


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(st.sampled_from([0x0304, 0x0303, 0x0301]), st.integers(min_value=0x7F0E, max_value=0x7F1C),
              st.sampled_from([0xFB17, 0xFB1A])),
    st.binary(min_size=32, max_size=32),
    st.binary(max_size=32),
    st.integers(min_value=0, max_value=0xFFFF),
    st.one_of(st.none(), st.integers(min_value=0, max_value=0xFFFF)),
)
def test_server_hellos_of_both_layouts_read_back_what_they_carry(version, random, session_id, suite, psk):
    """RFC 8446 §4.1.3 / RFC 5246 §7.4.1.3, and the drafts before 22 (no session id, no
    compression method, the draft version in the version field)."""
    extensions = () if psk is None else (b.selected_psk(psk),)
    if version >> 8 == 0x7F and version < 0x7F16:
        body = b.draft_server_hello(version, *extensions, random=random, suite=suite)[4:]
        session_id = b""
    elif version == 0x0304 or version >> 8 in (0x7F, 0xFB):
        body = b.server_hello(b.server_version(version), *extensions, random=random, session_id=session_id,
                              suite=suite)[4:]
    else:
        body = b.server_hello(*extensions, random=random, session_id=session_id, suite=suite)[4:]
        body = version.to_bytes(2, "big") + body[2:]
    hello = parse_server_hello(body)
    assert (hello.version, hello.random, hello.session_id, hello.cipher_suite, hello.selected_psk_identity) == (
        version, random, session_id, suite, psk)
    for cut in range(len(body)):
        try:
            parse_server_hello(body[:cut])  # cut short: a DecodeError, or fewer facts, never another error
        except DecodeError:
            pass
