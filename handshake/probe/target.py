"""What ``probe`` contacts: the URL's host, port and path, and the one address it connects to.

Only the named host is ever contacted: its address comes from the system's resolver, or from
``--resolve HOST:PORT:ADDRESS`` (curl's option: the user names the address too), and every
connection of the probe goes there. ``--interface ADDRESS`` binds the probe's sockets to a local
address first, as curl's option does: on a machine with several networks it picks the one, and
a socket that cannot bind there fails instead of leaving by another route.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from handshake.errors import UsageError

__all__ = ["Target", "parse_target", "parse_resolve"]

HTTPS_PORT = 443


@dataclass(frozen=True)
class Target:
    """The server a probe measures."""

    host: str
    """The name in the URL: what TLS asks for (SNI) and verifies, and the HTTP authority."""
    port: int
    path: str
    address: str
    """The IP address every connection goes to."""
    family: int
    local_address: str | None = None
    """Bind client sockets here first (``--interface``)."""
    from_dns: bool = False
    """The address came from the resolver (not an IP literal, not ``--resolve``): a DNS lookup of
    the name is the user's intent, so its HTTPS record may be asked for too."""

    @property
    def authority(self) -> str:
        return self.host if self.port == HTTPS_PORT else f"{self.host}:{self.port}"

    @property
    def sni(self) -> str | None:
        """The name for SNI and certificate checks; an IP literal is sent as no SNI (RFC 6066 §3)."""
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return self.host
        return None

    def endpoint(self, port: int | None = None) -> tuple[str, int]:
        return (self.address, self.port if port is None else port)


def parse_resolve(value: str) -> tuple[str, int, str]:
    """``HOST:PORT:ADDRESS`` (an IPv6 address in brackets or bare) -> (host, port, address)."""
    host, sep, rest = value.partition(":")
    port_text, sep2, address = rest.partition(":")
    if not (sep and sep2 and host and address and port_text.isdigit()):
        raise UsageError(f"--resolve {value!r}: expected HOST:PORT:ADDRESS, e.g. example.com:443:192.0.2.1")
    address = address.strip("[]")
    try:
        ipaddress.ip_address(address)
    except ValueError:
        raise UsageError(f"--resolve {value!r}: {address!r} is not an IP address") from None
    return host, int(port_text), address


def parse_target(url: str, *, resolve: list[str] | None = None, local_address: str | None = None) -> Target:
    """The URL's server, resolved once; a bad URL or a name that does not resolve is one line."""
    parts = urlsplit(url if "://" in url else f"https://{url}")
    if parts.scheme != "https":
        raise UsageError(f"probe {url!r}: only https:// URLs are probed (TLS, TFO and QUIC need one)")
    try:
        host, port = parts.hostname, parts.port or HTTPS_PORT
    except ValueError as error:
        raise UsageError(f"probe {url!r}: {error}") from None
    if not host:
        raise UsageError(f"probe {url!r}: no host in the URL")
    path = parts.path or "/"
    if parts.query:
        path += f"?{parts.query}"
    address, from_dns = None, False
    for entry in resolve or []:
        name, entry_port, entry_address = parse_resolve(entry)
        if name.lower() == host.lower() and entry_port == port:
            address = entry_address
    if address is None:
        try:
            address = str(ipaddress.ip_address(host))
        except ValueError:
            address, from_dns = _resolve(host, port), True
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    if local_address is not None:
        try:
            local = ipaddress.ip_address(local_address)
        except ValueError:
            raise UsageError(f"--interface {local_address!r}: not an IP address") from None
        if (local.version == 6) != (family == socket.AF_INET6):
            raise UsageError(f"--interface {local_address}: not of the same family as {host}'s address {address}")
    return Target(host, port, path, address, family, local_address, from_dns)


def _resolve(host: str, port: int) -> str:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise UsageError(f"cannot resolve {host}: {error.strerror}") from None
    # The resolver's first answer, as curl and browsers begin with (no Happy Eyeballs race here:
    # every variant must go to the same address for their costs to compare).
    return str(infos[0][4][0])
