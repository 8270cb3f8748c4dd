"""TLS 1.2 (and 1.0/1.1) record protection: from a logged master secret to opened records.

An NSS key log's ``CLIENT_RANDOM`` line gives the master secret. RFC 5246 §6.3 expands it with
the PRF into ``key_block = PRF(master_secret, "key expansion", server_random + client_random)``,
cut into the client and server MAC keys, write keys and fixed IVs, in that order. Each direction
numbers its records from 0 after its ChangeCipherSpec (§6.1), and the number is authenticated,
never sent. Record protection (§6.2.3):

- AEAD (§6.2.3.3) with ``additional_data = seq_num + type + version + length``: AES-GCM (RFC 5288 §3)
  and AES-CCM (RFC 6655 §3) take a 4-byte salt from the key block and an 8-byte explicit nonce from
  the record; ChaCha20-Poly1305 (RFC 7905 §2) XORs the 12-byte IV with the sequence number.
- CBC (§6.2.3.2): MAC-then-encrypt with HMAC over ``seq_num + type + version + length + content``,
  then padding; an explicit IV leads each record from TLS 1.1 on (RFC 4346 §6.2.3.2), TLS 1.0 chains
  the last ciphertext block. RFC 7366 encrypt_then_mac, when the ServerHello took it, MACs the
  ciphertext instead.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESCCM, AESGCM, ChaCha20Poly1305

from .keys13 import hmac_digest
from .messages import CIPHER_SUITE_NAMES

TLS10: Final = 0x0301
TLS11: Final = 0x0302
TLS12: Final = 0x0303

_AEAD_TAG_BYTES: Final = 16
_EXPLICIT_NONCE_BYTES: Final = 8
_AES_BLOCK_BYTES: Final = 16
_MAC_BYTES: Final = {"sha1": 20, "sha256": 32, "sha384": 48}


@dataclass(frozen=True)
class Tls12CipherSuite:
    """What record protection a TLS 1.0-1.2 cipher suite uses (RFC 5246 Appendix C)."""

    code: int
    name: str
    cipher: str
    """"gcm", "ccm", "ccm8", "chacha20" (the AEADs) or "cbc" (AES-CBC with an HMAC)."""
    key_bytes: int
    fixed_iv_bytes: int
    """IV bytes the key block gives each side: the AEAD's salt or whole IV, or the CBC block size
    (TLS 1.0's first IV; later versions send theirs and ignore these)."""
    mac: str | None
    """The HMAC's hash for CBC suites ("sha1", "sha256", "sha384"); None for the AEADs."""
    prf_hash: str
    """The TLS 1.2 PRF's hash (RFC 5246 §5: SHA-256 unless the suite names SHA-384)."""

    @property
    def mac_bytes(self) -> int:
        return _MAC_BYTES[self.mac] if self.mac is not None else 0


def _suite_from_name(code: int, name: str) -> Tls12CipherSuite | None:
    """Read the protection off the IANA name ("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"); None for
    suites this module does not open (3DES, TLS 1.3's, the signalling values)."""
    if "_WITH_AES_" not in name and "_WITH_CHACHA20_POLY1305_" not in name:
        return None
    bulk = name.split("_WITH_", 1)[1]
    prf_hash = "sha384" if bulk.endswith("_SHA384") else "sha256"
    if bulk.startswith("CHACHA20_POLY1305"):
        return Tls12CipherSuite(code, name, "chacha20", 32, 12, None, prf_hash)
    key_bytes = 32 if bulk.startswith("AES_256_") else 16
    if "_GCM" in bulk:
        return Tls12CipherSuite(code, name, "gcm", key_bytes, 4, None, prf_hash)
    if bulk.endswith("_CCM_8"):
        return Tls12CipherSuite(code, name, "ccm8", key_bytes, 4, None, prf_hash)
    if bulk.endswith("_CCM"):
        return Tls12CipherSuite(code, name, "ccm", key_bytes, 4, None, prf_hash)
    if "_CBC_" in bulk:
        mac = {"SHA": "sha1", "SHA256": "sha256", "SHA384": "sha384"}.get(bulk.rsplit("_", 1)[1])
        return Tls12CipherSuite(code, name, "cbc", key_bytes, _AES_BLOCK_BYTES, mac, prf_hash) if mac else None
    return None


_SUITES: dict[int, Tls12CipherSuite | None] = {}
"""The suites read so far off their IANA names (read when first met: reading all ~350 at import
cost every `inspect` start some 16M instructions)."""


def tls12_cipher_suite(code: int) -> Tls12CipherSuite | None:
    """The record protection of suite ``code``, or None for one this reader cannot open."""
    if code not in _SUITES:
        name = CIPHER_SUITE_NAMES.get(code)
        _SUITES[code] = None if name is None else _suite_from_name(code, name)
    return _SUITES[code]


def _hmac(key: bytes, message: bytes, hash_name: str) -> bytes:
    if hash_name in ("sha256", "sha384"):
        return hmac_digest(key, message, hash_name)
    return hmac.digest(key, message, hash_name)


def p_hash(secret: bytes, seed: bytes, length: int, hash_name: str) -> bytes:
    """RFC 5246 §5: ``P_hash(secret, seed) = HMAC(secret, A(1) + seed) + HMAC(secret, A(2) + seed) + …``
    with ``A(0) = seed``, ``A(i) = HMAC(secret, A(i-1))``."""
    output = b""
    a = seed
    while len(output) < length:
        a = _hmac(secret, a, hash_name)
        output += _hmac(secret, a + seed, hash_name)
    return output[:length]


def prf(secret: bytes, label: bytes, seed: bytes, length: int, version: int = TLS12, hash_name: str = "sha256") -> bytes:
    """The PRF of ``version``: TLS 1.2's P_<hash> (RFC 5246 §5); TLS 1.0/1.1's P_MD5 XOR P_SHA1
    over the two halves of the secret (RFC 2246 §5, RFC 4346 §5)."""
    if version >= TLS12:
        return p_hash(secret, label + seed, length, hash_name)
    half = (len(secret) + 1) // 2
    md5 = p_hash(secret[:half], label + seed, length, "md5")
    sha1 = p_hash(secret[len(secret) - half:], label + seed, length, "sha1")
    return bytes(x ^ y for x, y in zip(md5, sha1))


class RecordKey12:
    """One direction's record protection under one key block, with its sequence number."""

    def __init__(self, suite: Tls12CipherSuite, version: int, mac_key: bytes, key: bytes, iv: bytes,
                 encrypt_then_mac: bool = False) -> None:
        self.suite = suite
        self.version = version
        self.sequence_number = 0
        self._mac_key = mac_key
        self._key = key
        self._iv = iv
        """AEAD: the salt (GCM, CCM) or the whole IV (ChaCha20). CBC, TLS 1.0: the next record's IV."""
        self._encrypt_then_mac = encrypt_then_mac and suite.cipher == "cbc"
        self._aead: AESGCM | AESCCM | ChaCha20Poly1305 | None = None
        if suite.cipher == "gcm":
            self._aead = AESGCM(key)
        elif suite.cipher in ("ccm", "ccm8"):
            self._aead = AESCCM(key, tag_length=8 if suite.cipher == "ccm8" else 16)
        elif suite.cipher == "chacha20":
            self._aead = ChaCha20Poly1305(key)

    def open(self, content_type: int, fragment: bytes) -> bytes | None:
        """The plaintext of the next record of this direction, or None when it does not verify.
        Every record takes a sequence number, opened or not (the sender used one)."""
        sequence_number = self.sequence_number
        self.sequence_number += 1
        header = sequence_number.to_bytes(8, "big") + bytes((content_type,)) + self.version.to_bytes(2, "big")
        try:
            if self._aead is not None:
                return self._open_aead(sequence_number, header, fragment)
            return self._open_cbc(header, fragment)
        except (InvalidTag, ValueError, OverflowError):
            return None

    def _open_aead(self, sequence_number: int, header: bytes, fragment: bytes) -> bytes | None:
        aead = self._aead
        assert aead is not None
        tag_bytes = 8 if self.suite.cipher == "ccm8" else _AEAD_TAG_BYTES
        if self.suite.cipher == "chacha20":
            nonce = (int.from_bytes(self._iv, "big") ^ sequence_number).to_bytes(12, "big")
            ciphertext = fragment
        else:
            nonce = self._iv + fragment[:_EXPLICIT_NONCE_BYTES]
            ciphertext = fragment[_EXPLICIT_NONCE_BYTES:]
        length = len(ciphertext) - tag_bytes
        if length < 0:
            return None
        return aead.decrypt(nonce, ciphertext, header + length.to_bytes(2, "big"))

    def _open_cbc(self, header: bytes, fragment: bytes) -> bytes | None:
        mac_bytes = self.suite.mac_bytes
        mac_name = self.suite.mac or "sha1"
        if self._encrypt_then_mac:
            # RFC 7366 §3: the MAC covers the IV and ciphertext, and follows them.
            protected, mac = fragment[:-mac_bytes], fragment[-mac_bytes:]
            if len(protected) < _AES_BLOCK_BYTES or len(protected) % _AES_BLOCK_BYTES:
                return None
            expected = _hmac(self._mac_key, header + len(protected).to_bytes(2, "big") + protected, mac_name)
            if not hmac.compare_digest(expected, mac):
                return None
            padded = self._decrypt_cbc(protected)
            return _unpad(padded) if padded is not None else None
        if len(fragment) < _AES_BLOCK_BYTES or len(fragment) % _AES_BLOCK_BYTES:
            return None
        padded = self._decrypt_cbc(fragment)
        content = _unpad(padded) if padded is not None else None
        if content is None or len(content) < mac_bytes:
            return None
        data, mac = content[:len(content) - mac_bytes], content[len(content) - mac_bytes:]
        expected = _hmac(self._mac_key, header + len(data).to_bytes(2, "big") + data, mac_name)
        return data if hmac.compare_digest(expected, mac) else None

    def _decrypt_cbc(self, protected: bytes) -> bytes | None:
        if self.version >= TLS11:
            iv, ciphertext = protected[:_AES_BLOCK_BYTES], protected[_AES_BLOCK_BYTES:]
        else:
            iv, ciphertext = self._iv, protected
            self._iv = protected[-_AES_BLOCK_BYTES:]  # RFC 2246 §6.2.3.2: the chained IV
        if not ciphertext:
            return None
        decryptor = Cipher(algorithms.AES(self._key), modes.CBC(iv)).decryptor()
        return decryptor.update(ciphertext) + decryptor.finalize()


def _unpad(padded: bytes) -> bytes | None:
    """RFC 5246 §6.2.3.2: ``padding_length`` copies of the value ``padding_length``, then that
    byte; None when the padding is not that."""
    padding = padded[-1]
    if padding + 1 > len(padded) or padded[len(padded) - padding - 1:] != bytes((padding,)) * (padding + 1):
        return None
    return padded[:len(padded) - padding - 1]


@dataclass(frozen=True)
class KeyBlock12:
    """Both directions' record protection for one connection."""

    client: RecordKey12
    server: RecordKey12


def key_block(master_secret: bytes, client_random: bytes, server_random: bytes, cipher_suite: int, version: int,
              encrypt_then_mac: bool = False) -> KeyBlock12 | None:
    """RFC 5246 §6.3: both sides' record keys; None for a suite or version this module does not
    open (SSL 3.0, 3DES, anything unnamed)."""
    suite = tls12_cipher_suite(cipher_suite)
    if suite is None or not TLS10 <= version <= TLS12 or len(master_secret) != 48:
        return None
    if version < TLS12 and suite.cipher != "cbc":
        return None  # AEAD suites are TLS 1.2 only (RFC 5288 §4, RFC 7905 §2)
    mac, key, iv = suite.mac_bytes, suite.key_bytes, suite.fixed_iv_bytes
    block = prf(master_secret, b"key expansion", server_random + client_random, 2 * (mac + key + iv), version,
                suite.prf_hash)
    cuts = [0]
    for size in (mac, mac, key, key, iv, iv):
        cuts.append(cuts[-1] + size)
    part = [block[cuts[i]:cuts[i + 1]] for i in range(6)]
    return KeyBlock12(
        client=RecordKey12(suite, version, part[0], part[2], part[4], encrypt_then_mac),
        server=RecordKey12(suite, version, part[1], part[3], part[5], encrypt_then_mac),
    )

