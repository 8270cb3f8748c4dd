"""The TLS handshake inside QUIC: CRYPTO frames in, handshake messages and facts out.

RFC 9001 §4: QUIC carries TLS handshake messages without TLS records, in CRYPTO frames, one
byte stream per direction and encryption level (Initial, Handshake, 1-RTT), each starting at
offset 0. Frames may repeat, overlap and arrive out of order, so each stream is rebuilt by
offset before the messages are cut (``tls.messages.HandshakeReassembler``) and parsed with the
same parsers as TLS over TCP. QUIC always runs TLS 1.3 (RFC 9001 §4.2), never sends
EndOfEarlyData (§8.3), and accepts 0-RTT exactly when EncryptedExtensions carries early_data
(RFC 9001 §4.6.1, RFC 8446 §4.2.10).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from ..keylog import ConnectionSecrets, KeyLog
from ..tls.conversation import TlsFacts, updated_facts
from ..tls.messages import (
    CLIENT_HELLO,
    ENCRYPTED_EXTENSIONS,
    FINISHED,
    HANDSHAKE_NAMES,
    SERVER_HELLO,
    ClientHello,
    DecodeError,
    HandshakeReassembler,
    ServerHello,
    cipher_suite_name,
    parse_client_hello,
    parse_encrypted_extensions,
    parse_server_hello,
    version_name,
)

Epoch = Literal["initial", "handshake", "1rtt"]

MAX_CRYPTO_GAP: Final = 1 << 20
"""CRYPTO data further than this past the contiguous end is dropped: a real handshake never
leaves such a hole (RFC 9000 §7.5 lets a receiver limit it to as little as 4096 bytes), and a
mutated offset must not make the reader hold gigabytes."""


class CryptoStream:
    """One direction's CRYPTO stream at one encryption level, rebuilt by offset."""

    def __init__(self) -> None:
        self.offset = 0
        """Bytes delivered so far (the contiguous end)."""
        self._pending: dict[int, bytes] = {}

    def missing(self) -> tuple[int, int] | None:
        """(start, end) of the first hole before data already received, or None: bytes the
        capture never held (its sender must have sent them: it sent what follows)."""
        if not self._pending:
            return None
        return self.offset, min(self._pending)

    def feed(self, offset: int, data: bytes) -> bytes:
        """The bytes this frame makes newly contiguous (often none)."""
        end = offset + len(data)
        if end <= self.offset or offset - self.offset > MAX_CRYPTO_GAP or not data:
            return b""
        if offset > self.offset:
            if len(data) > len(self._pending.get(offset, b"")):
                self._pending[offset] = data
            return b""
        out = bytearray(data[self.offset - offset :])
        self.offset = end
        while self._pending:
            ready = [start for start in self._pending if start <= self.offset]
            if not ready:
                break
            for start in sorted(ready):
                chunk = self._pending.pop(start)
                if start + len(chunk) > self.offset:
                    out += chunk[self.offset - start :]
                    self.offset = start + len(chunk)
        return bytes(out)


# Made once per message: its __init__ is written out, as TcpSegment's is (handshake.trace.packet).
@dataclass(slots=True, unsafe_hash=True, init=False)
class QuicHandshakeMessage:
    from_client: bool
    epoch: Epoch
    name: str
    """"ClientHello", "ServerHello", "HelloRetryRequest", "EncryptedExtensions", "Finished", ..."""
    msg_type: int
    end_offset: int
    """CRYPTO stream offset (at this level) just past the message."""

    def __init__(self, from_client: bool, epoch: Epoch, name: str, msg_type: int, end_offset: int) -> None:
        self.from_client = from_client
        self.epoch = epoch
        self.name = name
        self.msg_type = msg_type
        self.end_offset = end_offset


_QUIC_START: Final = TlsFacts(tls_version="1.3")
"""The facts before any message (immutable: one for every connection)."""


class QuicTlsReader:
    """Both directions' CRYPTO streams of one QUIC connection, read as TLS 1.3 as they are fed."""

    def __init__(self, keylog: KeyLog | None = None) -> None:
        self._keylog = keylog
        self._streams: dict[tuple[bool, Epoch], CryptoStream] = {}
        self._messages: dict[tuple[bool, Epoch], HandshakeReassembler] = {}
        self.facts = _QUIC_START
        """RFC 9001 §4.2: QUIC is TLS 1.3 whatever the ServerHello says (a non-1.3 one is refused)."""
        self.client_hello: ClientHello | None = None
        self.server_hello: ServerHello | None = None
        self.secrets: ConnectionSecrets | None = None
        """The key log's secrets for this connection, once the ClientHello named its random."""
        self._server_hello_bytes = 0

    def missing(self) -> list[str]:
        """The CRYPTO bytes the capture lacks, per side and level ("client Initial 0-1200")."""
        out = []
        for (from_client, epoch), stream in self._streams.items():
            hole = stream.missing()
            if hole is not None:
                out.append(f"{'client' if from_client else 'server'} {epoch} CRYPTO bytes {hole[0]}-{hole[1]}")
        return out

    def restart_client(self) -> None:
        """The client starts over (after a Retry or Version Negotiation): a new ClientHello
        from offset 0 of a new Initial CRYPTO stream. RFC 9000 §17.2.5.3 asks for the same
        ClientHello after a Retry, but aioquic, for one, makes a new one (a new random)."""
        for key in ((True, "initial"), (False, "initial")):
            self._streams.pop(key, None)
            self._messages.pop(key, None)
        self.client_hello = None
        self.secrets = None
        self._update({"keys_found": False})

    def feed(self, from_client: bool, epoch: Epoch, offset: int, data: bytes) -> list[QuicHandshakeMessage]:
        """The handshake messages one CRYPTO frame completes."""
        key = (from_client, epoch)
        stream = self._streams.setdefault(key, CryptoStream())
        start = stream.offset
        fresh = stream.feed(offset, data)
        if not fresh:
            return []
        reassembler = self._messages.setdefault(key, HandshakeReassembler())
        out = []
        for message in reassembler.push(fresh, start, stream.offset):
            name = HANDSHAKE_NAMES.get(message.msg_type, f"Handshake{message.msg_type}")
            try:
                name = self._message(from_client, epoch, message.msg_type, message.body, message.end_offset) or name
            except DecodeError:
                pass
            out.append(QuicHandshakeMessage(from_client, epoch, name, message.msg_type, message.end_offset))
        return out

    def _message(self, from_client: bool, epoch: Epoch, msg_type: int, body: bytes, end: int) -> str | None:
        if from_client:
            if epoch == "initial" and msg_type == CLIENT_HELLO and self.client_hello is None:
                hello = parse_client_hello(body)
                self.client_hello = hello
                self._update({
                    "sni": hello.server_name,
                    "alpn_offered": hello.alpn_protocols,
                    "early_data": "sent" if hello.offers_early_data else "none",
                    "client_hello_bytes": end,
                })
                secrets = self._keylog.get(hello.random) if self._keylog is not None else None
                if secrets is not None:
                    self.secrets = secrets
                    self._update({"keys_found": True})
            return None
        if epoch == "initial" and msg_type == SERVER_HELLO:
            return self._server_hello(body)
        if epoch == "handshake" and msg_type == ENCRYPTED_EXTENSIONS:
            extensions = parse_encrypted_extensions(body)
            changes: dict[str, object] = {"alpn_selected": extensions.alpn_protocol}
            if self.facts.early_data == "sent":
                changes["early_data"] = "accepted" if extensions.accepts_early_data else "rejected"
            self._update(changes)
        elif epoch == "handshake" and msg_type == FINISHED and self.facts.server_flight_bytes is None:
            self._update({"server_flight_bytes": self._server_hello_bytes + end})
        return None

    def _server_hello(self, body: bytes) -> str:
        hello = parse_server_hello(body)
        if hello.is_hello_retry_request:
            changes: dict[str, object] = {"hrr": True}
            if self.facts.early_data == "sent":
                changes["early_data"] = "rejected"  # RFC 8446 §4.2.10
            self._update(changes)
            return "HelloRetryRequest"
        if self.server_hello is not None:
            return "ServerHello"
        self.server_hello = hello
        self._server_hello_bytes = 4 + len(body)
        changes = {
            "tls_version": version_name(hello.version) or self.facts.tls_version,
            "cipher_suite": cipher_suite_name(hello.cipher_suite),
            "resumed": hello.selected_psk_identity is not None,
        }
        if self.facts.early_data == "sent" and hello.selected_psk_identity != 0:
            changes["early_data"] = "rejected"  # 0-RTT needs the first offered PSK (RFC 8446 §4.2.10)
        self._update(changes)
        return "ServerHello"

    def _update(self, changes: dict[str, object]) -> None:
        self.facts = updated_facts(self.facts, changes)
