from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from hypothesis import given, settings
from hypothesis import strategies as st

from handshake.analysis.tls.keys13 import TLS13_CIPHER_SUITES, TrafficKey, hkdf_expand, hkdf_expand_label, hmac_digest

# RFC 8448 §3 (simple 1-RTT handshake, TLS_AES_128_GCM_SHA256).
SERVER_HANDSHAKE_SECRET = bytes.fromhex("b67b7d690cc16c4e75e54213cb2d37b4e9c912bcded9105d42befd59d391ad38")
CLIENT_HANDSHAKE_SECRET = bytes.fromhex("b3eddb126e067f35a780b3abf45e2d8f3b1a950738f52e9600746a0e27a55a21")


def test_hkdf_expand_label_gives_the_rfc8448_handshake_keys():
    assert hkdf_expand_label(SERVER_HANDSHAKE_SECRET, b"key", b"", 16).hex() == "3fce516009c21727d0f2e4e86ee403bc"
    assert hkdf_expand_label(SERVER_HANDSHAKE_SECRET, b"iv", b"", 12).hex() == "5d313eb2671276ee13000b30"
    assert hkdf_expand_label(CLIENT_HANDSHAKE_SECRET, b"key", b"", 16).hex() == "dbfaa693d1762c5b666af5d950258d01"
    assert hkdf_expand_label(CLIENT_HANDSHAKE_SECRET, b"iv", b"", 12).hex() == "5bd3c71b836e0b76bb73265f"


def _seal(aead, iv: bytes, sequence_number: int, content: bytes, content_type: int, padding: int = 0) -> bytes:
    """Protect one record the way RFC 8446 §5.2 says; returns header + ciphertext."""
    inner = content + bytes([content_type]) + bytes(padding)
    header = b"\x17\x03\x03" + (len(inner) + 16).to_bytes(2, "big")
    nonce = (int.from_bytes(iv, "big") ^ sequence_number).to_bytes(12, "big")
    return header + aead.encrypt(nonce, inner, header)


def test_each_record_uses_the_next_sequence_number_and_padding_is_stripped():
    key = hkdf_expand_label(SERVER_HANDSHAKE_SECRET, b"key", b"", 16)
    iv = hkdf_expand_label(SERVER_HANDSHAKE_SECRET, b"iv", b"", 12)
    aead = AESGCM(key)
    records = [_seal(aead, iv, n, f"record {n}".encode(), 23, padding=n) for n in range(3)]
    traffic_key = TrafficKey(SERVER_HANDSHAKE_SECRET)
    for n, sealed in enumerate(records):
        assert traffic_key.open(sealed[:5], sealed[5:]) == (23, f"record {n}".encode())
    assert traffic_key.suite is TLS13_CIPHER_SUITES[0x1301]
    assert traffic_key.sequence_number == 3


def test_a_record_out_of_sequence_or_under_another_key_does_not_open():
    key = hkdf_expand_label(SERVER_HANDSHAKE_SECRET, b"key", b"", 16)
    iv = hkdf_expand_label(SERVER_HANDSHAKE_SECRET, b"iv", b"", 12)
    sealed = _seal(AESGCM(key), iv, 1, b"second", 23)
    assert TrafficKey(SERVER_HANDSHAKE_SECRET).open(sealed[:5], sealed[5:]) is None
    assert TrafficKey(CLIENT_HANDSHAKE_SECRET).open(sealed[:5], sealed[5:]) is None
    tampered_header = b"\x17\x03\x01" + sealed[3:5]
    assert TrafficKey(SERVER_HANDSHAKE_SECRET).open(tampered_header, sealed[5:]) is None


def test_the_suite_of_an_unnamed_secret_is_found_by_trying_those_of_its_hash_length():
    suite = TLS13_CIPHER_SUITES[0x1303]
    key = hkdf_expand_label(CLIENT_HANDSHAKE_SECRET, b"key", b"", suite.key_bytes)
    iv = hkdf_expand_label(CLIENT_HANDSHAKE_SECRET, b"iv", b"", 12)
    sealed = _seal(ChaCha20Poly1305(key), iv, 0, b"early request", 23)
    traffic_key = TrafficKey(CLIENT_HANDSHAKE_SECRET)
    assert traffic_key.open(sealed[:5], sealed[5:]) == (23, b"early request")
    assert traffic_key.suite is suite
    assert traffic_key.updated().suite is suite


def test_a_fragment_too_short_for_a_tag_does_not_open_under_any_suite():
    for secret in (bytes(32), bytes(48)):
        for length in (0, 1, 15, 16, 17, 2**14 + 256):
            assert TrafficKey(secret).open(b"\x17\x03\x03" + length.to_bytes(2, "big"), bytes(length)) is None


@settings(max_examples=300)
@given(secret=st.binary(min_size=1, max_size=64), info=st.binary(max_size=80), length=st.integers(1, 255 * 32),
       hash_name=st.sampled_from(["sha256", "sha384"]))
def test_hkdf_expand_agrees_with_cryptography(secret, info, length, hash_name):
    """The one-shot-HMAC HKDF-Expand gives what cryptography's HKDFExpand gives (RFC 5869 §2.3)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

    algorithm = hashes.SHA384() if hash_name == "sha384" else hashes.SHA256()
    length = min(length, 255 * algorithm.digest_size)
    assert hkdf_expand(secret, info, length, hash_name) == HKDFExpand(algorithm, length, info).derive(secret)


@settings(max_examples=300)
@given(key=st.binary(max_size=200), message=st.binary(max_size=200), hash_name=st.sampled_from(["sha256", "sha384"]))
def test_hmac_digest_agrees_with_the_stdlib(key, message, hash_name):
    """Keys shorter than, as long as and longer than the hash's block (64 or 128 bytes)."""
    import hmac

    assert hmac_digest(key, message, hash_name) == hmac.digest(key, message, hash_name)
