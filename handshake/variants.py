"""The variant catalog (DESIGN.md §2): what each HTTPS variant is, and what theory predicts.

The expected figures are printed beside the counted ones for the reader to compare; nothing
counts round trips from this table.
"""

from __future__ import annotations

from dataclasses import dataclass

from handshake.errors import UsageError


@dataclass(frozen=True)
class Variant:
    name: str
    transport: str
    """"tcp" or "quic"."""
    tls_version: str | None
    """None (plain HTTP), "1.2" or "1.3"."""
    resume: bool
    """Resume a session from a warm-up connection (ticket / session id / PSK)."""
    early_data: bool
    """Send the request as 0-RTT early data (TLS 1.3)."""
    tfo: bool
    """TCP Fast Open with a cookie cached by a warm-up connection."""
    expected_setup_round_trips: int
    expected_round_trips: int
    description: str

    @property
    def warm(self) -> bool:
        """True when a warm-up connection must first fetch a ticket or a TFO cookie."""
        return self.resume or self.early_data or self.tfo


def _v(name, transport, tls, resume, early, tfo, setup, rtts, description) -> Variant:
    return Variant(name, transport, tls, resume, early, tfo, setup, rtts, description)


CATALOG: dict[str, Variant] = {
    v.name: v
    for v in (
        _v("http", "tcp", None, False, False, False, 1, 2, "HTTP/1.1 over TCP, no TLS (the baseline)"),
        _v("tls12", "tcp", "1.2", False, False, False, 3, 4, "TCP + TLS 1.2 full handshake"),
        _v("tls12-resume", "tcp", "1.2", True, False, False, 2, 3, "TCP + TLS 1.2 abbreviated handshake"),
        _v("tls13", "tcp", "1.3", False, False, False, 2, 3, "TCP + TLS 1.3 full handshake"),
        _v("tls13-resume", "tcp", "1.3", True, False, False, 2, 3, "TCP + TLS 1.3 PSK resumption"),
        _v("tls13-0rtt", "tcp", "1.3", True, True, False, 1, 2, "TCP + TLS 1.3, request in early data"),
        _v("tfo-tls12", "tcp", "1.2", False, False, True, 2, 3, "TFO (cookie cached) + TLS 1.2 full"),
        _v("tfo-tls13", "tcp", "1.3", False, False, True, 1, 2, "TFO (cookie cached) + TLS 1.3 full"),
        _v("tfo-tls13-0rtt", "tcp", "1.3", True, True, True, 0, 1, "TFO + TLS 1.3 early data, request in the SYN"),
        _v("quic", "quic", "1.3", False, False, False, 1, 2, "QUIC + HTTP/3"),
        _v("quic-0rtt", "quic", "1.3", True, True, False, 0, 1, "QUIC + HTTP/3, request in 0-RTT"),
    )
}


def select(names: str | None) -> list[Variant]:
    """Variants named in a comma-separated list, in catalog order; all of them for None."""
    if names is None:
        return list(CATALOG.values())
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    if not wanted:
        raise UsageError("--variants is empty: name at least one of " + ", ".join(CATALOG))
    for name in wanted:
        if name not in CATALOG:
            raise UsageError(f"unknown variant {name!r}: choose from " + ", ".join(CATALOG))
    return [v for v in CATALOG.values() if v.name in wanted]
