"""TLS 1.3 record protection: from a logged traffic secret to opened records.

RFC 8446 §7.3: each traffic secret yields ``key = HKDF-Expand-Label(secret, "key", "", key_length)``
and ``iv = HKDF-Expand-Label(secret, "iv", "", iv_length)``. §5.3: the per-record nonce is the iv
XOR the 64-bit record sequence number (left-padded), and every key has its own sequence number,
starting at 0. §5.2: the additional data is the 5-byte record header, and the plaintext is
``content || content_type || zeros``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, TypeAlias

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESCCM, AESGCM, ChaCha20Poly1305

_IV_BYTES: Final = 12
"""RFC 8446 §5.3: iv_length is max(8 bytes, N_MIN) = 12 for every defined suite."""

_Aead: TypeAlias = AESGCM | AESCCM | ChaCha20Poly1305


@dataclass(frozen=True)
class Tls13CipherSuite:
    """One TLS 1.3 cipher suite (RFC 8446 §B.4): an AEAD and the hash of the key schedule."""

    code: int
    name: str
    hash_bytes: int
    """Length of the suite's hash; also the length of every traffic secret it makes."""
    key_bytes: int
    make_aead: Callable[[bytes], _Aead]

    @property
    def hash_name(self) -> str:
        """The key schedule's hash, as hashlib names it."""
        return "sha384" if self.hash_bytes == 48 else "sha256"


TLS13_CIPHER_SUITES: dict[int, Tls13CipherSuite] = {
    suite.code: suite
    for suite in (
        Tls13CipherSuite(0x1301, "TLS_AES_128_GCM_SHA256", 32, 16, AESGCM),
        Tls13CipherSuite(0x1302, "TLS_AES_256_GCM_SHA384", 48, 32, AESGCM),
        Tls13CipherSuite(0x1303, "TLS_CHACHA20_POLY1305_SHA256", 32, 32, ChaCha20Poly1305),
        Tls13CipherSuite(0x1304, "TLS_AES_128_CCM_SHA256", 32, 16, AESCCM),
        Tls13CipherSuite(0x1305, "TLS_AES_128_CCM_8_SHA256", 32, 16, lambda key: AESCCM(key, tag_length=8)),
    )
}


def hkdf_expand_label(secret: bytes, label: bytes, context: bytes, length: int, hash_name: str = "sha256") -> bytes:
    """RFC 8446 §7.1: HKDF-Expand with the ``HkdfLabel`` struct, labels prefixed by "tls13 "."""
    full_label = b"tls13 " + label
    info = length.to_bytes(2, "big") + bytes((len(full_label),)) + full_label + bytes((len(context),)) + context
    return hkdf_expand(secret, info, length, hash_name)


def hkdf_expand(secret: bytes, info: bytes, length: int, hash_name: str = "sha256") -> bytes:
    """RFC 5869 §2.3 HKDF-Expand (``hash_name`` "sha256" or "sha384"). Written out because keys
    are derived for every connection a capture holds: cryptography's HKDFExpand object costs
    several times more."""
    output = b""
    block = b""
    counter = 1
    while len(output) < length:
        block = hmac_digest(secret, block + info + bytes((counter,)), hash_name)
        output += block
        counter += 1
    return output[:length]


_INNER_PAD: Final = bytes(byte ^ 0x36 for byte in range(256))
_OUTER_PAD: Final = bytes(byte ^ 0x5C for byte in range(256))


def hmac_digest(key: bytes, message: bytes, hash_name: str = "sha256") -> bytes:
    """RFC 2104 HMAC over hashlib's SHA-256 or SHA-384 (what ``hmac.digest`` computes: under
    OpenSSL 3 that one looks its MAC up anew on every call, which costs more than the hashing)."""
    new = hashlib.sha384 if hash_name == "sha384" else hashlib.sha256
    block_bytes = 128 if hash_name == "sha384" else 64
    if len(key) > block_bytes:
        key = new(key).digest()
    key = key.ljust(block_bytes, b"\0")
    return new(key.translate(_OUTER_PAD) + new(key.translate(_INNER_PAD) + message).digest()).digest()


def next_traffic_secret(secret: bytes, suite: Tls13CipherSuite) -> bytes:
    """RFC 8446 §7.2: the secret after a KeyUpdate, ``HKDF-Expand-Label(secret, "traffic upd", "", Hash.length)``."""
    return hkdf_expand_label(secret, b"traffic upd", b"", suite.hash_bytes, suite.hash_name)


class _RecordKey:
    """The key and iv one traffic secret yields under one cipher suite."""

    def __init__(self, secret: bytes, suite: Tls13CipherSuite) -> None:
        self.suite = suite
        key = hkdf_expand_label(secret, b"key", b"", suite.key_bytes, suite.hash_name)
        iv = hkdf_expand_label(secret, b"iv", b"", _IV_BYTES, suite.hash_name)
        self._aead = suite.make_aead(key)
        self._iv = int.from_bytes(iv, "big")

    def open(self, sequence_number: int, header: bytes, ciphertext: bytes) -> bytes | None:
        nonce = (self._iv ^ sequence_number).to_bytes(_IV_BYTES, "big")
        try:
            return self._aead.decrypt(nonce, ciphertext, header)
        except (InvalidTag, ValueError, OverflowError):
            return None


class TrafficKey:
    """One side's records under one traffic secret, with that key's own sequence number.

    The suite is not always known when the key is needed: 0-RTT data is protected with the
    suite of the PSK, which the ClientHello does not name, and in a capture the client's early
    records may come before the ServerHello. So the key tries every suite whose hash length
    matches the secret's (the ``preferred`` ones first) until one opens a record, then keeps it.
    """

    def __init__(self, secret: bytes, preferred: Sequence[int] = ()) -> None:
        self.secret = secret
        self.sequence_number = 0
        candidates = [s for s in TLS13_CIPHER_SUITES.values() if s.hash_bytes == len(secret)]
        candidates.sort(key=lambda s: (s.code not in preferred, s.code))
        self._candidates = candidates
        self._keys: dict[int, _RecordKey] = {}
        self.suite: Tls13CipherSuite | None = None
        """The suite that opened a record under this secret; None until one did."""

    def prefer(self, code: int) -> None:
        """Try suite ``code`` first (the ServerHello named it); a no-op once a suite is known."""
        self._candidates.sort(key=lambda s: s.code != code)

    def open(self, header: bytes, ciphertext: bytes) -> tuple[int, bytes] | None:
        """(content type, content) of a protected record, or None when the tag does not verify."""
        for suite in [self.suite] if self.suite else self._candidates:
            key = self._keys.get(suite.code)
            if key is None:
                key = self._keys[suite.code] = _RecordKey(self.secret, suite)
            plaintext = key.open(self.sequence_number, header, ciphertext)
            if plaintext is None:
                continue
            self.suite = suite
            self.sequence_number += 1
            # RFC 8446 §5.2: strip the zero padding; the last non-zero byte is the real type
            # (all zeros is a protocol error: reported as content type 0).
            inner = plaintext.rstrip(b"\0")
            return (inner[-1], inner[:-1]) if inner else (0, b"")
        return None

    def updated(self) -> TrafficKey | None:
        """The key after a KeyUpdate, once the suite is known (RFC 8446 §4.6.3)."""
        if self.suite is None:
            return None
        updated = TrafficKey(next_traffic_secret(self.secret, self.suite), (self.suite.code,))
        updated.suite = self.suite
        return updated
