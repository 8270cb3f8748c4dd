"""A TCP connection put on the wire for the analyzer's tests: a prelude (a proxy's tunnel set-up,
STARTTLS) and a real TLS conversation after it, as a capture at the client's edge shows them.

Turn by turn: what one side writes goes out at once in segments of at most SEGMENT bytes; the
other side's answer arrives one RTT after the client wrote (the client answers the server at
once). Sequence and ACK numbers are exact, and every segment carries RFC 7323 timestamps (TSval a
millisecond clock, TSecr the newest TSval the sender had), as Linux sends them.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path

from handshake.trace.packet import ACK, FIN, PSH, SYN, mss_option, tcp_packet, timestamp_option

from ..tls.exchange import make_contexts, run_exchange, write_self_signed_certificate

CLIENT = ("10.1.0.1", 51000)
SEGMENT = 1400
CLIENT_ANSWERS_S = 0.0002
"""How long the client takes to answer what the server sent (a program, not the network)."""


@dataclass
class Wire:
    rtt_s: float
    server: tuple[str, int]
    packets: list[tuple[float, bytes]] = field(default_factory=list)
    now: float = 0.0
    sent: dict[bool, int] = field(default_factory=lambda: {True: 1000, False: 5000})
    tsval: dict[bool, int] = field(default_factory=lambda: {True: 0, False: 0})
    last_from_client: bool = True

    def _packet(self, from_client: bool, flags: int, payload: bytes = b"", options: tuple = ()) -> None:
        src, dst = (CLIENT, self.server) if from_client else (self.server, CLIENT)
        self.tsval[from_client] = int(self.now * 1000) + (100 if from_client else 7000)
        stamps = timestamp_option(self.tsval[from_client], self.tsval[not from_client])
        ack = self.sent[not from_client] if flags & ACK else 0
        self.packets.append((self.now, tcp_packet(src[0], dst[0], src[1], dst[1], self.sent[from_client] & 0xFFFFFFFF,
                                                  ack & 0xFFFFFFFF, flags, payload, (*options, stamps))))
        self.sent[from_client] += len(payload) + (1 if flags & (SYN | FIN) else 0)
        self.now += 0.00001

    def _turn(self, from_client: bool) -> None:
        if from_client != self.last_from_client:
            self.now += self.rtt_s if self.last_from_client else CLIENT_ANSWERS_S
        self.last_from_client = from_client

    def open(self) -> None:
        self._packet(True, SYN, options=(mss_option(1460),))
        self._turn(False)
        self._packet(False, SYN | ACK, options=(mss_option(1460),))
        self._turn(True)
        self._packet(True, ACK)

    def send(self, from_client: bool, data: bytes) -> float:
        """Write ``data``; returns when its first segment was captured."""
        self._turn(from_client)
        first = self.now
        for start in range(0, len(data), SEGMENT):
            self._packet(from_client, ACK | PSH, data[start:start + SEGMENT])
        return first

    def close(self) -> None:
        self._turn(True)
        self._packet(True, FIN | ACK)
        self._turn(False)
        self._packet(False, FIN | ACK)
        self._turn(True)
        self._packet(True, ACK)


@dataclass
class Tunnelled:
    wire: Wire
    keylog: str
    response_time: float
    """When the first packet of the response's record reached the capture point."""
    version: str


def tls_through(tmp: Path, prelude: list[tuple[bool, bytes]], *, port: int = 443,
                version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3, rtt_s: float = 0.05) -> Tunnelled:
    """One connection: the handshake, ``prelude``'s (from_client, bytes) turns, then a real TLS
    conversation (stdlib ssl over memory BIOs: one HTTP/1.1 request and its response)."""
    certificate = write_self_signed_certificate(tmp)
    keylog_file = tmp / "keys.log"
    client, server = make_contexts(*certificate, keylog_file, version)
    exchange = run_exchange(client, server)
    wire = Wire(rtt_s, ("10.1.0.2", port))
    wire.open()
    for from_client, data in prelude:
        wire.send(from_client, data)
    offset = 0
    response_time = -1.0
    for direction, data in _as_sent(exchange.chunks, exchange.response_start, exchange.version == "TLSv1.3"):
        from_client = direction == "c2s"
        sent = wire.send(from_client, data)
        if not from_client:
            if offset == exchange.response_start:
                response_time = sent
            offset += len(data)
    wire.close()
    return Tunnelled(wire, keylog_file.read_text(), response_time, exchange.version or "")


def _as_sent(chunks: list[tuple[str, bytes]], response_start: int, tls13: bool) -> list[tuple[str, bytes]]:
    """The memory exchange's chunks in the order a client on the wire sends them: in TLS 1.3 the
    server's tickets, written as its handshake ended, go out in the same flight as its response,
    while the client sends its request with its Finished (RFC 8446 §2: one round trip)."""
    chunks = list(chunks)
    if not tls13:
        return chunks  # TLS 1.2 (no False Start): the client waits for the server's Finished
    offset = 0
    for index, (direction, data) in enumerate(chunks):
        if direction == "s2c":
            if offset == response_start:
                request = max(i for i in range(index) if chunks[i][0] == "c2s")
                if request >= 2 and chunks[request - 1][0] == "s2c" and chunks[request - 2][0] == "c2s":
                    chunks[request - 1], chunks[request] = chunks[request], chunks[request - 1]
                break
            offset += len(data)
    return chunks
