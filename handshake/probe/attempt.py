"""One variant tried against the server: its warm-up (if it has one) and its measured connection,
and what the server would not do, in words.

The variants are the catalog's (``variants.CATALOG``) that need TLS. A warm variant first makes
a connection for what it needs -- a session (TLS 1.2 ticket or session id, TLS 1.3 ticket), a TFO
cookie (kept by the kernel, per server), or both -- as ``compare`` does; the measured connection
then uses it. What the server refused is named by feature, so the summary can say what enabling
it would save: "tls1.2", "tls1.3", "resumption", "0-rtt", "tfo", "http3", "quic-0rtt".
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from handshake.endpoints import http2  # noqa: F401  (now, not inside the first timed HTTP/2 exchange: ~14 ms)
from handshake.endpoints.tls_early import EarlyClientConfig, EarlyHttpClient
from handshake.endpoints.tls_stdlib import TlsClientConfig, TlsHttpClient
from handshake.variants import Variant

from .connect import Connection, quic_connection, tcp_connection, tfo_failure_reason
from .target import Target

__all__ = ["Attempt", "ProbeClients", "attempt_variant", "alt_svc_h3_port"]

ALPN_OVER_TCP = ("h2", "http/1.1")
"""What browsers and curl offer: the server's choice says which HTTP the TCP rows speak."""


@dataclass
class Attempt:
    """One variant in one run."""

    variant: Variant
    connections: list[Connection] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    """Features the server did not grant (see the module docstring)."""
    reasons: list[str] = field(default_factory=list)
    """Why, one sentence each, naming the feature."""
    error: str | None = None
    """The variant could not be measured: what failed, one line."""

    @property
    def measured(self) -> Connection | None:
        return next((c for c in self.connections if c.role == "measured"), None)

    def refuse(self, feature: str, reason: str) -> None:
        if feature not in self.refused:
            self.refused.append(feature)
            self.reasons.append(reason)


class ProbeClients:
    """The client configs of one probe, one per TLS stack and version: sessions resume only on the
    context that made them, so each warm-up and its measured connection share one."""

    def __init__(self, target: Target, *, ca_pem: bytes | None, verify: bool,
                 keylog_path: str | os.PathLike[str]) -> None:
        self.target = target
        identity: dict[str, Any] = dict(
            ca_pem=ca_pem, server_name=target.sni or target.host, keylog_path=keylog_path, verify=verify,
            path=target.path, authority=target.authority,
        )
        self.tls = {version: TlsClientConfig(version=version, alpn=ALPN_OVER_TCP, **identity)
                    for version in ("1.2", "1.3")}
        self.early = EarlyClientConfig(alpn=ALPN_OVER_TCP, **identity)
        for config in (*self.tls.values(), self.early):
            config.context  # built now (trust store, key log), not while a connection is timed
        self._identity = identity
        self._quic: Any = None

    @property
    def quic(self) -> Any:
        if self._quic is None:  # aioquic costs ~0.12 s to import: only when QUIC is tried
            from handshake.endpoints.quic_config import QuicClientConfig

            self._quic = QuicClientConfig(**self._identity)
        return self._quic

    def stream_client(self, variant: Variant, ticket: Any) -> Any:
        if variant.early_data:
            return EarlyHttpClient(self.early, ticket)
        assert variant.tls_version is not None
        return TlsHttpClient(self.tls[variant.tls_version], ticket)

    def quic_client(self, ticket: Any, port: int, early_data: bool) -> Any:
        from handshake.endpoints.quic_client import QuicHttpClient

        return QuicHttpClient(self.quic, ticket, server_addr=self.target.endpoint(port), early_data=early_data,
                              local_addr=(self.target.local_address or "0.0.0.0", 0))


def _version_refused(error: str) -> bool:
    text = error.upper()
    return any(mark in text for mark in ("PROTOCOL_VERSION", "UNSUPPORTED_PROTOCOL", "NO_PROTOCOLS_AVAILABLE",
                                         "WRONG_SSL_VERSION", "TLSV1_ALERT_PROTOCOL_VERSION"))


def _ticket_problem(variant: Variant, ticket: Any) -> tuple[str, str] | None:
    """Why the warm-up's session cannot do what the variant needs, if it cannot."""
    if ticket is None:
        return "resumption", "no session to resume: the server issued no ticket"
    if variant.early_data:
        if not ticket.resumable:
            return "resumption", "no session to resume: the server issued no resumable ticket"
        if ticket.max_early_data == 0:
            return "0-rtt", "0-RTT: the ticket allows no early data"
    elif variant.tls_version == "1.3" and not getattr(ticket, "has_ticket", True):
        return "resumption", "no session to resume: the server issued no TLS 1.3 ticket"
    return None


NO_HTTP3 = "no HTTP/3 advertised (no h3 in an HTTPS record or in Alt-Svc; --quic tries anyway)"


def attempt_variant(variant: Variant, clients: ProbeClients, *, limit_s: float, quic_port: int | None,
                    no_quic: str = NO_HTTP3) -> Attempt:
    """Run ``variant`` against the server: warm-up, then the measured connection.

    ``quic_port``: where the server offers HTTP/3; None: QUIC variants are refused, ``no_quic`` says why."""
    attempt = Attempt(variant)
    if variant.transport == "quic":
        if quic_port is None:
            attempt.refuse("http3", no_quic)
            return attempt
        return _attempt_quic(attempt, clients, limit_s, quic_port)

    def connect(ticket: Any, role: str) -> Connection:
        made = tcp_connection(clients.target, clients.stream_client(variant, ticket), tfo=variant.tfo, role=role,
                              limit_s=limit_s)
        attempt.connections.append(made)
        return made

    ticket = None
    if variant.warm:
        warm = connect(None, "warm-up")
        if warm.error is not None:
            _failed(attempt, warm.error, "the warm-up")
            return attempt
        if variant.resume or variant.early_data:
            ticket = warm.ticket
            problem = _ticket_problem(variant, ticket)
            if problem is not None:
                attempt.refuse(*problem)
                if problem[0] == "resumption":
                    ticket = None
    measured = connect(ticket, "measured")
    if measured.error is not None:
        _failed(attempt, measured.error, "the measured connection")
        return attempt
    _judge_tcp(attempt, measured, ticket)
    return attempt


def _failed(attempt: Attempt, error: str, which: str) -> None:
    version = attempt.variant.tls_version
    if version is not None and _version_refused(error):
        attempt.refuse(f"tls{version}", f"TLS {version} not offered: {error}")
    else:
        attempt.error = f"{which}: {error}"


def _judge_tcp(attempt: Attempt, measured: Connection, ticket: Any) -> None:
    variant, handshake = attempt.variant, measured.handshake
    if handshake is not None and variant.tls_version is not None and handshake.tls_version != variant.tls_version:
        attempt.refuse(f"tls{variant.tls_version}", f"TLS {variant.tls_version} not offered "
                                                    f"(the server settled on {handshake.tls_version})")
    if (variant.resume or variant.early_data) and ticket is not None and handshake is not None:
        if not handshake.resumed:
            attempt.refuse("resumption", "the server did not resume the session from its own ticket")
        elif variant.early_data and handshake.early_data == "rejected":
            attempt.refuse("0-rtt", "0-RTT: the server resumed the session but rejected the early data")
    if variant.tfo and not measured.tfo_data_acked:
        attempt.refuse("tfo", f"TFO: {tfo_failure_reason(measured.tfo_failure)}")


def _attempt_quic(attempt: Attempt, clients: ProbeClients, limit_s: float, port: int) -> Attempt:
    variant = attempt.variant
    ticket = None
    if variant.early_data:
        warm = quic_connection(clients.target, clients.quic_client(None, port, False), role="warm-up",
                               limit_s=limit_s, want_ticket=True)
        attempt.connections.append(warm)
        if warm.error is not None:
            _quic_failed(attempt, warm, "the warm-up", port)
            return attempt
        ticket = warm.ticket
        if ticket is None:
            attempt.refuse("quic-0rtt", "QUIC 0-RTT: the server issued no ticket")
        elif ticket.max_early_data_size is None:
            attempt.refuse("quic-0rtt", "QUIC 0-RTT: the ticket allows no early data")
    measured = quic_connection(clients.target, clients.quic_client(ticket, port, variant.early_data),
                               role="measured", limit_s=limit_s, want_ticket=False)
    attempt.connections.append(measured)
    if measured.error is not None:
        _quic_failed(attempt, measured, "the measured connection", port)
        return attempt
    handshake = measured.handshake
    if variant.early_data and ticket is not None and handshake is not None and handshake.early_data == "rejected":
        attempt.refuse("quic-0rtt", "QUIC 0-RTT: the server rejected the early data")
    return attempt


def _quic_failed(attempt: Attempt, connection: Connection, which: str, port: int) -> None:
    if connection.silent:
        attempt.refuse("http3", f"no HTTP/3: {connection.error}")
    else:
        attempt.error = f"{which}: {connection.error}"


def alt_svc_h3_port(headers: tuple[tuple[str, str], ...], host: str) -> int | None:
    """The port an ``Alt-Svc`` header offers HTTP/3 (``h3``, RFC 9114 §3.1.1) on, for this host.

    ``h3=":443"; ma=86400, h3-29=":443"``: the first ``h3`` entry whose host is empty (this one)
    or the probed host itself; another host is not contacted."""
    for name, value in headers:
        if name.lower() != "alt-svc":
            continue
        for entry in value.split(","):
            protocol, _, rest = entry.strip().partition("=")
            if protocol.strip() != "h3":
                continue
            authority = rest.split(";")[0].strip().strip('"')
            alt_host, _, port = authority.rpartition(":")
            if port.isdigit() and alt_host.strip("[]") in ("", host):
                return int(port)
    return None

