"""TLS inside QUIC CRYPTO frames (RFC 9001 §4): streams rebuilt by offset, facts as in TLS 1.3."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from handshake.analysis.keylog import parse_keylog
from handshake.analysis.quic.crypto import initial_protections
from handshake.analysis.quic.frames import parse_frames
from handshake.analysis.quic.packets import VERSION_1, parse_datagram
from handshake.analysis.quic.tls import CryptoStream, QuicTlsReader
from handshake.analysis.tls.messages import HELLO_RETRY_REQUEST_RANDOM

from .test_packets import RFC_CLIENT_INITIAL, RFC_DCID, RFC_SERVER_INITIAL


def _crypto(datagram: bytes, from_client: bool) -> bytes:
    client, server = initial_protections(RFC_DCID, VERSION_1)
    packet = parse_datagram(datagram).packets[0]
    opened = (client if from_client else server).open(packet, -1)
    assert opened is not None
    return next(f.data for f in parse_frames(opened.payload).frames if f.frame_type == 0x06)


CLIENT_HELLO = _crypto(RFC_CLIENT_INITIAL, True)
SERVER_HELLO = _crypto(RFC_SERVER_INITIAL, False)


def _message(msg_type: int, body: bytes) -> bytes:
    return bytes([msg_type]) + len(body).to_bytes(3, "big") + body


def _encrypted_extensions(early_data: bool) -> bytes:
    alpn = b"\x00\x10" + (5).to_bytes(2, "big") + b"\x00\x03\x02h3"
    early = b"\x00\x2a\x00\x00" if early_data else b""
    extensions = alpn + early
    return _message(8, len(extensions).to_bytes(2, "big") + extensions)


def test_the_hello_facts_come_through_crypto_frames_in_any_order():
    reader = QuicTlsReader()
    half = len(CLIENT_HELLO) // 2
    assert reader.feed(True, "initial", half, CLIENT_HELLO[half:]) == []
    (message,) = reader.feed(True, "initial", 0, CLIENT_HELLO[: half + 10])  # overlapping
    assert message.name == "ClientHello" and message.end_offset == len(CLIENT_HELLO)
    assert reader.feed(True, "initial", 0, CLIENT_HELLO) == []  # a retransmission adds nothing
    (message,) = reader.feed(False, "initial", 0, SERVER_HELLO)
    assert message.name == "ServerHello"
    facts = reader.facts
    assert (facts.sni, facts.tls_version, facts.cipher_suite, facts.resumed, facts.early_data) == (
        "example.com", "1.3", "TLS_AES_128_GCM_SHA256", False, "none"
    )


def test_encrypted_extensions_tell_whether_0rtt_was_accepted():
    for accepted in (True, False):
        reader = QuicTlsReader()
        reader.feed(True, "initial", 0, CLIENT_HELLO)
        reader._update({"early_data": "sent"})  # the RFC's ClientHello offers no 0-RTT
        (message,) = reader.feed(False, "handshake", 0, _encrypted_extensions(accepted))
        assert message.name == "EncryptedExtensions"
        assert reader.facts.early_data == ("accepted" if accepted else "rejected")
        assert reader.facts.alpn_selected == "h3"


def test_a_hello_retry_request_is_named():
    hrr = bytearray(SERVER_HELLO)
    hrr[6:38] = HELLO_RETRY_REQUEST_RANDOM
    reader = QuicTlsReader()
    reader.feed(True, "initial", 0, CLIENT_HELLO)
    (message,) = reader.feed(False, "initial", 0, bytes(hrr))
    assert message.name == "HelloRetryRequest" and reader.facts.hrr
    (message,) = reader.feed(False, "initial", len(hrr), SERVER_HELLO)
    assert message.name == "ServerHello" and reader.facts.cipher_suite == "TLS_AES_128_GCM_SHA256"


def test_the_key_log_is_found_by_the_client_random_and_a_restart_forgets_it():
    random = CLIENT_HELLO[6:38]
    keylog = parse_keylog(f"CLIENT_HANDSHAKE_TRAFFIC_SECRET {random.hex()} {'11' * 32}\n")
    reader = QuicTlsReader(keylog)
    reader.feed(True, "initial", 0, CLIENT_HELLO)
    assert reader.secrets is not None and reader.facts.keys_found
    reader.restart_client()
    assert reader.secrets is None and reader.client_hello is None
    reader.feed(True, "initial", 0, CLIENT_HELLO)  # the new attempt's ClientHello, from offset 0
    assert reader.secrets is not None


def test_crypto_far_past_the_contiguous_end_is_not_kept():
    stream = CryptoStream()
    assert stream.feed(1 << 40, b"x" * 10) == b""
    assert stream.feed(0, b"abc") == b"abc" and stream.offset == 3


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.sampled_from(["initial", "handshake", "1rtt"]),
                          st.integers(0, 3000), st.binary(max_size=300)), max_size=20))
def test_garbage_crypto_never_raises(frames):
    reader = QuicTlsReader(parse_keylog(""))
    for from_client, epoch, offset, data in frames:
        reader.feed(from_client, epoch, offset, data)
    for from_client, epoch, offset, data in frames:
        reader.feed(from_client, epoch, offset, CLIENT_HELLO[:offset] + data)
