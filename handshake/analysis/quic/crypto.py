"""QUIC packet protection (RFC 9001 §5): from a secret to opened packets.

- Initial packets are protected with keys anyone can compute: HKDF-Extract of the client's first
  Destination Connection ID under a per-version salt, then "client in" / "server in" (§5.2).
  After a Retry the client's new DCID (the Retry's SCID) makes the keys instead.
- Handshake, 0-RTT and 1-RTT keys come from the TLS traffic secrets, which a capture holds only
  through a key log. QUIC logs them under the same NSS labels as TLS over TCP.
- Every secret yields key, iv and hp with HKDF-Expand-Label "quic key", "quic iv", "quic hp"
  ("quicv2 …" in QUIC v2, RFC 9369 §3.3.2); the AEAD nonce is iv XOR the packet number (§5.3).
- Header protection (§5.4) masks the low bits of the first byte and the packet number with
  AES-ECB (or ChaCha20) of a 16-byte sample taken 4 bytes after the packet number starts; the
  unmasked header (with the truncated packet number) is the AEAD's additional data.
- A 1-RTT key update (§6) derives the next secret with "quic ku"; the hp key never changes.

Nothing here raises on bad input: a packet that does not open yields None.
"""

from __future__ import annotations

import functools
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .packets import VERSION_2, QuicPacket
from ..tls.keys13 import TLS13_CIPHER_SUITES, Tls13CipherSuite, hkdf_expand_label, hmac_digest

INITIAL_SALTS: Final = {
    0x00000001: bytes.fromhex("38762cf7f55934b34d179ae6a4c80cadccbb7f0a"),  # RFC 9001 §5.2
    VERSION_2: bytes.fromhex("0dede3def700a6db819381be6e269dcbf9bd2ed9"),  # RFC 9369 §3.3.1
}
_RETRY_KEYS: Final = {
    0x00000001: (bytes.fromhex("be0c690b9f66575a1d766b54e368c84e"), bytes.fromhex("461599d35d632bf2239825bb")),
    VERSION_2: (bytes.fromhex("8fb4b01b56ac48e260fbcbcead7ccc92"), bytes.fromhex("d86969bc2d7c6d9990efb04a")),
}
INITIAL_SUITE: Final = 0x1301
"""RFC 9001 §5.2: Initial packets use AEAD_AES_128_GCM with SHA-256."""
QUIC_SUITES: Final = (0x1301, 0x1302, 0x1303, 0x1304)
"""RFC 9001 §5.3: TLS_AES_128_CCM_8_SHA256 is not used in QUIC (its tag is too short)."""
SAMPLE_BYTES: Final = 16
_IV_BYTES: Final = 12
_PN_MAX_BYTES: Final = 4


def _label(version: int | None, name: bytes) -> bytes:
    return (b"quicv2 " if version == VERSION_2 else b"quic ") + name


@functools.lru_cache(maxsize=1024)
def initial_secrets(dcid: bytes, version: int) -> tuple[bytes, bytes]:
    """(client, server) Initial secrets for a client's first DCID (RFC 9001 §5.2). Cached: the
    flow tracker tries the client's first Initial with them, then the connection's analyzer
    opens its Initial packets."""
    salt = INITIAL_SALTS.get(version, INITIAL_SALTS[0x00000001])
    initial_secret = hmac_digest(salt, bytes(dcid))  # HKDF-Extract
    return (
        hkdf_expand_label(initial_secret, b"client in", b"", 32),
        hkdf_expand_label(initial_secret, b"server in", b"", 32),
    )


def retry_tag_valid(packet: QuicPacket, original_dcid: bytes) -> bool:
    """RFC 9001 §5.8: the Retry's tag is AES-128-GCM over the client's original DCID and the
    Retry itself, under a key fixed by the version; a client discards a Retry it fails."""
    keys = _RETRY_KEYS.get(packet.version or 0)
    if keys is None or packet.packet_type != "retry" or len(packet.retry_tag) != 16:
        return False
    key, nonce = keys
    pseudo_packet = bytes([len(original_dcid)]) + original_dcid + packet.data[: -len(packet.retry_tag)]
    return hmac.compare_digest(AESGCM(key).encrypt(nonce, b"", pseudo_packet), packet.retry_tag)


def decode_packet_number(truncated: int, pn_bits: int, largest: int) -> int:
    """RFC 9000 §A.3: the full packet number closest to one past the largest one seen."""
    expected = largest + 1
    window = 1 << pn_bits
    half = window // 2
    candidate = (expected & ~(window - 1)) | truncated
    if candidate <= expected - half and candidate < (1 << 62) - window:
        return candidate + window
    if candidate > expected + half and candidate >= window:
        return candidate - window
    return candidate


class PacketKey:
    """key, iv and hp from one secret under one cipher suite (RFC 9001 §5.1)."""

    def __init__(self, secret: bytes, suite: Tls13CipherSuite, version: int | None, hp: bytes | None = None) -> None:
        self.secret = secret
        self.suite = suite
        self.version = version
        hash_name = suite.hash_name
        self.key = hkdf_expand_label(secret, _label(version, b"key"), b"", suite.key_bytes, hash_name)
        self.iv = hkdf_expand_label(secret, _label(version, b"iv"), b"", _IV_BYTES, hash_name)
        if hp is None:
            hp = hkdf_expand_label(secret, _label(version, b"hp"), b"", suite.key_bytes, hash_name)
        self.hp = hp
        self._aead = suite.make_aead(self.key)
        self._iv = int.from_bytes(self.iv, "big")
        self._ecb = None if suite.code == 0x1303 else Cipher(algorithms.AES(self.hp), modes.ECB()).encryptor()

    def header_mask(self, sample: bytes) -> bytes:
        """RFC 9001 §5.4.3 (AES) and §5.4.4 (ChaCha20: the sample is counter || nonce)."""
        if self._ecb is not None:
            return self._ecb.update(sample)[:5]
        return Cipher(algorithms.ChaCha20(self.hp, sample), mode=None).encryptor().update(b"\0" * 5)

    def open(self, packet_number: int, header: bytes, ciphertext: bytes) -> bytes | None:
        nonce = (self._iv ^ packet_number).to_bytes(_IV_BYTES, "big")
        try:
            return self._aead.decrypt(nonce, ciphertext, header)
        except (InvalidTag, ValueError, OverflowError):
            return None

    def seal(self, packet_number: int, header: bytes, plaintext: bytes) -> bytes:
        nonce = (self._iv ^ packet_number).to_bytes(_IV_BYTES, "big")
        return self._aead.encrypt(nonce, plaintext, header)

    def updated(self) -> PacketKey:
        """RFC 9001 §6.1: the next key phase; header protection keeps its key."""
        secret = hkdf_expand_label(self.secret, _label(self.version, b"ku"), b"", self.suite.hash_bytes,
                                   self.suite.hash_name)
        return PacketKey(secret, self.suite, self.version, hp=self.hp)


@functools.lru_cache(maxsize=256)
def _packet_key(secret: bytes, suite: Tls13CipherSuite, version: int | None) -> PacketKey:
    """A secret's first-generation key, made once: the flow tracker opens a client's first
    Initial to recognise it, and the connection's analyzer opens it again. (A key keeps no state
    between packets.)"""
    return PacketKey(secret, suite, version)


# Made once per packet: its __init__ is written out, as TcpSegment's is (handshake.trace.packet).
@dataclass(slots=True, unsafe_hash=True, init=False)
class OpenedPacket:
    packet_number: int
    header: bytes
    """The header with protection removed, truncated packet number included (the AEAD's AD)."""
    payload: bytes
    """The plaintext frames."""
    key_phase: int | None
    """1-RTT only: the Key Phase bit (RFC 9001 §6)."""

    def __init__(self, packet_number: int, header: bytes, payload: bytes, key_phase: int | None) -> None:
        self.packet_number = packet_number
        self.header = header
        self.payload = payload
        self.key_phase = key_phase


def remove_header_protection(packet: QuicPacket, key: PacketKey) -> tuple[int, int, int] | None:
    """(first byte, packet number length, truncated packet number), or None if too short."""
    data, pn_offset = packet.data, packet.pn_offset
    if pn_offset is None or len(data) < pn_offset + _PN_MAX_BYTES + SAMPLE_BYTES:
        return None
    mask = key.header_mask(data[pn_offset + _PN_MAX_BYTES : pn_offset + _PN_MAX_BYTES + SAMPLE_BYTES])
    first = data[0] ^ (mask[0] & (0x0F if packet.is_long_header else 0x1F))
    pn_length = (first & 0x03) + 1
    truncated = 0
    for i in range(pn_length):
        truncated = (truncated << 8) | (data[pn_offset + i] ^ mask[1 + i])
    return first, pn_length, truncated


class PacketProtection:
    """One direction's packets of one packet number space under one secret.

    The cipher suite is not always known when a packet needs opening: 0-RTT packets (and, in
    a capture, anything before the ServerHello was read) use the suite of the PSK, which the
    ClientHello does not name. So, like ``tls.keys13.TrafficKey``, the suites whose hash length
    fits the secret are tried in turn until one opens a packet, and that one is kept.
    """

    def __init__(self, secret: bytes, version: int | None, suites: Sequence[int] = QUIC_SUITES, *,
                 key_updates: bool = False) -> None:
        self.secret = bytes(secret)
        self.version = version
        self._candidates = [TLS13_CIPHER_SUITES[code] for code in suites
                            if code in TLS13_CIPHER_SUITES and TLS13_CIPHER_SUITES[code].hash_bytes == len(secret)]
        self._keys: dict[int, list[PacketKey]] = {}
        """Per suite: key phase generations 0, 1, 2, ..."""
        self._key_updates = key_updates
        self.suite: Tls13CipherSuite | None = None
        self.generation = 0

    def prefer(self, code: int) -> None:
        """Try suite ``code`` first (the ServerHello named it)."""
        self._candidates.sort(key=lambda suite: suite.code != code)

    @property
    def key(self) -> PacketKey | None:
        """The key of the current generation, once a packet has shown the suite."""
        return None if self.suite is None else self._generation(self.suite, self.generation)

    def _generation(self, suite: Tls13CipherSuite, index: int) -> PacketKey | None:
        keys = self._keys.get(suite.code)
        if keys is None:
            keys = self._keys[suite.code] = [_packet_key(self.secret, suite, self.version)]
        if index < 0 or index > len(keys):
            return None
        if index == len(keys):
            keys.append(keys[-1].updated())
        return keys[index]

    def open(self, packet: QuicPacket, largest_pn: int) -> OpenedPacket | None:
        """The packet's number and plaintext, or None when no key opens it."""
        for suite in [self.suite] if self.suite is not None else list(self._candidates):
            base = self._generation(suite, 0)
            assert base is not None
            unmasked = remove_header_protection(packet, base)
            if unmasked is None:
                return None
            first, pn_length, truncated = unmasked
            number = decode_packet_number(truncated, pn_length * 8, largest_pn)
            pn_offset = packet.pn_offset
            assert pn_offset is not None
            header = bytes([first]) + packet.data[1:pn_offset] + truncated.to_bytes(pn_length, "big")
            ciphertext = packet.data[pn_offset + pn_length :]
            key_phase = None if packet.is_long_header else (first >> 2) & 1
            generations = [self.generation]
            if self._key_updates and key_phase is not None:
                # The phase bit flips at each update: a packet whose bit differs from the current
                # generation's is of the next generation (or, reordered, the previous one).
                if key_phase != self.generation & 1:
                    generations = [self.generation + 1, self.generation - 1]
            for generation in generations:
                key = self._generation(suite, generation)
                if key is None:
                    continue
                payload = key.open(number, header, ciphertext)
                if payload is None:
                    continue
                self.suite = suite
                self.generation = max(self.generation, generation)
                return OpenedPacket(number, header, payload, key_phase)
        return None


def initial_protections(dcid: bytes, version: int) -> tuple[PacketProtection, PacketProtection]:
    """(client's, server's) Initial packet protection for a client's first DCID."""
    client_secret, server_secret = initial_secrets(dcid, version)
    return (
        PacketProtection(client_secret, version, (INITIAL_SUITE,)),
        PacketProtection(server_secret, version, (INITIAL_SUITE,)),
    )


def protect(packet_key: PacketKey, header: bytes, pn_length: int, packet_number: int, payload: bytes) -> bytes:
    """The inverse of ``PacketProtection.open`` (for building test packets): ``header`` ends with
    the ``pn_length``-byte truncated packet number; the result is the packet on the wire."""
    sealed = packet_key.seal(packet_number, header, payload)
    pn_offset = len(header) - pn_length
    sample_start = _PN_MAX_BYTES - pn_length
    mask = packet_key.header_mask(sealed[sample_start : sample_start + SAMPLE_BYTES])
    long_header = bool(header[0] & 0x80)
    first = header[0] ^ (mask[0] & (0x0F if long_header else 0x1F))
    pn = bytes(b ^ m for b, m in zip(header[pn_offset:], mask[1:]))
    return bytes([first]) + header[1:pn_offset] + pn + sealed
