"""A page: the objects a browser fetches for it, and how it spreads them over connections.

The HTML comes first; once it is in, every other object is asked for at once, as a browser's
preload scanner does. HTTP/2 and HTTP/3 ask on one connection, a stream each; HTTP/1.1 asks one
object at a time per connection, so a browser opens up to six connections to the origin
(Chrome's and Firefox's limit per host), each paying its own handshake.

The page is loaded when the last byte of its last object is in: read from the trace, it is the
last packet the server sent on any of the page's connections before the client closed that
connection, which a client does the moment its last answer is complete (``page_end``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from handshake.analysis.quic.flows import QuicFlow
from handshake.analysis.tcp.flows import TcpFlow
from handshake.endpoints.http1 import object_target
from handshake.errors import UsageError
from handshake.units import parse_size

HTTP1_CONNECTIONS = 6
"""Connections a browser opens to one origin over HTTP/1.1."""
MAX_OBJECTS = 1000
MAX_OBJECT_BYTES = 100 * 1000 * 1000


@dataclass(frozen=True)
class Page:
    """The sizes of a page's objects, the HTML first."""

    sizes: tuple[int, ...]

    def __post_init__(self) -> None:
        if not 1 <= len(self.sizes) <= MAX_OBJECTS:
            raise UsageError(f"a page has 1 to {MAX_OBJECTS} objects, not {len(self.sizes)}")

    @property
    def targets(self) -> list[str]:
        """What the GETs ask for (``http1.object_target``), the HTML first."""
        return [object_target(index, size) for index, size in enumerate(self.sizes)]

    @property
    def label(self) -> str:
        """As ``--page`` writes it where the objects are alike, else their count and total."""
        if len(set(self.sizes)) == 1:
            return f"{len(self.sizes)}x{self.sizes[0]}B"
        return f"{len(self.sizes)} objects, {sum(self.sizes)} B"


_PAGE = re.compile(r"^\s*(\d+)\s*[x×]\s*(\S+)\s*$")


def parse_page(text: str) -> Page:
    """``N×SIZE`` (or ``NxSIZE``): N objects of SIZE each, e.g. ``30x20KB``."""
    match = _PAGE.match(text)
    if match is None:
        raise UsageError(f"bad page {text!r}: expected COUNTxSIZE such as 30x20KB")
    count = int(match.group(1))
    size = parse_size(match.group(2), "page object size", maximum=MAX_OBJECT_BYTES)
    if not 1 <= count <= MAX_OBJECTS:
        raise UsageError(f"bad page {text!r}: 1 to {MAX_OBJECTS} objects")
    return Page((size,) * count)


def http1_shares(targets: list[str], connections: int) -> list[list[str]]:
    """``targets`` dealt over ``connections`` in turn (objects alike in size finish together, as a
    browser's free-connection-first queue would have them)."""
    return [targets[index::connections] for index in range(min(connections, len(targets)))]


def after_the_html(targets: list[str], multiplexed: bool) -> list[list[str]]:
    """What each connection asks for once the HTML (``targets[0]``) is in: the first entry is the
    HTML's connection's (every other object where it multiplexes, HTTP/2; its share where it
    does not), the rest one new connection each (HTTP/1.1: up to five more). Both engines load a
    page by it."""
    rest = targets[1:]
    if multiplexed:
        return [rest]
    return http1_shares(rest, HTTP1_CONNECTIONS) or [[]]


def page_end(flow: TcpFlow | QuicFlow) -> float | None:
    """When the last answer on a connection was complete, as the client's side of the trace shows
    it: the server's last TCP segment with data before the client's FIN (QUIC: the server's last
    datagram before the client's last, its CONNECTION_CLOSE); None where the server sent none."""
    end = None
    if isinstance(flow, TcpFlow):
        for packet in flow.packets:
            if packet.from_client and packet.segment.fin:
                break
            if not packet.from_client and packet.segment.payload:
                end = packet.time
        return end
    datagrams = flow.datagrams
    last_client = max((d.time for d in datagrams if d.from_client), default=None)
    for datagram in datagrams:
        if not datagram.from_client and (last_client is None or datagram.time <= last_client):
            end = datagram.time
    return end
