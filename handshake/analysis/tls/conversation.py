"""What a TLS conversation said: every record and handshake message, and the handshake facts.

Sans-IO: ``TlsConversation.feed`` takes consecutive chunks of each direction's reassembled TCP
stream, in the order the packets were captured, and returns the messages those bytes completed,
each with the stream offset just past the record that completed it. With an NSS key log, TLS 1.3
records are decrypted, so tickets, 0.5-RTT data and early data are told apart; without one they
are ``kind="encrypted"`` and the caller must treat them as unknown. TLS 1.2 needs no keys to tell
its record types apart (they stay visible after ChangeCipherSpec); with the logged master secret
its records are opened too (``keys12``), so the application data's plaintext is known in both
versions (``TlsMessage.plaintext``), which is what tells an HTTP response from the server's own
chatter (HTTP/2 SETTINGS) in the HTTP layer.

Nothing here raises on bad input: a direction that stops being TLS yields one ``garbage``
message and is ignored from then on; a truncated record just waits for more bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal

from mypy_extensions import mypyc_attr

from ..keylog import ConnectionSecrets, KeyLog, parse_keylog
from .keys12 import RecordKey12, key_block
from .keys13 import TrafficKey
from .messages import (
    CERTIFICATE,
    CERTIFICATE_REQUEST,
    CERTIFICATE_STATUS,
    CLIENT_HELLO,
    DRAFT_HELLO_RETRY_REQUEST,
    ENCRYPTED_EXTENSIONS,
    END_OF_EARLY_DATA,
    FINISHED,
    HANDSHAKE_NAMES,
    KEY_UPDATE,
    SERVER_HELLO,
    SERVER_HELLO_DONE,
    SERVER_KEY_EXCHANGE,
    TLS13,
    ClientHello,
    DecodeError,
    HandshakeMessage,
    HandshakeReassembler,
    ServerHello,
    cipher_suite_name,
    is_tls13,
    parse_client_hello,
    parse_draft_hello_retry_request,
    parse_encrypted_extensions,
    parse_server_hello,
    parse_ssl2_client_hello,
    tls12_record_overhead,
    version_name,
)
from .records import (
    ALERT,
    APPLICATION_DATA,
    CHANGE_CIPHER_SPEC,
    HANDSHAKE,
    SSL2_CLIENT_HELLO,
    NotTls,
    RecordReader,
    TlsRecord,
)

__all__ = ["Direction", "KeyLog", "MessageKind", "TlsConversation", "TlsFacts", "TlsMessage", "parse_keylog"]

Direction = Literal["c2s", "s2c"]
MessageKind = Literal["handshake", "ccs", "alert", "app_data", "early_data", "encrypted", "garbage"]

PREVIEW_BYTES: Final = 64


# Made once per packet: its __init__ is written out, as TcpSegment's is (handshake.trace.packet).
@dataclass(unsafe_hash=True, init=False)
class TlsMessage:
    """One handshake message, or one record of any other content type."""

    direction: Direction
    start_offset: int
    """Stream offset (in ``direction``) of the record holding the message's first byte."""
    end_offset: int
    """Stream offset just past the record that completed the message."""
    record_type: int
    """The outer content type of that record (23 for everything TLS 1.3 encrypts); for
    ``garbage``, the byte that could not start a record."""
    kind: MessageKind
    """"handshake", "ccs", "alert", "app_data", "early_data" (TLS 1.3 0-RTT data, decrypted),
    "encrypted" (a TLS 1.3 record no logged key opened; a TLS 1.2 handshake record after the
    Finished without keys, or any 1.2 record a key that opened the Finished did not open) or "garbage" (not TLS, or a decrypted record of a forbidden inner type)."""
    name: str
    """"ClientHello", "HelloRetryRequest", "Finished", … "ChangeCipherSpec", "Alert",
    "ApplicationData"; "EncryptedRecord" for kind "encrypted", "NotTls" for a stream that is
    not TLS."""
    length: int
    """Plaintext bytes: handshake header + body, alert, application data. Where the plaintext
    cannot be known (no key, TLS 1.2 CBC) the record's fragment length instead."""
    preview: bytes = field(default=b"", compare=False)
    """Application data whose plaintext is known: its first bytes (e.g. an HTTP request line)."""
    plaintext: bytes | None = field(default=None, compare=False)
    """Application or early data that a logged key opened: all of its plaintext (what the HTTP
    layer reads); None where nothing was decrypted (no key log, or a key that did not open it).
    The content is left out of comparisons (as ``preview``): a TLS 1.2 record is the same
    message whether or not a key opened it."""

    def __init__(self, direction: Direction, start_offset: int, end_offset: int, record_type: int,
                 kind: MessageKind, name: str, length: int, preview: bytes = b"",
                 plaintext: bytes | None = None) -> None:
        self.direction = direction
        self.start_offset = start_offset
        self.end_offset = end_offset
        self.record_type = record_type
        self.kind = kind
        self.name = name
        self.length = length
        self.preview = preview
        self.plaintext = plaintext


@mypyc_attr(native_class=False)  # compiled too, a plain class: updated_facts copies its __dict__
@dataclass(frozen=True)
class TlsFacts:
    """What the handshake negotiated, as far as the bytes (and keys) seen so far tell."""

    tls_version: str | None = None
    """"1.3", "1.2" (or "1.1", "1.0", "ssl3", a draft: "1.3-draft-23") from the ServerHello;
    None before it."""
    sni: str | None = None
    """The ClientHello's server_name."""
    alpn_offered: tuple[str, ...] = ()
    alpn_selected: str | None = None
    """From the ServerHello (1.2) or EncryptedExtensions (1.3: needs the key log)."""
    cipher_suite: str | None = None
    """IANA name of the ServerHello's cipher suite, e.g. "TLS_AES_128_GCM_SHA256"."""
    hrr: bool = False
    """The server sent a HelloRetryRequest (one extra round trip)."""
    resumed: bool | None = None
    """PSK / ticket / session id accepted; None until the server's messages tell."""
    early_data: Literal["none", "sent", "accepted", "rejected"] | None = None
    """0-RTT: "none" not offered; "sent" offered, acceptance unknown (no key log);
    "accepted"/"rejected". None before the ClientHello is seen."""
    client_hello_bytes: int | None = None
    """Stream bytes of the record(s) carrying the first ClientHello."""
    server_flight_bytes: int | None = None
    """Stream bytes from the record with the (final) ServerHello to the end of the record that
    completes the server's flight: ServerHelloDone (1.2 full) or Finished (1.2 resumed, 1.3).
    None while unknown (TLS 1.3 without the key log)."""
    keys_found: bool = False
    """The key log held secrets for this connection's client random."""


_NO_FACTS: Final = TlsFacts()
"""What a conversation knows before its first message (immutable, so one for all)."""


def updated_facts(facts: TlsFacts, changes: dict[str, object]) -> TlsFacts:
    """``dataclasses.replace`` for TlsFacts at a twentieth of its cost (it runs on every
    handshake message of every connection of a capture)."""
    for name in changes:
        if name not in _FACT_FIELDS:
            raise TypeError(f"TlsFacts has no field {name!r}")
    fields = facts.__dict__.copy()
    fields.update(changes)
    new = object.__new__(TlsFacts)
    object.__setattr__(new, "__dict__", fields)
    return new


_FACT_FIELDS: Final = frozenset(TlsFacts.__dataclass_fields__)


# TLS 1.3 key stages of one side, in the order RFC 8446 §7.1 has them change keys.
EARLY: Final = 0
HANDSHAKE_KEYS: Final = 1
APPLICATION: Final = 2


class _Epoch:
    """One side's records under one TLS 1.3 traffic secret, with its own message reassembly
    (RFC 8446 §5.1: handshake messages must not span a key change)."""

    def __init__(self, stage: int, key: TrafficKey) -> None:
        self.stage = stage
        self.key = key
        self.handshake = HandshakeReassembler()


class _Side:
    """The state of one direction of the conversation."""

    def __init__(self, direction: Direction, offset: int = 0) -> None:
        self.direction: Direction = direction
        self.records = RecordReader(offset)
        self.plaintext_handshake = HandshakeReassembler()
        self.epochs: list[_Epoch] = []
        self.current_epoch = 0
        self.tls12_protected = False
        """TLS 1.2 ChangeCipherSpec seen: later records are encrypted (RFC 5246 §7.1)."""
        self.tls12_finished_seen = False
        self.tls12_key: RecordKey12 | None = None
        """TLS 1.2 with the logged master secret: this side's record key (None without one, or
        once a record it should have opened did not open)."""
        self.tls12_handshake: HandshakeReassembler | None = None
        """TLS 1.2 with keys: the decrypted handshake messages (Finished, renegotiation)."""


class TlsConversation:
    """Both byte streams of one TCP connection, analyzed as TLS as they are fed."""

    def __init__(self, keylog: KeyLog | None = None, client_offset: int = 0, server_offset: int = 0) -> None:
        """``client_offset`` and ``server_offset``: where TLS begins in each TCP stream (past a
        proxy's or STARTTLS's prelude), so messages carry TCP stream offsets."""
        self._keylog = keylog
        self._client = _Side("c2s", client_offset)
        self._server = _Side("s2c", server_offset)
        self._facts = _NO_FACTS
        self._client_hello: ClientHello | None = None
        self._server_hello: ServerHello | None = None
        self._version: int | None = None
        self._flight_start: int | None = None
        self._master_secret: bytes | None = None
        """TLS 1.2: the key log's master secret for this connection, until the ServerHello uses it."""

    @property
    def facts(self) -> TlsFacts:
        return self._facts

    @property
    def tls13(self) -> bool:
        """TLS 1.3 negotiated (its records after the ServerHello all look like application data)."""
        return self._version is not None and self._version >= TLS13

    def feed(self, direction: Direction, data: bytes) -> list[TlsMessage]:
        """The messages completed by the next ``data`` bytes of ``direction``'s stream."""
        if direction == "c2s":
            side = self._client
        elif direction == "s2c":
            side = self._server
        else:
            raise ValueError(f"direction must be 'c2s' or 's2c', not {direction!r}")
        records, not_tls = side.records.feed(data if isinstance(data, bytes) else bytes(data))
        messages: list[TlsMessage] = []
        for record in records:
            messages.extend(self._record(side, record))
        if not_tls is not None:
            messages.append(_garbage(side.direction, not_tls))
        return messages

    # -- records ---------------------------------------------------------------------------

    def _record(self, side: _Side, record: TlsRecord) -> list[TlsMessage]:
        kind = record.content_type
        if kind == CHANGE_CIPHER_SPEC:
            return [self._change_cipher_spec(side, record)]
        if side.tls12_protected and self._is_tls12():
            return self._tls12_protected(side, record)
        if kind == HANDSHAKE:
            # RFC 8446 §5: TLS 1.3 encrypts handshake messages under outer type 23, so a
            # type-22 record is plaintext in both versions (here: before a 1.2 CCS).
            found = side.plaintext_handshake.push(record.fragment, record.start_offset, record.end_offset)
            return [self._handshake(side, message, None) for message in found]
        if kind == ALERT:
            return [_message(side, record, "alert", "Alert", len(record.fragment))]
        if kind == SSL2_CLIENT_HELLO:
            return [self._ssl2_client_hello(side, record)]
        if self._is_tls12():
            return [_message(side, record, "app_data", "ApplicationData", len(record.fragment),
                             record.fragment[:PREVIEW_BYTES])]
        return self._tls13_protected(side, record)

    def _change_cipher_spec(self, side: _Side, record: TlsRecord) -> TlsMessage:
        """RFC 5246 §7.1 switches 1.2 to the new keys; RFC 8446 §5 / D.4 sends it only for
        middlebox compatibility and it changes nothing."""
        if self._is_tls12():
            if side.tls12_protected:
                side.tls12_key = None  # a renegotiation: its keys come from another ClientHello
            side.tls12_protected = True
            if side is self._server and self._facts.resumed is None:
                # RFC 5246 §7.3 / RFC 5077 §3.1: an abbreviated handshake goes from ServerHello
                # (and maybe NewSessionTicket) straight to ChangeCipherSpec.
                self._update({"resumed": True})
        return _message(side, record, "ccs", "ChangeCipherSpec", len(record.fragment))

    def _tls12_protected(self, side: _Side, record: TlsRecord) -> list[TlsMessage]:
        if side.tls12_key is not None:
            opened = self._tls12_decrypted(side, record)
            if opened is not None:
                return opened
        overhead = tls12_record_overhead(self._server_hello.cipher_suite) if self._server_hello else None
        length = len(record.fragment)
        if overhead is not None and length >= overhead:
            length -= overhead
        if record.content_type == HANDSHAKE:
            if side.tls12_finished_seen:
                return [_message(side, record, "encrypted", "EncryptedRecord", length)]
            self._tls12_finished(side, record)
            return [_message(side, record, "handshake", "Finished", length)]
        if record.content_type == ALERT:
            return [_message(side, record, "alert", "Alert", length)]
        return [_message(side, record, "app_data", "ApplicationData", length)]

    def _tls12_finished(self, side: _Side, record: TlsRecord) -> None:
        """RFC 5246 §7.4.9: Finished is the first message protected by the new keys."""
        side.tls12_finished_seen = True
        if side is self._server and self._facts.resumed and self._flight_start is not None:
            self._set_flight_end(record.end_offset)

    def _tls12_decrypted(self, side: _Side, record: TlsRecord) -> list[TlsMessage] | None:
        """The messages of a record the logged key opened; None (and the key dropped) when the
        side's first protected record, its Finished, does not open: the key is not this
        connection's, and the keyless reading is all there is."""
        key = side.tls12_key
        assert key is not None
        plaintext = key.open(record.content_type, record.fragment)
        if plaintext is None:
            if not side.tls12_finished_seen:
                side.tls12_key = None
                return None
            return [_message(side, record, "encrypted", "EncryptedRecord", len(record.fragment))]
        kind = record.content_type
        if kind == APPLICATION_DATA:
            return [_message(side, record, "app_data", "ApplicationData", len(plaintext), plaintext[:PREVIEW_BYTES],
                             plaintext)]
        if kind == ALERT:
            return [_message(side, record, "alert", "Alert", len(plaintext))]
        if kind != HANDSHAKE:
            return [_message(side, record, "garbage", f"ContentType{kind}", len(plaintext))]
        if side.tls12_handshake is None:
            side.tls12_handshake = HandshakeReassembler()
        messages = []
        for message in side.tls12_handshake.push(plaintext, record.start_offset, record.end_offset):
            if message.msg_type == FINISHED and not side.tls12_finished_seen:
                self._tls12_finished(side, record)
            messages.append(TlsMessage(side.direction, message.start_offset, message.end_offset, HANDSHAKE,
                                       "handshake", HANDSHAKE_NAMES.get(message.msg_type, f"Handshake{message.msg_type}"),
                                       message.wire_bytes))
        if not side.tls12_finished_seen:
            side.tls12_key = None  # RFC 5246 §7.4.9: the first protected message must be Finished
            return None
        return messages

    def _tls13_protected(self, side: _Side, record: TlsRecord) -> list[TlsMessage]:
        """Trial decryption: the current key first, then the later ones, because a capture does
        not say where a side switched keys (and a rejected 0-RTT leaves early records behind)."""
        for index in range(side.current_epoch, len(side.epochs)):
            epoch = side.epochs[index]
            opened = epoch.key.open(record.header, record.fragment)
            if opened is None:
                continue
            side.current_epoch = index
            inner_type, content = opened
            if inner_type == HANDSHAKE:
                found = epoch.handshake.push(content, record.start_offset, record.end_offset)
                return [self._handshake(side, message, epoch) for message in found]
            if inner_type == ALERT:
                return [_message(side, record, "alert", "Alert", len(content))]
            if inner_type == APPLICATION_DATA:
                kind: MessageKind = "early_data" if epoch.stage == EARLY else "app_data"
                return [_message(side, record, kind, "ApplicationData", len(content), content[:PREVIEW_BYTES], content)]
            # RFC 8446 §5: no other inner type may be protected (not even CCS).
            return [_message(side, record, "garbage", f"ContentType{inner_type}", len(content))]
        return [_message(side, record, "encrypted", "EncryptedRecord", len(record.fragment))]

    # -- handshake messages -----------------------------------------------------------------

    def _handshake(self, side: _Side, message: HandshakeMessage, epoch: _Epoch | None) -> TlsMessage:
        name = HANDSHAKE_NAMES.get(message.msg_type, f"Handshake{message.msg_type}")
        try:
            if side is self._client:
                self._client_message(message, epoch)
            elif message.msg_type == SERVER_HELLO and epoch is None:
                name = self._server_hello_message(message)
            elif message.msg_type == DRAFT_HELLO_RETRY_REQUEST and epoch is None:
                self._draft_hello_retry_request(message)
            else:
                self._server_message(message, epoch)
        except DecodeError:
            pass
        return TlsMessage(
            direction=side.direction,
            start_offset=message.start_offset,
            end_offset=message.end_offset,
            record_type=APPLICATION_DATA if epoch is not None else HANDSHAKE,
            kind="handshake",
            name=name,
            length=message.wire_bytes,
        )

    def _client_message(self, message: HandshakeMessage, epoch: _Epoch | None) -> None:
        if message.msg_type == CLIENT_HELLO and epoch is None:
            self._client_hello_message(message)
        elif epoch is None:
            return
        elif message.msg_type == END_OF_EARLY_DATA:
            _advance(self._client, past=EARLY)
        elif message.msg_type == FINISHED and epoch.stage == HANDSHAKE_KEYS:
            _advance(self._client, past=HANDSHAKE_KEYS)
        elif message.msg_type == KEY_UPDATE:
            _key_update(self._client, epoch)

    def _ssl2_client_hello(self, side: _Side, record: TlsRecord) -> TlsMessage:
        """An SSLv2-format ClientHello (RFC 5246 appendix E.2): the client's offer, as a
        ClientHello's; the server answers in TLS records, read as usual."""
        if side is self._client:
            try:
                self._client_hello_facts(parse_ssl2_client_hello(record.fragment),
                                         record.end_offset - record.start_offset)
            except DecodeError:
                pass
        return TlsMessage(side.direction, record.start_offset, record.end_offset, HANDSHAKE, "handshake",
                          "ClientHello (SSLv2 format)", len(record.fragment))

    def _client_hello_message(self, message: HandshakeMessage) -> None:
        self._client_hello_facts(parse_client_hello(message.body), message.end_offset - message.start_offset)

    def _client_hello_facts(self, hello: ClientHello, wire_bytes: int) -> None:
        if self._client_hello is not None:
            return  # the second ClientHello after a HelloRetryRequest changes no fact we keep
        self._client_hello = hello
        self._update({
            "sni": hello.server_name,
            "alpn_offered": hello.alpn_protocols,
            "early_data": "sent" if hello.offers_early_data else "none",
            "client_hello_bytes": wire_bytes,
        })
        secrets = self._keylog.get(hello.random) if self._keylog is not None else None
        if secrets is not None:
            self._update({"keys_found": True})
            self._install_keys(secrets, hello.offers_early_data)
            self._master_secret = secrets.master_secret

    def _install_keys(self, secrets: ConnectionSecrets, early_data_offered: bool) -> None:
        """RFC 8446 §7.1 / §A: the client writes with the early, handshake, then application
        secret; the server with the handshake, then application secret."""
        stages = [
            (self._client, EARLY, secrets.client_early_traffic_secret if early_data_offered else None),
            (self._client, HANDSHAKE_KEYS, secrets.client_handshake_traffic_secret),
            (self._client, APPLICATION, secrets.client_traffic_secret_0),
            (self._server, HANDSHAKE_KEYS, secrets.server_handshake_traffic_secret),
            (self._server, APPLICATION, secrets.server_traffic_secret_0),
        ]
        for side, stage, secret in stages:
            if secret:
                side.epochs.append(_Epoch(stage, TrafficKey(secret)))

    def _server_hello_message(self, message: HandshakeMessage) -> str:
        hello = parse_server_hello(message.body)
        if hello.is_hello_retry_request:
            self._version = hello.version
            changes: dict[str, object] = {"hrr": True, "tls_version": version_name(hello.version)}
            if self._facts.early_data == "sent":
                # RFC 8446 §4.2.10: a server that sends HelloRetryRequest has rejected 0-RTT
                # (the second ClientHello may not offer it again).
                changes["early_data"] = "rejected"
            self._update(changes)
            return "HelloRetryRequest"
        if self._server_hello is not None:
            return "ServerHello"
        self._server_hello = hello
        self._version = hello.version
        self._flight_start = message.start_offset
        changes = {"tls_version": version_name(hello.version), "cipher_suite": cipher_suite_name(hello.cipher_suite)}
        if is_tls13(hello.version):
            # RFC 8446 §2.2 / §4.2.11: a resumed handshake is one whose ServerHello takes a PSK
            # (drafts too). Never the session id: from draft 22 on, the server echoes the
            # client's in every handshake, for middlebox compatibility (§D.4).
            changes["resumed"] = hello.selected_psk_identity is not None
            if self._facts.early_data == "sent" and hello.selected_psk_identity != 0:
                # §4.2.10: accepting 0-RTT requires accepting the first offered PSK.
                changes["early_data"] = "rejected"
            for side in (self._client, self._server):
                for epoch in side.epochs:
                    if epoch.stage != EARLY:
                        epoch.key.prefer(hello.cipher_suite)
        else:
            changes["alpn_selected"] = hello.alpn_protocol
            if self._facts.early_data == "sent":
                changes["early_data"] = "rejected"
            if self._master_secret is not None and self._client_hello is not None:
                keys = key_block(self._master_secret, self._client_hello.random, hello.random, hello.cipher_suite,
                                 hello.version, hello.encrypt_then_mac)
                if keys is not None:
                    self._client.tls12_key, self._server.tls12_key = keys.client, keys.server
            offered_id = self._client_hello.session_id if self._client_hello else b""
            if offered_id:
                # RFC 5246 §7.4.1.3 and RFC 5077 §3.4: resuming echoes the client's session id;
                # any other id means a new session. An empty id decides nothing yet.
                changes["resumed"] = hello.session_id == offered_id
        self._update(changes)
        return "ServerHello"

    def _draft_hello_retry_request(self, message: HandshakeMessage) -> None:
        """Drafts before 22 sent HelloRetryRequest as a message of its own (type 6); what it
        costs is the same as RFC 8446's (§4.1.4): another round trip, and no 0-RTT (§4.2.10)."""
        version = parse_draft_hello_retry_request(message.body)
        self._version = version
        changes: dict[str, object] = {"hrr": True, "tls_version": version_name(version)}
        if self._facts.early_data == "sent":
            changes["early_data"] = "rejected"
        self._update(changes)

    def _server_message(self, message: HandshakeMessage, epoch: _Epoch | None) -> None:
        kind = message.msg_type
        if epoch is None:
            if self._server_hello is None or self._version is None or is_tls13(self._version):
                return
            if kind in (CERTIFICATE, SERVER_KEY_EXCHANGE, CERTIFICATE_REQUEST, CERTIFICATE_STATUS, SERVER_HELLO_DONE):
                if self._facts.resumed is None:
                    self._update({"resumed": False})
            if kind == SERVER_HELLO_DONE:
                self._set_flight_end(message.end_offset)
            return
        if kind == ENCRYPTED_EXTENSIONS:
            extensions = parse_encrypted_extensions(message.body)
            changes: dict[str, object] = {"alpn_selected": extensions.alpn_protocol}
            if self._facts.early_data == "sent":
                # RFC 8446 §4.2.10: the server accepts 0-RTT by echoing early_data here.
                changes["early_data"] = "accepted" if extensions.accepts_early_data else "rejected"
            self._update(changes)
        elif kind == FINISHED and epoch.stage == HANDSHAKE_KEYS:
            self._set_flight_end(message.end_offset)
            _advance(self._server, past=HANDSHAKE_KEYS)
        elif kind == KEY_UPDATE:
            _key_update(self._server, epoch)

    # -- facts ------------------------------------------------------------------------------

    def _is_tls12(self) -> bool:
        """TLS 1.2 or older negotiated (their records after CCS are encrypted but typed)."""
        return self._version is not None and self._version < TLS13

    def _set_flight_end(self, end_offset: int) -> None:
        if self._flight_start is not None and self._facts.server_flight_bytes is None:
            self._update({"server_flight_bytes": end_offset - self._flight_start})

    def _update(self, changes: dict[str, object]) -> None:
        self._facts = updated_facts(self._facts, changes)


def _advance(side: _Side, past: int) -> None:
    """Move ``side`` to its first key of a later stage than ``past`` (RFC 8446 §7.1 order)."""
    for index, epoch in enumerate(side.epochs):
        if epoch.stage > past:
            side.current_epoch = max(side.current_epoch, index)
            return
    side.current_epoch = len(side.epochs)


def _key_update(side: _Side, epoch: _Epoch) -> None:
    """RFC 8446 §4.6.3: after a KeyUpdate the sender uses the next application secret."""
    if epoch.stage < APPLICATION or epoch is not side.epochs[-1]:
        return
    updated = epoch.key.updated()
    if updated is not None:
        side.epochs.append(_Epoch(epoch.stage + 1, updated))
        side.current_epoch = len(side.epochs) - 1


def _message(side: _Side, record: TlsRecord, kind: MessageKind, name: str, length: int,
             preview: bytes = b"", plaintext: bytes | None = None) -> TlsMessage:
    return TlsMessage(
        direction=side.direction,
        start_offset=record.start_offset,
        end_offset=record.end_offset,
        record_type=record.content_type,
        kind=kind,
        name=name,
        length=length,
        preview=preview,
        plaintext=plaintext,
    )


def _garbage(direction: Direction, not_tls: NotTls) -> TlsMessage:
    return TlsMessage(
        direction=direction,
        start_offset=not_tls.start_offset,
        end_offset=not_tls.end_offset,
        record_type=not_tls.first_byte,
        kind="garbage",
        name="NotTls",
        length=not_tls.end_offset - not_tls.start_offset,
    )
