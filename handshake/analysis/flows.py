"""TCP connections out of a packet trace: who is the client, each packet's side, each side's stream.

The client is the side that sent the first SYN without ACK (a capture that starts mid-connection
falls back to the side talking to the lower port, the usual server port).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from handshake.net.tcp import seq_diff
from handshake.trace.packet import IpPacket, PacketError, TcpSegment, decode
from handshake.trace.record import TracedPacket


@dataclass(frozen=True, slots=True)
class FlowPacket:
    """One packet of a TCP connection, placed on its side."""

    time: float
    from_client: bool
    segment: TcpSegment
    wire_bytes: int
    """Length of the IP packet."""


@dataclass
class TcpFlow:
    client: tuple[str, int]
    server: tuple[str, int]
    packets: list[FlowPacket] = field(default_factory=list)

    @staticmethod
    def endpoint_text(endpoint: tuple[str, int]) -> str:
        addr, port = endpoint
        return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def _flow_key(packet: IpPacket, segment: TcpSegment) -> tuple:
    a = (packet.src, segment.sport)
    b = (packet.dst, segment.dport)
    return (a, b) if a <= b else (b, a)


def tcp_flows(packets: Iterable[TracedPacket]) -> list[TcpFlow]:
    """Group TCP packets into connections, in order of first appearance.

    A new SYN on a 4-tuple whose connection already finished starts a new connection (port reuse).
    Packets that do not decode are skipped: analysis never fails on one bad packet.
    """
    flows: list[TcpFlow] = []
    open_flows: dict[tuple, TcpFlow] = {}
    for traced in packets:
        try:
            packet = decode(traced.data)
        except PacketError:
            continue
        segment = packet.transport
        if not isinstance(segment, TcpSegment):
            continue
        key = _flow_key(packet, segment)
        flow = open_flows.get(key)
        is_new_syn = segment.syn and not segment.has_ack
        if flow is not None and is_new_syn and flow.packets:
            first = flow.packets[0].segment
            if (packet.src, segment.sport) != flow.client or seq_diff(segment.seq, first.seq) != 0:
                flow = None  # a fresh connection reusing the 4-tuple
        if flow is None:
            if is_new_syn:
                client, server = (packet.src, segment.sport), (packet.dst, segment.dport)
            elif segment.syn:  # SYN-ACK first: the sender is the server
                client, server = (packet.dst, segment.dport), (packet.src, segment.sport)
            elif segment.sport < segment.dport:
                client, server = (packet.dst, segment.dport), (packet.src, segment.sport)
            else:
                client, server = (packet.src, segment.sport), (packet.dst, segment.dport)
            flow = TcpFlow(client=client, server=server)
            flows.append(flow)
            open_flows[key] = flow
        from_client = (packet.src, segment.sport) == flow.client
        flow.packets.append(FlowPacket(traced.time, from_client, segment, len(traced.data)))
    return flows


class StreamAssembler:
    """One direction's byte stream, rebuilt from segments that may repeat, overlap or come out of order."""

    def __init__(self, *, expect_syn: bool = False) -> None:
        self._next: int | None = None
        self._pending: dict[int, bytes] = {}
        self._expect_syn = expect_syn
        self.offset = 0
        """Stream bytes delivered so far."""

    def feed(self, segment: TcpSegment) -> bytes:
        """Return the bytes this segment makes newly contiguous (often none)."""
        seq = segment.seq
        if segment.syn:
            seq = (seq + 1) % (1 << 32)
            if self._next is None:
                self._next = seq
        if self._next is None:
            if self._expect_syn:
                # Data before the SYN that starts the stream: the receiver is still in SYN-SENT
                # and drops it (RFC 793 §3.9); the sender will have to send it again.
                return b""
            self._next = seq  # capture began mid-stream: start where we first see data
        if not segment.payload:
            return b""
        self._pending.setdefault(seq, segment.payload)
        out = bytearray()
        progressed = True
        while progressed:
            progressed = False
            for start in list(self._pending):
                payload = self._pending[start]
                skip = seq_diff(self._next, start)
                if skip < 0:
                    continue
                del self._pending[start]
                if skip < len(payload):
                    out += payload[skip:]
                    self._next = (self._next + len(payload) - skip) % (1 << 32)
                    progressed = True
        self.offset += len(out)
        return bytes(out)
