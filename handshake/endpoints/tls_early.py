"""TLS 1.3 with early data (0-RTT) over libssl, sans-IO with memory BIOs.

The client writes its GET with ``SSL_write_early_data`` before the handshake, so the request
leaves in the first flight beside the ClientHello. The server reads it with
``SSL_read_early_data`` and answers in 0.5-RTT data, so the response rides in the server's
first flight (or, held for a server time, leaves when that is over: still as 0.5-RTT data if the
client's Finished has not come, as application data after it). If the server rejects early data, the client learns so from the
handshake and sends the request again, as RFC 8446 §4.2.10 requires.

Contexts live in the config objects: tickets are stateful under OpenSSL's anti-replay (kept in
the server context's session cache and single-use), so a ticket only resumes on the server
context that issued it.
"""

from __future__ import annotations

import ctypes
import os
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING
from functools import cached_property

from handshake.endpoints import libssl as L
from ._base import EventQueue, TlsError, TlsExchangeClient
from ._files import append_line, create_private_file
from .certs import CertChain, ClientIdentity
from .events import EarlyDataResent, HandshakeCompleted
from .http1 import DEFAULT_BODY_BYTES, SERVER_ALPN, ServerExchange, Upload, client_exchange, server_exchange

if TYPE_CHECKING:
    from .http2 import Http2ServerExchange

DEFAULT_MAX_EARLY_DATA = 16384
SERVER_SESSION_CACHE_SIZE = 1024
"""Stateful tickets pile up in the server cache (two a connection, one ever used); bound it."""
_READ_CHUNK = 16384
_EARLY_DATA_NAME = {
    L.SSL_EARLY_DATA_NOT_SENT: "none",
    L.SSL_EARLY_DATA_REJECTED: "rejected",
    L.SSL_EARLY_DATA_ACCEPTED: "accepted",
}


class _Context:
    """An owned SSL_CTX plus the callback objects it points to (ctypes must keep them alive)."""

    def __init__(self, keylog_path: str | os.PathLike[str] | None) -> None:
        self.pointer = L.SSL_CTX_new(L.TLS_method())
        if not self.pointer:
            raise TlsError(f"SSL_CTX_new: {L.error_text()}")
        self._finalizer = weakref.finalize(self, L.SSL_CTX_free, self.pointer)
        for command in (L.SSL_CTRL_SET_MIN_PROTO_VERSION, L.SSL_CTRL_SET_MAX_PROTO_VERSION):
            _check(L.SSL_CTX_ctrl(self.pointer, command, L.TLS1_3_VERSION, None), "set protocol version")
        self._keylog_callback = None
        if keylog_path is not None:
            path = os.fspath(keylog_path)
            create_private_file(path, append=True)
            self._keylog_callback = L.KEYLOG_CALLBACK(lambda _ssl, line: append_line(path, line))
            L.SSL_CTX_set_keylog_callback(self.pointer, self._keylog_callback)
        self._alpn_callback = None
        self._alpn_wire: ctypes.Array[ctypes.c_char] | None = None

    def select_alpn(self, protocols: tuple[str, ...]) -> None:
        """A server's ALPN: the first of ``protocols`` (its preference) the client offers, as
        OpenSSL's ``SSL_select_next_proto`` picks; none in common, no ALPN in the answer (RFC
        7301 §3.2 allows a server to go on without it, as nginx does)."""
        if not protocols:
            return
        wire = self._alpn_wire = ctypes.create_string_buffer(L.alpn_wire(protocols))
        size = len(wire) - 1  # create_string_buffer adds a NUL

        def select(_ssl, out, outlen, offered, offered_len, _arg) -> int:
            result = L.SSL_select_next_proto(out, outlen, ctypes.addressof(wire), size, offered, offered_len)
            return L.SSL_TLSEXT_ERR_OK if result == L.OPENSSL_NPN_NEGOTIATED else L.SSL_TLSEXT_ERR_NOACK

        self._alpn_callback = L.ALPN_SELECT_CALLBACK(select)
        L.SSL_CTX_set_alpn_select_cb(self.pointer, self._alpn_callback, None)


def _check(result: int, what: str) -> None:
    if result <= 0:
        raise TlsError(f"{what}: {L.error_text()}")


def _server_context(chain: CertChain, keylog_path, max_early_data: int, groups: str | None = None,
                    alpn: tuple[str, ...] = ()) -> _Context:
    context = _Context(keylog_path)
    ctx = context.pointer
    certs = L.read_pem_x509s(chain.chain_pem)
    try:
        _check(L.SSL_CTX_use_certificate(ctx, certs[0]), "use certificate")
        for intermediate in certs[1:]:  # SSL_CTX_add1_chain_cert: takes its own reference
            _check(L.SSL_CTX_ctrl(ctx, L.SSL_CTRL_CHAIN_CERT, 1, intermediate), "add chain certificate")
    finally:
        for cert in certs:
            L.X509_free(cert)
    key = L.read_pem_private_key(chain.leaf_key_pem)
    try:
        _check(L.SSL_CTX_use_PrivateKey(ctx, key), "use private key")
    finally:
        L.EVP_PKEY_free(key)
    _check(L.SSL_CTX_check_private_key(ctx), "key does not match certificate")
    context.select_alpn(alpn)
    _check(L.SSL_CTX_set_max_early_data(ctx, max_early_data), "set max early data")
    L.SSL_CTX_ctrl(ctx, L.SSL_CTRL_SET_SESS_CACHE_SIZE, SERVER_SESSION_CACHE_SIZE, None)
    if groups is not None:  # SSL_CTX_set1_groups_list is a macro over SSL_CTX_ctrl
        _check(L.SSL_CTX_ctrl(ctx, L.SSL_CTRL_SET_GROUPS_LIST, 0, groups.encode("ascii")), f"set groups {groups}")
    return context


def _client_context(identity: ClientIdentity) -> _Context:
    context = _Context(identity.keylog_path)
    ctx = context.pointer
    if identity.ca_pem is None:
        _check(L.SSL_CTX_set_default_verify_paths(ctx), "load the system's trusted certificates")
    else:
        store = L.SSL_CTX_get_cert_store(ctx)
        certs = L.read_pem_x509s(identity.ca_pem)
        try:
            for cert in certs:  # X509_STORE_add_cert takes its own reference
                _check(L.X509_STORE_add_cert(store, cert), "add CA certificate")
        finally:
            for cert in certs:
                L.X509_free(cert)
    L.SSL_CTX_set_verify(ctx, L.SSL_VERIFY_PEER if identity.verify else L.SSL_VERIFY_NONE, None)
    if identity.alpn:
        protocols = L.alpn_wire(identity.alpn)
        if L.SSL_CTX_set_alpn_protos(ctx, protocols, len(protocols)) != 0:
            raise TlsError(f"SSL_CTX_set_alpn_protos: {L.error_text()}")
    # TLS 1.3 tickets arrive after the handshake; the new-session callback is how OpenSSL hands
    # them over. NO_INTERNAL_STORE: the client context keeps no cache that would grow.
    L.SSL_CTX_ctrl(
        ctx, L.SSL_CTRL_SET_SESS_CACHE_MODE, L.SSL_SESS_CACHE_CLIENT | L.SSL_SESS_CACHE_NO_INTERNAL_STORE, None
    )
    L.SSL_CTX_sess_set_new_cb(ctx, _ON_NEW_SESSION)
    return context


# Tickets received, by SSL pointer, until the owning client collects them after its read.
_TICKETS: dict[int, int] = {}


def _on_new_session(ssl: int, session: int) -> int:
    previous = _TICKETS.get(ssl)
    _TICKETS[ssl] = session
    if previous:
        L.SSL_SESSION_free(previous)
    return 1  # we keep the reference


def _reject_early_data(ssl: int, arg: int) -> int:
    return 0


_ON_NEW_SESSION = L.NEW_SESSION_CALLBACK(_on_new_session)
_REJECT_EARLY_DATA = L.ALLOW_EARLY_DATA_CALLBACK(_reject_early_data)


@dataclass(frozen=True, eq=False)
class EarlyServerConfig:
    """A TLS 1.3 server identity that issues tickets allowing ``max_early_data`` bytes of 0-RTT."""

    chain: CertChain
    keylog_path: str | os.PathLike[str] | None = None
    max_early_data: int = DEFAULT_MAX_EARLY_DATA
    groups: str | None = None
    """Key exchange groups the server accepts, OpenSSL syntax ("P-256"); a client whose first key
    share is not among them gets a HelloRetryRequest. None: OpenSSL's default list."""
    alpn: tuple[str, ...] = SERVER_ALPN
    """The protocols the server speaks, in its order of preference (ALPN)."""

    @cached_property
    def context(self) -> _Context:
        return _server_context(self.chain, self.keylog_path, self.max_early_data, self.groups, self.alpn)


@dataclass(frozen=True, eq=False)
class EarlyClientConfig(ClientIdentity):
    """A TLS 1.3 client; its sessions belong to it."""

    @cached_property
    def context(self) -> _Context:
        return _client_context(self)


class EarlySession:
    """A TLS 1.3 ticket (an owned SSL_SESSION) for the next ``EarlyHttpClient``.

    Single-use on both ends: the server's anti-replay honours a ticket once, and the client
    marks it non-resumable once a handshake has used it (OpenSSL does so for client contexts
    with a session cache, following RFC 8446 §C.4). Resume with it once, then take the fresh
    ticket from that connection; a used one gets a full handshake without early data.
    """

    def __init__(self, pointer: int) -> None:
        self.pointer = pointer
        self._finalizer = weakref.finalize(self, L.SSL_SESSION_free, pointer)

    @property
    def max_early_data(self) -> int:
        """Bytes of 0-RTT the server allows with this ticket; 0 means no early data."""
        return L.SSL_SESSION_get_max_early_data(self.pointer)

    @property
    def resumable(self) -> bool:
        return bool(L.SSL_SESSION_is_resumable(self.pointer))


def _free_ssl(ssl: int) -> None:
    """Shut down (quietly: no bytes), then free; an SSL freed un-shut-down loses its session."""
    L.SSL_set_quiet_shutdown(ssl, 1)
    L.SSL_shutdown(ssl)
    L.SSL_free(ssl)  # also frees both memory BIOs
    ticket = _TICKETS.pop(ssl, None)
    if ticket:
        L.SSL_SESSION_free(ticket)
    L.ERR_clear_error()


class _EarlyEndpoint(EventQueue):
    """One SSL over two memory BIOs; ``close()`` (or garbage collection) frees it."""

    def __init__(self, context: _Context) -> None:
        super().__init__()
        self._context = context
        self._ssl = 0
        self._rbio = self._wbio = 0
        self._finalizer: weakref.finalize | None = None
        self._buffer = ctypes.create_string_buffer(_READ_CHUNK)
        self._count = ctypes.c_size_t()
        self.handshake_complete = False

    def _new_ssl(self) -> None:
        ssl = L.SSL_new(self._context.pointer)
        if not ssl:
            raise TlsError(f"SSL_new: {L.error_text()}")
        self._finalizer = weakref.finalize(self, _free_ssl, ssl)
        rbio, wbio = L.BIO_new(L.BIO_s_mem()), L.BIO_new(L.BIO_s_mem())
        L.SSL_set_bio(ssl, rbio, wbio)  # the SSL owns them now
        self._ssl, self._rbio, self._wbio = ssl, rbio, wbio

    def close(self) -> None:
        """Send close_notify (if the handshake finished) into ``data_to_send`` and free the SSL."""
        if self._finalizer is None or not self._finalizer.alive:
            return
        self._finalizer.detach()
        if self.handshake_complete:
            L.SSL_shutdown(self._ssl)  # writes close_notify
            self._flush()
        _free_ssl(self._ssl)
        self._ssl = self._rbio = self._wbio = 0

    def receive(self, data: bytes, now: float) -> None:
        if self._finalizer is None:
            raise TlsError("receive() before start()")
        if not self._ssl:
            return  # closed: like a closed socket, drop what still arrives
        L.BIO_write(self._rbio, data, len(data))
        try:
            self._on_ciphertext(now)
        finally:
            self._flush()

    def _on_ciphertext(self, now: float) -> None: ...

    def _flush(self) -> None:
        if self._wbio:
            self._outgoing += L.drain_bio(self._wbio)

    def _failure(self, result: int, what: str) -> int:
        """The SSL_get_error code for a failed call; raises unless it just wants more bytes."""
        error = L.SSL_get_error(self._ssl, result)
        if error in (L.SSL_ERROR_WANT_READ, L.SSL_ERROR_ZERO_RETURN):
            L.ERR_clear_error()
            return error
        verify = L.SSL_get_verify_result(self._ssl)
        detail = f" (certificate: {L.X509_verify_cert_error_string(verify).decode()})" if verify else ""
        raise TlsError(f"{what} failed, SSL_get_error {error}: {L.error_text()}{detail}")

    def _advance_handshake(self) -> None:
        L.ERR_clear_error()
        result = L.SSL_do_handshake(self._ssl)
        if result != 1:
            self._failure(result, "handshake")
            return
        self.handshake_complete = True
        self.early_data = _EARLY_DATA_NAME[L.SSL_get_early_data_status(self._ssl)]
        cipher = L.SSL_get_current_cipher(self._ssl)
        self._events.append(
            HandshakeCompleted(
                tls_version=L.SSL_get_version(self._ssl).decode().removeprefix("TLSv"),
                resumed=bool(L.SSL_session_reused(self._ssl)),
                early_data=self.early_data,
                cipher=L.SSL_CIPHER_get_name(cipher).decode() if cipher else "?",
            )
        )
        self._on_handshake_complete()

    def _read_plaintext(self, now: float) -> None:
        while True:
            L.ERR_clear_error()
            if L.SSL_read_ex(self._ssl, self._buffer, _READ_CHUNK, ctypes.byref(self._count)) != 1:
                self._failure(0, "read")
                return
            self._on_plaintext(self._buffer.raw[: self._count.value], now)

    def _write(self, data: bytes) -> None:
        L.ERR_clear_error()
        if L.SSL_write_ex(self._ssl, data, len(data), ctypes.byref(self._count)) != 1:
            self._failure(0, "write")

    def _on_handshake_complete(self) -> None: ...

    def _on_plaintext(self, data: bytes, now: float) -> None: ...


class EarlyHttpClient(TlsExchangeClient, _EarlyEndpoint):
    """GET over TLS 1.3, sent as early data when ``session`` allows it.

    ``session``: an ``EarlySession`` from an earlier client on the same config; without one (or
    with ``send_early_data=False``) this is a plain TLS 1.3 (resumed) handshake.
    """

    def __init__(
        self, config: EarlyClientConfig, session: EarlySession | None = None, *, send_early_data: bool = True,
        path: str | None = None, upload: Upload | None = None,
    ) -> None:
        """``path``: the first request's target, when not the config's; ``upload``: its body (a POST)."""
        super().__init__(config.context, upload=upload)
        self.config = config
        self._path = config.path if path is None else path
        self._offered_session = session
        self._send_early_data = send_early_data
        self._ticket: EarlySession | None = None
        self.early_data_sent = False
        self.early_data = "none"
        self.alpn: str | None = None

    @property
    def request_at_start(self) -> bool:
        return self.early_data_sent

    def _new_exchange(self, alpn: str | None) -> list[bytes]:
        """The first request afresh, one item per write."""
        self._exchange = client_exchange(alpn, self.config.http_authority, self._path, self._upload)
        return self._exchange.request_writes()

    def start(self, now: float) -> None:
        self._new_ssl()
        ssl, name = self._ssl, self.config.server_name.encode()
        L.SSL_set_connect_state(ssl)
        L.SSL_ctrl(ssl, L.SSL_CTRL_SET_TLSEXT_HOSTNAME, L.TLSEXT_NAMETYPE_host_name, name)
        if L.SSL_set1_host(ssl, name) != 1:
            raise TlsError(f"SSL_set1_host: {L.error_text()}")
        session = self._offered_session
        if session is not None and L.SSL_set_session(ssl, session.pointer) != 1:
            raise TlsError(f"SSL_set_session: {L.error_text()}")
        try:
            if self._send_early_data and session is not None and session.resumable and session.max_early_data:
                writes = self._new_exchange(L.session_alpn(session.pointer))
                if sum(map(len, writes)) <= session.max_early_data:
                    # The first writes the ClientHello and then the request under the early traffic key.
                    for write in writes:
                        L.ERR_clear_error()
                        if L.SSL_write_early_data(ssl, write, len(write), ctypes.byref(self._count)) != 1:
                            self._failure(0, "write early data")
                        self._flush()
                        self.end_write()
                    self.early_data_sent = True
            self._advance_handshake()
        finally:
            self._flush()

    @property
    def session(self) -> EarlySession | None:
        """The newest ticket the server sent, for the next connection.

        Tickets come after the handshake (with accepted 0-RTT, one flight after the response),
        so keep delivering the server's bytes until the connection is quiet.
        """
        return self._ticket

    def _on_ciphertext(self, now: float) -> None:
        if not self.handshake_complete:
            self._advance_handshake()
        if self.handshake_complete:
            self._read_plaintext(now)
            ticket = _TICKETS.pop(self._ssl, None)
            if ticket:
                self._ticket = EarlySession(ticket)

    def _on_handshake_complete(self) -> None:
        self.alpn = L.selected_alpn(self._ssl)
        if self.early_data != "accepted":
            if self.early_data_sent:
                self._events.append(EarlyDataResent())
            self._write_request(self._new_exchange(self.alpn))  # afresh: the server read none of the early bytes
        self._fetch_held()


class EarlyHttpServer(_EarlyEndpoint):
    """Answers each GET ``server_time_s`` after it is complete, in 0.5-RTT data when it came as
    early data and the client's Finished has not arrived yet.

    ``accept_early_data=False`` rejects 0-RTT through the allow-early-data callback: the ticket
    still resumes the session. (Setting this SSL's max_early_data to 0 instead would make
    OpenSSL look the stateful ticket up as a stateless one, so resumption would fail too.)
    """

    def __init__(
        self, config: EarlyServerConfig, *, accept_early_data: bool = True, body_bytes: int = DEFAULT_BODY_BYTES,
        server_time_s: float = 0.0,
    ) -> None:
        super().__init__(config.context)
        self.config = config
        self.accept_early_data = accept_early_data
        self._body_bytes = body_bytes
        self._server_time_s = server_time_s
        self._exchange: ServerExchange | Http2ServerExchange | None = None
        """Made once ALPN has settled the protocol: at the first request byte or the handshake's end."""
        self._reading_early_data = True
        self.early_data = "none"

    def start(self, now: float) -> None:
        self._new_ssl()
        L.SSL_set_accept_state(self._ssl)
        if not self.accept_early_data:
            L.SSL_set_allow_early_data_cb(self._ssl, _REJECT_EARLY_DATA, None)

    def get_timer(self) -> float | None:
        """The answer's time, while it can be written: not after ``close()``, and not between
        the client's EndOfEarlyData and its Finished (neither 0.5-RTT nor 1-RTT data then; the
        handshake's completion writes it)."""
        if not self._ssl or self._exchange is None or not self._writable:
            return None
        return self._exchange.respond_at

    def handle_timer(self, now: float) -> None:
        if self.get_timer() is None:
            return
        try:
            self._answer_if_due(now)
        finally:
            self._flush()

    def _on_ciphertext(self, now: float) -> None:
        if self._reading_early_data:
            self._read_early_data(now)
        if not self._reading_early_data and not self.handshake_complete:
            self._advance_handshake()
        if self.handshake_complete:
            self._exchange_now()
            self._read_plaintext(now)
            self._answer_if_due(now)  # an early-data request held past the client's Finished
            self._send_own()

    def _read_early_data(self, now: float) -> None:
        """SSL_read_early_data until FINISH: sends the server flight, then yields any 0-RTT bytes."""
        while True:
            L.ERR_clear_error()
            result = L.SSL_read_early_data(self._ssl, self._buffer, _READ_CHUNK, ctypes.byref(self._count))
            if result == L.SSL_READ_EARLY_DATA_SUCCESS:
                self._on_request_bytes(self._buffer.raw[: self._count.value], now, in_early_data=True)
            elif result == L.SSL_READ_EARLY_DATA_FINISH:
                self._reading_early_data = False
                return
            else:
                self._failure(0, "read early data")
                return

    def _on_plaintext(self, data: bytes, now: float) -> None:
        self._on_request_bytes(data, now, in_early_data=False)

    def _on_request_bytes(self, data: bytes, now: float, *, in_early_data: bool) -> None:
        requests = self._exchange_now().receive(data, now, in_early_data=in_early_data)
        self._events.extend(requests)
        if requests:
            self._answer_if_due(now)
        self._send_own()

    def _exchange_now(self) -> ServerExchange | Http2ServerExchange:
        """The exchange for the protocol ALPN chose (known once the ClientHello is read)."""
        if self._exchange is None:
            self._exchange = server_exchange(L.selected_alpn(self._ssl), self._body_bytes, self._server_time_s)
        return self._exchange

    @property
    def _writable(self) -> bool:
        """Neither 0.5-RTT nor 1-RTT data can be written between the client's EndOfEarlyData and
        its Finished."""
        return self._reading_early_data or self.handshake_complete

    def _send(self, data: bytes) -> None:
        """As 0.5-RTT data while the client's Finished has not come (RFC 8446 §2.3), as
        application data after it."""
        if self._reading_early_data:  # 0.5-RTT: after our Finished, before the client's
            L.ERR_clear_error()
            if L.SSL_write_early_data(self._ssl, data, len(data), ctypes.byref(self._count)) != 1:
                self._failure(0, "write 0.5-RTT data")
        else:
            self._write(data)

    def _send_own(self) -> None:
        """What the exchange says on its own (HTTP/2: SETTINGS, their ACK, more of the body)."""
        if self._exchange is not None and self._writable:
            more = self._exchange.data_to_send()
            if more:
                self._send(more)

    def _answer_if_due(self, now: float) -> None:
        """Write the answer once its server time is over."""
        if self._exchange is not None and self._writable and self._exchange.due(now):
            self._send(self._exchange.response())
