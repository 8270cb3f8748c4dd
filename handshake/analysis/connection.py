"""One TCP connection's verdict: what was negotiated, and the round trips to the first response byte.

This is the one place that turns a trace into the numbers every command prints, so a simulated
run, a kernel run and a stranger's capture are judged by the same rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from handshake.analysis.flows import StreamAssembler, TcpFlow
from handshake.analysis.keylog import KeyLog
from handshake.analysis.roundtrips import TcpRoundCounter
from handshake.analysis.tls import TlsConversation, TlsFacts
from handshake.net.tcp import seq_diff

_TLS_HANDSHAKE_RECORD = 0x16


@dataclass
class ConnectionReport:
    """The facts and figures of one connection (DESIGN.md §3, the CONN object)."""

    transport: str
    client: str
    server: str
    start_time: float
    tls_version: str | None = None
    sni: str | None = None
    cipher: str | None = None
    resumed: bool | None = False
    early_data: str = "none"
    tfo: str = "none"
    hrr: bool = False
    round_trips: int | None = None
    setup_round_trips: int | None = None
    ttfb_s: float | None = None
    bytes_client: int = 0
    bytes_server: int = 0
    packets: int = 0
    causes: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ttfb_ms(self) -> float | None:
        return None if self.ttfb_s is None else round(self.ttfb_s * 1000, 3)


class _Retransmissions:
    """Spots a side sending sequence space it already sent: a retransmission (loss or a late ACK).

    Seen from one capture point, packets may also arrive out of order; only a range that was
    wholly seen before counts as sent again.
    """

    def __init__(self, side: str) -> None:
        self.side = side
        self._base: int | None = None
        self._seen: list[tuple[int, int, float]] = []  # (start, end, time) of each range first seen
        self._seen_tsvals: set[tuple[int, int]] = set()
        self.found: dict[str, list[tuple[float, float]]] = {}
        """What was retransmitted ("SYN", "data", ...) → (when, how long after its first copy)."""

    def check(self, segment, time: float) -> bool:
        if self._base is None:
            self._base = segment.seq
        if not segment.seq_len:
            return False
        start = seq_diff(segment.seq, self._base)
        end = start + segment.seq_len
        timestamps = segment.timestamps
        if timestamps is not None:
            key = (start, timestamps[0])
            if key in self._seen_tsvals:
                return False  # the very same packet twice: the link duplicated it
            self._seen_tsvals.add(key)
        first = _covered_since(self._seen, start, end)
        self._seen.append((start, end, time))
        if first is None:
            return False
        if segment.syn:
            what = "SYN-ACK" if segment.has_ack else "SYN"
        else:
            what = "data" if segment.payload else "FIN"
        self.found.setdefault(what, []).append((time, time - first))
        return True

    def causes(self, before: float | None) -> list[str]:
        """One line per kind of retransmission that happened before ``before`` (None: at all)."""
        out = []
        for what, events in self.found.items():
            delays = [delay for at, delay in events if before is None or at <= before]
            if delays:
                times = "" if len(delays) == 1 else f" {len(delays)} times"
                out.append(f"{self.side} {what} retransmitted{times} (first after {delays[0]:.3f} s)")
        return out


def _covered_since(ranges: list[tuple[int, int, float]], start: int, end: int) -> float | None:
    """When [start, end) had been wholly seen already, the time its first byte was first seen."""
    covered_until = start
    first_time = None
    for r_start, r_end, r_time in sorted(ranges):
        if r_start > covered_until:
            break
        if r_end > covered_until:
            if r_start <= start < r_end and first_time is None:
                first_time = r_time
            covered_until = r_end
        if covered_until >= end:
            return first_time
    return None


def _apply_tls_facts(report: ConnectionReport, facts: TlsFacts) -> None:
    report.tls_version = facts.tls_version
    report.sni = facts.sni
    report.cipher = facts.cipher_suite
    report.hrr = facts.hrr
    report.resumed = facts.resumed
    if facts.early_data == "sent":
        report.early_data = "sent"
    elif facts.early_data in ("accepted", "rejected"):
        report.early_data = facts.early_data
    if facts.hrr:
        report.causes.append("HelloRetryRequest: the server asked for another key share")
    if facts.early_data == "rejected":
        report.causes.append("0-RTT rejected: the request was sent again after the handshake")
    if facts.early_data == "accepted":
        report.notes.append("0-RTT accepted")
    if facts.resumed:
        report.notes.append("resumed")


def analyze_tcp_flow(flow: TcpFlow, keylog: KeyLog | None = None) -> ConnectionReport:
    """Count the round trips of one TCP connection, from its packets (and key log, for TLS 1.3)."""
    report = ConnectionReport(
        transport="tcp",
        client=TcpFlow.endpoint_text(flow.client),
        server=TcpFlow.endpoint_text(flow.server),
        start_time=flow.packets[0].time if flow.packets else 0.0,
    )
    counter = TcpRoundCounter()
    streams = {True: StreamAssembler(), False: StreamAssembler()}
    retransmissions = {True: _Retransmissions("client"), False: _Retransmissions("server")}
    conversation: TlsConversation | None = None
    is_tls: bool | None = None
    syn_data_end: int | None = None
    stall_seen = False
    for packet in flow.packets:
        segment = packet.segment
        retransmission = retransmissions[packet.from_client].check(segment, packet.time)
        rnd = counter.add(packet, retransmission=retransmission)
        if packet.from_client:
            report.bytes_client += packet.wire_bytes
        else:
            report.bytes_server += packet.wire_bytes
        report.packets += 1
        answered = report.round_trips is not None

        if segment.syn and not segment.has_ack and packet.from_client:
            cookie = segment.fastopen_cookie
            if segment.payload and cookie:
                report.tfo = "data"
                syn_data_end = segment.seq + 1 + len(segment.payload)
            elif cookie == b"" and report.tfo == "none":
                report.tfo = "cookie-request"
        if segment.syn and segment.has_ack and not packet.from_client and syn_data_end is not None:
            if seq_diff(segment.ack, syn_data_end % (1 << 32)) < 0 and not answered:
                report.causes.append("TFO data refused by the server: sent again after the handshake")
            syn_data_end = None

        if not packet.from_client and rnd.round > rnd.round_by_ack and not answered and not stall_seen:
            # New data that could only leave once the client's ACKs arrived: the window was full.
            stall_seen = True
            report.causes.append("server flight over the initial congestion window: it waited for ACKs")

        data = streams[packet.from_client].feed(segment)
        if not data:
            continue
        if is_tls is None:
            is_tls = data[0] == _TLS_HANDSHAKE_RECORD and len(data) > 1 and data[1] == 3
            if is_tls:
                conversation = TlsConversation(keylog)
        if conversation is None:
            # Plain HTTP: the first client byte is the request, the first server byte the response.
            if packet.from_client and report.setup_round_trips is None:
                report.setup_round_trips = rnd.round
            if not packet.from_client and not answered:
                report.round_trips = rnd.round
                report.ttfb_s = packet.time - report.start_time
            continue
        for message in conversation.feed("c2s" if packet.from_client else "s2c", data):
            if packet.from_client and message.kind in ("app_data", "early_data"):
                if report.setup_round_trips is None:
                    report.setup_round_trips = rnd.round
            elif not packet.from_client and message.kind == "app_data" and report.round_trips is None:
                report.round_trips = rnd.round
                report.ttfb_s = packet.time - report.start_time

    response_time = None if report.ttfb_s is None else report.start_time + report.ttfb_s
    for side in (True, False):
        report.causes.extend(retransmissions[side].causes(before=response_time))
    if report.tfo == "data":
        report.notes.append("TFO cookie used")
    elif report.tfo == "cookie-request":
        report.notes.append("TFO cookie requested")
    if conversation is not None:
        _apply_tls_facts(report, conversation.facts)
        if report.round_trips is None and not conversation.facts.keys_found and report.tls_version == "1.3":
            report.notes.append("TLS 1.3 response not found: give the key log to tell it from tickets")
    return report
