"""TCP connections out of a packet trace: who is the client, each packet's side, each side's stream.

The client is the side that sent the first SYN without ACK (a capture that starts mid-connection
falls back to the side talking to the lower port, the usual server port).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Final, TypeVar

from handshake.trace.packet import IpPacket, PacketError, TcpSegment, decode, seq_diff
from handshake.trace.record import TracedPacket


# Made once per packet: its __init__ is written out, as TcpSegment's is (handshake.trace.packet).
@dataclass(slots=True, unsafe_hash=True, init=False)
class FlowPacket:
    """One packet of a TCP connection, placed on its side."""

    time: float
    from_client: bool
    segment: TcpSegment
    wire_bytes: int
    """Length of the IP packet."""

    def __init__(self, time: float, from_client: bool, segment: TcpSegment, wire_bytes: int) -> None:
        self.time = time
        self.from_client = from_client
        self.segment = segment
        self.wire_bytes = wire_bytes


# Made once per connection: its __init__ is written out, as TcpSegment's is (handshake.trace.packet).
@dataclass(init=False)
class TcpFlow:
    client: tuple[str, int]
    server: tuple[str, int]
    packets: list[FlowPacket] = field(default_factory=list)
    """Filled by ``tcp_flows``; the streaming ``TcpFlowTracker`` keeps none."""
    first_seq: int | None = None
    """Sequence number of the connection's first segment: a new SYN from the client with another
    one is a fresh connection reusing the 4-tuple."""

    def __init__(self, client: tuple[str, int], server: tuple[str, int], packets: list[FlowPacket] | None = None,
                 first_seq: int | None = None) -> None:
        self.client = client
        self.server = server
        self.packets = [] if packets is None else packets
        self.first_seq = first_seq

    @staticmethod
    def endpoint_text(endpoint: tuple[str, int]) -> str:
        addr, port = endpoint
        return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def _flow_key(packet: IpPacket, segment: TcpSegment) -> tuple[str, int, str, int]:
    """The 4-tuple with the lower (address, port) first: the same for both directions."""
    src, dst = packet.src, packet.dst
    if src < dst or (src == dst and segment.sport <= segment.dport):
        return (src, segment.sport, dst, segment.dport)
    return (dst, segment.dport, src, segment.sport)


class TcpFlowTracker:
    """Places TCP segments on connections one at a time, in capture order (sans-IO).

    Keeps one small record per open 4-tuple and none of the packets, so a caller that feeds a
    capture through it and on to per-connection analyzers needs memory for connections only.
    """

    def __init__(self) -> None:
        self._open: dict[tuple[str, int, str, int], TcpFlow] = {}

    def place(self, time: float, packet: IpPacket, segment: TcpSegment,
              wire_bytes: int) -> tuple[TcpFlow, FlowPacket, bool]:
        """(connection, the packet on its side, whether this packet started the connection).

        A new SYN on a 4-tuple whose connection already started with another sequence number
        starts a new connection (port reuse); the old one then gets no more packets.
        """
        key = _flow_key(packet, segment)
        flow = self._open.get(key)
        is_new_syn = segment.syn and not segment.has_ack
        if flow is not None and is_new_syn:
            if not _sent_by(packet, segment, flow.client) or seq_diff(segment.seq, flow.first_seq or 0) != 0:
                flow = None  # a fresh connection reusing the 4-tuple
        started = flow is None
        if flow is None:
            if is_new_syn:
                client, server = (packet.src, segment.sport), (packet.dst, segment.dport)
            elif segment.syn:  # SYN-ACK first: the sender is the server
                client, server = (packet.dst, segment.dport), (packet.src, segment.sport)
            elif segment.sport < segment.dport:
                client, server = (packet.dst, segment.dport), (packet.src, segment.sport)
            else:
                client, server = (packet.src, segment.sport), (packet.dst, segment.dport)
            flow = TcpFlow(client=client, server=server, first_seq=segment.seq)
            self._open[key] = flow
        return flow, FlowPacket(time, _sent_by(packet, segment, flow.client), segment, wire_bytes), started


def _sent_by(packet: IpPacket, segment: TcpSegment, endpoint: tuple[str, int]) -> bool:
    return segment.sport == endpoint[1] and packet.src == endpoint[0]


T = TypeVar("T")


def packets_carrying(packets: Iterable[TracedPacket], kind: type[T]) -> Iterator[tuple[TracedPacket, IpPacket, T]]:
    """The packets whose transport decodes as ``kind`` (a TCP segment, a UDP datagram); the
    rest — other protocols, bytes that do not decode — are skipped, never raised."""
    for traced in packets:
        try:
            packet = decode(traced.data)
        except PacketError:
            continue
        if isinstance(packet.transport, kind):
            yield traced, packet, packet.transport


def tcp_flows(packets: Iterable[TracedPacket]) -> list[TcpFlow]:
    """Group TCP packets into connections, in order of first appearance.

    A new SYN on a 4-tuple whose connection already finished starts a new connection (port reuse).
    Packets that do not decode are skipped: analysis never fails on one bad packet.
    """
    flows: list[TcpFlow] = []
    tracker = TcpFlowTracker()
    for traced, packet, segment in packets_carrying(packets, TcpSegment):
        flow, flow_packet, started = tracker.place(traced.time, packet, segment, len(traced.data))
        if started:
            flows.append(flow)
        flow.packets.append(flow_packet)
    return flows


MAX_STREAM_GAP: Final = 1 << 22
"""Segments starting further than this (4 MiB) past the delivered end are not held."""
MAX_PENDING_BYTES: Final = 1 << 22
"""Out-of-order bytes held per direction; beyond that new out-of-order segments are dropped."""


class StreamAssembler:
    """One direction's byte stream, rebuilt from segments that may repeat, overlap or come out of order."""

    def __init__(self, *, expect_syn: bool = False) -> None:
        self._next: int | None = None
        self._pending: dict[int, bytes] = {}
        self._pending_bytes = 0
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
        if not self._pending and seq == self._next:  # in order: the common case
            self._next = (seq + len(segment.payload)) % (1 << 32)
            self.offset += len(segment.payload)
            return segment.payload
        if seq_diff(seq, self._next) > MAX_STREAM_GAP or (
                self._pending_bytes > MAX_PENDING_BYTES and seq not in self._pending):
            # Past a hole this wide the missing bytes are not coming (a capture that dropped
            # them, or a corrupt sequence number): holding more would only grow memory.
            return b""
        if seq not in self._pending:
            self._pending[seq] = segment.payload
            self._pending_bytes += len(segment.payload)
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
                self._pending_bytes -= len(payload)
                if skip < len(payload):
                    out += payload[skip:]
                    self._next = (self._next + len(payload) - skip) % (1 << 32)
                    progressed = True
        self.offset += len(out)
        return bytes(out)
