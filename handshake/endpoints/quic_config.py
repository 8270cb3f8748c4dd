"""Who a QUIC endpoint is: certificates, ticket store, key log; shared by its connections.

aioquic keeps all of this in a ``QuicConfiguration``; the configs here build those, own the
key-log file object aioquic writes into, and (server side) hold the session-ticket store that
aioquic leaves to the application (``session_ticket_fetcher`` / ``session_ticket_handler``).
"""

from __future__ import annotations

import dataclasses
import os
import ssl
import weakref
from dataclasses import dataclass, field
from functools import cached_property
from typing import TextIO

from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import CRYPTO_BUFFER_SIZE
from aioquic.tls import CipherSuite, SessionTicket, load_pem_private_key, load_pem_x509_certificates
from cryptography.hazmat.primitives.asymmetric import ec

from handshake.errors import UsageError

from ._files import create_private_file
from .certs import CertChain, ClientIdentity, drawn_until_longest
from .http1 import DEFAULT_BODY_BYTES

Address = tuple[str, int]
ALPN_H3 = "h3"
MAX_SERVER_TICKETS = 1024
"""Each connection leaves one ticket in the server store (one ever used); bound it."""


INITIAL_RTT_S = 0.333
"""RFC 9002 §6.2.2's kInitialRtt. aioquic defaults to 100 ms, which on any path slower than
that fires probe timeouts before the first answer can arrive: spurious Initial probes."""


def open_keylog(path: str | os.PathLike[str]) -> TextIO:
    """An NSS key-log file object for aioquic's ``secrets_log_file``, created 0600 and appended to.

    aioquic writes one line per traffic secret and flushes after each, so a reader sees the
    line as soon as the key is installed; line buffering makes that hold for any other writer too.
    """
    fd = os.open(create_private_file(path, append=True), os.O_WRONLY | os.O_APPEND)
    return os.fdopen(fd, "a", buffering=1, encoding="ascii")


class _KeylogOwner:
    """Mixin: opens ``keylog_path`` once per config and closes it when the config goes away."""

    keylog_path: str | os.PathLike[str] | None

    @cached_property
    def keylog_file(self) -> TextIO | None:
        if self.keylog_path is None:
            return None
        file = open_keylog(self.keylog_path)
        weakref.finalize(self, file.close)
        return file


_QUIC_HANDSHAKE_OTHER_BYTES = 512
"""Room the server's Handshake epoch needs besides the Certificate message: EncryptedExtensions
(ALPN, transport parameters: about 130 bytes), CertificateVerify (264 bytes with RSA-2048),
Finished (36 bytes)."""


def check_quic_chain(chain: CertChain) -> None:
    """aioquic writes each epoch's handshake messages into a fixed buffer (``CRYPTO_BUFFER_SIZE``)
    and fails mid-handshake past it: refuse such a chain up front, in one line."""
    certificate_message = 4 + 1 + 3 + sum(3 + size + 2 for size in chain.der_sizes)  # RFC 8446 §4.4.2
    if certificate_message + _QUIC_HANDSHAKE_OTHER_BYTES > CRYPTO_BUFFER_SIZE:
        raise UsageError(
            f"the QUIC server (aioquic) cannot send this chain: {len(chain.der_sizes)} {chain.key_type} certificates "
            f"make a {certificate_message:,}-byte Certificate message, and aioquic writes at most "
            f"{CRYPTO_BUFFER_SIZE:,} bytes of handshake messages per epoch; use fewer --intermediates "
            "or leave the QUIC variants out"
        )


@dataclass(frozen=True, eq=False)
class QuicServerConfig(_KeylogOwner):
    """One QUIC + HTTP/3 server identity and the ticket store its connections share."""

    chain: CertChain
    retry: bool = False
    """Demand address validation: answer a token-less Initial with a Retry (RFC 9000 §8.1.2)."""
    accept_early_data: bool = True
    """False: resume from the ticket but refuse 0-RTT (the tickets issued still allow it, so a
    client holding one sends 0-RTT, which the server then cannot read)."""
    keylog_path: str | os.PathLike[str] | None = None
    body_bytes: int = DEFAULT_BODY_BYTES
    """Size of the HTTP/3 response body."""
    server_time_s: float = 0.0
    """How long the server holds each request before answering it (a slow origin)."""
    tickets: dict[bytes, SessionTicket] = field(default_factory=dict, repr=False)
    """Issued session tickets by ticket label: the store aioquic asks the application to keep."""

    def __post_init__(self) -> None:
        check_quic_chain(self.chain)

    @cached_property
    def quic_configuration(self) -> QuicConfiguration:
        """Shared by every connection (aioquic only reads it on the server side)."""
        certificates = load_pem_x509_certificates(self.chain.chain_pem)
        return QuicConfiguration(
            is_client=False,
            alpn_protocols=[ALPN_H3],
            certificate=certificates[0],
            certificate_chain=certificates[1:],
            private_key=_fixed_size_signatures(load_pem_private_key(self.chain.leaf_key_pem)),
            secrets_log_file=self.keylog_file,
            initial_rtt=INITIAL_RTT_S,
        )

    def store_ticket(self, ticket: SessionTicket) -> None:
        """aioquic's ``session_ticket_handler``: keep what was issued, the oldest evicted first."""
        self.tickets[ticket.ticket] = ticket
        while len(self.tickets) > MAX_SERVER_TICKETS:
            del self.tickets[next(iter(self.tickets))]

    def fetch_ticket(self, label: bytes) -> SessionTicket | None:
        """aioquic's ``session_ticket_fetcher``: a ticket resumes once (anti-replay, as in
        OpenSSL's default), and the resumed connection is issued a fresh one."""
        return self.tickets.pop(label, None)


@dataclass(frozen=True, eq=False)
class QuicClientConfig(ClientIdentity, _KeylogOwner):
    """A QUIC + HTTP/3 client: whom it trusts, the name it asks for, where its key log goes."""

    def quic_configuration(self, session_ticket: SessionTicket | None) -> QuicConfiguration:
        """A fresh configuration per connection: aioquic reads the ticket to offer from it."""
        return QuicConfiguration(
            is_client=True,
            alpn_protocols=[ALPN_H3],
            server_name=self.server_name,
            cadata=self.ca_pem,  # None: aioquic trusts certifi's public roots
            verify_mode=None if self.verify else ssl.CERT_NONE,
            secrets_log_file=self.keylog_file,
            session_ticket=session_ticket,
            initial_rtt=INITIAL_RTT_S,
        )


def cipher_name(suite: CipherSuite) -> str:
    """aioquic's suite as OpenSSL names it (``TLS_AES_128_GCM_SHA256``)."""
    return f"TLS_{suite.name}"


def without_early_data(ticket: SessionTicket) -> SessionTicket:
    """The same ticket, no longer allowing 0-RTT: the ClientHello then offers no early_data."""
    return dataclasses.replace(ticket, max_early_data_size=None)


class _FixedSizeEcdsaKey(ec.EllipticCurvePrivateKey):
    """An ECDSA key whose signatures are always the longest DER encoding (72 bytes for P-256).

    ECDSA signatures are random and their DER length varies with the top bits of r and s, so
    the server's CertificateVerify, and its first flight, would differ by a byte or two from
    run to run: enough to flip a chain that sits at the anti-amplification limit. Drawing
    signatures until one has the full length (one in four does) keeps the flight size fixed;
    any of them verifies. RSA-PSS signatures have a fixed size already.
    """

    def __init__(self, key: ec.EllipticCurvePrivateKey) -> None:
        self._key = key

    def sign(self, data: bytes, signature_algorithm: ec.EllipticCurveSignatureAlgorithm) -> bytes:
        return drawn_until_longest(lambda: self._key.sign(data, signature_algorithm), lambda signature: signature,
                                   self._key.curve.key_size)

    def exchange(self, algorithm, peer_public_key):
        return self._key.exchange(algorithm, peer_public_key)

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._key.public_key()

    @property
    def curve(self) -> ec.EllipticCurve:
        return self._key.curve

    @property
    def key_size(self) -> int:
        return self._key.key_size

    def private_numbers(self) -> ec.EllipticCurvePrivateNumbers:
        return self._key.private_numbers()

    def private_bytes(self, encoding, format, encryption_algorithm) -> bytes:
        return self._key.private_bytes(encoding, format, encryption_algorithm)

    def __copy__(self) -> _FixedSizeEcdsaKey:
        return self

    def __deepcopy__(self, memo) -> _FixedSizeEcdsaKey:
        return self


def _fixed_size_signatures(key):
    return _FixedSizeEcdsaKey(key) if isinstance(key, ec.EllipticCurvePrivateKey) else key
