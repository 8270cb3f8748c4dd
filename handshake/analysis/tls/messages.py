"""TLS handshake messages: reassembly from records, and the hello fields the analysis needs.

RFC 8446 §5.1: handshake messages may be coalesced into one record or fragmented across
several, but must not span a key change; so each key epoch has its own reassembly buffer.
Parsers here are strict about lengths and raise ``DecodeError`` on a malformed body; the
conversation catches it, so a bad message never stops the analysis.
"""

from __future__ import annotations

import builtins
import hashlib
from dataclasses import dataclass
from typing import Final

from handshake.trace.integers import u16, uint

from .cipher_suites import CIPHER_SUITE_NAMES

HELLO_REQUEST: Final = 0
CLIENT_HELLO: Final = 1
SERVER_HELLO: Final = 2
DRAFT_HELLO_RETRY_REQUEST: Final = 6
"""TLS 1.3 drafts before 22 (draft-ietf-tls-tls13-21 §4.1.4): a message of its own, later a ServerHello."""
NEW_SESSION_TICKET: Final = 4
END_OF_EARLY_DATA: Final = 5
ENCRYPTED_EXTENSIONS: Final = 8
CERTIFICATE: Final = 11
SERVER_KEY_EXCHANGE: Final = 12
CERTIFICATE_REQUEST: Final = 13
SERVER_HELLO_DONE: Final = 14
CERTIFICATE_VERIFY: Final = 15
CLIENT_KEY_EXCHANGE: Final = 16
FINISHED: Final = 20
CERTIFICATE_STATUS: Final = 22
KEY_UPDATE: Final = 24
COMPRESSED_CERTIFICATE: Final = 25

HANDSHAKE_NAMES: Final = {
    HELLO_REQUEST: "HelloRequest",
    CLIENT_HELLO: "ClientHello",
    SERVER_HELLO: "ServerHello",
    DRAFT_HELLO_RETRY_REQUEST: "HelloRetryRequest",
    NEW_SESSION_TICKET: "NewSessionTicket",
    END_OF_EARLY_DATA: "EndOfEarlyData",
    ENCRYPTED_EXTENSIONS: "EncryptedExtensions",
    CERTIFICATE: "Certificate",
    SERVER_KEY_EXCHANGE: "ServerKeyExchange",
    CERTIFICATE_REQUEST: "CertificateRequest",
    SERVER_HELLO_DONE: "ServerHelloDone",
    CERTIFICATE_VERIFY: "CertificateVerify",
    CLIENT_KEY_EXCHANGE: "ClientKeyExchange",
    FINISHED: "Finished",
    CERTIFICATE_STATUS: "CertificateStatus",
    KEY_UPDATE: "KeyUpdate",
    COMPRESSED_CERTIFICATE: "CompressedCertificate",
}

EXT_SERVER_NAME: Final = 0
EXT_ALPN: Final = 16
EXT_ENCRYPT_THEN_MAC: Final = 22
EXT_PRE_SHARED_KEY: Final = 41
EXT_EARLY_DATA: Final = 42
EXT_SUPPORTED_VERSIONS: Final = 43

HELLO_RETRY_REQUEST_RANDOM: Final = hashlib.sha256(b"HelloRetryRequest").digest()
"""RFC 8446 §4.1.3: a HelloRetryRequest is a ServerHello with this random."""

TLS13: Final = 0x0304
VERSION_NAMES: Final = {TLS13: "1.3", 0x0303: "1.2", 0x0302: "1.1", 0x0301: "1.0", 0x0300: "ssl3"}
_DRAFT: Final = 0x7F
"""0x7fNN is TLS 1.3 draft NN (draft-ietf-tls-tls13 §4.2.1 of each draft, e.g. 0x7f17 = draft 23)."""
_EXPERIMENT: Final = 0x7E
"""0x7eNN: the TLS 1.3 experiments Chrome and Cloudflare ran in 2017 (BoringSSL's
TLS1_3_EXPERIMENT_VERSION 0x7e01 and its successors): a draft with the ServerHello in TLS 1.2's
layout and its version in supported_versions, the trial that became draft 22's middlebox
compatibility mode."""
_FACEBOOK_DRAFT: Final = 0xFB
"""0xfbNN: Facebook's experimental variant of draft NN (fizz; Wireshark names 0xfb17 and 0xfb1a)."""


def version_name(version: int) -> str | None:
    """"1.3", "1.2"…, or a TLS 1.3 draft as what it is: "1.3-draft-23", "1.3-fb-draft-26",
    "1.3-experiment-1"; None
    for a code no TLS version has (a ServerHello that chose one is broken)."""
    name = VERSION_NAMES.get(version)
    if name is not None:
        return name
    if version >> 8 == _DRAFT:
        return f"1.3-draft-{version & 0xFF}"
    if version >> 8 == _FACEBOOK_DRAFT:
        return f"1.3-fb-draft-{version & 0xFF}"
    if version >> 8 == _EXPERIMENT:
        return f"1.3-experiment-{version & 0xFF}"
    return None


def is_tls13(version: int) -> bool:
    """TLS 1.3 or one of its drafts: the handshake is encrypted after the ServerHello, and only
    pre_shared_key, never a session id echo, means resumption (RFC 8446 §4.1.3, §D.4)."""
    return version == TLS13 or version >> 8 in (_DRAFT, _FACEBOOK_DRAFT, _EXPERIMENT)


def cipher_suite_name(code: int) -> str:
    """The IANA name of a cipher suite (the whole registry: cipher_suites.py), or its hex code for
    a code IANA has not assigned (GREASE, private use)."""
    return CIPHER_SUITE_NAMES.get(code, f"0x{code:04X}")


def tls12_record_overhead(code: int) -> int | None:
    """Bytes a TLS 1.2 AEAD record adds to its plaintext, or None for CBC (padding hides it).

    RFC 5288 §3 (GCM) and RFC 6655 §3 (CCM): 8-byte explicit nonce + tag (16, or 8 for CCM_8);
    RFC 7905 §2 (ChaCha20-Poly1305): no explicit nonce, 16-byte tag.
    """
    name = CIPHER_SUITE_NAMES.get(code, "")
    if "CHACHA20_POLY1305" in name:
        return 16
    if name.endswith("_CCM_8"):
        return 16
    if "_GCM_" in name or name.endswith("_CCM"):
        return 24
    return None


class DecodeError(ValueError):
    """A handshake message body is shorter or longer than its own length fields say."""


class _Reader:
    """Length-checked reads from a message body (RFC 8446 §3: vectors with length prefixes)."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._position = 0

    def bytes(self, count: int) -> bytes:
        if self._position + count > len(self._data):
            raise DecodeError("message shorter than its fields")
        chunk = self._data[self._position : self._position + count]
        self._position += count
        return chunk

    def skip(self, count: int) -> None:
        if self._position + count > len(self._data):
            raise DecodeError("message shorter than its fields")
        self._position += count

    def uint(self, width: int) -> int:
        end = self._position + width
        if end > len(self._data):
            raise DecodeError("message shorter than its fields")
        value = uint(self._data, self._position, end)
        self._position = end
        return value

    def vector(self, length_width: int) -> builtins.bytes:
        return self.bytes(self.uint(length_width))

    @property
    def done(self) -> bool:
        return self._position == len(self._data)


_READ_EXTENSIONS: Final = frozenset((EXT_SERVER_NAME, EXT_ALPN, EXT_ENCRYPT_THEN_MAC, EXT_PRE_SHARED_KEY,
                                     EXT_EARLY_DATA, EXT_SUPPORTED_VERSIONS))
"""The extensions any fact comes from; the others (a ClientHello has a dozen) are stepped over."""


def _extensions(reader: _Reader) -> dict[int, bytes]:
    """RFC 8446 §4.2 extension list (the first of each kind we read); absent entirely in some
    TLS 1.2 hellos (RFC 5246 §7.4.1.2)."""
    if reader.done:
        return {}
    found: dict[int, bytes] = {}
    block = _Reader(reader.vector(2))
    while not block.done:
        kind = block.uint(2)
        length = block.uint(2)
        if kind in _READ_EXTENSIONS and kind not in found:
            found[kind] = block.bytes(length)
        else:
            block.skip(length)
    return found


def _uint16s(data: bytes) -> tuple[int, ...]:
    """A list of 16-bit values (cipher suites, versions); an odd last byte is ignored."""
    return tuple([u16(data, i) for i in range(0, len(data) - 1, 2)])


def _alpn_protocols(data: bytes) -> tuple[str, ...]:
    """RFC 7301 §3.1: ProtocolNameList."""
    names = _Reader(_Reader(data).vector(2))
    protocols = []
    while not names.done:
        protocols.append(names.vector(1).decode("ascii", "replace"))
    return tuple(protocols)


def _host_name(data: bytes) -> str | None:
    """RFC 6066 §3: the first host_name entry of a ServerNameList."""
    names = _Reader(_Reader(data).vector(2))
    while not names.done:
        kind = names.uint(1)
        name = names.vector(2)
        if kind == 0:
            return name.decode("ascii", "replace")
    return None


# Made once per connection: its __init__ is written out, as TcpSegment's is (handshake.trace.packet).
@dataclass(unsafe_hash=True, init=False)
class ClientHello:
    """The ClientHello fields that decide what the handshake can become (RFC 8446 §4.1.2)."""

    random: bytes
    session_id: bytes
    cipher_suites: tuple[int, ...]
    server_name: str | None
    alpn_protocols: tuple[str, ...]
    supported_versions: tuple[int, ...]
    """From supported_versions, or just the legacy version when the extension is absent."""
    offers_early_data: bool
    offers_psk: bool

    def __init__(self, random: bytes, session_id: bytes, cipher_suites: tuple[int, ...], server_name: str | None,
                 alpn_protocols: tuple[str, ...], supported_versions: tuple[int, ...], offers_early_data: bool,
                 offers_psk: bool) -> None:
        self.random = random
        self.session_id = session_id
        self.cipher_suites = cipher_suites
        self.server_name = server_name
        self.alpn_protocols = alpn_protocols
        self.supported_versions = supported_versions
        self.offers_early_data = offers_early_data
        self.offers_psk = offers_psk


# Made once per connection: its __init__ is written out, as TcpSegment's is (handshake.trace.packet).
@dataclass(unsafe_hash=True, init=False)
class ServerHello:
    """The ServerHello (or HelloRetryRequest) fields that decide the handshake (RFC 8446 §4.1.3)."""

    random: bytes
    session_id: bytes
    cipher_suite: int
    version: int
    """supported_versions when present (TLS 1.3), else the legacy version."""
    alpn_protocol: str | None
    """TLS 1.2 only: a TLS 1.3 server puts ALPN in EncryptedExtensions."""
    selected_psk_identity: int | None
    """TLS 1.3 pre_shared_key: which of the offered PSKs the server took, None if none."""
    encrypt_then_mac: bool
    """TLS 1.0-1.2 with a CBC suite: the server took RFC 7366 encrypt_then_mac."""

    def __init__(self, random: bytes, session_id: bytes, cipher_suite: int, version: int, alpn_protocol: str | None,
                 selected_psk_identity: int | None, encrypt_then_mac: bool = False) -> None:
        self.random = random
        self.session_id = session_id
        self.cipher_suite = cipher_suite
        self.version = version
        self.alpn_protocol = alpn_protocol
        self.selected_psk_identity = selected_psk_identity
        self.encrypt_then_mac = encrypt_then_mac

    @property
    def is_hello_retry_request(self) -> bool:
        return self.random == HELLO_RETRY_REQUEST_RANDOM


@dataclass(frozen=True)
class EncryptedExtensions:
    """TLS 1.3 EncryptedExtensions (RFC 8446 §4.3.1): where ALPN and 0-RTT acceptance are."""

    alpn_protocol: str | None
    accepts_early_data: bool


def parse_client_hello(body: bytes) -> ClientHello:
    reader = _Reader(body)
    legacy_version = reader.uint(2)
    random = reader.bytes(32)
    session_id = reader.vector(1)
    suites = reader.vector(2)
    reader.vector(1)  # legacy_compression_methods
    extensions = _extensions(reader)
    versions: tuple[int, ...] = (legacy_version,)
    if EXT_SUPPORTED_VERSIONS in extensions:
        versions = _uint16s(_Reader(extensions[EXT_SUPPORTED_VERSIONS]).vector(1))
    return ClientHello(
        random=random,
        session_id=session_id,
        cipher_suites=_uint16s(suites),
        server_name=_host_name(extensions[EXT_SERVER_NAME]) if EXT_SERVER_NAME in extensions else None,
        alpn_protocols=_alpn_protocols(extensions[EXT_ALPN]) if EXT_ALPN in extensions else (),
        supported_versions=versions,
        offers_early_data=EXT_EARLY_DATA in extensions,
        offers_psk=EXT_PRE_SHARED_KEY in extensions,
    )


def parse_ssl2_client_hello(body: bytes) -> ClientHello:
    """An SSLv2-format ClientHello (RFC 5246 appendix E.2), from msg_type on: version,
    cipher_spec_length, session_id_length, challenge_length, then the 3-byte cipher specs, the
    session id and the challenge. Specs whose first byte is 0 are the TLS suites; the challenge,
    right-aligned in 32 zero bytes, is the ClientHello.random. No extensions: no SNI, no ALPN."""
    reader = _Reader(body)
    reader.uint(1)  # msg_type, 1 (the record reader checked it)
    version = reader.uint(2)
    specs_length = reader.uint(2)
    session_id_length = reader.uint(2)
    challenge_length = reader.uint(2)
    if specs_length % 3 or not 16 <= challenge_length <= 32:
        raise DecodeError("SSLv2 ClientHello: cipher specs not in threes, or a challenge not of 16 to 32 bytes")
    specs = reader.bytes(specs_length)
    session_id = reader.bytes(session_id_length)
    challenge = reader.bytes(challenge_length)
    if not reader.done:
        raise DecodeError("SSLv2 ClientHello: bytes after the challenge")
    suites = tuple(u16(specs, index + 1) for index in range(0, specs_length, 3) if specs[index] == 0)
    return ClientHello(
        random=bytes(32 - challenge_length) + challenge,
        session_id=session_id,
        cipher_suites=suites,
        server_name=None,
        alpn_protocols=(),
        supported_versions=(version,),
        offers_early_data=False,
        offers_psk=False,
    )


def parse_server_hello(body: bytes) -> ServerHello:
    """RFC 8446 §4.1.3 (and RFC 5246 §7.4.1.3, the same layout). TLS 1.3 drafts before 22 had
    another: version (the draft, 0x7fNN), random, cipher_suite, extensions, with no session id
    and no compression method (draft-ietf-tls-tls13-21 §4.1.3); draft 22 brought back the
    legacy fields for middleboxes and moved the version into supported_versions."""
    reader = _Reader(body)
    legacy_version = reader.uint(2)
    random = reader.bytes(32)
    if legacy_version >> 8 == _DRAFT:
        session_id = b""
        cipher_suite = reader.uint(2)
    else:
        session_id = reader.vector(1)
        cipher_suite = reader.uint(2)
        reader.uint(1)  # legacy_compression_method
    extensions = _extensions(reader)
    version = legacy_version
    chosen = extensions.get(EXT_SUPPORTED_VERSIONS, b"")
    if len(chosen) == 2:
        version = u16(chosen, 0)
    psk = extensions.get(EXT_PRE_SHARED_KEY)
    alpn = _alpn_protocols(extensions[EXT_ALPN]) if EXT_ALPN in extensions else ()
    return ServerHello(
        random=random,
        session_id=session_id,
        cipher_suite=cipher_suite,
        version=version,
        alpn_protocol=alpn[0] if alpn else None,
        selected_psk_identity=u16(psk, 0) if psk is not None and len(psk) == 2 else None,
        encrypt_then_mac=EXT_ENCRYPT_THEN_MAC in extensions,
    )


def parse_draft_hello_retry_request(body: bytes) -> int:
    """The version a draft-era HelloRetryRequest names (drafts 19-21 §4.1.4: server_version
    first, then a cipher suite from draft 20 on, then extensions)."""
    return _Reader(body).uint(2)


def parse_encrypted_extensions(body: bytes) -> EncryptedExtensions:
    extensions = _extensions(_Reader(body))
    alpn = _alpn_protocols(extensions[EXT_ALPN]) if EXT_ALPN in extensions else ()
    return EncryptedExtensions(alpn_protocol=alpn[0] if alpn else None, accepts_early_data=EXT_EARLY_DATA in extensions)


# Made once per message: its __init__ is written out, as TcpSegment's is (handshake.trace.packet).
@dataclass(unsafe_hash=True, init=False)
class HandshakeMessage:
    """One whole handshake message and where its bytes were in the stream."""

    msg_type: int
    body: bytes
    start_offset: int
    """Stream offset of the record holding the message's first byte."""
    end_offset: int
    """Stream offset just past the record holding its last byte."""

    def __init__(self, msg_type: int, body: bytes, start_offset: int, end_offset: int) -> None:
        self.msg_type = msg_type
        self.body = body
        self.start_offset = start_offset
        self.end_offset = end_offset

    @property
    def wire_bytes(self) -> int:
        """The 4-byte handshake header plus the body."""
        return 4 + len(self.body)


class HandshakeReassembler:
    """Cuts the handshake bytes of one key epoch into messages (RFC 8446 §4: type, uint24 length)."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._first_record_offset = 0
        """Start offset of the record that holds ``_buffer[0]``."""

    def push(self, fragment: bytes, record_start: int, record_end: int) -> list[HandshakeMessage]:
        if self._buffer:
            self._buffer += fragment
            buffer = self._buffer
            # The length by hand: integers.uint reads bytes, and this is the pending bytearray.
            if len(buffer) >= 4 and len(buffer) < 4 + ((buffer[1] << 16) | (buffer[2] << 8) | buffer[3]):
                return []  # the message waits for more records: nothing copied
            data = bytes(buffer)
            first = self._first_record_offset
            self._buffer = bytearray()
        else:
            data = fragment  # most messages lie whole in one record: read them in place
            first = record_start
        messages = []
        position = 0
        size = len(data)
        while size - position >= 4:
            length = uint(data, position + 1, position + 4)
            end = position + 4 + length
            if end > size:
                break
            messages.append(HandshakeMessage(data[position], data[position + 4:end], first, record_end))
            position = end
            # Whatever is left began inside the record just pushed.
            first = record_start
        if position < size:
            self._buffer = bytearray(data[position:])
            self._first_record_offset = first
        return messages

    @property
    def pending_bytes(self) -> int:
        return len(self._buffer)
