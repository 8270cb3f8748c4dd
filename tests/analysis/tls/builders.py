"""Hand-built TLS records and hellos, for cases a real stack will not produce on demand."""

from __future__ import annotations

from handshake.analysis.tls.messages import (
    EXT_ALPN,
    EXT_EARLY_DATA,
    EXT_PRE_SHARED_KEY,
    EXT_SERVER_NAME,
    EXT_SUPPORTED_VERSIONS,
    HELLO_RETRY_REQUEST_RANDOM,
)

CLIENT_RANDOM = bytes(range(32))


def u8_vector(data: bytes) -> bytes:
    return bytes([len(data)]) + data


def u16_vector(data: bytes) -> bytes:
    return len(data).to_bytes(2, "big") + data


def extension(kind: int, data: bytes = b"") -> bytes:
    return kind.to_bytes(2, "big") + u16_vector(data)


def server_name(host: str) -> bytes:
    return extension(EXT_SERVER_NAME, u16_vector(b"\x00" + u16_vector(host.encode())))


def alpn(*protocols: str) -> bytes:
    return extension(EXT_ALPN, u16_vector(b"".join(u8_vector(p.encode()) for p in protocols)))


def client_versions(*versions: int) -> bytes:
    return extension(EXT_SUPPORTED_VERSIONS, u8_vector(b"".join(v.to_bytes(2, "big") for v in versions)))


def server_version(version: int) -> bytes:
    return extension(EXT_SUPPORTED_VERSIONS, version.to_bytes(2, "big"))


def early_data() -> bytes:
    return extension(EXT_EARLY_DATA)


def selected_psk(identity: int) -> bytes:
    return extension(EXT_PRE_SHARED_KEY, identity.to_bytes(2, "big"))


def handshake(msg_type: int, body: bytes) -> bytes:
    return bytes([msg_type]) + len(body).to_bytes(3, "big") + body


def client_hello(*extensions: bytes, session_id: bytes = b"", random: bytes = CLIENT_RANDOM) -> bytes:
    body = b"\x03\x03" + random + u8_vector(session_id) + u16_vector(b"\x13\x01\xc0\x2b") + b"\x01\x00"
    return handshake(1, body + u16_vector(b"".join(extensions)))


def server_hello(
    *extensions: bytes, session_id: bytes = b"", random: bytes = bytes(32), suite: int = 0x1301, with_extensions: bool = True
) -> bytes:
    body = b"\x03\x03" + random + u8_vector(session_id) + suite.to_bytes(2, "big") + b"\x00"
    if with_extensions:
        body += u16_vector(b"".join(extensions))
    return handshake(2, body)


def draft_server_hello(version: int, *extensions: bytes, random: bytes = bytes(32), suite: int = 0x1301) -> bytes:
    """The ServerHello of TLS 1.3 drafts before 22: version, random, cipher suite, extensions
    (no legacy_session_id, no compression method)."""
    return handshake(2, version.to_bytes(2, "big") + random + suite.to_bytes(2, "big") + u16_vector(b"".join(extensions)))


def draft_hello_retry_request(version: int, *extensions: bytes) -> bytes:
    """Drafts 20-21's HelloRetryRequest, a message of its own (type 6)."""
    return handshake(6, version.to_bytes(2, "big") + b"\x13\x01" + u16_vector(b"".join(extensions)))


def hello_retry_request(*extensions: bytes) -> bytes:
    return server_hello(server_version(0x0304), *extensions, random=HELLO_RETRY_REQUEST_RANDOM)


def record(content_type: int, payload: bytes, version: int = 0x0303) -> bytes:
    return bytes([content_type]) + version.to_bytes(2, "big") + u16_vector(payload)


def change_cipher_spec() -> bytes:
    return record(20, b"\x01")
