"""The analyzer on real conversations made by the stdlib ssl module (OpenSSL underneath)."""

from __future__ import annotations

import ssl
from dataclasses import dataclass

import pytest

from handshake.analysis.keylog import KeyLog, parse_keylog
from handshake.analysis.tls.conversation import TlsConversation, TlsMessage
from handshake.analysis.tls.messages import cipher_suite_name

from .exchange import REQUEST, RESPONSE, Exchange, make_contexts, run_exchange, write_self_signed_certificate


@dataclass
class Recorded:
    """A full handshake, its resumption, and a HelloRetryRequest handshake, with their key log."""

    full: Exchange
    resumed: Exchange
    retried: Exchange
    keylog: KeyLog
    suite_ids: dict[str, int]


@pytest.fixture(scope="module", params=["1.2", "1.3"])
def recorded(request, tmp_path_factory) -> Recorded:
    directory = tmp_path_factory.mktemp(f"tls{request.param}")
    cert_file, key_file = write_self_signed_certificate(directory)
    version = ssl.TLSVersion.TLSv1_2 if request.param == "1.2" else ssl.TLSVersion.TLSv1_3
    keylog_file = directory / "keys.log"
    client, server = make_contexts(cert_file, key_file, keylog_file, version)
    full = run_exchange(client, server)
    resumed = run_exchange(client, server, session=full.session)
    assert resumed.session_reused
    # Python 3.11's set_ecdh_curve sets the server's only group: P-256 is not the client's
    # first key share (X25519), so a TLS 1.3 server answers with a HelloRetryRequest.
    picky_server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    picky_server.load_cert_chain(str(cert_file), str(key_file))
    picky_server.set_ecdh_curve("prime256v1")
    retried = run_exchange(client, picky_server)
    suite_ids = {c["name"]: c["id"] & 0xFFFF for c in client.get_ciphers()}
    return Recorded(full, resumed, retried, parse_keylog(keylog_file.read_text()), suite_ids)


def analyze(exchange: Exchange, keylog: KeyLog | None) -> tuple[TlsConversation, list[TlsMessage]]:
    conversation = TlsConversation(keylog)
    messages = [m for direction, data in exchange.chunks for m in conversation.feed(direction, data)]
    return conversation, messages


def names(messages: list[TlsMessage], direction: str) -> list[str]:
    return [m.name for m in messages if m.direction == direction]


def first_server_application_data(messages: list[TlsMessage]) -> TlsMessage:
    return next(m for m in messages if m.direction == "s2c" and m.kind == "app_data")


def test_the_facts_name_the_version_cipher_server_and_protocol(recorded):
    conversation, _ = analyze(recorded.full, recorded.keylog)
    facts = conversation.facts
    assert facts.tls_version == recorded.full.version.removeprefix("TLSv")
    assert facts.cipher_suite == cipher_suite_name(recorded.suite_ids[recorded.full.cipher])
    assert facts.sni == "example.test"
    assert facts.alpn_offered == ("h2", "http/1.1")
    assert facts.alpn_selected == "http/1.1"
    assert facts.resumed is False
    assert facts.hrr is False
    assert facts.early_data == "none"
    assert facts.keys_found is True
    assert facts.client_hello_bytes == recorded.full.chunks[0][1].__len__()


def test_a_full_handshake_has_the_messages_of_its_version(recorded):
    _, messages = analyze(recorded.full, recorded.keylog)
    if recorded.full.version == "TLSv1.2":
        assert names(messages, "s2c") == [
            "ServerHello", "Certificate", "ServerKeyExchange", "ServerHelloDone",
            "NewSessionTicket", "ChangeCipherSpec", "Finished", "ApplicationData", "Alert",
        ]
        assert names(messages, "c2s") == [
            "ClientHello", "ClientKeyExchange", "ChangeCipherSpec", "Finished", "ApplicationData", "Alert",
        ]
    else:
        assert names(messages, "s2c") == [
            "ServerHello", "ChangeCipherSpec", "EncryptedExtensions", "Certificate", "CertificateVerify",
            "Finished", "NewSessionTicket", "NewSessionTicket", "ApplicationData", "Alert",
        ]
        assert names(messages, "c2s") == ["ClientHello", "ChangeCipherSpec", "Finished", "ApplicationData", "Alert"]


def test_the_first_server_application_data_is_where_the_response_is(recorded):
    _, messages = analyze(recorded.full, recorded.keylog)
    response = first_server_application_data(messages)
    assert (response.start_offset, response.end_offset) == (recorded.full.response_start, recorded.full.response_end)
    assert response.length == len(RESPONSE)
    request = next(m for m in messages if m.direction == "c2s" and m.kind == "app_data")
    assert request.length == len(REQUEST)


def test_a_resumed_handshake_is_recognised_and_its_server_flight_is_shorter(recorded):
    full, _ = analyze(recorded.full, recorded.keylog)
    resumed, messages = analyze(recorded.resumed, recorded.keylog)
    assert resumed.facts.resumed is True
    assert "Certificate" not in names(messages, "s2c")
    assert resumed.facts.server_flight_bytes < full.facts.server_flight_bytes
    response = first_server_application_data(messages)
    assert response.end_offset == recorded.resumed.response_end


def test_the_server_flight_ends_with_server_hello_done_or_the_server_finished(recorded):
    conversation, messages = analyze(recorded.full, recorded.keylog)
    last = "ServerHelloDone" if conversation.facts.tls_version == "1.2" else "Finished"
    flight_end = next(m.end_offset for m in messages if m.direction == "s2c" and m.name == last)
    assert conversation.facts.server_flight_bytes == flight_end


def test_without_a_key_log_tls13_tickets_are_encrypted_and_tls12_is_fully_typed(recorded):
    conversation, messages = analyze(recorded.full, None)
    assert conversation.facts.keys_found is False
    with_keys = analyze(recorded.full, recorded.keylog)[1]
    assert [m.end_offset for m in messages] == [m.end_offset for m in with_keys]
    if recorded.full.version == "TLSv1.2":
        assert messages == with_keys
        assert conversation.facts.alpn_selected == "http/1.1"
    else:
        encrypted = [m for m in messages if m.kind == "encrypted"]
        assert {m.record_type for m in encrypted} == {23}
        assert not any(m.kind == "app_data" for m in messages)
        assert conversation.facts.alpn_selected is None
        assert conversation.facts.server_flight_bytes is None
        assert conversation.facts.resumed is False


def test_a_key_log_without_this_connection_decrypts_nothing(recorded):
    other_log = parse_keylog("")
    conversation, messages = analyze(recorded.full, other_log)
    assert conversation.facts.keys_found is False
    assert messages == analyze(recorded.full, None)[1]


def test_with_a_key_log_tls13_tickets_are_handshake_not_application_data(recorded):
    _, messages = analyze(recorded.full, recorded.keylog)
    tickets = [m for m in messages if m.name == "NewSessionTicket"]
    assert tickets and all(m.kind == "handshake" for m in tickets)
    assert all(m.end_offset <= recorded.full.response_start for m in tickets)


def test_a_hello_retry_request_costs_a_second_client_hello(recorded):
    conversation, messages = analyze(recorded.retried, recorded.keylog)
    if recorded.retried.version == "TLSv1.2":
        assert conversation.facts.hrr is False  # TLS 1.2 has no HelloRetryRequest
        return
    assert conversation.facts.hrr is True
    assert names(messages, "s2c")[:3] == ["HelloRetryRequest", "ChangeCipherSpec", "ServerHello"]
    assert names(messages, "c2s")[:3] == ["ClientHello", "ChangeCipherSpec", "ClientHello"]
    assert conversation.facts.client_hello_bytes == messages[0].end_offset
    server_hello = next(m for m in messages if m.name == "ServerHello")
    finished = next(m for m in messages if m.direction == "s2c" and m.name == "Finished")
    assert conversation.facts.server_flight_bytes == finished.end_offset - server_hello.start_offset
    assert first_server_application_data(messages).end_offset == recorded.retried.response_end


def test_byte_by_byte_feeding_finds_the_same_messages(recorded):
    conversation = TlsConversation(recorded.keylog)
    messages = [
        m for direction, data in recorded.full.chunks for i in range(len(data)) for m in conversation.feed(direction, data[i : i + 1])
    ]
    assert messages == analyze(recorded.full, recorded.keylog)[1]
    assert conversation.facts == analyze(recorded.full, recorded.keylog)[0].facts


@pytest.mark.parametrize(
    ("openssl_cipher", "plaintext_known"),
    [("ECDHE-ECDSA-CHACHA20-POLY1305", True), ("ECDHE-ECDSA-AES128-GCM-SHA256", True), ("ECDHE-ECDSA-AES128-SHA256", False)],
)
def test_tls12_plaintext_lengths_are_known_for_aead_suites_only(tmp_path, openssl_cipher, plaintext_known):
    cert_file, key_file = write_self_signed_certificate(tmp_path)
    client, server = make_contexts(cert_file, key_file, tmp_path / "keys.log", ssl.TLSVersion.TLSv1_2)
    client.set_ciphers(openssl_cipher)
    server.set_ciphers(openssl_cipher)
    exchange = run_exchange(client, server)
    conversation, messages = analyze(exchange, None)
    assert conversation.facts.cipher_suite == cipher_suite_name(
        next(c["id"] & 0xFFFF for c in client.get_ciphers() if c["name"] == openssl_cipher)
    )
    response = first_server_application_data(messages)
    finished = [m for m in messages if m.name == "Finished"]
    assert len(finished) == 2
    if plaintext_known:
        assert response.length == len(RESPONSE)
        assert all(m.length == 16 for m in finished)  # RFC 5246 §7.4.9: 4-byte header + 12 bytes
    else:
        assert response.length == response.end_offset - response.start_offset - 5


def test_a_tls12_session_id_resumption_is_recognised(tmp_path):
    cert_file, key_file = write_self_signed_certificate(tmp_path)
    client, server = make_contexts(cert_file, key_file, tmp_path / "keys.log", ssl.TLSVersion.TLSv1_2)
    server.options |= ssl.OP_NO_TICKET
    full = run_exchange(client, server)
    resumed = run_exchange(client, server, session=full.session)
    assert resumed.session_reused
    conversation, messages = analyze(resumed, None)
    assert conversation.facts.resumed is True
    assert names(messages, "s2c")[:3] == ["ServerHello", "ChangeCipherSpec", "Finished"]
    assert analyze(full, None)[0].facts.resumed is False
