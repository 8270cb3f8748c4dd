"""Who a QUIC endpoint is: certificates, ticket store, key log; shared by its connections.

aioquic keeps all of this in a ``QuicConfiguration``; the configs here build those, own the
key-log file object aioquic writes into, and (server side) hold the session-ticket store that
aioquic leaves to the application (``session_ticket_fetcher`` / ``session_ticket_handler``).
"""

from __future__ import annotations

import dataclasses
import os
import weakref
from dataclasses import dataclass, field
from functools import cached_property
from typing import TextIO

from aioquic.quic.configuration import QuicConfiguration
from aioquic.tls import SessionTicket, load_pem_private_key, load_pem_x509_certificates

from ._files import create_private_file
from .certs import CertChain
from .http1 import DEFAULT_BODY_BYTES

ALPN_H3 = "h3"
MAX_SERVER_TICKETS = 1024
"""Each connection leaves one ticket in the server store (one ever used); bound it."""


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
    tickets: dict[bytes, SessionTicket] = field(default_factory=dict, repr=False)
    """Issued session tickets by ticket label: the store aioquic asks the application to keep."""

    @cached_property
    def quic_configuration(self) -> QuicConfiguration:
        """Shared by every connection (aioquic only reads it on the server side)."""
        certificates = load_pem_x509_certificates(self.chain.chain_pem)
        return QuicConfiguration(
            is_client=False,
            alpn_protocols=[ALPN_H3],
            certificate=certificates[0],
            certificate_chain=certificates[1:],
            private_key=load_pem_private_key(self.chain.leaf_key_pem),
            secrets_log_file=self.keylog_file,
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
class QuicClientConfig(_KeylogOwner):
    """A QUIC + HTTP/3 client: whom it trusts, the name it asks for, where its key log goes."""

    ca_pem: bytes
    server_name: str = "server.test"
    keylog_path: str | os.PathLike[str] | None = None

    @classmethod
    def for_chain(cls, chain: CertChain, **kwargs) -> QuicClientConfig:
        """A client that trusts ``chain``'s CA and asks for its name."""
        return cls(ca_pem=chain.ca_pem, server_name=chain.server_name, **kwargs)

    def quic_configuration(self, session_ticket: SessionTicket | None) -> QuicConfiguration:
        """A fresh configuration per connection: aioquic reads the ticket to offer from it."""
        return QuicConfiguration(
            is_client=True,
            alpn_protocols=[ALPN_H3],
            server_name=self.server_name,
            cadata=self.ca_pem,
            secrets_log_file=self.keylog_file,
            session_ticket=session_ticket,
        )


def without_early_data(ticket: SessionTicket) -> SessionTicket:
    """The same ticket, no longer allowing 0-RTT: the ClientHello then offers no early_data."""
    return dataclasses.replace(ticket, max_early_data_size=None)
