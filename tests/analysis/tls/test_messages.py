"""Hello parsing and handshake reassembly, on hand-built messages."""

import pytest

from handshake.analysis.tls.conversation import TlsConversation
from handshake.analysis.tls.messages import (
    CIPHER_SUITE_NAMES,
    DecodeError,
    HandshakeReassembler,
    cipher_suite_name,
    is_tls13,
    parse_client_hello,
    parse_server_hello,
    tls12_record_overhead,
    version_name,
)

from tests.analysis.tls import builders as b


def test_a_client_hello_names_its_server_protocols_versions_and_offers():
    hello = parse_client_hello(
        b.client_hello(b.server_name("example.test"), b.alpn("h2", "http/1.1"), b.client_versions(0x0304, 0x0303), b.early_data())[4:]
    )
    assert hello.random == b.CLIENT_RANDOM
    assert hello.server_name == "example.test"
    assert hello.alpn_protocols == ("h2", "http/1.1")
    assert hello.supported_versions == (0x0304, 0x0303)
    assert hello.cipher_suites == (0x1301, 0xC02B)
    assert hello.offers_early_data and not hello.offers_psk


def test_a_tls12_server_hello_may_have_no_extensions_at_all():
    hello = parse_server_hello(b.server_hello(suite=0xC02F, with_extensions=False)[4:])
    assert hello.version == 0x0303 and hello.cipher_suite == 0xC02F and hello.alpn_protocol is None


def test_the_hello_retry_request_is_the_server_hello_with_the_magic_random():
    assert parse_server_hello(b.hello_retry_request()[4:]).is_hello_retry_request
    assert not parse_server_hello(b.server_hello(b.server_version(0x0304))[4:]).is_hello_retry_request
    assert b.hello_retry_request()[6:38].hex().upper() == (
        "CF21AD74E59A6111BE1D8C021E65B891C2A211167ABB8C5E079E09E2C8A8339C"
    )


def test_versions_are_named_as_what_they_are_drafts_included():
    assert [version_name(v) for v in (0x0304, 0x0303, 0x0302, 0x0301, 0x0300)] == ["1.3", "1.2", "1.1", "1.0", "ssl3"]
    assert version_name(0x7F13) == "1.3-draft-19" and version_name(0x7F17) == "1.3-draft-23"
    assert version_name(0xFB17) == "1.3-fb-draft-23" and version_name(0xFB1A) == "1.3-fb-draft-26"
    assert version_name(0x0A0A) is None  # GREASE (RFC 8701) is never negotiated
    assert [is_tls13(v) for v in (0x0304, 0x7F13, 0xFB1A, 0x0303, 0x0A0A)] == [True, True, True, False, False]


def test_a_draft_19_server_hello_has_no_session_id_and_its_version_in_the_version_field():
    hello = parse_server_hello(b.draft_server_hello(0x7F13, b.selected_psk(0), random=b"\x11" * 32, suite=0x1302)[4:])
    assert (hello.version, hello.random, hello.session_id, hello.cipher_suite) == (0x7F13, b"\x11" * 32, b"", 0x1302)
    assert hello.selected_psk_identity == 0


def test_a_hello_shorter_than_its_length_fields_is_a_decode_error():
    body = b.client_hello(b.server_name("example.test"))[4:]
    with pytest.raises(DecodeError):
        parse_client_hello(body[:-3])


def test_cipher_suites_have_iana_names_and_tls12_aead_overheads():
    assert cipher_suite_name(0x1301) == "TLS_AES_128_GCM_SHA256"
    assert cipher_suite_name(0xC02F) == "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
    assert cipher_suite_name(0xABCD) == "0xABCD"
    assert tls12_record_overhead(0xC02F) == 24
    assert tls12_record_overhead(0xCCA8) == 16
    assert tls12_record_overhead(0xC0AE) == 16
    assert tls12_record_overhead(0xC013) is None


def test_messages_are_reassembled_across_records_and_split_within_one():
    reassembler = HandshakeReassembler()
    first, second = b.handshake(11, b"c" * 300), b.handshake(14, b"")
    assert reassembler.push(first[:100], 0, 105) == []
    found = reassembler.push(first[100:] + second, 105, 319)
    assert [(m.msg_type, m.start_offset, m.end_offset, m.wire_bytes) for m in found] == [(11, 0, 319, 304), (14, 105, 319, 4)]
    assert reassembler.pending_bytes == 0


# --- the conversation on hand-built flights ------------------------------------------------


def _feed(conversation, *flights):
    messages = []
    for direction, data in flights:
        messages += conversation.feed(direction, data)
    return messages


def test_a_hello_retry_request_is_named_and_rejects_the_early_data_it_answers():
    conversation = TlsConversation()
    messages = _feed(
        conversation,
        ("c2s", b.record(22, b.client_hello(b.client_versions(0x0304), b.early_data()))),
        ("s2c", b.record(22, b.hello_retry_request()) + b.change_cipher_spec()),
    )
    assert [m.name for m in messages] == ["ClientHello", "HelloRetryRequest", "ChangeCipherSpec"]
    assert conversation.facts.hrr is True
    assert conversation.facts.tls_version == "1.3"
    assert conversation.facts.early_data == "rejected"
    assert conversation.facts.resumed is None


def test_without_keys_early_data_that_may_be_accepted_is_only_sent():
    conversation = TlsConversation()
    _feed(
        conversation,
        ("c2s", b.record(22, b.client_hello(b.client_versions(0x0304), b.early_data()))),
        ("c2s", b.record(23, b"\x00" * 40)),
        ("s2c", b.record(22, b.server_hello(b.server_version(0x0304), b.selected_psk(0)))),
    )
    assert conversation.facts.early_data == "sent"
    assert conversation.facts.resumed is True


def test_early_data_is_rejected_when_the_server_takes_no_psk_or_not_the_first():
    for extensions in ((), (b.selected_psk(1),)):
        conversation = TlsConversation()
        _feed(
            conversation,
            ("c2s", b.record(22, b.client_hello(b.client_versions(0x0304), b.early_data()))),
            ("s2c", b.record(22, b.server_hello(b.server_version(0x0304), *extensions))),
        )
        assert conversation.facts.early_data == "rejected"


def test_without_keys_tls13_records_after_the_server_hello_are_encrypted():
    conversation = TlsConversation()
    messages = _feed(
        conversation,
        ("c2s", b.record(22, b.client_hello(b.client_versions(0x0304)))),
        ("s2c", b.record(22, b.server_hello(b.server_version(0x0304))) + b.change_cipher_spec() + b.record(23, b"\x00" * 30)),
    )
    assert [(m.kind, m.name, m.length) for m in messages[-2:]] == [("ccs", "ChangeCipherSpec", 1), ("encrypted", "EncryptedRecord", 30)]
    assert conversation.facts.server_flight_bytes is None


@pytest.mark.parametrize(
    ("server_flight", "resumed"),
    [
        ((b.change_cipher_spec(),), True),  # RFC 5077 §3.1: ticket accepted, straight to CCS
        ((b.record(22, b.handshake(4, b"ticket")), b.change_cipher_spec()), True),
        ((b.record(22, b.handshake(11, b"\x00\x00\x00")),), False),
    ],
)
def test_a_tls12_resumption_with_an_empty_session_id_shows_in_the_server_flight(server_flight, resumed):
    conversation = TlsConversation()
    _feed(
        conversation,
        ("c2s", b.record(22, b.client_hello(), version=0x0301)),
        ("s2c", b.record(22, b.server_hello(session_id=b"\x07" * 32, suite=0xC02F))),
    )
    assert conversation.facts.resumed is None
    for record in server_flight:
        conversation.feed("s2c", record)
    assert conversation.facts.resumed is resumed
    assert conversation.facts.tls_version == "1.2"


@pytest.mark.parametrize(("echoed", "resumed"), [(b"\x05" * 32, True), (b"\x06" * 32, False), (b"", False)])
def test_a_tls12_server_resumes_by_echoing_the_client_session_id(echoed, resumed):
    conversation = TlsConversation()
    _feed(
        conversation,
        ("c2s", b.record(22, b.client_hello(session_id=b"\x05" * 32))),
        ("s2c", b.record(22, b.server_hello(session_id=echoed, suite=0xC02F))),
    )
    assert conversation.facts.resumed is resumed


def test_a_draft_23_compatibility_echo_of_the_session_id_is_no_resumption():
    """Draft 22 on (and RFC 8446 §D.4): the server echoes the client's session id in every
    handshake; only pre_shared_key says resumed."""
    for extensions, resumed in (((), False), ((b.selected_psk(0),), True)):
        conversation = TlsConversation()
        _feed(
            conversation,
            ("c2s", b.record(22, b.client_hello(b.client_versions(0x7F17, 0x0303), session_id=b"\x05" * 32))),
            ("s2c", b.record(22, b.server_hello(b.server_version(0x7F17), *extensions, session_id=b"\x05" * 32))),
        )
        assert (conversation.facts.tls_version, conversation.facts.resumed) == ("1.3-draft-23", resumed)


def test_a_draft_19_handshake_has_its_version_and_its_psk_resumption():
    conversation = TlsConversation()
    messages = _feed(
        conversation,
        ("c2s", b.record(22, b.client_hello(b.client_versions(0x7F13, 0x0303), b.early_data()), version=0x0301)),
        ("s2c", b.record(22, b.draft_server_hello(0x7F13, b.selected_psk(0)), version=0x0301) + b.record(23, b"\x00" * 30)),
    )
    assert [(m.name, m.kind) for m in messages] == [("ClientHello", "handshake"), ("ServerHello", "handshake"),
                                                    ("EncryptedRecord", "encrypted")]
    facts = conversation.facts
    assert (facts.tls_version, facts.resumed, facts.early_data, facts.cipher_suite) == (
        "1.3-draft-19", True, "sent", "TLS_AES_128_GCM_SHA256")


def test_a_draft_hello_retry_request_message_costs_what_the_rfc_one_does():
    conversation = TlsConversation()
    messages = _feed(
        conversation,
        ("c2s", b.record(22, b.client_hello(b.client_versions(0x7F15), b.early_data()))),
        ("s2c", b.record(22, b.draft_hello_retry_request(0x7F15))),
        ("c2s", b.record(22, b.client_hello(b.client_versions(0x7F15)))),
        ("s2c", b.record(22, b.draft_server_hello(0x7F15))),
    )
    assert [m.name for m in messages] == ["ClientHello", "HelloRetryRequest", "ClientHello", "ServerHello"]
    facts = conversation.facts
    assert (facts.hrr, facts.tls_version, facts.early_data, facts.resumed) == (True, "1.3-draft-21", "rejected", False)


def test_a_tls12_finished_is_the_first_handshake_record_after_change_cipher_spec():
    conversation = TlsConversation()
    messages = _feed(
        conversation,
        ("c2s", b.record(22, b.client_hello())),
        ("s2c", b.record(22, b.server_hello(suite=0xC02F) + b.handshake(11, b"\x00" * 3) + b.handshake(14, b""))),
        ("c2s", b.record(22, b.handshake(16, b"\x20" + b"k" * 32)) + b.change_cipher_spec() + b.record(22, b"\xee" * 40)),
        ("c2s", b.record(23, b"\xee" * 60) + b.record(22, b"\xee" * 40) + b.record(21, b"\xee" * 26)),
    )
    assert [(m.direction, m.kind, m.name, m.length) for m in messages] == [
        ("c2s", "handshake", "ClientHello", 4 + 2 + 32 + 1 + 6 + 2 + 2),
        ("s2c", "handshake", "ServerHello", 4 + 2 + 32 + 1 + 3 + 2),
        ("s2c", "handshake", "Certificate", 7),
        ("s2c", "handshake", "ServerHelloDone", 4),
        ("c2s", "handshake", "ClientKeyExchange", 37),
        ("c2s", "ccs", "ChangeCipherSpec", 1),
        ("c2s", "handshake", "Finished", 16),  # 40 - 8 explicit nonce - 16 tag
        ("c2s", "app_data", "ApplicationData", 36),
        ("c2s", "encrypted", "EncryptedRecord", 16),  # renegotiation: not the Finished
        ("c2s", "alert", "Alert", 2),
    ]
    # Three messages from one record all end where that record ends.
    assert {m.end_offset for m in messages[1:4]} == {messages[1].end_offset}
    assert conversation.facts.server_flight_bytes == messages[3].end_offset
    assert conversation.facts.resumed is False


def test_a_client_hello_split_over_records_ends_with_the_last_of_them():
    hello = b.client_hello(b.server_name("example.test"), b.alpn("http/1.1"))
    stream = b.record(22, hello[:10]) + b.record(22, hello[10:30]) + b.record(22, hello[30:])
    conversation = TlsConversation()
    messages = [m for i in range(len(stream)) for m in conversation.feed("c2s", stream[i : i + 1])]
    assert [(m.name, m.start_offset, m.end_offset, m.length) for m in messages] == [("ClientHello", 0, len(stream), len(hello))]
    assert conversation.facts.client_hello_bytes == len(stream)
    assert conversation.facts.sni == "example.test"
    assert conversation.facts.alpn_offered == ("http/1.1",)
    assert conversation.facts.early_data == "none"


def test_plain_http_is_garbage_once_and_the_other_direction_goes_on():
    conversation = TlsConversation()
    first = conversation.feed("c2s", b"GET / HTTP/1.1\r\n")
    assert [(m.kind, m.name, m.start_offset, m.end_offset) for m in first] == [("garbage", "NotTls", 0, 16)]
    assert conversation.feed("c2s", b"Host: example.test\r\n\r\n") == []
    assert [m.name for m in conversation.feed("s2c", b.record(22, b.server_hello()))] == ["ServerHello"]


def test_a_malformed_hello_is_still_reported_as_a_message():
    conversation = TlsConversation()
    messages = conversation.feed("c2s", b.record(22, b.handshake(1, b"\x03\x03short")))
    assert [(m.kind, m.name) for m in messages] == [("handshake", "ClientHello")]
    assert conversation.facts.sni is None and conversation.facts.early_data is None


def test_a_direction_is_c2s_or_s2c():
    with pytest.raises(ValueError):
        TlsConversation().feed("up", b"")


def test_the_2017_experiments_are_tls_13_and_their_session_id_echo_no_resumption():
    """0x7e01 (BoringSSL's TLS 1.3 experiment, the trial of draft 22's compatibility mode): the
    ServerHello in TLS 1.2's layout, echoing the session id, with the version in supported_versions."""
    assert version_name(0x7E01) == "1.3-experiment-1"
    conversation = TlsConversation()
    _feed(
        conversation,
        ("c2s", b.record(22, b.client_hello(b.client_versions(0x7E01, 0x0303), session_id=b"\x07" * 32))),
        ("s2c", b.record(22, b.server_hello(b.server_version(0x7E01), session_id=b"\x07" * 32)) + b.record(23, b"\x00" * 40)),
    )
    facts = conversation.facts
    assert (facts.tls_version, facts.resumed, facts.cipher_suite) == ("1.3-experiment-1", False, "TLS_AES_128_GCM_SHA256")
    assert conversation.tls13


def test_facebook_drafts_read_as_tls_13():
    conversation = TlsConversation()
    _feed(
        conversation,
        ("c2s", b.record(22, b.client_hello(b.client_versions(0xFB1A, 0x0304), session_id=b"\x01" * 32))),
        ("s2c", b.record(22, b.server_hello(b.server_version(0xFB1A), b.selected_psk(0), session_id=b"\x01" * 32))),
    )
    assert (conversation.facts.tls_version, conversation.facts.resumed) == ("1.3-fb-draft-26", True)


def test_every_iana_cipher_suite_has_its_name():
    """The whole registry (tools/cipher_suites.py makes it from Wireshark's table): no suite a
    server may choose prints as hex."""
    assert CIPHER_SUITE_NAMES[0x0004] == "TLS_RSA_WITH_RC4_128_MD5"
    assert cipher_suite_name(0x0004) == "TLS_RSA_WITH_RC4_128_MD5"
    assert cipher_suite_name(0xC0B4) == "TLS_SHA256_SHA256" and cipher_suite_name(0x00C6) == "TLS_SM4_GCM_SM3"
    assert cipher_suite_name(0xC03C) == "TLS_RSA_WITH_ARIA_128_CBC_SHA256"
    assert cipher_suite_name(0x0A0A) == "0x0A0A"  # GREASE (RFC 8701) is no suite
    assert cipher_suite_name(0xCC13) == "0xCC13"  # pre-standard ChaCha20, not IANA's
    assert len(CIPHER_SUITE_NAMES) > 340
    assert all(name.startswith("TLS_") for name in CIPHER_SUITE_NAMES.values())
    # The names keep their meaning for what is read off them.
    assert tls12_record_overhead(0xC02F) == 24 and tls12_record_overhead(0xCCA8) == 16
    assert tls12_record_overhead(0xC0AE) == 16 and tls12_record_overhead(0x002F) is None
