"""QUIC + HTTP/3 endpoints on aioquic, sans-IO: datagrams in, datagrams and events out.

aioquic's ``QuicConnection`` already has this shape (every call takes ``now``); these endpoints
add what its asyncio layer would: the server's per-port routing by connection ID, stateless
Retry, the session-ticket store, and one HTTP/3 ``GET /`` exchange.

- ``QuicServerConfig`` / ``QuicHttpServer`` (``quic_server``): UDP port 443 of the server.
- ``QuicClientConfig`` / ``QuicHttpClient`` (``quic_client``): one connection, one request.

Round trips, client's first Initial to the response (fixed delay, measured by the tests):
full handshake 2; 0-RTT 1; 0-RTT rejected 2 (3 with ``eager_resend=False``: aioquic alone
resends the refused request only when its loss detection notices, a round trip later); Retry
+1; a server flight over 3x the client's bytes (anti-amplification, RFC 9000 §8.1) +1.

Session tickets: aioquic's server sends its NewSessionTicket when the client's Finished
arrives; after a full handshake the ticket travels with the response, after 0-RTT a round
trip behind it (the response left in the server's first flight). ``QuicHttpClient
.session_ticket`` holds it from the moment it is read. Every ticket aioquic issues allows
0-RTT (max_early_data 0xffffffff, RFC 9001 §4.6.1), and its client aborts on any other value.

HelloRetryRequest is not supported by aioquic 1.7.2, on either side (checked in
``aioquic/tls.py``): the client offers a key share for every group it supports (P-256, P-384,
X25519, X448), its ``State`` machine has no HRR state, and it parses any ServerHello as a real
one (no check of the HRR random of RFC 8446 §4.1.3, no cookie), so an HRR fails with
``decode_error`` (its key_share holds a group, not a key); the server, finding no key share of a
group it supports, aborts with ``handshake_failure`` ("No supported key share") instead of
asking for one. So QUIC rows cannot show the HRR round trip.

Key logs: aioquic writes NSS lines (``CLIENT_EARLY_TRAFFIC_SECRET`` when 0-RTT is offered,
``CLIENT_/SERVER_HANDSHAKE_TRAFFIC_SECRET``, ``CLIENT_/SERVER_TRAFFIC_SECRET_0``) as it installs
each key and flushes each line; the configs open the file 0600 in append mode. A server that
refuses 0-RTT never installs (nor logs) the early key; the client's log still has it.

Sizes: aioquic draws connection IDs, randoms, tickets and key shares from ``os.urandom``, but
their lengths are fixed (8-byte CIDs, Initials padded to 1200 bytes); ECDSA signatures, whose
DER length varies, are drawn until they have the full length, so every flight has the same
size from run to run. The server's first flight holds at most 3600 bytes (3 x 1200): a p256
chain of about 2.9 KB DER or more, an rsa2048 one of about 2.8 KB, costs the extra round trip.
"""

from __future__ import annotations

from .quic_client import QuicHttpClient
from .quic_config import QuicClientConfig, QuicServerConfig
from .quic_server import QuicHttpServer

__all__ = ["QuicClientConfig", "QuicHttpClient", "QuicHttpServer", "QuicServerConfig"]
