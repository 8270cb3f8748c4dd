"""TLS 1.0-1.2 record decryption from the key log's master secret, on conversations OpenSSL made.

The PRF is checked against OpenSSL's own TLS1-PRF (``openssl kdf``); the record keys by opening
every record of real handshakes, suite by suite, and getting back exactly the bytes each side
wrote. tshark checks the same decryption independently in tests/analysis/http/test_h2_captures.py.
"""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess

import pytest

from handshake.analysis.keylog import parse_keylog
from handshake.analysis.tls.conversation import TlsConversation
from handshake.analysis.tls.keys12 import TLS10, TLS11, TLS12, key_block, prf, tls12_cipher_suite
from handshake.analysis.tls.messages import CIPHER_SUITE_NAMES, HandshakeReassembler, parse_server_hello
from handshake.analysis.tls.records import RecordReader

from .exchange import REQUEST, RESPONSE, make_contexts, run_exchange, write_self_signed_certificate

OP_NO_ENCRYPT_THEN_MAC = 0x00080000
"""OpenSSL's SSL_OP_NO_ENCRYPT_THEN_MAC (the ssl module has no name for it)."""

# OpenSSL name -> IANA code of the suites the key block must open (ECDSA certificate).
SUITES = {
    "ECDHE-ECDSA-AES128-GCM-SHA256": 0xC02B,
    "ECDHE-ECDSA-AES256-GCM-SHA384": 0xC02C,
    "ECDHE-ECDSA-CHACHA20-POLY1305": 0xCCA9,
    "ECDHE-ECDSA-AES128-SHA": 0xC009,
    "ECDHE-ECDSA-AES256-SHA": 0xC00A,
    "ECDHE-ECDSA-AES128-SHA256": 0xC023,
    "ECDHE-ECDSA-AES256-SHA384": 0xC024,
    "ECDHE-ECDSA-AES128-CCM": 0xC0AC,
    "ECDHE-ECDSA-AES128-CCM8": 0xC0AE,
}


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    return write_self_signed_certificate(tmp_path_factory.mktemp("keys12"))


def exchange_with(certificate, tmp_path, version, cipher, encrypt_then_mac=True):
    keylog_file = tmp_path / "keys.log"
    client, server = make_contexts(*certificate, keylog_file, version)
    for context in (client, server):
        context.set_ciphers(f"{cipher}:@SECLEVEL=0")  # level 0: TLS 1.0/1.1 (and SHA-1 MACs) allowed
    if not encrypt_then_mac:
        server.options |= OP_NO_ENCRYPT_THEN_MAC
    exchange = run_exchange(client, server)
    return exchange, parse_keylog(keylog_file.read_text())


def decrypted(exchange, keylog):
    conversation = TlsConversation(keylog)
    messages = [m for direction, data in exchange.chunks for m in conversation.feed(direction, data)]
    return conversation, messages


def plaintext(messages, direction):
    return b"".join(m.plaintext for m in messages if m.direction == direction and m.kind == "app_data")


def server_hello(exchange):
    records, _ = RecordReader().feed(exchange.stream("s2c"))
    reassembler = HandshakeReassembler()
    for record in records:
        for message in reassembler.push(record.fragment, record.start_offset, record.end_offset):
            if message.msg_type == 2:
                return parse_server_hello(message.body)
    raise AssertionError("no ServerHello")


@pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl command is not installed")
@pytest.mark.parametrize("version, digest", [(TLS12, "SHA256"), (TLS12, "SHA384"), (TLS11, "MD5-SHA1"),
                                             (TLS10, "MD5-SHA1")])
def test_the_prf_is_openssls_tls1_prf(version, digest):
    secret, seed = os.urandom(48), os.urandom(64)
    command = ["openssl", "kdf", "-keylen", "104", "-kdfopt", f"digest:{digest}", "-kdfopt", f"hexsecret:{secret.hex()}",
               "-kdfopt", f"hexseed:{(b'key expansion' + seed).hex()}", "TLS1-PRF"]
    expected = bytes.fromhex(subprocess.run(command, capture_output=True, text=True, check=True).stdout
                             .strip().replace(":", ""))
    assert prf(secret, b"key expansion", seed, 104, version, digest.lower()) == expected


def test_the_rfc_5246_prf_test_vector():
    # The TLS 1.2 PRF (SHA-256) vector circulated with RFC 5246 (IETF TLS WG list, 2009).
    output = prf(bytes.fromhex("9bbe436ba940f017b17652849a71db35"), b"test label",
                 bytes.fromhex("a0ba9f936cda311827a6f796ffd5198c"), 16)
    assert output == bytes.fromhex("e3f229ba727be17b8d122620557cd453")


@pytest.mark.parametrize("cipher", list(SUITES))
def test_tls12_records_open_to_what_each_side_wrote(certificate, tmp_path, cipher):
    exchange, keylog = exchange_with(certificate, tmp_path, ssl.TLSVersion.TLSv1_2, cipher)
    assert exchange.cipher == cipher
    conversation, messages = decrypted(exchange, keylog)
    assert conversation.facts.cipher_suite == CIPHER_SUITE_NAMES[SUITES[cipher]]
    assert plaintext(messages, "c2s") == REQUEST
    assert plaintext(messages, "s2c") == RESPONSE
    # Both Finished opened and read as Finished (12 bytes of verify_data, RFC 5246 §7.4.9).
    finished = [m for m in messages if m.name == "Finished"]
    assert [(m.direction, m.length) for m in finished] == [("c2s", 16), ("s2c", 16)]
    alerts = [m for m in messages if m.kind == "alert"]
    assert alerts and all(m.length == 2 for m in alerts)  # close_notify, opened: level + description


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
@pytest.mark.parametrize("encrypt_then_mac", [True, False], ids=["encrypt_then_mac", "mac_then_encrypt"])
@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_1, ssl.TLSVersion.TLSv1],
                         ids=["1.2", "1.1", "1.0"])
def test_cbc_in_every_version_with_and_without_encrypt_then_mac(certificate, tmp_path, version, encrypt_then_mac):
    exchange, keylog = exchange_with(certificate, tmp_path, version, "ECDHE-ECDSA-AES256-SHA", encrypt_then_mac)
    assert server_hello(exchange).encrypt_then_mac is encrypt_then_mac
    _, messages = decrypted(exchange, keylog)
    assert plaintext(messages, "c2s") == REQUEST
    assert plaintext(messages, "s2c") == RESPONSE
    if version == ssl.TLSVersion.TLSv1:
        # RFC 2246's chained IVs: OpenSSL splits each write 1/n-1 (CVE-2011-3389), or sends an
        # empty record first; either way more records than writes, every one opened.
        assert len([m for m in messages if m.kind == "app_data" and m.direction == "s2c"]) >= 2


def test_another_connections_master_secret_opens_nothing_and_changes_nothing(certificate, tmp_path):
    exchange, keylog = exchange_with(certificate, tmp_path, ssl.TLSVersion.TLSv1_2, "ECDHE-ECDSA-AES128-GCM-SHA256")
    client_random = exchange.stream("c2s")[11:43]
    wrong = parse_keylog(f"CLIENT_RANDOM {client_random.hex()} {os.urandom(48).hex()}\n")
    conversation, messages = decrypted(exchange, wrong)
    assert conversation.facts.keys_found
    assert not any(m.plaintext is not None for m in messages)
    _, keyless = decrypted(exchange, None)
    assert [(m.kind, m.name, m.length) for m in messages] == [(m.kind, m.name, m.length) for m in keyless]


def test_a_tampered_record_after_the_finished_is_reported_encrypted(certificate, tmp_path):
    exchange, keylog = exchange_with(certificate, tmp_path, ssl.TLSVersion.TLSv1_2, "ECDHE-ECDSA-CHACHA20-POLY1305")
    _, clean = decrypted(exchange, keylog)
    response = next(m for m in clean if m.direction == "s2c" and m.kind == "app_data")
    # Flip a ciphertext bit of the response record (its stream offset is the record's start).
    chunks, offset = [], 0
    for direction, data in exchange.chunks:
        if direction == "s2c" and offset <= response.start_offset + 10 < offset + len(data):
            at = response.start_offset + 10 - offset
            data = data[:at] + bytes((data[at] ^ 1,)) + data[at + 1:]
        if direction == "s2c":
            offset += len(data)
        chunks.append((direction, data))
    exchange.chunks = chunks
    _, messages = decrypted(exchange, keylog)
    tampered = next(m for m in messages if m.start_offset == response.start_offset and m.direction == "s2c")
    assert tampered.kind == "encrypted" and tampered.plaintext is None
    # The next record still opens: every record took its sequence number.
    assert messages[-1].kind == "alert" and messages[-1].length == 2


def test_suites_the_key_block_knows_and_those_it_refuses():
    known = [suite for suite in map(tls12_cipher_suite, CIPHER_SUITE_NAMES) if suite is not None]
    assert {"gcm", "ccm", "ccm8", "chacha20", "cbc"} == {s.cipher for s in known}
    gcm384, cbc_sha = tls12_cipher_suite(0xC030), tls12_cipher_suite(0xC013)
    assert gcm384 is not None and gcm384.prf_hash == "sha384" and gcm384.key_bytes == 32
    assert cbc_sha is not None and cbc_sha.mac == "sha1" and cbc_sha.prf_hash == "sha256"
    assert tls12_cipher_suite(0xFFFF) is None
    secret, random = bytes(48), bytes(32)
    assert key_block(secret, random, random, 0x000A, TLS12) is None  # 3DES
    assert key_block(secret, random, random, 0x1301, TLS12) is None  # a TLS 1.3 suite
    assert key_block(secret, random, random, 0xC02F, TLS11) is None  # GCM before TLS 1.2
    assert key_block(secret, random, random, 0xC013, 0x0300) is None  # SSL 3.0
    assert key_block(secret[:47], random, random, 0xC02F, TLS12) is None
    assert key_block(secret, random, random, 0xC02F, TLS12) is not None
