"""Sans-IO protocol endpoints: bytes in, bytes and events out, no sockets, no clock.

Every endpoint implements ``StreamEndpoint`` (``start``, ``receive``, ``data_to_send``,
``next_event``); the servers also have aioquic's timer pair (``get_timer``, ``handle_timer``:
``TimedStreamEndpoint``), on which they send an answer held for its server time. Pick the pair
for a variant:

- ``http``: ``HttpClient`` / ``HttpServer``
- ``tls12``, ``tls13`` and their ``-resume``: ``TlsHttpClient`` / ``TlsHttpServer`` (stdlib ssl)
- ``tls13-0rtt``: ``EarlyHttpClient`` / ``EarlyHttpServer`` (libssl via ctypes)

Configs own the OpenSSL contexts, so build one per identity and reuse it: sessions only resume
on the context that made them.
"""

from ._base import TlsError
from .certs import CertChain, ChainFiles, make_chain
from .events import (
    EarlyDataResent,
    Event,
    HandshakeCompleted,
    RequestReceived,
    ResponseReceived,
    StreamEndpoint,
    TimedStreamEndpoint,
)
from .http1 import HttpClient, HttpServer
from .tls_early import EarlyClientConfig, EarlyHttpClient, EarlyHttpServer, EarlyServerConfig, EarlySession
from .tls_stdlib import TlsClientConfig, TlsHttpClient, TlsHttpServer, TlsServerConfig

__all__ = [
    "CertChain",
    "ChainFiles",
    "EarlyClientConfig",
    "EarlyDataResent",
    "EarlyHttpClient",
    "EarlyHttpServer",
    "EarlyServerConfig",
    "EarlySession",
    "Event",
    "HandshakeCompleted",
    "HttpClient",
    "HttpServer",
    "RequestReceived",
    "ResponseReceived",
    "StreamEndpoint",
    "TimedStreamEndpoint",
    "TlsClientConfig",
    "TlsError",
    "TlsHttpClient",
    "TlsHttpServer",
    "TlsServerConfig",
    "make_chain",
]
