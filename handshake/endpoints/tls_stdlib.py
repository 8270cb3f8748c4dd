"""TLS 1.2 / 1.3 endpoints on the stdlib ``ssl`` module (``wrap_bio`` over ``MemoryBIO``).

Contexts live in the config objects because OpenSSL ties state to them: a client session only
resumes on the context that made it, and a server's ticket keys and session cache are per
context. Build one config per server / client identity and reuse it across connections.
"""

from __future__ import annotations

import os
import ssl
import tempfile
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING
from functools import cached_property

from ._base import EventQueue, TlsError, TlsExchangeClient, check_version
from ._files import create_private_file
from .certs import CertChain, ClientIdentity
from .events import HandshakeCompleted
from .http1 import DEFAULT_BODY_BYTES, SERVER_ALPN, ServerExchange, Upload, client_exchange, server_exchange

if TYPE_CHECKING:
    from .http2 import Http2ServerExchange

_TLS_VERSION = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
_VERSION_NAME = {"TLSv1.2": "1.2", "TLSv1.3": "1.3"}
_READ_CHUNK = 65536


@dataclass(frozen=True, eq=False)
class TlsServerConfig:
    """One server identity; holds the SSLContext (ticket keys, session cache) shared by its connections."""

    chain: CertChain
    version: str = "1.3"
    keylog_path: str | os.PathLike[str] | None = None
    tickets: bool = True
    """Issue session tickets. Off, TLS 1.2 still resumes by session id (server cache, about
    1.2 KB a session, up to OpenSSL's default 20480 entries); TLS 1.3, which has no session
    ids, then cannot resume at all."""
    ecdh_curve: str | None = None
    """The one key exchange group the server accepts, e.g. "prime256v1": a client whose first key
    share is another (OpenSSL clients lead with X25519) gets a HelloRetryRequest."""
    alpn: tuple[str, ...] = SERVER_ALPN
    """The protocols the server speaks, in its order of preference (ALPN)."""

    def __post_init__(self) -> None:
        check_version(self.version)

    @cached_property
    def context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ctx.maximum_version = _TLS_VERSION[self.version]
        with tempfile.TemporaryDirectory(prefix="handshake-") as directory:
            files = self.chain.write(directory)  # load_cert_chain reads files only
            ctx.load_cert_chain(files.chain, files.key)
        if self.ecdh_curve is not None:
            ctx.set_ecdh_curve(self.ecdh_curve)
        if self.alpn:
            ctx.set_alpn_protocols(list(self.alpn))  # the server's order decides (SSL_select_next_proto)
        if not self.tickets:
            ctx.options |= ssl.OP_NO_TICKET  # TLS 1.2 tickets
            ctx.num_tickets = 0  # TLS 1.3 tickets (OP_NO_TICKET only makes them stateful)
        _set_keylog(ctx, self.keylog_path)
        return ctx


@dataclass(frozen=True, eq=False)
class TlsClientConfig(ClientIdentity):
    """One client; holds the SSLContext its sessions belong to (they resume only on it)."""

    version: str = "1.3"

    def __post_init__(self) -> None:
        check_version(self.version)

    @cached_property
    def context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the chain and the host name
        ctx.minimum_version = ctx.maximum_version = _TLS_VERSION[self.version]
        if self.ca_pem is None:
            ctx.load_default_certs()
        else:
            ctx.load_verify_locations(cadata=self.ca_pem.decode("ascii"))
        if not self.verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.alpn:
            ctx.set_alpn_protocols(list(self.alpn))
        _set_keylog(ctx, self.keylog_path)
        return ctx


def _set_keylog(ctx: ssl.SSLContext, path: str | os.PathLike[str] | None) -> None:
    """NSS key log; OpenSSL would create the file with the umask, so make it 0600 first."""
    if path is not None:
        create_private_file(path, append=True)
        ctx.keylog_filename = os.fspath(path)


def _shutdown(tls: ssl.SSLObject) -> None:
    """SSL_shutdown, so OpenSSL keeps the session resumable; the peer's close_notify is not awaited."""
    try:
        tls.unwrap()
    except (ssl.SSLWantReadError, ssl.SSLError):
        pass  # not awaiting the peer's close_notify / handshake never finished


class _TlsEndpoint(EventQueue):
    """Shared drive loop: feed ciphertext, finish the handshake, then read plaintext."""

    def __init__(self) -> None:
        super().__init__()
        self._incoming = ssl.MemoryBIO()
        self._outgoing_bio = ssl.MemoryBIO()
        self._tls: ssl.SSLObject | None = None
        self._finalizer: weakref.finalize | None = None
        self.handshake_complete = False

    def receive(self, data: bytes, now: float) -> None:
        if self.closed:
            return  # closed: like a closed socket, drop what still arrives
        self._incoming.write(data)
        try:
            if not self.handshake_complete:
                self._advance_handshake()
            if self.handshake_complete:
                self._read_plaintext(now)
        finally:
            self._flush()

    @property
    def closed(self) -> bool:
        return self._finalizer is not None and not self._finalizer.alive

    def close(self) -> None:
        """Send close_notify (into ``data_to_send``) and release the connection.

        OpenSSL forgets a session whose connection is freed without a shutdown (the server drops
        it from its cache, so TLS 1.2 session-id resumption fails); a finalizer does the same
        silently if an endpoint is dropped without ``close()``.
        """
        if self._finalizer is not None:
            self._finalizer()
            self._flush()

    def _wrap(self, context: ssl.SSLContext, **kwargs) -> None:
        self._tls = context.wrap_bio(self._incoming, self._outgoing_bio, **kwargs)
        self._finalizer = weakref.finalize(self, _shutdown, self._tls)

    def _advance_handshake(self) -> None:
        assert self._tls is not None, "start() first"
        try:
            self._tls.do_handshake()
        except ssl.SSLWantReadError:
            return
        except ssl.SSLError as exc:
            raise TlsError(f"handshake failed: {exc}") from exc
        self.handshake_complete = True
        version = self._tls.version() or "?"
        self._events.append(
            HandshakeCompleted(
                tls_version=_VERSION_NAME.get(version, version),
                resumed=self._tls.session_reused,
                early_data="none",
                cipher=self._tls.cipher()[0],
            )
        )
        self._on_handshake_complete()

    def _read_plaintext(self, now: float) -> None:
        assert self._tls is not None
        while True:
            try:
                data = self._tls.read(_READ_CHUNK)
            except ssl.SSLWantReadError:
                return
            except ssl.SSLZeroReturnError:
                return  # close_notify: nothing more will come
            except ssl.SSLError as exc:
                raise TlsError(f"read failed: {exc}") from exc
            if not data:
                return
            self._on_plaintext(data, now)

    def _write(self, data: bytes) -> None:
        assert self._tls is not None
        self._tls.write(data)

    def _flush(self) -> None:
        if self._outgoing_bio.pending:
            self._outgoing += self._outgoing_bio.read()

    def _on_handshake_complete(self) -> None: ...

    def _on_plaintext(self, data: bytes, now: float) -> None: ...


class TlsHttpClient(TlsExchangeClient, _TlsEndpoint):
    """GET over TLS: the request leaves with (TLS 1.3) or right after (1.2) the client Finished.

    OpenSSL has no False Start, so a TLS 1.2 client waits for the server's Finished first.
    HTTP/2 where ALPN settles on it (the config offers "h2"), HTTP/1.1 otherwise.
    """

    request_at_start = False

    def __init__(self, config: TlsClientConfig, session: ssl.SSLSession | None = None, *,
                 path: str | None = None, upload: Upload | None = None) -> None:
        """``path``: the first request's target, when not the config's; ``upload``: its body (a POST)."""
        super().__init__(upload=upload)
        self.config = config
        self._path = config.path if path is None else path
        self._offered_session = session
        self.alpn: str | None = None

    def start(self, now: float) -> None:
        self._wrap(
            self.config.context, server_side=False,
            server_hostname=self.config.server_name, session=self._offered_session,
        )
        try:
            self._advance_handshake()  # writes the ClientHello
        finally:
            self._flush()

    @property
    def session(self) -> ssl.SSLSession | None:
        """The session to resume with, once the response is in.

        A TLS 1.3 ticket arrives after the handshake and is only processed when the client
        reads; taken earlier, the session is not resumable and the next connection silently
        makes a full handshake. The server sends its tickets ahead of the response, so after
        the response they have been read.
        """
        if self._tls is None or self._exchange is None or not self._exchange.done:
            return None
        return self._tls.session

    def _on_handshake_complete(self) -> None:
        assert self._tls is not None
        self.alpn = self._tls.selected_alpn_protocol()
        self._exchange = client_exchange(self.alpn, self.config.http_authority, self._path, self._upload)
        self._write_request(self._exchange.request_writes())
        self._fetch_held()


class TlsHttpServer(_TlsEndpoint):
    """Answers each GET on a TLS connection, ``server_time_s`` after it is complete, in HTTP/2 or
    HTTP/1.1 as ALPN settles.

    Only the answer waits: TLS 1.3 tickets leave at once, since OpenSSL writes them as it reads
    the client's Finished, before the request is even read (as nginx's do in front of a slow
    origin), and so do HTTP/2's SETTINGS, written the moment the handshake completes.
    """

    def __init__(self, config: TlsServerConfig, body_bytes: int = DEFAULT_BODY_BYTES,
                 server_time_s: float = 0.0) -> None:
        super().__init__()
        self.config = config
        self._body_bytes = body_bytes
        self._server_time_s = server_time_s
        self._exchange: ServerExchange | Http2ServerExchange | None = None
        """Made once the handshake has settled the protocol."""

    def start(self, now: float) -> None:
        self._wrap(self.config.context, server_side=True)

    def get_timer(self) -> float | None:
        return None if self.closed or self._exchange is None else self._exchange.respond_at

    def handle_timer(self, now: float) -> None:
        if self.closed or self._exchange is None or not self._exchange.due(now):
            return
        try:
            self._write(self._exchange.response())
        finally:
            self._flush()

    def _on_handshake_complete(self) -> None:
        assert self._tls is not None
        self._exchange = server_exchange(self._tls.selected_alpn_protocol(), self._body_bytes, self._server_time_s)
        self._write_own()

    def _on_plaintext(self, data: bytes, now: float) -> None:
        assert self._exchange is not None
        requests = self._exchange.receive(data, now)
        self._events.extend(requests)
        if requests and self._exchange.due(now):
            self._write(self._exchange.response())
        self._write_own()

    def _write_own(self) -> None:
        """What the exchange says on its own (HTTP/2: SETTINGS, their ACK, more of the body)."""
        assert self._exchange is not None
        more = self._exchange.data_to_send()
        if more:
            self._write(more)
