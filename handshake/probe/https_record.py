"""HTTP/3 offered in DNS: the host's HTTPS record (RFC 9460), read with dnspython.

A browser learns of HTTP/3 before its first connection from the HTTPS record's ``alpn`` (and
``port``); ``Alt-Svc`` only tells it after one. The probe asks the system's resolver for that
record when it resolved the name itself (not for an IP literal, and not where ``--resolve``
named the address: then no query leaves at all), and tries QUIC only where the record points
at this host: a ServiceMode record whose target is "." or the name itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

__all__ = ["Http3Record", "h3_offer", "lookup_https_record"]

LOOKUP_LIFETIME_S: Final = 2.0
_ALPN, _PORT = 1, 3
"""SvcParamKeys (RFC 9460 §14.3.2)."""


@dataclass(frozen=True)
class Http3Record:
    port: int
    """Where the record says HTTP/3 is served."""


def h3_offer(records: list[Any], host: str, port: int) -> Http3Record | None:
    """The first ServiceMode record (lowest priority first) that offers "h3" on this host."""
    for record in sorted(records, key=lambda r: r.priority):
        if record.priority == 0:  # AliasMode: points at another name, not followed
            continue
        target = str(record.target).rstrip(".").lower()
        if target not in ("", host.lower().rstrip(".")):
            continue
        params = record.params
        alpn = params.get(_ALPN)
        if alpn is None or b"h3" not in tuple(alpn.ids):
            continue
        record_port = params.get(_PORT)
        return Http3Record(record_port.port if record_port is not None else port)
    return None


def lookup_https_record(host: str, port: int) -> Http3Record | None:
    """The host's HTTPS record from the system's resolver, as far as it offers HTTP/3; None when
    there is none or the lookup fails (most names have none)."""
    import dns.exception
    import dns.resolver

    name = host if port == 443 else f"_{port}._https.{host}"  # RFC 9460 §9.1: port prefix naming
    try:
        answer = dns.resolver.resolve(name, "HTTPS", lifetime=LOOKUP_LIFETIME_S)
    except (dns.exception.DNSException, OSError):
        return None
    return h3_offer(list(answer), host, port)
