"""Real HTTP/2 conversations on a timed path, written as the client's capture.

The client and server are real: the stdlib ``ssl`` (OpenSSL) over memory BIOs, and the ``h2``
library's sans-IO ``H2Connection`` on both sides, so every byte is what those stacks send. The
path between them is modelled here: every write leaves at once and arrives ``rtt / 2`` later; each
TCP segment acknowledges all the peer's bytes its sender had read. The capture point is the
client, so a server segment is recorded when it arrives.

The server behaves as nginx does (DESIGN.md §6): it sends its HTTP/2 SETTINGS the moment the TLS
handshake ends (h2c: the moment the client's first bytes arrive), before any request can have
been read, and answers each request ``server_delay`` seconds after reading it.
"""

from __future__ import annotations

import heapq
import itertools
import ssl
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events

from handshake.trace.packet import ACK, PSH, SYN, IpPacket, TcpSegment, encode

from ..tls.exchange import HOSTNAME

CLIENT, SERVER = "10.0.0.1", "10.0.0.2"
CLIENT_PORT, SERVER_PORT = 40000, 443
CLIENT_ISN, SERVER_ISN = 1000, 5000
MSS = 1400
REQUEST_HEADERS = [(":method", "GET"), (":path", "/"), (":scheme", "https"), (":authority", HOSTNAME),
                   ("user-agent", "h2-timeline")]
BODY = b"hello, world\n"


@dataclass
class Timeline:
    """One connection as the client's capture shows it."""

    packets: list[tuple[float, bytes]] = field(default_factory=list)
    """(capture time, raw IPv4 packet), in capture order."""
    written: dict[str, bytes] = field(default_factory=lambda: {"c2s": b"", "s2c": b""})
    """The plaintext each side handed to TLS (to TCP, for h2c)."""
    server_settings_at: float | None = None
    """When the server's first SETTINGS frame reached the client."""
    response_at: float | None = None
    """When the response's HEADERS frame reached the client."""
    version: str | None = None
    cipher: str | None = None


class _Side:
    def __init__(self, client: bool, context: ssl.SSLContext | None) -> None:
        self.client = client
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = None if context is None else context.wrap_bio(
            self.incoming, self.outgoing, server_side=not client, server_hostname=HOSTNAME if client else None)
        self.h2: h2.connection.H2Connection | None = None
        self.sent = 0
        self.received = 0

    @property
    def direction(self) -> str:
        return "c2s" if self.client else "s2c"

    def handshake_done(self) -> bool:
        if self.tls is None:
            return True
        try:
            self.tls.do_handshake()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return False
        return True

    def write(self, data: bytes) -> None:
        if self.tls is None:
            self.outgoing.write(data)
        elif data:
            self.tls.write(data)

    def read_plaintext(self) -> bytes:
        if self.tls is None:
            return self.incoming.read()
        out = b""
        while True:
            try:
                chunk = self.tls.read(65536)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError, ssl.SSLZeroReturnError):
                return out
            if not chunk:
                return out
            out += chunk


def h2_timeline(client_context: ssl.SSLContext | None, server_context: ssl.SSLContext | None, *, rtt: float = 0.1,
                server_delay: float = 0.0, client_port: int = CLIENT_PORT) -> Timeline:
    """One GET over HTTP/2: over TLS when contexts are given, else h2c with prior knowledge."""
    timeline = Timeline()
    client, server = _Side(True, client_context), _Side(False, server_context)
    events: list[tuple[float, int, str, bytes]] = []
    order = itertools.count()

    def schedule(time: float, what: str, data: bytes = b"") -> None:
        heapq.heappush(events, (time, next(order), what, data))

    def packet(time: float, side: _Side, flags: int, payload: bytes = b"") -> None:
        isn, peer_isn = (CLIENT_ISN, SERVER_ISN) if side.client else (SERVER_ISN, CLIENT_ISN)
        syn = flags & SYN
        seq = isn if syn else isn + 1 + side.sent
        ack = 0 if syn and side.client else peer_isn + 1 + side.received
        segment = TcpSegment(client_port if side.client else SERVER_PORT, SERVER_PORT if side.client else client_port,
                             seq, ack, flags, 65535, (), payload)
        source, destination = (CLIENT, SERVER) if side.client else (SERVER, CLIENT)
        capture_time = time if side.client else time + rtt / 2
        timeline.packets.append((round(capture_time, 6), encode(IpPacket(source, destination, 6, segment))))
        side.sent += len(payload)

    def send(time: float, side: _Side) -> None:
        data = side.outgoing.read()
        for i in range(0, len(data), MSS):
            part = data[i:i + MSS]
            packet(time, side, PSH | ACK, part)
            schedule(time + rtt / 2, "to server" if side.client else "to client", part)

    def flush(time: float, side: _Side) -> None:
        assert side.h2 is not None
        data = side.h2.data_to_send()
        timeline.written[side.direction] += data
        side.write(data)
        send(time, side)

    def step(time: float, side: _Side) -> None:
        if side.h2 is None and side.handshake_done():
            side.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=side.client,
                                                                          header_encoding=None))
            side.h2.initiate_connection()
            if side.client:
                side.h2.send_headers(1, REQUEST_HEADERS, end_stream=True)
            elif timeline.server_settings_at is None:
                timeline.server_settings_at = round(time + rtt / 2, 6)
        if side.h2 is not None:
            plaintext = side.read_plaintext()
            for event in side.h2.receive_data(plaintext) if plaintext else []:
                if isinstance(event, h2.events.RequestReceived) and not side.client:
                    schedule(time + server_delay, "respond", event.stream_id.to_bytes(4, "big"))
            flush(time, side)
        else:
            send(time, side)

    packet(0.0, client, SYN)
    packet(rtt / 2, server, SYN | ACK)
    step(rtt, client)  # its ACK carries the ClientHello (h2c: the preface and the request)
    while events:
        time, _, what, data = heapq.heappop(events)
        if what == "respond":
            assert server.h2 is not None
            stream = int.from_bytes(data, "big")
            server.h2.send_headers(stream, [(":status", "200"), ("content-length", str(len(BODY)))])
            server.h2.send_data(stream, BODY, end_stream=True)
            timeline.response_at = round(time + rtt / 2, 6)
            flush(time, server)
            continue
        side = server if what == "to server" else client
        side.received += len(data)
        side.incoming.write(data)
        step(time, side)
    if client.tls is not None:
        timeline.version, timeline.cipher = client.tls.version(), client.tls.cipher()[0]
    timeline.packets.sort(key=lambda item: item[0])
    return timeline
