"""One QUIC connection's verdict: what was negotiated, and the round trips to the first response byte.

The QUIC counterpart of ``tcp.connection.analyze_tcp_flow``, judged by the same rules:
``round_trips`` is the round (``quic.rounds``) of the datagram carrying the first byte of the
HTTP/3 response, i.e. the first server STREAM frame with data on a client-initiated
bidirectional stream (stream ID ending in binary 00, RFC 9000 §2.1); ``setup_round_trips`` the
round of the client datagram carrying the request (the first client STREAM frame with data on
such a stream, in 0-RTT or 1-RTT; a rejected 0-RTT request does not count).

Without the key log only Initial packets open: the SNI, the cipher suite, resumption and a
Retry are still known, and the count is inferred (``keyless``): the client's first 1-RTT packet
is the request, the server's first 1-RTT packet that left after it could have arrived the
answer (``round_trips_basis`` "inferred"). A 0-RTT offer without keys gets no count: its answer
may ride in the server's first flight (DESIGN §3: unknown, not a guess).
"""

from __future__ import annotations

from typing import Final

from ..http.http3 import h3_label
from ..intervals import FirstSeenRanges
from ..keyless import FIRST, LATER, KeylessResponse
from ..keylog import KeyLog
from ..report import QuicConnectionReport, first_byte_mark, note_retransmission, on_microseconds, retransmission_causes
from ..steps import LadderStep
from .decode import DecodedDatagram, DecodedPacket, QuicDecoder
from .flows import QuicDatagram, QuicFlow, QuicFlowTracker, quic_flows
from .frames import (
    AckFrame,
    ConnectionCloseFrame,
    CryptoFrame,
    HandshakeDoneFrame,
    NewConnectionIdFrame,
    NewTokenFrame,
    PaddingFrame,
    PingFrame,
    StreamFrame,
)
from .packets import version_name
from .reader import (MAX_ERRORS, MAX_STREAMS, QuicDatagramRound, QuicFlowReader, client_bidi, continues_flight,
                     quic_datagram_rounds)

__all__ = [
    "QuicConnectionAnalyzer", "QuicConnectionReport", "QuicFlowTracker", "QuicDatagram", "QuicDatagramRound", "QuicFlow", "QuicFlowReader", "analyze_quic_flow",
    "quic_datagram_rounds", "quic_flows",
]

RETRY_CAUSE: Final = "Retry: the server asked the client to prove its address"
AMPLIFICATION_CAUSE: Final = (
    "anti-amplification: the server's flight exceeded 3x what the client had sent and waited for the client"
)
VERSION_NEGOTIATION_CAUSE: Final = "Version Negotiation: the server did not speak the client's QUIC version"
HRR_CAUSE: Final = "HelloRetryRequest: the server asked for another key share"
ZERO_RTT_REJECTED_CAUSE: Final = "0-RTT rejected: the request was sent again after the handshake"

_WHAT: Final = {"initial": "Initial", "handshake": "Handshake", "0rtt": "0-RTT data", "1rtt": "1-RTT data"}


_ORDERLY_CLOSE: Final = {0x0, 0x0C, 0x100}
"""NO_ERROR; APPLICATION_ERROR, which an application close becomes in Initial and Handshake
packets (RFC 9000 §10.2.3); H3_NO_ERROR (RFC 9114 §8.1). Only other codes are worth a note."""


class _Resent:
    """Spots a side sending CRYPTO or STREAM bytes again in a new packet (loss or PTO, RFC 9002 §6):
    one retransmission per such packet, however many of its frames carry old bytes."""

    def __init__(self, side: str) -> None:
        self.side = side
        self._sent: dict[tuple, FirstSeenRanges] = {}
        self.found: dict[str, list[tuple[float, float | None]]] = {}

    def check(self, packet: DecodedPacket, time: float, attempt: int) -> bool:
        """Whether the packet resent data. ``attempt``: after a Retry or Version Negotiation
        the client starts its handshake over, which is the Retry's cost, not a retransmission."""
        if packet.frames is None or packet.duplicate:
            return False
        earliest: float | None = None
        kind = packet.packet.packet_type
        for frame in packet.frames:
            if isinstance(frame, CryptoFrame):
                key: tuple = (attempt, kind, "crypto")
            elif isinstance(frame, StreamFrame):
                key = (attempt, kind, "stream", frame.stream_id)
            else:
                continue
            if not frame.data:
                continue
            sent = self._sent.get(key)
            if sent is None:
                if len(self._sent) >= MAX_STREAMS:
                    continue
                sent = self._sent[key] = FirstSeenRanges()
            start, end = frame.offset, frame.offset + len(frame.data)
            first = sent.covered_since(start, end)
            sent.add(start, end, time)
            if first is not None and (earliest is None or first < earliest):
                earliest = first
        if earliest is None:
            return False
        # One retransmission per packet, however many frames (or coalesced parts of a ClientHello
        # split in CRYPTO frames) it resent: RFC 9002 §6 declares packets lost, not frames.
        note_retransmission(self.found, _WHAT[kind], time, time - earliest)
        return True

    def causes(self, before: float | None) -> list[str]:
        return retransmission_causes(self.side, self.found, before)


_KEPT_CLIENT_TIMES: Final = 32
_SPACE_BITS: Final = {"initial": 1, "handshake": 2, "0rtt": 4, "1rtt": 8}
_SHORT_DCID_GUESS: Final = 8
"""A short header's DCID length where the flow did not learn it (the common choice)."""
_ACK_ONLY_FRAMES: Final = 10
"""Frame bytes of a 1-RTT packet at or under which it is an ACK frame (and padding) alone."""
def _is_probe(packet: DecodedPacket) -> bool:
    """RFC 9002 §6.2.4: with nothing new to send when its probe timeout fires, an endpoint sends
    a PING; during the handshake nothing else sends a PING alone in an Initial or Handshake packet."""
    if packet.frames is None or packet.duplicate or packet.packet.packet_type not in ("initial", "handshake"):
        return False
    return any(isinstance(f, PingFrame) for f in packet.frames) and all(
        isinstance(f, (PingFrame, PaddingFrame, AckFrame)) for f in packet.frames
    )


def analyze_quic_flow(flow: QuicFlow, keylog: KeyLog | None = None) -> QuicConnectionReport:
    """Count the round trips of one QUIC connection, from its datagrams (and key log)."""
    analyzer = QuicConnectionAnalyzer(flow, keylog)
    for datagram in flow.datagrams:
        time = on_microseconds(datagram.time)
        analyzer.add(datagram if time == datagram.time else
                     QuicDatagram(time, datagram.from_client, datagram.payload, datagram.wire_bytes))
    return analyzer.report()


class QuicConnectionAnalyzer:
    """One QUIC connection's verdict, fed datagram by datagram in capture order (sans-IO).

    ``flow`` gives the endpoints and connection IDs (``QuicFlowTracker`` keeps it up to date);
    its ``datagrams`` list is not read. Datagram times are on the microsecond grid
    (``on_microseconds``: the callers put them there). With ``steps=True`` each ``add`` also
    returns the datagram as a ladder step.
    """

    def __init__(self, flow: QuicFlow, keylog: KeyLog | None = None, *, steps: bool = False) -> None:
        self.report_so_far = QuicConnectionReport(
            transport="quic",
            client=QuicFlow.endpoint_text(flow.client),
            server=QuicFlow.endpoint_text(flow.server),
            start_time=flow.start_time,
            tls_version="1.3",
            tfo="none",  # TCP Fast Open: not a QUIC thing, so never in doubt
            quic_version=version_name(flow.version),
        )
        self._reader = QuicFlowReader(flow, keylog)
        self._steps = steps
        self._started = False
        self._resent = {True: _Resent("client"), False: _Resent("server")}
        self._request_round: dict[bool, int] = {}  # sent in 0-RTT? → round of the first request datagram
        self._request_attempt = 0
        """The client attempt (``QuicDecoder.attempt``) ``_request_round`` belongs to: a Retry
        or Version Negotiation discards what the client sent before it, 0-RTT request included."""
        self._stalled = False
        self._closes: dict[str, None] = {}
        self._probes: dict[str, list] = {}  # "client Handshake" → [count, time of the first] of PING-only probes
        self._request_times: dict[bool, float] = {}
        """Sent in 0-RTT? → when the first client datagram with request data (or, without keys,
        its first 1-RTT packet) was seen."""
        self._keyless: KeylessResponse | None = None
        """The keyless answer finder, made at the first datagram without 1-RTT keys."""
        self._sent_spaces = 0
        """Bits (``_SPACE_BITS``, the client's four higher) of the packet types each side has sent."""
        self._client_times: list[float] = []
        """When the client's latest datagrams were seen."""
        self._first_step = -1
        self._steps_made = 0
        self.step_revisions: dict[int, tuple[str, ...]] = {}
        """As ``TcpConnectionAnalyzer.step_revisions``."""

    def add(self, datagram: QuicDatagram) -> LadderStep | None:
        """Count one datagram of the connection."""
        report = self.report_so_far
        if not self._started:
            self._started = True
            report.start_time = datagram.time
        if report.round_trips is not None and not self._steps and (
                report.round_trips_basis != "inferred" or (self._keyless is not None and self._keyless.final)):
            self._add_late(datagram)
            return None
        item = self._reader.add(datagram)
        decoded, rnd = item.decoded, item.round
        from_client = datagram.from_client
        if from_client:
            times = self._client_times
            times.append(datagram.time)
            if len(times) > _KEPT_CLIENT_TIMES:
                del times[0]
        answered = report.round_trips is not None
        report.count(from_client, datagram.wire_bytes)
        marks: list[str] = []

        if not from_client and rnd.round > rnd.round_by_evidence and not self._stalled and not answered:
            # Only the 3x bound proves this datagram waited for the client, and it goes on with
            # the handshake: the server's flight had stopped at the anti-amplification limit.
            if any(continues_flight(packet) for packet in decoded.packets):
                self._stalled = True
                report.causes.append(AMPLIFICATION_CAUSE)
                marks.append(AMPLIFICATION_CAUSE)

        side = "client" if from_client else "server"
        for packet in decoded.packets:
            if self._resent[from_client].check(packet, datagram.time, self._reader.decoder.attempt):
                marks.append(f"{_WHAT[packet.packet.packet_type]} resent")
            space = _SPACE_BITS.get(packet.packet.packet_type, 0) << (4 if from_client else 0)
            # A probe answers a probe timeout of something this side sent before (RFC 9002 §6.2):
            # never its first packet (aioquic's server may open with PING and ACK).
            if not answered and self._sent_spaces & space and _is_probe(packet):
                what = f"{side} {_WHAT[packet.packet.packet_type]}"
                probe = self._probes.setdefault(what, [0, datagram.time])
                probe[0] += 1
                marks.append("PTO probe")
            self._sent_spaces |= space
            for frame in packet.frames or ():
                if isinstance(frame, ConnectionCloseFrame):
                    self._note_close(frame, side)
                if not isinstance(frame, StreamFrame) or not client_bidi(frame.stream_id) or not frame.data:
                    continue
                if from_client:
                    attempt = self._reader.decoder.attempt
                    if attempt != self._request_attempt:
                        self._request_round.clear()
                        self._request_times.clear()
                        self._request_attempt = attempt
                    early = packet.packet.packet_type == "0rtt"
                    self._request_round.setdefault(early, rnd.round)
                    self._request_times.setdefault(early, datagram.time)
                elif report.round_trips is None:
                    self._answer(datagram.time, rnd.round, marks, "decrypted")
        if not self._reader.decoder.keys_found and report.round_trips_basis != "decrypted":
            self._keyless_datagram(decoded, rnd.round, marks)
        if not self._steps:
            return None
        self._steps_made += 1
        return _quic_step(report, item, marks, self._reader.decoder)

    def _answer(self, time: float, rnd: int, marks: list[str], basis: str) -> None:
        """The datagram seen at ``time`` brought the first response byte.

        It is one round past the request, unless the server sent it at once on a later client
        datagram (then it waited for that one): what the client sent while the server computed
        (ACKs of its HANDSHAKE_DONE and tickets, which the answer's ACK frames name) is no round
        trip of the answer's."""
        report = self.report_so_far
        times = self._request_times
        # The answered request: the early one, unless the server refused it and the client sent
        # it again after the handshake (RFC 9001 §4.6.2).
        refused = self._reader.decoder.tls.facts.early_data == "rejected" and False in times
        request_time = times[False] if refused else min(times.values(), default=-1.0)
        if self._request_round:
            request_round = max(self._request_round.values())
            path = self._reader.path
            if rnd > request_round + 1 and not any(
                    path.at_once(time, seen) and not path.before_it_arrived(time, seen)
                    for seen in self._client_times if seen > request_time):
                rnd = request_round + 1
        report.round_trips = rnd
        report.ttfb_s = time - report.start_time
        report.round_trips_basis = basis
        report.server_s = self._reader.path.server_time(time, request_time)
        marks.append(first_byte_mark(rnd))
        self._first_step = self._steps_made

    def _keyless_datagram(self, decoded: DecodedDatagram, rnd: int, marks: list[str]) -> None:
        """Without 1-RTT keys: the client's first short-header packet is the request, and the
        answer a server short-header packet that left after it could have arrived (``keyless``)."""
        if self._reader.decoder.zero_rtt_packets:
            return  # the request may be 0-RTT and the answer in the server's first flight: only keys tell
        finder = self._keyless
        if finder is None:
            finder = self._keyless = KeylessResponse(grouped=True)
        elif finder.final:
            return
        datagram = decoded.datagram
        if datagram.from_client:
            finder.client_packet(datagram.time)
        for packet in decoded.packets:
            quic_packet = packet.packet
            if quic_packet.packet_type != "1rtt" or packet.frames is not None:
                continue
            # Header up to the packet number, a 2-byte packet number (RFC 9000 §17.1: what a
            # young connection needs), the 16-byte AEAD tag: the rest is frames.
            header = quic_packet.pn_offset if quic_packet.pn_offset is not None else 1 + _SHORT_DCID_GUESS
            plaintext = len(quic_packet.data) - header - 2 - 16
            if datagram.from_client:
                if finder.client_record(False, plaintext, len(quic_packet.data), None, 0, datagram.time, rnd):
                    self._request_round.setdefault(False, rnd)
                    self._request_times.setdefault(False, datagram.time)
                return
            if plaintext <= _ACK_ONLY_FRAMES:
                continue  # an acknowledgment alone answers nothing
            had = finder.request_end is not None and \
                not self._reader.path.before_it_arrived(datagram.time, finder.request_time)
            verdict = finder.server_record(plaintext, datagram.time, had, self._reader.path, True)
            if verdict == FIRST or verdict == LATER:
                if verdict == LATER and self._first_step >= 0:
                    self.step_revisions[self._first_step] = (
                        "sent at once on the request: taken for the server's own frames (HANDSHAKE_DONE, tickets)",)
                request_round = finder.request_round if finder.request_round is not None else rnd
                self._answer(datagram.time, max(rnd, request_round + 1), marks, "inferred")
            return

    def _add_late(self, datagram: QuicDatagram) -> None:
        """A datagram after the first response byte: rounds are no longer asked and resends no
        longer causes, so it is opened (packet numbers, keys, a CONNECTION_CLOSE's reason) and
        counted, but not placed in a round."""
        self.report_so_far.count(datagram.from_client, datagram.wire_bytes)
        for packet in self._reader.open(datagram).packets:
            for frame in packet.frames or ():
                if isinstance(frame, ConnectionCloseFrame):
                    self._note_close(frame, "client" if datagram.from_client else "server")

    def _note_close(self, frame: ConnectionCloseFrame, side: str) -> None:
        if frame.error_code not in _ORDERLY_CLOSE and len(self._closes) < MAX_ERRORS:
            reason = f" ({frame.reason})" if frame.reason else ""
            self._closes[f"closed by the {side}: error 0x{frame.error_code:x}{reason}"] = None

    def report(self) -> QuicConnectionReport:
        """The verdict on the datagrams added so far (call once, at the end)."""
        report = self.report_so_far
        reader = self._reader
        _apply_facts(report, reader.decoder, self._request_round, reader.first_initial_seen)
        response_time = None if report.ttfb_s is None else report.start_time + report.ttfb_s
        # Causes are what delayed the answer; with no answer in the capture they are only notes.
        causes = report.causes if report.ttfb_s is not None else report.notes
        for side in (True, False):
            causes.extend(self._resent[side].causes(before=response_time))
        for what, (count, first) in self._probes.items():
            times = "" if count == 1 else f" {count} times"
            causes.append(f"{what} PTO probe{times} (first at {first - report.start_time:.3f} s)")
        report.notes.extend(self._closes)
        report.notes.extend(reader.errors)
        self._incomplete_notes(report)
        report.note_server_time()
        return report

    def _incomplete_notes(self, report: QuicConnectionReport) -> None:
        """What the count rests on without keys, and what the capture lacks."""
        reader = self._reader
        decoder = reader.decoder
        if report.round_trips_basis == "inferred":
            assert self._keyless is not None  # an inferred count comes from it
            report.notes.append(self._keyless.note("1-RTT packet", "HANDSHAKE_DONE, tickets"))
        elif not decoder.keys_found:
            if decoder.zero_rtt_packets:
                why = "0-RTT packets sent: whether the server answered them in its first flight needs the key log"
            elif self._keyless is None or self._keyless.request_end is None:
                why = "no 1-RTT packet from the client: no request"
            else:
                why = "no server 1-RTT packet after the request could have reached it: no response in the capture"
            report.notes.append(f"no key log for this connection: only Initial packets opened; {why}")
        first_missing = reader.first_initial_missing
        if first_missing:
            report.notes.append("capture incomplete: the client's first Initial is not in it "
                                "(the 3x anti-amplification bound was not used)")
        for from_client, side in ((True, "client"), (False, "server")):
            spaces = reader.counter.unseen_acknowledged(from_client) - ({"initial"} if from_client and first_missing
                                                                        else set())
            if spaces:
                names = ", ".join(_PACKET_NAMES.get(space, space) for space in sorted(spaces))
                report.notes.append(f"capture incomplete: {side} {names} packets were acknowledged but are not in it")
        missing = [hole for hole in decoder.tls.missing() if not (first_missing and hole.startswith("client initial"))]
        if missing:
            report.notes.append("capture incomplete: never saw " + ", ".join(missing))


_PACKET_NAMES: Final = {"initial": "Initial", "handshake": "Handshake", "0rtt": "0-RTT", "1rtt": "1-RTT",
                 "retry": "Retry", "version_negotiation": "Version Negotiation", "unknown_version": "unknown version"}


def _quic_step(report: QuicConnectionReport, item: QuicDatagramRound, marks: list[str],
               decoder: QuicDecoder) -> LadderStep:
    decoded = item.decoded
    carries = [_packet_label(packet) for packet in decoded.packets]
    trailing = decoded.trailing_bytes
    if trailing:
        zeros = not decoded.datagram.payload[-trailing:].strip(b"\0")
        carries.append(f"{trailing} bytes of padding" if zeros else f"{trailing} bytes that are no packet")
    for packet in decoded.packets:
        kind = packet.packet.packet_type
        if kind == "retry" and decoder.retry is packet.packet:
            marks.append(RETRY_CAUSE)
        elif kind == "version_negotiation" and decoder.version_negotiation is packet.packet:
            marks.append(VERSION_NEGOTIATION_CAUSE)
        for message in packet.messages:
            if message.name == "HelloRetryRequest":
                marks.append(HRR_CAUSE)
            elif message.name == "EncryptedExtensions" and decoder.tls.facts.early_data in ("accepted", "rejected"):
                marks.append(f"0-RTT {decoder.tls.facts.early_data}")
    datagram = decoded.datagram
    return LadderStep(datagram.time - report.start_time, datagram.from_client, item.round.round,
                      tuple(carries) or ("(empty)",), tuple(marks), datagram.wire_bytes)


_FRAME_NAMES: Final = ((AckFrame, "ACK"), (PaddingFrame, "PADDING"), (PingFrame, "PING"), (HandshakeDoneFrame, "HANDSHAKE_DONE"),
                (NewTokenFrame, "NEW_TOKEN"), (NewConnectionIdFrame, "NEW_CONNECTION_ID"),
                (ConnectionCloseFrame, "CONNECTION_CLOSE"))


def _packet_label(packet: DecodedPacket) -> str:
    """"Initial[CRYPTO ClientHello, PADDING]": the packet type, then its frames as opened; the
    first CRYPTO frame names the TLS messages the packet completed."""
    name = _PACKET_NAMES.get(packet.packet.packet_type, packet.packet.packet_type)
    if packet.packet.packet_type in ("retry", "version_negotiation", "unknown_version"):
        return name
    if packet.frames is None:
        return f"{name} (not opened)"
    messages = [m.name for m in packet.messages]
    parts: list[str] = []
    for frame in packet.frames:
        if isinstance(frame, CryptoFrame):
            parts.append("CRYPTO " + "+".join(messages) if messages else "CRYPTO")
            messages = []
        elif isinstance(frame, StreamFrame):
            h3 = h3_label(frame.data) if frame.offset == 0 and client_bidi(frame.stream_id) else None
            what = f" {h3}" if h3 else (f" ({len(frame.data)} B)" if frame.data else "")
            parts.append(f"STREAM {frame.stream_id}{what}{' FIN' if frame.fin else ''}")
        else:
            parts.append(next((label for kind, label in _FRAME_NAMES if isinstance(frame, kind)),
                              f"frame 0x{frame.frame_type:x}"))
    if not packet.frames_complete:
        parts.append("...")
    folded: list[list] = []  # runs of the same frame (three ACKs) read better counted
    for part in parts:
        if folded and folded[-1][0] == part:
            folded[-1][1] += 1
        else:
            folded.append([part, 1])
    return f"{name}[{', '.join(part if n == 1 else f'{part} x{n}' for part, n in folded)}]"


def _apply_facts(report: QuicConnectionReport, decoder: QuicDecoder, request_round: dict[bool, int],
                 first_initial_seen: bool) -> None:
    facts = decoder.tls.facts
    report.adopt_tls_facts(facts)
    report.quic_version = version_name(decoder.version)
    # A Retry answers the client's first Initial: without that Initial, whether one came is unknown.
    report.retry = True if decoder.retry is not None else False if first_initial_seen else None
    report.version_negotiation = decoder.version_negotiation is not None
    early = facts.early_data
    zero_rtt_packets = decoder.zero_rtt_packets > 0
    if early in ("accepted", "rejected"):
        report.early_data = early
    elif early == "sent" or zero_rtt_packets:
        report.early_data = "sent"
    elif early == "none":
        report.early_data = "none"
    else:
        report.early_data = "unknown"  # no ClientHello in the capture

    if report.early_data != "rejected" and True in request_round:
        report.setup_round_trips = request_round[True]
    elif False in request_round:
        report.setup_round_trips = request_round[False]

    causes = []
    if decoder.flow.version_negotiated:
        causes.append(VERSION_NEGOTIATION_CAUSE)
    if report.retry:
        causes.append(RETRY_CAUSE)
    if report.hrr:
        causes.append(HRR_CAUSE)
    if report.early_data == "rejected":
        causes.append(ZERO_RTT_REJECTED_CAUSE)
    report.causes[:0] = causes

    if report.quic_version:
        report.notes.append(f"QUIC version {report.quic_version}")
    if report.resumed:
        report.notes.append("resumed")
    if report.early_data == "accepted":
        report.notes.append("0-RTT accepted")
    if decoder.keys_found and decoder.unopened:
        report.notes.append(f"{decoder.unopened} packets did not open with the logged keys")
