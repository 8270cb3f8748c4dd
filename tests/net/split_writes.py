"""One small message written in two pieces, the classic Nagle stall, on the sim's TCP: the
client writes A (200 bytes) and at once B (200 bytes) with two writes; the server answers once
it has both. ``exchanges`` request/answer pairs first put the server in Linux's ping-pong mode
(it answered data at once), so that it delays the ACK that Nagle's B waits for.

The kernel test (tests/kernel/test_nagle.py) does the same with real sockets and compares."""

from __future__ import annotations

from handshake.net.link import LinkConfig
from handshake.net.sim import SERVER_ADDR, Simulation
from handshake.net.tcp import TcpConfig

PIECE = 200
"""Bytes of each of the two writes: well under an MSS, as a header block or a small body is."""
EXCHANGE = 100
"""Bytes of each request and answer exchanged before the split write."""


class SplitWriter:
    """The client: ``exchanges`` requests first, each after the answer before it; then A and B
    as two writes (a ``SplitWritesEndpoint``)."""

    keeps_writes = True

    def __init__(self, exchanges: int) -> None:
        self.exchanges = exchanges
        self.written_at: float | None = None
        self._writes: list[bytes] = []
        self._heard = 0

    def start(self, now: float) -> None:
        self._next(now)

    def _next(self, now: float) -> None:
        if self.exchanges:
            self._writes.append(b"x" * EXCHANGE)
        else:
            self.written_at = now
            self._writes += [b"A" * PIECE, b"B" * PIECE]

    def receive(self, data: bytes, now: float) -> None:
        self._heard += len(data)
        if self.exchanges and self._heard >= EXCHANGE:
            self._heard -= EXCHANGE
            self.exchanges -= 1
            self._next(now)

    def writes_to_send(self) -> list[bytes]:
        out, self._writes = self._writes, []
        return out

    def data_to_send(self) -> bytes:
        return b"".join(self.writes_to_send())

    def next_event(self):
        return None


class Answerer:
    """The server: answers each exchange at once, and notes when A and B are both in."""

    def __init__(self, exchanges: int) -> None:
        self.exchanges = exchanges
        self.complete_at: float | None = None
        self._buffer = 0
        self._out = b""

    def start(self, now: float) -> None:
        pass

    def receive(self, data: bytes, now: float) -> None:
        self._buffer += len(data)
        while self.exchanges and self._buffer >= EXCHANGE:
            self._buffer -= EXCHANGE
            self.exchanges -= 1
            self._out += b"y" * EXCHANGE
        if not self.exchanges and self._buffer >= 2 * PIECE and self.complete_at is None:
            self.complete_at = now

    def data_to_send(self) -> bytes:
        out, self._out = self._out, b""
        return out

    def next_event(self):
        return None


def sim_split_write_s(link: LinkConfig, exchanges: int, nodelay: bool) -> float:
    """Seconds from the client's first write of A to the server having A and B, on the sim."""
    tcp = TcpConfig(nodelay=nodelay)
    sim = Simulation(link, client_tcp=tcp, server_tcp=tcp, seed=link.seed)
    servers: list[Answerer] = []

    def make_server() -> Answerer:
        servers.append(Answerer(exchanges))
        return servers[-1]

    sim.server.listen(443, make_server)
    client = SplitWriter(exchanges)
    sim.client.connect(SERVER_ADDR, 443, client)
    sim.run(lambda: bool(servers) and servers[0].complete_at is not None, limit_s=60)
    assert client.written_at is not None and servers[0].complete_at is not None
    return servers[0].complete_at - client.written_at
