"""One TCP connection's verdict: what was negotiated, and the round trips to the first response byte.

This is the one place that turns a trace into the numbers every command prints, so a simulated
run, a kernel run and a stranger's capture are judged by the same rules.
"""

from __future__ import annotations

from typing import Final

from handshake.trace.integers import u16
from handshake.trace.packet import ACK, FIN, RST, TcpSegment, seq_diff

from ..http.http1 import http1_label
from ..http.http2 import Http2Frame
from ..http.response import HTTP2, ResponseFinder
from ..keyless import FIRST, LATER, SMALL_CLIENT_RECORD, TLS13_RECORD_OVERHEAD, KeylessResponse
from ..keylog import KeyLog
from ..report import ConnectionReport, first_byte_mark, on_microseconds
from ..server_time import PathLeg
from ..steps import LadderStep
from ..tls.conversation import TlsConversation, TlsFacts, TlsMessage
from ..tls.records import ssl2_client_hello_start
from .flows import FlowPacket, StreamAssembler, TcpFlow
from .nagle import NagleHold, NagleWatch
from .prelude import NONE, PENDING, REFUSED, SWITCHED, PreludeReader, may_start
from .retransmissions import Retransmissions
from .rounds import PacketRound, TcpRoundCounter

_TLS_HANDSHAKE_RECORD: Final = 0x16
_MAX_RECORD_BYTES: Final = (1 << 14) + 2048
"""RFC 5246 §6.2.3: a protected record's fragment never exceeds 2^14 + 2048 bytes."""
_NEVER: Final = 1 << 30
_DEFAULT_SMSS: Final = 1460
"""A segment size where the handshake's MSS options were not seen (Ethernet's)."""
_TIMESTAMPS_OPTION: Final = 12
"""Bytes the timestamps option takes in every segment (RFC 7323 §3, padded)."""
_KEPT_REQUEST_PARTS: Final = 16
"""Request records remembered (a request written in pieces, or followed by more)."""
CLIENT_WAIT_NOTE_S: Final = 0.010
"""Client time before the request worth a note (a user, a script, Nagle)."""
_KEPT_SEGMENTS: Final = 64
"""Server data packets remembered (where each began in the stream, when, what its ACK covered),
to find the packet that carried a record's first byte."""
_KEPT_CHUNKS: Final = 16
"""Server chunks remembered while the answer is sought: its first byte can lie a few chunks (an
HTTP/2 frame header split across TLS records) before the one that shows what it is."""


_RELEASED_COUNTER: Final = TcpRoundCounter()
"""What a released connection holds in place of its counter (never used again: one for all)."""


class _SentChunk:
    """Where a server data packet began in its stream, and what it shows about the server then."""

    __slots__ = ("offset", "time", "acked", "heard", "round")

    def __init__(self, offset: int, time: float, acked: int, heard: float, round: int) -> None:
        self.offset = offset
        self.time = time
        self.acked = acked
        """Its ACK as an offset into the client's stream (-1: unknown)."""
        self.heard = heard
        """When the newest client data its ACK covers was seen (-1.0: none)."""
        self.round = round


class _RequestPart:
    """A client record (or clear chunk) that carries the request, or part of it."""

    __slots__ = ("end", "time", "round")

    def __init__(self, end: int, time: float, round: int) -> None:
        self.end = end
        """Client stream offset just past it."""
        self.time = time
        self.round = round


_KEPT_ROUNDS: Final = 256


class _Prelude:
    """A prelude before TLS (prelude.py reads its bytes), and the rounds its cost counts between."""

    __slots__ = ("reader", "start_round", "switch_round", "cost")

    def __init__(self, start_round: int) -> None:
        self.reader = PreludeReader()
        self.start_round = start_round
        """Counted from when the client could first have sent (the SYN-ACK's round, where a
        ClientHello goes without a prelude): a server's greeting waited for the handshake."""
        self.switch_round = -1
        """Round of the packet that completed the switch to TLS."""
        self.cost = -1
        """Round trips from ``start_round`` to the client's first byte past the prelude (-1: none
        yet)."""


def _apply_tls_facts(report: ConnectionReport, facts: TlsFacts) -> None:
    report.tls_version = facts.tls_version
    report.adopt_tls_facts(facts)
    # None: no ClientHello in the capture, so it cannot tell.
    report.early_data = "unknown" if facts.early_data is None else facts.early_data
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
        self._retransmissions = {True: Retransmissions("client"), False: Retransmissions("server")}
        self._conversation: TlsConversation | None = None
        self._is_tls: bool | None = None
        self._prelude: _Prelude | None = None
        """What came before TLS (a proxy's tunnel, STARTTLS), while it is read and after."""
        self._synack_round = -1
        self._syn_data_end: int | None = None
        self._stall_seen = False
        self._answered = False
        self._syn_seen = False
        self._server_data_rounds: dict[int, int] = {}  # round -> server payload bytes first sent in it
        self._request_rounds = {"early_data": _NEVER, "app_data": _NEVER}  # TLS: first client request record of each kind
        self._plain_labels = {True: False, False: False}  # plain HTTP: first bytes of each side labelled
        self._client_sent_end = -1
        """Sequence number just past the furthest byte (SYN, FIN) the client was seen to send (-1: none)."""
        self._server_sent_end = -1
        self._client_unseen = 0
        """Bytes the client sent that the server acknowledged but the capture never held."""
        self._server_unseen = 0
        self._path = PathLeg()
        self._smss: int | None = None
        """The server's segment size: the smaller MSS option of the SYN and the SYN-ACK."""
        self._client_base: int | None = None
        """Sequence number of the client's first stream byte (its SYN's + 1), once seen."""
        self._server_chunks: list[_SentChunk] = []
        """The latest server data packets."""
        self._request_parts: list[_RequestPart] = []
        self._nagle_watch = NagleWatch()
        self._held: NagleHold | None = None
        """This client packet, where Nagle's algorithm may have held it (``NagleWatch``)."""
        self._nagle: NagleHold | None = None
        """The first client segment Nagle's algorithm held back, as the trace shows it."""
        self._control_records: list[tuple[int, int]] = []
        """Client stream ranges of HTTP/2 control records after the request (SETTINGS ACK, WINDOW_UPDATE)."""
        self._client_wait_s: float | None = None
        """How long the client held its request after it had what it needed to send it."""
        self._keyless: KeylessResponse | None = None
        self._first_step = -1
        """Index of the ladder step that got the first-byte mark, for a keyless answer to revise."""
        self._steps_made = 0
        self.step_revisions: dict[int, tuple[str, ...]] = {}
        """Ladder step index → the marks it should have had: a keyless answer found later than the
        record first taken for it moves the first-byte mark (``steps=True`` only)."""
        self._response: ResponseFinder | None = None
        """HTTP read in clear or decrypted: which server byte answers the request."""
        self._response_chunks: list[tuple[int, float, int, int]] = []
        """(server application offset, time, round, TCP stream offset where it began) of the
        latest server chunks, until the answer."""
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
        self._check_unseen(packet.from_client, segment)
        placed = self._counter.place(packet, timestamps)
        rnd = placed.round_by_ack if retransmission else placed.round
        if not packet.from_client and segment.payload and not retransmission and (
                placed.round > placed.round_by_ack or placed.round > self._ack_round(segment, placed)):
            flight = self._server_data_rounds.get(placed.round - 1, 0)
            if self._path.at_once(packet.time, placed.heard_by_echo) is False or 0 < flight < 2 * (self._smss or _DEFAULT_SMSS):
                # The echo names a client packet the server had, but the server did not wait for
                # it: it sent this long after (server time, DESIGN.md §6), or had too little in
                # flight to be held by its congestion window, which is never under two segments
                # (RFC 5681 §3.1) — a server computing between messages.
                rnd = placed.round_by_ack
            elif flight:
                # New data that could only leave once the client's ACKs arrived: the flight had
                # begun in the round before and the congestion window was full.
                if not self._answered and not self._stall_seen:
                    self._stall_seen = True
                    requested = min(self._request_rounds.values()) < placed.round
                    cause = RECORD_STALL_CAUSE if requested else STALL_CAUSE
                    report.causes.append(cause)
                    marks.append(cause)
            elif not self._server_data_rounds and self._streams is not None and not self._streams[True].offset:
                # A greeting before any client data (SMTP, IMAP, POP3, FTP): the server speaks
                # once the handshake is done, so its echo of the client's ACK is a real wait.
                pass
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

        if segment.syn:
            mss = segment.mss
            if mss:
                self._smss = mss if self._smss is None else min(self._smss, mss)
        if segment.syn and not segment.has_ack and packet.from_client:
            self._syn_seen = True
            self._path.asked(packet.time)
            self._client_base = (segment.seq + 1) & 0xFFFFFFFF
            cookie = segment.fastopen_cookie
            if segment.payload and cookie:
                report.tfo = "data"
            elif cookie == b"" and report.tfo in ("none", "unknown"):
                report.tfo = "cookie-request"
            elif report.tfo == "unknown":
                report.tfo = "none"  # the SYN is seen: no TFO is now a fact
            if self._syn_data_end is not None and not segment.payload and not answered:
                # Linux resends a timed-out TFO SYN bare; its data waits for the handshake.
                report.causes.append(TFO_BARE_RESEND_CAUSE)
                marks.append(TFO_BARE_RESEND_CAUSE)
            self._syn_data_end = segment.seq + 1 + len(segment.payload) if segment.payload else None
        if segment.syn and segment.has_ack and not packet.from_client:
            self._path.answered(packet.time)
            self._synack_round = rnd
        if segment.syn and segment.has_ack and not packet.from_client and self._syn_data_end is not None:
            if seq_diff(segment.ack, self._syn_data_end % (1 << 32)) < 0 and not answered:
                report.causes.append(TFO_REFUSED_CAUSE)
                marks.append(TFO_REFUSED_CAUSE)
            self._syn_data_end = None

        keyless = self._keyless
        # Whether the answer may still come (or move): only then is a packet's place kept.
        seeking = not answered or (keyless is not None and not keyless.final)
        if packet.from_client:
            if self._path.client_leg_s is None:
                self._path.answered_back(packet.time)
            if keyless is not None and seeking:
                keyless.client_packet(packet.time)
        stream = self._streams[packet.from_client]
        data = stream.feed(segment)
        if seeking and self._nagle is None:
            self._watch_nagle(packet, rnd, retransmission)
        if data and seeking and not packet.from_client:
            base = self._client_base
            acked = seq_diff(segment.ack, base) if base is not None and segment.flags & ACK else -1
            chunks = self._server_chunks
            chunks.append(_SentChunk(stream.offset - len(data), packet.time, acked, placed.heard_by_ack, rnd))
            if len(chunks) > _KEPT_SEGMENTS:
                del chunks[0]
        if data:
            self._data(packet, data, rnd, placed, carries, marks)
        held, self._held = self._held, None
        if held is not None and held.bare_release:  # a bare ACK brought nothing the client could wait for
            self._nagle = held
            marks.append(held.cause)
            parts = self._request_parts
            if parts and parts[0].time == packet.time:
                self._client_wait_s = None  # the request's wait was Nagle's, not the client's
        if keyless is not None and answered and packet.from_client and segment.flags & (FIN | RST):
            keyless.final = True  # a client that closes has what it came for: no later answer
        if report.ttfb_s is not None and self._verdict_time is None and not self._steps and self._settled():
            self._verdict_time = report.start_time + report.ttfb_s
        if segment.payload and not data and self._steps:
            carries.append(f"{len(segment.payload)} bytes" + (" again" if retransmission else " (held: out of order)"))
        if not self._steps:
            return None
        self._steps_made += 1
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

    def _data(self, packet: FlowPacket, data: bytes, rnd: int, placed: PacketRound, carries: list[str],
              marks: list[str]) -> None:
        report = self.report_so_far
        prelude = self._prelude
        if self._is_tls is None:
            if prelude is None:
                is_tls = self._is_tls = _starts_tls(data, mid_stream=not self._syn_seen)
                if is_tls:
                    self._conversation = TlsConversation(self._keylog)
                elif self._syn_seen and may_start(packet.from_client, data):
                    # Not TLS at its first byte: maybe a proxy's or STARTTLS's prelude first.
                    self._is_tls = None
                    prelude = self._prelude = _Prelude(rnd if self._synack_round < 0 else min(rnd, self._synack_round))
            if prelude is not None:
                data = self._through_prelude(prelude, packet, data, rnd, placed, carries, marks)
                if not data:
                    return
                prelude = self._prelude
                if self._is_tls is None and prelude is not None:
                    self._is_tls = _starts_tls(data, mid_stream=False)
                    if self._is_tls:
                        reader = prelude.reader
                        self._conversation = TlsConversation(self._keylog, reader.client_offset, reader.server_offset)
        if prelude is not None and prelude.cost < 0 and packet.from_client:
            # The client's first byte past the prelude: what the prelude cost it.
            prelude.cost = max(rnd - prelude.start_round, 0)
        conversation = self._conversation
        if conversation is None:
            # Plain HTTP: the first client byte is the request; the answer is what the response
            # finder says (HTTP/1.x: the status line; h2c: HEADERS or DATA on the request stream).
            if packet.from_client and report.setup_round_trips is None:
                report.setup_round_trips = rnd
            streams = self._streams
            assert streams is not None  # set by add before any data
            offset = streams[packet.from_client].offset
            frames = self._application_bytes(packet, rnd, placed, data, marks, "clear", None, offset - len(data), offset)
            if self._steps:
                label = None if self._plain_labels[packet.from_client] else http1_label(data)
                self._plain_labels[packet.from_client] = True
                carries.extend([frame.label for frame in frames] if frames else [label or f"{len(data)} bytes"])
            return
        before = conversation.facts
        labelled = len(carries)
        for message in conversation.feed("c2s" if packet.from_client else "s2c", data):
            kind = message.kind
            record_frames: list[Http2Frame] | None = None
            if (kind == "encrypted" and conversation.tls13) or (kind == "app_data" and message.plaintext is None):
                self._keyless_record(packet, message, rnd, placed, marks)
            elif packet.from_client and kind in self._request_rounds:
                self._request_rounds[kind] = min(self._request_rounds[kind], rnd)
            if message.plaintext is not None and (report.round_trips is None or self._steps):
                # Decrypted: the answer is the record holding the response's first byte.
                if (packet.from_client and kind == "app_data" and self._response is not None
                        and conversation.facts.early_data == "rejected"):
                    self._response.early_data_rejected()
                record_frames = self._application_bytes(packet, rnd, placed, message.plaintext, marks, "decrypted",
                                                 conversation.facts.alpn_selected, message.start_offset,
                                                 message.end_offset)
            if self._steps:
                if record_frames:
                    early = "early data: " if message.kind == "early_data" else ""
                    carries.extend(early + frame.label for frame in record_frames)
                else:
                    carries.append(_tls_label(message))
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

    def _through_prelude(self, state: _Prelude, packet: FlowPacket, data: bytes, rnd: int, placed: PacketRound,
                         carries: list[str], marks: list[str]) -> bytes:
        """Feed a prelude (a proxy's tunnel, STARTTLS); returns this packet's bytes past it, once
        it switched (the TLS, or tunnelled HTTP, that the rest of ``_data`` reads)."""
        prelude = state.reader
        if prelude.verdict == SWITCHED:
            return data
        if prelude.verdict != PENDING:
            return b""  # refused: nothing after it is read
        verdict = prelude.feed(packet.from_client, data)
        if self._steps:
            label = http1_label(data) if prelude.kind == "http-connect" else None
            if label is not None and not packet.from_client:
                label = f"proxy: {label}"
            carries.append(label or f"{len(data)} bytes ({prelude.description})")
        if verdict == NONE:
            # No prelude after all: the stream is read as it was before the reader took it.
            self._prelude = None
            self._is_tls = False
            for side in (True, False):
                held = prelude.held(side)
                if held:
                    self._data(FlowPacket(packet.time, side, packet.segment, 0), held, rnd, placed, [], marks)
            return b""
        if verdict != SWITCHED:
            return b""
        state.switch_round = rnd
        marks.append(f"{prelude.description}: TLS next")
        other, mine = prelude.leftover(not packet.from_client), prelude.leftover(packet.from_client)
        prelude.drop_bytes()
        if other:  # the other side's bytes already past the prelude (sent without waiting)
            self._data(FlowPacket(packet.time, not packet.from_client, packet.segment, 0), other, rnd, placed, [],
                       marks)
        return mine

    def _prelude_report(self, report: ConnectionReport) -> None:
        """Name the prelude, with its round trips (the count from the SYN includes them), or
        say why TLS never came."""
        state = self._prelude
        if state is None:
            return
        prelude = state.reader
        if prelude.kind is None:
            report.notes.append("the stream began like a proxy's or STARTTLS's prelude, but the capture ends "
                                "before it says which")
            return
        report.prelude = prelude.kind
        what = prelude.description
        if prelude.verdict == SWITCHED:
            cost = state.cost
            if cost < 0:  # no client byte past it: count to the reply that opened TLS
                cost = max(state.switch_round - state.start_round, 0)
            plural = "s" * (cost != 1)
            if prelude.kind == "http-connect":
                line = f"{what}: CONNECT cost {cost} round trip{plural}"
            elif prelude.kind.startswith("socks"):
                line = f"{what}: {cost} round trip{plural}"
            else:
                line = f"{what}: {cost} round trip{plural} before the ClientHello"
            # What came first, first: causes are in the order they delayed the answer.
            (report.causes if report.ttfb_s is not None else report.notes).insert(0, line)
            return
        if prelude.verdict == REFUSED or prelude.reason:
            report.notes.append(f"{what}: {prelude.reason}; no TLS in this connection, so no HTTPS count")
        else:
            report.notes.append(f"{what}: the capture ends before TLS started, so no HTTPS count")

    def _record_start(self, offset: int) -> _SentChunk:
        """The server data packet that carried stream byte ``offset`` (the oldest remembered if it
        is older still)."""
        chunks = self._server_chunks
        for index in range(len(chunks) - 1, -1, -1):
            if chunks[index].offset <= offset:
                return chunks[index]
        return chunks[0]

    def _check_unseen(self, from_client: bool, segment: TcpSegment) -> None:
        """An ACK beyond what the other side was seen to send proves bytes the capture missed
        (not lost: they arrived). Captures drop packets under load; the count then rests on
        less than the wire held, and the report says so."""
        if from_client:
            self._client_sent_end = _furthest(self._client_sent_end, segment)
            self._server_unseen = _acked_beyond(segment, self._server_sent_end, self._server_unseen)
        else:
            self._server_sent_end = _furthest(self._server_sent_end, segment)
            self._client_unseen = _acked_beyond(segment, self._client_sent_end, self._client_unseen)

    def _ack_round(self, segment: TcpSegment, placed: PacketRound) -> int:
        """The round a server packet's ACK number places it in, not counting HTTP/2 control the
        client sent past the request: a window full of the answer's data is released by the
        client's ACKs, and a SETTINGS ACK that reached the server with them (Linux's ping-pong
        mode lets it carry the ACK) is not what the data waited for. Never above ``round_by_ack``."""
        base = self._client_base
        if not self._control_records or base is None or not segment.flags & ACK:
            return placed.round_by_ack
        acked = seq_diff(segment.ack, base)
        part = self._request_heard(acked)
        if part is None or part.round + 1 >= placed.round_by_ack or not self._only_control(part.end, acked):
            return placed.round_by_ack
        return part.round + 1

    def _request_part(self, packet: FlowPacket, end_offset: int, rnd: int, placed: PacketRound,
                      marks: list[str]) -> None:
        """A client record (or clear chunk) that carries (part of) the request."""
        parts = self._request_parts
        held = self._held
        if not parts:
            self._client_wait_s = self._path.client_time(packet.time, placed.heard_by_ack)
        elif held is not None and parts[-1].time < packet.time:
            # Held behind the request's own first part: whatever the ACK rode on, a client does
            # not wait for the server's words in the middle of its request.
            held.in_request = True
            self._nagle, self._held = held, None
            marks.append(held.cause)
        parts.append(_RequestPart(end_offset, packet.time, rnd))
        if len(parts) > _KEPT_REQUEST_PARTS:
            del parts[0]

    def _watch_nagle(self, packet: FlowPacket, rnd: int, retransmission: bool) -> None:
        """Feed the Nagle watch: the server's ACKs, the client's new data segments."""
        segment, base = packet.segment, self._client_base
        if base is None:
            return
        if not packet.from_client:
            if segment.flags & ACK:
                self._nagle_watch.server_ack(seq_diff(segment.ack, base), packet.time, not segment.payload)
        elif segment.payload and not retransmission and not segment.syn:
            start = seq_diff(segment.seq, base)
            # A full segment is the MSS less the options every segment carries (Linux's mss_now).
            full = (self._smss or _DEFAULT_SMSS) - (_TIMESTAMPS_OPTION if segment.timestamps is not None else 0)
            self._held = self._nagle_watch.client_data(start, start + len(segment.payload), packet.time, rnd, full,
                                                       self._path)

    def _control_record(self, start: int, end: int) -> None:
        """A client record past the request holding HTTP/2 control frames alone."""
        records = self._control_records
        records.append((start, end))
        if len(records) > _KEPT_REQUEST_PARTS:
            del records[0]

    def _may_speak_h2(self) -> bool:
        facts = self._conversation.facts if self._conversation is not None else None
        if facts is None or "h2" not in facts.alpn_offered:
            return False
        return facts.alpn_selected in (None, "h2")

    def _answer(self, start: _SentChunk, time: float, rnd: int, marks: list[str], basis: str) -> None:
        """The packet seen at ``time``, in round ``rnd``, brought the first response byte (it
        completed the record holding it; ``start`` carried the record's first byte).

        The request is the newest request part the server had when it began the answer; server
        time counts from it. The round is one past it, plus any the answer's record waited within
        (a congestion window), unless the server answered at once on newer client data it had
        (then it waited for that): client data that came in while the server was computing is
        no round trip of the answer's. Nor is, over HTTP/2, client data past the request however
        soon the answer followed it: it is control (a SETTINGS ACK, a WINDOW_UPDATE: request
        parts are the request stream's frames), and no control frame holds back the HEADERS that
        open an answer (RFC 9113 §5.2: flow control covers DATA alone). Only control: the
        request's own bytes resent, or the client's Finished after a 0-RTT request (which
        ``openssl s_server`` answers only then), may well be what the answer waited for."""
        report = self.report_so_far
        part = self._request_heard(start.acked)
        heard = start.heard if part is None else part.time
        if part is not None and start.heard > part.time and (
                self._path.at_once(start.time, start.heard) is False or self._only_control(part.end, start.acked)):
            rnd = part.round + 1 + max(rnd - start.round, 0)
        report.round_trips = rnd
        report.ttfb_s = time - report.start_time
        report.round_trips_basis = basis
        report.server_s = self._path.server_time(start.time, heard)
        marks.append(first_byte_mark(rnd))
        self._first_step = self._steps_made

    def _only_control(self, start: int, end: int) -> bool:
        """Whether the client's stream from ``start`` to ``end`` (past the request) holds HTTP/2
        control records alone, nothing a server could wait for (a Finished, a request)."""
        if end <= start:
            return False
        position = start
        for low, high in self._control_records:
            if low <= position < high:
                position = high
        return position >= end

    def _request_heard(self, acked: int) -> _RequestPart | None:
        """The newest request part the server had (its ACK, a client stream offset, covers it);
        the first one if none is covered; None before any."""
        heard = None
        for part in self._request_parts:
            if part.end <= acked or heard is None:
                heard = part
        return heard

    def _keyless_record(self, packet: FlowPacket, message: TlsMessage, rnd: int, placed: PacketRound,
                        marks: list[str]) -> None:
        """A record no key opened (``keyless``): the request or the answer, by causality and timing."""
        conversation = self._conversation
        assert conversation is not None
        facts = conversation.facts
        if facts.early_data == "sent":
            return  # the request may be early data and the answer 0.5-RTT data: only keys tell
        tls13 = message.kind == "encrypted"
        finder = self._keyless
        if finder is None:
            finder = self._keyless = KeylessResponse()
        if tls13:
            plaintext = message.length - TLS13_RECORD_OVERHEAD
        else:
            plaintext = message.length  # TLS 1.2 records' overhead is already taken off where known
        if packet.from_client:
            suite = facts.cipher_suite or ""
            finished = None if not suite else 4 + (48 if suite.endswith("SHA384") else 32) + TLS13_RECORD_OVERHEAD
            if finder.client_record(tls13, plaintext, message.length, finished, message.end_offset, packet.time, rnd,
                                    message.start_offset):
                self._request_rounds["app_data"] = min(self._request_rounds["app_data"], rnd)
                report = self.report_so_far
                if report.round_trips is not None:  # the request's rest: what was taken for the answer was not
                    if self._first_step >= 0:
                        self.step_revisions[self._first_step] = (
                            "sent before the request's rest: taken for the server's own records "
                            "(tickets, HTTP/2 control)",)
                    report.round_trips = report.ttfb_s = report.server_s = report.round_trips_basis = None
            if finder.request_end is not None and (
                    not self._request_parts or plaintext > SMALL_CLIENT_RECORD or not self._may_speak_h2()):
                self._request_part(packet, message.end_offset, rnd, placed, marks)
            elif self._request_parts:
                # Where HTTP/2 may be spoken, a later record no bigger than its control frames (a
                # SETTINGS ACK) is not the request: the answer does not wait for it.
                self._control_record(message.start_offset, message.end_offset)
            return
        if finder.final or not self._server_chunks:
            return
        start = self._record_start(message.start_offset)
        chatter = tls13 or facts.alpn_selected == "h2"
        had_request = finder.request_end is not None and start.acked >= finder.request_end
        verdict = finder.server_record(plaintext, start.time, had_request, self._path, chatter)
        if verdict == FIRST or verdict == LATER:
            if verdict == LATER and self._first_step >= 0:
                self.step_revisions[self._first_step] = (
                    "sent at once on the request: taken for the server's own records (tickets, HTTP/2 control)",)
            self._answer(start, packet.time, rnd, marks, "inferred")
    def _application_bytes(self, packet: FlowPacket, rnd: int, placed: PacketRound, data: bytes, marks: list[str],
                           basis: str, alpn: str | None, stream_start: int, end_offset: int) -> list[Http2Frame]:
        """Feed HTTP bytes (clear, or a decrypted record's, which began at TCP stream offset
        ``stream_start``) to the response finder; once it names the answer's first byte, that
        byte's packet (for a record: the one completing it) is the first response byte, and the
        packet that carried its first TCP byte tells the server time. Returns the HTTP/2 frames
        completed, for the ladder."""
        finder = self._response
        if finder is None:
            finder = self._response = ResponseFinder(alpn)
        report = self.report_so_far
        if packet.from_client:
            frames = finder.feed(True, data)
            if finder.protocol != HTTP2 or any(frame.stream_id == finder.request_stream for frame in frames):
                self._request_part(packet, end_offset, rnd, placed, marks)
            elif self._request_parts:
                self._control_record(stream_start, end_offset)
            return frames
        if report.round_trips is not None:
            return finder.feed(False, data)
        chunks = self._response_chunks
        chunks.append((finder.server_offset, packet.time, rnd, stream_start))
        if len(chunks) > _KEPT_CHUNKS:
            del chunks[0]
        frames = finder.feed(False, data)
        answer = finder.answer_offset
        if answer is not None:
            time, at_round, start_offset = packet.time, rnd, stream_start
            for chunk_offset, chunk_time, chunk_round, chunk_start in reversed(chunks):
                if chunk_offset <= answer:
                    time, at_round, start_offset = chunk_time, chunk_round, chunk_start
                    break
            self._answer(self._record_start(start_offset), time, at_round, marks, basis)
            self._response_chunks = []
        return frames

    def _settled(self) -> bool:
        """Nothing after the response can change the facts: plain HTTP, or TLS whose handshake
        said all it will (1.2 after the response; 1.3 once the server's keys opened it)."""
        conversation = self._conversation
        if conversation is None:
            return True
        facts = conversation.facts
        if self._keyless is not None and self.report_so_far.round_trips_basis == "inferred" and not self._keyless.final:
            return False  # a later record may still turn out to be the answer
        return facts.tls_version is not None and facts.resumed is not None and facts.early_data != "sent"

    def _release(self) -> None:
        """Keep what the verdict needs and let the rest go: a capture of many connections then
        holds, per finished one, little more than its report."""
        self._released = (self._retransmitted(), self._tls_facts())
        self._retransmissions, self._counter, self._server_data_rounds = {}, _RELEASED_COUNTER, {}
        self._conversation = None
        self._response = None
        self._streams = {}
        self._server_chunks.clear()

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
        # Causes are what delayed the answer; with no answer in the capture they are only notes.
        (report.causes if report.ttfb_s is not None else report.notes).extend(retransmitted)
        if report.tfo == "data":
            report.notes.append("TFO cookie used")
        elif report.tfo == "cookie-request":
            report.causes.append(TFO_COOKIE_REQUEST_CAUSE)
        elif not self._syn_seen and report.packets:
            report.tfo = "unknown"
            report.notes.append("capture incomplete: it began after the client's SYN, so round trips and "
                                "TTFB, which count from it, are unknown")
        for unseen, name in ((self._client_unseen, "client"), (self._server_unseen, "server")):
            if unseen:
                report.notes.append(f"capture incomplete: {unseen} bytes the {name} sent were acknowledged "
                                    "but are not in it")
        if facts is None and self._is_tls is False:
            # Plain from the stream's first bytes: no TLS, so nothing resumed and no early data.
            report.resumed, report.early_data, report.hrr = False, "none", False
        if self._prelude is not None:
            self._prelude_report(report)
        if facts is not None:
            _apply_tls_facts(report, facts)
            # The request that got answered: the early one unless the server refused early data.
            early, late = self._request_rounds["early_data"], self._request_rounds["app_data"]
            first = late if report.early_data == "rejected" else min(early, late)
            report.setup_round_trips = None if first == _NEVER else first
            if self._syn_seen:  # without it nothing is counted: what the count would rest on is moot
                self._keyless_notes(report, facts)
        if not self._syn_seen:
            # The first packet seen is no start: a count from it would be a guess (DESIGN.md §3).
            report.round_trips = report.setup_round_trips = report.ttfb_s = report.server_s = None
            report.round_trips_basis = None
        self._missing_note(report)
        report.note_server_time()
        nagle = self._nagle
        if nagle is not None and report.round_trips is not None and report.round_trips > nagle.round:
            report.causes.append(nagle.cause)
        if self._client_wait_s is not None and self._client_wait_s >= CLIENT_WAIT_NOTE_S:
            report.notes.append(f"the client waited {self._client_wait_s * 1000:.0f} ms before sending its request")
        return report

    def _missing_note(self, report: ConnectionReport) -> None:
        """A connection seen from its SYN without a count: say whether the request or the
        response is what the capture lacks (unless the keyless notes said it already)."""
        if report.round_trips is not None or not self._syn_seen:
            return
        for note in report.notes:
            if "no request" in note or "no response" in note or note.startswith("early data offered"):
                return
        requested = bool(self._request_parts) or min(self._request_rounds.values()) != _NEVER
        report.notes.append("no response in the capture" if requested else "no request in the capture")

    def _keyless_notes(self, report: ConnectionReport, facts: TlsFacts) -> None:
        """What a count without keys rests on, and what the key log would settle."""
        finder = self._keyless
        if report.round_trips_basis == "inferred" and finder is not None:
            report.notes.append(finder.note("record", "tickets, HTTP/2 control"))
        elif report.round_trips is None and facts.tls_version is not None and not facts.keys_found:
            if facts.early_data == "sent":
                report.notes.append("early data offered: whether the server answered it at once needs the key log")
            elif finder is None or finder.request_end is None:
                report.notes.append("no request found in the encrypted records (the key log would show them)")
            else:
                report.notes.append("no server record after the request reached the server: no response in the capture")


def _furthest(sent_end: int, segment: TcpSegment) -> int:
    """The sequence number just past what a side sent, with ``segment`` (-1: nothing yet)."""
    seq_len = segment.seq_len
    if not seq_len:
        return sent_end
    end = (segment.seq + seq_len) & 0xFFFFFFFF
    return end if sent_end < 0 or seq_diff(end, sent_end) > 0 else sent_end


def _acked_beyond(segment: TcpSegment, other_sent_end: int, unseen: int) -> int:
    """The most bytes ``segment``'s ACK covers past what the other side was seen to send."""
    if other_sent_end < 0 or not segment.flags & ACK:
        return unseen
    return max(unseen, seq_diff(segment.ack, other_sent_end))


_TLS_RECORD_TYPES: Final = frozenset((20, 21, 22, 23))
"""ChangeCipherSpec, Alert, Handshake, ApplicationData (RFC 8446 §5.1, RFC 5246 §6.2.1)."""


def _starts_tls(data: bytes, mid_stream: bool) -> bool:
    """Whether a stream's first bytes start TLS: a handshake record (the ClientHello, or an SSLv2-format
    one); for a stream whose start the capture missed, any record header (a type, version 3.x, a
    possible length), as a capture that begins in the middle of HTTPS mostly sees application data."""
    if data[0] & 0x80:
        return ssl2_client_hello_start(data)  # an SSLv2-format ClientHello (RFC 5246 appendix E.2)
    if len(data) < 5 or data[1] != 3 or data[2] > 4:
        return len(data) > 1 and data[0] == _TLS_HANDSHAKE_RECORD and data[1] == 3
    if data[0] == _TLS_HANDSHAKE_RECORD:
        return True
    return mid_stream and data[0] in _TLS_RECORD_TYPES and u16(data, 3) <= _MAX_RECORD_BYTES


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
