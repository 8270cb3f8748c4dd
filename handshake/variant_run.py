"""One run of one variant, as both engines see it: its knobs (``RunOptions``), the endpoints it
pairs (``VariantEndpoints``) and its raw result (``VariantRun``).

It lives below ``runner`` (which turns runs into rows) and ``kernel.engine`` (which makes runs on
real sockets), so that an engine knows nothing of the runner.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from handshake.endpoints.certs import make_chain
from handshake.endpoints.events import StreamEndpoint
from handshake.endpoints.http1 import CLIENT_ALPN, DEFAULT_BODY_BYTES, HttpClient, HttpServer, Upload
from handshake.endpoints.tls_early import EarlyClientConfig, EarlyHttpClient, EarlyHttpServer, EarlyServerConfig
from handshake.endpoints.tls_stdlib import TlsClientConfig, TlsHttpClient, TlsHttpServer, TlsServerConfig
from handshake.net.sim import CLIENT_ADDR, HTTP_PORT, HTTPS_PORT, SERVER_ADDR
from handshake.page import Page
from handshake.trace.record import Trace
from handshake.variants import Variant

if TYPE_CHECKING:  # aioquic costs ~0.12 s to import: only QUIC variants load it
    from handshake.endpoints.quic_client import QuicHttpClient
    from handshake.endpoints.quic_server import QuicHttpServer


@dataclass(frozen=True)
class RunOptions:
    """The knobs that add round trips (issue: named causes), besides the network itself."""

    key_type: str = "p256"
    """Server key and certificate chain: "p256" or "rsa2048"."""
    intermediates: int = 1
    """Intermediate CA certificates in the chain the server sends."""
    accept_early_data: bool = True
    """False: the server refuses 0-RTT (the ticket still resumes)."""
    hrr: bool = False
    """The server accepts only P-256, so a client leading with an X25519 key share gets a HelloRetryRequest."""
    retry: bool = False
    """QUIC: the server demands address validation with a Retry."""
    cold: bool = False
    """Warm variants skip their warm-up: no ticket, no TFO cookie (a first visit)."""
    drops: tuple[str, ...] = ()
    """Packets of the measured connection to drop once each (``net.drops`` selectors)."""
    response_bytes: int = DEFAULT_BODY_BYTES
    """Size of the HTTP response body: the first byte's round trips do not depend on it, the
    transfer after it (and a capture's packet count) does."""
    server_time_s: float = 0.0
    """How long the server holds each request before its answer leaves (a slow origin behind a
    proxy): server time, never a round trip (DESIGN.md §6). Only the HTTP answer waits; TLS 1.3
    tickets and QUIC's own frames leave at once."""
    http: str = "2"
    """The HTTP the TLS-over-TCP variants ask for in ALPN: "2" (h2, then http/1.1: what browsers
    and curl offer) or "1.1". The plain ``http`` variant speaks HTTP/1.1, QUIC HTTP/3."""
    page: Page | None = None
    """Fetch a page (``--page 30x20KB``) rather than one small answer: the HTML, then every other
    object at once (``page.py``); rows then get ``page_ms``."""
    upload: Upload | None = None
    """The request is a POST with this body (``--post SIZE``), written with the header section or
    apart from it (``--split-writes``)."""
    nodelay: bool = True
    """The client sets TCP_NODELAY, as curl and browsers do; False leaves Nagle's algorithm on, as
    a program that never sets it does (``--split-writes`` without ``--nodelay``)."""

    def __post_init__(self) -> None:
        if self.upload is not None and self.page is not None:
            raise ValueError("--post sends one request; a page (--page) is fetched with GETs")


@dataclass
class VariantRun:
    """The raw result of one variant: its trace, and what the run itself knows happened."""

    variant: Variant
    trace: Trace
    warmup_connections: int
    error: str | None = None
    dropped: tuple[str, ...] = ()
    """Drop selectors that matched a packet (and so dropped it)."""
    options: RunOptions = field(default_factory=lambda: RunOptions())
    endpoint_busy_s: float | None = None
    """Kernel engine: how long the endpoints' own code ran between the measured connection's
    first packet and its first response byte. The sim's endpoints take no virtual time: less
    this, a kernel TTFB is within a fraction of a percent of the sim's (bench_engines.py)."""
    client_port: int | None = None
    """The measured connection's client port (kernel engine; a page's first connection, both
    engines). Under loss the trace may also hold a
    straggler of an earlier connection (a server FIN retransmitted after the run began) that the
    last flow would be; the sim's trace holds this run's connections alone."""
    endpoint_busy_page_s: float | None = None
    """Kernel engine, a page: how long the endpoints' own code ran from the page's first packet to
    its last response (the sim's takes no virtual time)."""


class VariantEndpoints:
    """Makes the client and server endpoints of one variant, sharing the configs that tie sessions together."""

    def __init__(self, variant: Variant, options: RunOptions, keylog_path: Path) -> None:
        self.variant = variant
        self.options = options
        chain = make_chain(options.key_type, options.intermediates)
        self.port = HTTP_PORT if variant.tls_version is None else HTTPS_PORT
        self._server_config: Any = None
        self._client_config: Any = None
        if variant.transport == "quic":
            from handshake.endpoints.quic_config import QuicClientConfig, QuicServerConfig

            self._server_config = QuicServerConfig(
                chain, retry=options.retry, accept_early_data=options.accept_early_data,
                body_bytes=options.response_bytes, server_time_s=options.server_time_s,
            )
            self._client_config = QuicClientConfig.for_chain(chain, keylog_path=keylog_path)
        elif variant.early_data:
            self._server_config = EarlyServerConfig(chain, groups="P-256" if options.hrr else None)
            self._client_config = EarlyClientConfig.for_chain(
                chain, keylog_path=keylog_path, alpn=CLIENT_ALPN[options.http])
        elif variant.tls_version is not None:
            self._server_config = TlsServerConfig(
                chain, version=variant.tls_version, ecdh_curve="prime256v1" if options.hrr else None
            )
            self._client_config = TlsClientConfig.for_chain(
                chain, version=variant.tls_version, keylog_path=keylog_path, alpn=CLIENT_ALPN[options.http]
            )

    def server(self) -> StreamEndpoint:
        body_bytes, server_time_s = self.options.response_bytes, self.options.server_time_s
        if self.variant.tls_version is None:
            return HttpServer(body_bytes, server_time_s)
        if self.variant.early_data:
            return EarlyHttpServer(self._server_config, accept_early_data=self.options.accept_early_data,
                                   body_bytes=body_bytes, server_time_s=server_time_s)
        return TlsHttpServer(self._server_config, body_bytes, server_time_s)

    def client(self, session: Any = None, path: str = "/") -> StreamEndpoint:
        """``path``: the first request's target."""
        upload = self.options.upload
        if self.variant.tls_version is None:
            return HttpClient(path=path, upload=upload)
        if self.variant.early_data:
            return EarlyHttpClient(self._client_config, session, path=path, upload=upload)
        return TlsHttpClient(self._client_config, session, path=path, upload=upload)

    def quic_server(self) -> QuicHttpServer:
        from handshake.endpoints.quic_server import QuicHttpServer

        return QuicHttpServer(self._server_config)

    def quic_client(self, ticket: Any = None, path: str = "/") -> QuicHttpClient:
        from handshake.endpoints.quic_client import QuicHttpClient

        return QuicHttpClient(
            self._client_config,
            ticket,
            path=path,
            upload=self.options.upload,
            server_addr=(SERVER_ADDR, self.port),
            early_data=self.variant.early_data,
            local_addr=(CLIENT_ADDR, 0),
        )
