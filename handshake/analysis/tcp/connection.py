"""One TCP connection's verdict: what was negotiated, and the round trips to the first response byte.

This is the one place that turns a trace into the numbers every command prints, so a simulated
run, a kernel run and a stranger's capture are judged by the same rules.
"""

from __future__ import annotations

from typing import Final

from handshake.trace.packet import TcpSegment, seq_diff

from ..http.http1 import http1_label
from ..http.http2 import Http2Frame
from ..http.response import ResponseFinder
from ..intervals import FirstSeenRanges, RecentSet
from ..keylog import KeyLog
from ..report import ConnectionReport, first_byte_mark, note_retransmission, on_microseconds, retransmission_causes
from ..steps import LadderStep
from ..tls.conversation import TlsConversation, TlsFacts, TlsMessage
from .flows import FlowPacket, StreamAssembler, TcpFlow
from .rounds import TcpRoundCounter

_TLS_HANDSHAKE_RECORD: Final = 0x16
_NEVER: Final = 1 << 30
_KEPT_CHUNKS: Final = 16
"""Server chunks remembered while the answer is sought: its first byte can lie a few chunks (an
HTTP/2 frame header split across TLS records) before the one that shows what it is."""


class _Retransmissions:
    """Spots a side sending sequence space it already sent: a retransmission (loss or a late ACK).

    Seen from one capture point, packets may also arrive out of order; only a range that was
    wholly seen before counts as sent again. What was seen is kept as merged ranges
    (``FirstSeenRanges``), so a long connection costs bounded memory.
    """

    def __init__(self, side: str) -> None:
        self.side = side
        self._base: int | None = None
        self._seen: FirstSeenRanges[int] = FirstSeenRanges()  # tag: the TSval of the first copy
        self._seen_tsvals = RecentSet()
        self.found: dict[str, list[tuple[float, float | None]]] = {}
        """What was retransmitted ("SYN", "data", ...) → (when, how long after its first copy)."""

    def check(self, segment: TcpSegment, time: float, timestamps: tuple[int, int] | None = None) -> bool:
        """Whether ``segment`` (whose TCP timestamps the caller read) resends what was seen."""
        if self._base is None:
            self._base = segment.seq
        seq_len = segment.seq_len
        if not seq_len:
            return False
        start = seq_diff(segment.seq, self._base)
        end = start + seq_len
        if timestamps is not None:
            key = (start, timestamps[0])
            if key in self._seen_tsvals:
                return False  # the very same packet twice: the link duplicated it
            self._seen_tsvals.add(key)
        first = self._seen.covered_since(start, end)
        if first is None and timestamps is not None:
            first = self._fills_gap_late(start, timestamps[0])
        self._seen.add(start, end, time, timestamps[0] if timestamps else None)
        if first is None:
            return False
        if segment.syn:
            what = "SYN-ACK" if segment.has_ack else "SYN"
        else:
            what = "data" if segment.payload else "FIN"
        note_retransmission(self.found, what, time, time - first)
        return True

    def note_unseen_original(self, segment: TcpSegment, time: float) -> None:
        """Count a retransmission recognised by other means (its first copy was never seen here)."""
        note_retransmission(self.found, "data" if segment.payload else "FIN", time, None)

    def _fills_gap_late(self, start: int, tsval: int) -> float | None:
        """A segment below data already seen, sent (by its TSval) after that data: the copy that
        went missing before the capture point is being resent. Returns when the later data was
        first seen; None for plain reordering (an older TSval)."""
        return self._seen.earliest_above(start, lambda r_tsval: r_tsval is not None and seq_diff(tsval, r_tsval) > 0)

    def causes(self, before: float | None) -> list[str]:
        return retransmission_causes(self.side, self.found, before)


_KEPT_ROUNDS: Final = 256


def _apply_tls_facts(report: ConnectionReport, facts: TlsFacts) -> None:
    report.tls_version = facts.tls_version
    report.sni = facts.sni
    report.cipher = facts.cipher_suite
    report.hrr = facts.hrr
    report.resumed = facts.resumed
    report.alpn = facts.alpn_selected
    if facts.early_data == "sent":
        report.early_data = "sent"
    elif facts.early_data in ("accepted", "rejected"):
        report.early_data = facts.early_data
    elif facts.early_data is None:
        report.early_data = "unknown"  # no ClientHello in the capture: it cannot tell
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
    analyzer = TcpConnectionAnalyzer(flow.client, flow.server, keylog)
    for packet in flow.packets:
        time = on_microseconds(packet.time)
        analyzer.add(packet if time == packet.time else
                     FlowPacket(time, packet.from_client, packet.segment, packet.wire_bytes))
    return analyzer.report()


STALL_CAUSE: Final = "server flight over the initial congestion window: it waited for ACKs"
RECORD_STALL_CAUSE: Final = ("first response record over what the initial congestion window had left: "
                      "its end, and so its first byte, waited for ACKs")
"""The handshake fitted but the answer's first TLS record did not (a 16 KB record is 12 segments):
the client can read no byte of a record before its last one, so a smaller first record saves
the round trip."""
TFO_BARE_RESEND_CAUSE: Final = "TFO SYN resent without its data: the data waited for the handshake"
TFO_REFUSED_CAUSE: Final = "TFO data refused by the server: sent again after the handshake"
TFO_COOKIE_REQUEST_CAUSE: Final = "TFO cookie request: no cookie cached yet, so the data waited for the handshake"


class TcpConnectionAnalyzer:
    """One TCP connection's verdict, fed packet by packet in capture order (sans-IO).

    Holds the connection's state (stream reassembly, TLS, round counter, what was seen once, in
    bounded structures), never its packets. Packet times are on the microsecond grid
    (``on_microseconds``: the callers put them there). With ``steps=True`` each ``add`` also
    returns the packet as a ladder step.
    """

    def __init__(self, client: tuple[str, int], server: tuple[str, int], keylog: KeyLog | None = None,
                 *, steps: bool = False) -> None:
        self.report_so_far = ConnectionReport(
            transport="tcp", client=TcpFlow.endpoint_text(client), server=TcpFlow.endpoint_text(server), start_time=0.0
        )
        self._keylog = keylog
        self._steps = steps
        self._counter = TcpRoundCounter()
        self._streams: dict[bool, StreamAssembler] | None = None
        self._retransmissions = {True: _Retransmissions("client"), False: _Retransmissions("server")}
        self._conversation: TlsConversation | None = None
        self._is_tls: bool | None = None
        self._syn_data_end: int | None = None
        self._stall_seen = False
        self._answered = False
        self._syn_seen = False
        self._server_data_rounds: dict[int, int] = {}  # round -> server payload bytes first sent in it
        self._request_rounds = {"early_data": _NEVER, "app_data": _NEVER}  # TLS: first client request record of each kind
        self._plain_labels = {True: False, False: False}  # plain HTTP: first bytes of each side labelled
        self._response: ResponseFinder | None = None
        """HTTP read in clear or decrypted: which server byte answers the request."""
        self._response_chunks: list[tuple[int, float, int]] = []
        """(server application offset, time, round) of the latest server chunks, until the answer."""
        self._verdict_time: float | None = None
        """Set once the verdict cannot change any more (the response's time; not for ladders)."""
        self._released: tuple | None = None
        """(retransmission causes, TLS facts) once the rest of the state was let go."""

    def add(self, packet: FlowPacket) -> LadderStep | None:
        """Count one packet of the connection."""
        report = self.report_so_far
        if self._verdict_time is not None and packet.time > self._verdict_time:
            self.count_late(packet.from_client, packet.wire_bytes)
            return None
        segment = packet.segment
        if self._streams is None:
            report.start_time = packet.time
            opened_here = segment.syn
            self._streams = {True: StreamAssembler(expect_syn=opened_here), False: StreamAssembler(expect_syn=opened_here)}
        marks: list[str] = []
        timestamps = segment.timestamps
        retransmission = self._retransmissions[packet.from_client].check(segment, packet.time, timestamps)
        placed = self._counter.place(packet, timestamps)
        rnd = placed.round_by_ack if retransmission else placed.round
        if not packet.from_client and segment.payload and not retransmission and placed.round > placed.round_by_ack:
            if self._server_data_rounds.get(placed.round - 1):
                # New data that could only leave once the client's ACKs arrived: the flight had
                # begun in the round before and the congestion window was full.
                if not self._answered and not self._stall_seen:
                    self._stall_seen = True
                    requested = min(self._request_rounds.values()) < placed.round
                    cause = RECORD_STALL_CAUSE if requested else STALL_CAUSE
                    report.causes.append(cause)
                    marks.append(cause)
            else:
                # No flight to have stalled: a timer resent data whose first copy never reached
                # the capture point, and the echo merely shows what arrived meanwhile.
                rnd = placed.round_by_ack
                self._retransmissions[False].note_unseen_original(segment, packet.time)
                retransmission = True
        self._counter.record(packet, rnd, timestamps)
        if not packet.from_client and segment.payload:
            rounds = self._server_data_rounds
            rounds[rnd] = rounds.get(rnd, 0) + len(segment.payload)
            if len(rounds) > _KEPT_ROUNDS:  # only the latest rounds are ever looked up
                newest = max(rounds)
                for old in [r for r in rounds if r < newest - _KEPT_ROUNDS // 2]:
                    del rounds[old]
        report.count(packet.from_client, packet.wire_bytes)
        answered = self._answered = report.round_trips is not None
        carries = _flag_labels(segment, packet.from_client) if self._steps else []
        if retransmission:
            marks.append("retransmission")

        if segment.syn and not segment.has_ack and packet.from_client:
            self._syn_seen = True
            cookie = segment.fastopen_cookie
            if segment.payload and cookie:
                report.tfo = "data"
            elif cookie == b"" and report.tfo == "none":
                report.tfo = "cookie-request"
            if self._syn_data_end is not None and not segment.payload and not answered:
                # Linux resends a timed-out TFO SYN bare; its data waits for the handshake.
                report.causes.append(TFO_BARE_RESEND_CAUSE)
                marks.append(TFO_BARE_RESEND_CAUSE)
            self._syn_data_end = segment.seq + 1 + len(segment.payload) if segment.payload else None
        if segment.syn and segment.has_ack and not packet.from_client and self._syn_data_end is not None:
            if seq_diff(segment.ack, self._syn_data_end % (1 << 32)) < 0 and not answered:
                report.causes.append(TFO_REFUSED_CAUSE)
                marks.append(TFO_REFUSED_CAUSE)
            self._syn_data_end = None

        data = self._streams[packet.from_client].feed(segment)
        if data:
            self._data(packet, data, rnd, carries, marks)
            if report.ttfb_s is not None and not self._steps and self._settled():
                self._verdict_time = report.start_time + report.ttfb_s
        if segment.payload and not data and self._steps:
            carries.append(f"{len(segment.payload)} bytes" + (" again" if retransmission else " (held: out of order)"))
        if not self._steps:
            return None
        if not carries:
            carries.append("ACK" if segment.has_ack else "(no flags)")
        return LadderStep(packet.time - report.start_time, packet.from_client, rnd, tuple(carries), tuple(marks),
                          packet.wire_bytes)

    @property
    def settled_at(self) -> float | None:
        """The time after which packets only add to the counts (``count_late``): set once the
        first response byte is in and the facts cannot change; never with ladder steps."""
        return self._verdict_time

    def count_late(self, from_client: bool, wire_bytes: int) -> None:
        """A packet after ``settled_at``: past the first response byte nothing but the counts
        changes the verdict (the facts are settled, later retransmissions are not its causes,
        rounds are not asked), so its contents need not even be decoded."""
        if self._released is None:
            self._release()
        self.report_so_far.count(from_client, wire_bytes)

    def _data(self, packet: FlowPacket, data: bytes, rnd: int, carries: list[str], marks: list[str]) -> None:
        report = self.report_so_far
        if self._is_tls is None:
            self._is_tls = data[0] == _TLS_HANDSHAKE_RECORD and len(data) > 1 and data[1] == 3
            if self._is_tls:
                self._conversation = TlsConversation(self._keylog)
        conversation = self._conversation
        if conversation is None:
            # Plain HTTP: the first client byte is the request; the answer is what the response
            # finder says (HTTP/1.x: the status line; h2c: HEADERS or DATA on the request stream).
            if packet.from_client and report.setup_round_trips is None:
                report.setup_round_trips = rnd
            frames = self._application_bytes(packet, rnd, data, marks, "clear", None)
            if self._steps:
                label = None if self._plain_labels[packet.from_client] else http1_label(data)
                self._plain_labels[packet.from_client] = True
                carries.extend([frame.label for frame in frames] if frames else [label or f"{len(data)} bytes"])
            return
        before = conversation.facts
        labelled = len(carries)
        for message in conversation.feed("c2s" if packet.from_client else "s2c", data):
            if packet.from_client and message.kind in self._request_rounds:
                self._request_rounds[message.kind] = min(self._request_rounds[message.kind], rnd)
            elif (not packet.from_client and message.kind == "app_data" and report.round_trips is None
                  and message.plaintext is None):
                report.round_trips = rnd
                report.ttfb_s = packet.time - report.start_time
                marks.append(first_byte_mark(rnd))
            frames = []
            if message.plaintext is not None and (report.round_trips is None or self._steps):
                # Decrypted: the answer is the record holding the response's first byte.
                if (packet.from_client and message.kind == "app_data" and self._response is not None
                        and conversation.facts.early_data == "rejected"):
                    self._response.early_data_rejected()
                frames = self._application_bytes(packet, rnd, message.plaintext, marks, "decrypted",
                                                 conversation.facts.alpn_selected)
            if self._steps:
                carries.extend([frame.label for frame in frames] if frames else [_tls_label(message)])
        if self._steps:
            if len(carries) == labelled:
                carries.append(f"{len(data)} bytes of a TLS record")  # its end is still to come
            after = conversation.facts
            if after.hrr and not before.hrr:
                marks.append("cause: HelloRetryRequest")
            if after.early_data != before.early_data and after.early_data in ("accepted", "rejected"):
                marks.append(f"0-RTT {after.early_data}")
            if after.resumed and not before.resumed:
                marks.append("resumed")

    def _application_bytes(self, packet: FlowPacket, rnd: int, data: bytes, marks: list[str], basis: str,
                           alpn: str | None) -> list[Http2Frame]:
        """Feed HTTP bytes (clear, or a decrypted record's) to the response finder; once it names
        the answer's first byte, that byte's packet (for a record: the one completing it) is the
        first response byte. Returns the HTTP/2 frames completed, for the ladder."""
        finder = self._response
        if finder is None:
            finder = self._response = ResponseFinder(alpn)
        report = self.report_so_far
        if packet.from_client or report.round_trips is not None:
            return finder.feed(packet.from_client, data)
        chunks = self._response_chunks
        chunks.append((finder.server_offset, packet.time, rnd))
        if len(chunks) > _KEPT_CHUNKS:
            del chunks[0]
        frames = finder.feed(False, data)
        answer = finder.answer_offset
        if answer is not None:
            time, at_round = packet.time, rnd
            for chunk_offset, chunk_time, chunk_round in reversed(chunks):
                if chunk_offset <= answer:
                    time, at_round = chunk_time, chunk_round
                    break
            report.round_trips = at_round
            report.ttfb_s = time - report.start_time
            report.round_trips_basis = basis
            marks.append(first_byte_mark(at_round))
            self._response_chunks = []
        return frames

    def _settled(self) -> bool:
        """Nothing after the response can change the facts: plain HTTP, or TLS whose handshake
        said all it will (1.2 after the response; 1.3 once the server's keys opened it)."""
        conversation = self._conversation
        if conversation is None:
            return True
        facts = conversation.facts
        return facts.tls_version is not None and facts.resumed is not None and facts.early_data != "sent"

    def _release(self) -> None:
        """Keep what the verdict needs and let the rest go: a capture of many connections then
        holds, per finished one, little more than its report."""
        self._released = (self._retransmitted(), self._tls_facts())
        self._retransmissions, self._counter, self._server_data_rounds = {}, TcpRoundCounter(), {}
        self._conversation = None
        self._response = None
        self._streams = {}

    def _retransmitted(self) -> list[str]:
        """The retransmission causes of both sides, up to the first response byte."""
        report = self.report_so_far
        response_time = None if report.ttfb_s is None else report.start_time + report.ttfb_s
        return [cause for side in (True, False) for cause in self._retransmissions[side].causes(before=response_time)]

    def _tls_facts(self) -> TlsFacts | None:
        return self._conversation.facts if self._conversation is not None else None

    def report(self) -> ConnectionReport:
        """The verdict on the packets added so far (call once, at the end)."""
        report = self.report_so_far
        retransmitted, facts = self._released or (self._retransmitted(), self._tls_facts())
        report.causes.extend(retransmitted)
        if report.tfo == "data":
            report.notes.append("TFO cookie used")
        elif report.tfo == "cookie-request":
            report.causes.append(TFO_COOKIE_REQUEST_CAUSE)
        elif not self._syn_seen and report.packets:
            report.tfo = "unknown"
            report.notes.append("the capture began after the client's SYN")
        if facts is not None:
            _apply_tls_facts(report, facts)
            # The request that got answered: the early one unless the server refused early data.
            early, late = self._request_rounds["early_data"], self._request_rounds["app_data"]
            first = late if report.early_data == "rejected" else min(early, late)
            report.setup_round_trips = None if first == _NEVER else first
            if report.round_trips is None and not facts.keys_found and report.tls_version == "1.3":
                report.notes.append("TLS 1.3 response not found: give the key log to tell it from tickets")
        return report


def _flag_labels(segment: TcpSegment, from_client: bool) -> list[str]:
    out = []
    if segment.syn:
        out.append("SYN-ACK" if segment.has_ack else "SYN")
        cookie = segment.fastopen_cookie
        if cookie == b"":
            out.append("TFO cookie request")
        elif cookie:
            out.append("TFO cookie")
    if segment.flags & 0x04:
        out.append("RST")
    if segment.fin:
        out.append("FIN")
    return out


def _tls_label(message: TlsMessage) -> str:
    if message.kind in ("app_data", "early_data"):
        what = http1_label(message.preview) if message.preview else None
        if message.kind == "early_data":
            return f"early data: {what}" if what else f"early data ({message.length} bytes)"
        return what or f"ApplicationData ({message.length} bytes)"
    if message.kind == "encrypted":
        return f"encrypted record ({message.length} bytes)"
    if message.kind == "garbage":
        return "not TLS"
    return message.name
