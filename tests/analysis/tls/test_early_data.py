"""TLS 1.3 0-RTT and KeyUpdate, on conversations recorded between openssl s_client and s_server.

The stdlib cannot send early data, so these replay the byte streams that
``make_openssl_fixture.py`` recorded (its docstring says what each connection is).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from handshake.analysis.keylog import KeyLog, parse_keylog
from handshake.analysis.tls.conversation import TlsConversation, TlsMessage

FIXTURE = json.loads((Path(__file__).parent / "data" / "tls13_openssl_0rtt.json").read_text())
REQUEST_BYTES = len(FIXTURE["request"])
RESPONSE_BYTES = len(FIXTURE["response"])


@pytest.fixture(scope="module")
def keylog() -> KeyLog:
    return parse_keylog(FIXTURE["keylog"])


def replay(name: str, keylog: KeyLog | None) -> tuple[TlsConversation, list[TlsMessage]]:
    conversation = TlsConversation(keylog)
    messages = []
    for direction, data in FIXTURE["connections"][name]:
        messages += conversation.feed(direction, bytes.fromhex(data))
    return conversation, messages


def sequence(messages: list[TlsMessage], direction: str) -> list[tuple[str, str]]:
    return [(m.kind, m.name) for m in messages if m.direction == direction]


def test_accepted_early_data_carries_the_request_before_end_of_early_data(keylog):
    conversation, messages = replay("early_data_accepted", keylog)
    assert conversation.facts.early_data == "accepted"
    assert conversation.facts.resumed is True
    assert conversation.facts.cipher_suite == "TLS_CHACHA20_POLY1305_SHA256"
    assert sequence(messages, "c2s") == [
        ("handshake", "ClientHello"),
        ("ccs", "ChangeCipherSpec"),
        ("early_data", "ApplicationData"),
        ("handshake", "EndOfEarlyData"),
        ("handshake", "Finished"),
        ("alert", "Alert"),
    ]
    early = next(m for m in messages if m.kind == "early_data")
    assert early.length == REQUEST_BYTES
    assert sequence(messages, "s2c") == [
        ("handshake", "ServerHello"),
        ("ccs", "ChangeCipherSpec"),
        ("handshake", "EncryptedExtensions"),
        ("handshake", "Finished"),
        ("handshake", "NewSessionTicket"),
        ("app_data", "ApplicationData"),
        ("alert", "Alert"),
    ]


def test_without_keys_accepted_early_data_is_only_known_as_sent():
    conversation, messages = replay("early_data_accepted", None)
    assert conversation.facts.early_data == "sent"
    assert conversation.facts.resumed is True
    assert all(m.kind == "encrypted" for m in messages if m.record_type == 23)


@pytest.mark.parametrize("name", ["early_data_rejected", "early_data_hrr"])
def test_rejected_early_data_is_still_decrypted_with_the_early_secret(keylog, name):
    conversation, messages = replay(name, keylog)
    assert conversation.facts.early_data == "rejected"
    assert conversation.facts.resumed is False
    client = sequence(messages, "c2s")
    assert client[:3] == [("handshake", "ClientHello"), ("ccs", "ChangeCipherSpec"), ("early_data", "ApplicationData")]
    assert ("handshake", "EndOfEarlyData") not in client
    assert ("handshake", "Finished") in client
    # The server cannot read the early request, so nothing answers it before the handshake ends.
    response = next(m for m in messages if m.direction == "s2c" and m.kind == "app_data")
    server_finished = next(m for m in messages if m.direction == "s2c" and m.name == "Finished")
    assert response.start_offset >= server_finished.end_offset
    assert response.length == RESPONSE_BYTES


def test_the_early_data_suite_may_differ_from_the_negotiated_one(keylog):
    # The ticket came from a ChaCha20 server; this server negotiated AES-128-GCM.
    conversation, messages = replay("early_data_rejected", keylog)
    assert conversation.facts.cipher_suite == "TLS_AES_128_GCM_SHA256"
    assert any(m.kind == "early_data" for m in messages)


@pytest.mark.parametrize("name", ["early_data_rejected", "early_data_hrr"])
def test_without_keys_a_server_hello_without_the_psk_tells_rejection(name):
    conversation, _ = replay(name, None)
    assert conversation.facts.early_data == "rejected"


def test_a_hello_retry_request_answers_early_data(keylog):
    conversation, messages = replay("early_data_hrr", keylog)
    assert conversation.facts.hrr is True
    assert [m.name for m in messages if m.direction == "s2c"][:3] == ["HelloRetryRequest", "ChangeCipherSpec", "ServerHello"]
    assert [m.name for m in messages if m.direction == "c2s"][:4] == [
        "ClientHello", "ChangeCipherSpec", "ApplicationData", "ClientHello",
    ]


def test_records_after_a_key_update_are_decrypted_with_the_next_secret(keylog):
    conversation, messages = replay("full_key_update", keylog)
    assert conversation.facts.early_data == "none"
    assert conversation.facts.resumed is False
    server = sequence(messages, "s2c")
    update = server.index(("handshake", "KeyUpdate"))
    assert server[update + 1 :] == [("app_data", "ApplicationData"), ("alert", "Alert")]
    client = sequence(messages, "c2s")
    assert client[-3:] == [("handshake", "KeyUpdate"), ("app_data", "ApplicationData"), ("alert", "Alert")]
    after_update = [m.length for m in messages if m.kind == "app_data"][-2:]
    assert after_update == [len("after update\n"), len("bye\n")]
