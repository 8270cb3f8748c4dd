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
_NEVER = 1 << 30


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
        self._seen: list[tuple[int, int, float, int | None]] = []  # (start, end, time, TSval) as seen
        self._seen_tsvals: set[tuple[int, int]] = set()
        self.found: dict[str, list[tuple[float, float | None]]] = {}
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
        if first is None and timestamps is not None:
            first = self._fills_gap_late(start, timestamps[0])
        self._seen.append((start, end, time, timestamps[0] if timestamps else None))
        if first is None:
            return False
        if segment.syn:
            what = "SYN-ACK" if segment.has_ack else "SYN"
        else:
            what = "data" if segment.payload else "FIN"
        self.found.setdefault(what, []).append((time, time - first))
        return True

    def note_unseen_original(self, segment, time: float) -> None:
        """Count a retransmission recognised by other means (its first copy was never seen here)."""
        what = "data" if segment.payload else "FIN"
        self.found.setdefault(what, []).append((time, None))

    def _fills_gap_late(self, start: int, tsval: int) -> float | None:
        """A segment below data already seen, sent (by its TSval) after that data: the copy that
        went missing before the capture point is being resent. Returns when the later data was
        first seen; None for plain reordering (an older TSval)."""
        for r_start, _, r_time, r_tsval in self._seen:
            if r_start > start and r_tsval is not None and seq_diff(tsval, r_tsval) > 0:
                return r_time
        return None

    def causes(self, before: float | None) -> list[str]:
        return retransmission_causes(self.side, self.found, before)


def retransmission_causes(side: str, found: dict[str, list[tuple[float, float | None]]], before: float | None) -> list[str]:
    """One line per kind of retransmission (what → [(when, delay after the first copy)]) that
    happened before ``before`` (None: at all)."""
    out = []
    for what, events in found.items():
        delays = [delay for at, delay in events if before is None or at <= before]
        if delays:
            times = "" if len(delays) == 1 else f" {len(delays)} times"
            if delays[0] is None:
                when = "its first copy was lost before the capture point"
            else:
                when = f"first after {delays[0]:.3f} s"
            out.append(f"{side} {what} retransmitted{times} ({when})")
    return out


def _covered_since(ranges: list[tuple[int, int, float, int | None]], start: int, end: int) -> float | None:
    """When [start, end) had been wholly seen already, the time its first byte was first seen."""
    covered_until = start
    first_time = None
    for r_start, r_end, r_time, _ in sorted(ranges, key=lambda r: r[:2]):
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
    opened_here = bool(flow.packets) and flow.packets[0].segment.syn
    streams = {True: StreamAssembler(expect_syn=opened_here), False: StreamAssembler(expect_syn=opened_here)}
    retransmissions = {True: _Retransmissions("client"), False: _Retransmissions("server")}
    conversation: TlsConversation | None = None
    is_tls: bool | None = None
    syn_data_end: int | None = None
    stall_seen = False
    server_data_rounds: dict[int, int] = {}  # round -> server payload bytes first sent in it
    request_rounds = {"early_data": _NEVER, "app_data": _NEVER}  # TLS: first client request record of each kind
    for packet in flow.packets:
        segment = packet.segment
        retransmission = retransmissions[packet.from_client].check(segment, packet.time)
        placed = counter.place(packet)
        rnd = placed.round_by_ack if retransmission else placed.round
        if not packet.from_client and segment.payload and not retransmission and placed.round > placed.round_by_ack:
            if server_data_rounds.get(placed.round - 1):
                # New data that could only leave once the client's ACKs arrived: the flight had
                # begun in the round before and the congestion window was full.
                if not answered and not stall_seen:
                    stall_seen = True
                    report.causes.append("server flight over the initial congestion window: it waited for ACKs")
            else:
                # No flight to have stalled: a timer resent data whose first copy never reached
                # the capture point, and the echo merely shows what arrived meanwhile.
                rnd = placed.round_by_ack
                retransmissions[False].note_unseen_original(segment, packet.time)
        counter.record(packet, rnd)
        if not packet.from_client and segment.payload:
            server_data_rounds[rnd] = server_data_rounds.get(rnd, 0) + len(segment.payload)
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
            elif cookie == b"" and report.tfo == "none":
                report.tfo = "cookie-request"
            if syn_data_end is not None and not segment.payload and not answered:
                # Linux resends a timed-out TFO SYN bare; its data waits for the handshake.
                report.causes.append("TFO SYN resent without its data: the data waited for the handshake")
            syn_data_end = segment.seq + 1 + len(segment.payload) if segment.payload else None
        if segment.syn and segment.has_ack and not packet.from_client and syn_data_end is not None:
            if seq_diff(segment.ack, syn_data_end % (1 << 32)) < 0 and not answered:
                report.causes.append("TFO data refused by the server: sent again after the handshake")
            syn_data_end = None


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
                report.setup_round_trips = rnd
            if not packet.from_client and not answered:
                report.round_trips = rnd
                report.ttfb_s = packet.time - report.start_time
            continue
        for message in conversation.feed("c2s" if packet.from_client else "s2c", data):
            if packet.from_client and message.kind in request_rounds:
                request_rounds[message.kind] = min(request_rounds[message.kind], rnd)
            elif not packet.from_client and message.kind == "app_data" and report.round_trips is None:
                report.round_trips = rnd
                report.ttfb_s = packet.time - report.start_time

    response_time = None if report.ttfb_s is None else report.start_time + report.ttfb_s
    for side in (True, False):
        report.causes.extend(retransmissions[side].causes(before=response_time))
    if report.tfo == "data":
        report.notes.append("TFO cookie used")
    elif report.tfo == "cookie-request":
        report.causes.append("TFO cookie request: no cookie cached yet, so the data waited for the handshake")
    if conversation is not None:
        _apply_tls_facts(report, conversation.facts)
        # The request that got answered: the early one unless the server refused early data.
        early, late = request_rounds["early_data"], request_rounds["app_data"]
        first = late if report.early_data == "rejected" else min(early, late)
        report.setup_round_trips = None if first == _NEVER else first
        if report.round_trips is None and not conversation.facts.keys_found and report.tls_version == "1.3":
            report.notes.append("TLS 1.3 response not found: give the key log to tell it from tickets")
    return report
