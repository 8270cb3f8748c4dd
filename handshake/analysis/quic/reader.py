"""A QUIC connection's datagrams opened and placed in their rounds: what the packets prove each
side had received (ACK frames, and what their contents imply), and, from the times, the path to
the server and what the capture lacks. ``connection`` turns this into the verdict."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final, TypeGuard

from ..keylog import KeyLog
from ..server_time import PathLeg
from ..tls.messages import FINISHED
from .decode import DecodedDatagram, DecodedPacket, QuicDecoder
from .flows import QuicDatagram, QuicFlow
from .frames import AckFrame, CryptoFrame, HandshakeDoneFrame, OtherFrame, StreamFrame
from .rounds import DatagramRound, QuicRoundCounter

MAX_STREAMS: Final = 4096
"""Streams (and CRYPTO levels) whose sent ranges are kept; data on more is not checked."""
MAX_ERRORS: Final = 20

_ACK_ONLY_PACKET_BYTES: Final = 100
"""An unopened Handshake packet larger than this carries more than an ACK (a long header with
8-byte CIDs, a short ACK frame and the 16-byte tag take about 50)."""



def client_bidi(stream_id: int | None) -> TypeGuard[int]:
    """RFC 9000 §2.1: the two low bits 00 mark a client-initiated bidirectional stream."""
    return stream_id is not None and stream_id & 0x03 == 0


def continues_flight(packet: DecodedPacket) -> bool:
    """An Initial or Handshake packet with handshake data (CRYPTO), not just acknowledgments."""
    if packet.packet.packet_type not in ("initial", "handshake"):
        return False
    if packet.frames is None:
        return len(packet.packet.data) > _ACK_ONLY_PACKET_BYTES
    return any(isinstance(frame, CryptoFrame) for frame in packet.frames)


class _Evidence:
    """What the packets' contents prove one side had received, beyond ACK frames."""

    def __init__(self) -> None:
        self.server_cid_rounds: dict[bytes, int] = {}
        """SCIDs the server chose (Initial, Handshake, Retry) → round of the first datagram naming it."""
        self.version_negotiation_round: int | None = None
        self.client_finished_round: int | None = None
        self.client_streams: dict[tuple[int, bool], int] = {}
        """(client-bidi stream ID, sent in 0-RTT) → round of the first client frame on that stream."""
        self._opened_round: dict[tuple[int, bool], int | None] = {}  # cache for ``_stream_opened``

    def client_had(self, decoded: DecodedDatagram, flow: QuicFlow) -> list[int]:
        had = []
        for packet in decoded.packets:
            dcid = packet.packet.dcid
            if dcid is not None and dcid in self.server_cid_rounds and dcid != flow.original_dcid:
                # RFC 9000 §7.2: the client took the server's SCID as its DCID (unless the
                # server kept the client's own choice, which proves nothing).
                had.append(self.server_cid_rounds[dcid])
            if (self.version_negotiation_round is not None and packet.packet.packet_type == "initial"
                    and packet.packet.version != flow.version):
                had.append(self.version_negotiation_round)  # RFC 9000 §6.2: a new attempt after VN
        return had

    def server_had(self, decoded: DecodedDatagram, zero_rtt_usable: bool) -> list[int]:
        had = []
        for packet in decoded.packets:
            for frame in packet.frames or ():
                if isinstance(frame, HandshakeDoneFrame) and self.client_finished_round is not None:
                    had.append(self.client_finished_round)  # RFC 9001 §4.1.2
                elif isinstance(frame, (StreamFrame, OtherFrame)) and client_bidi(stream_id := frame.stream_id):
                    # RFC 9000 §3.2/§19.8: the server may only use a client-initiated stream the
                    # client opened, by a frame on it or on a higher-numbered one.
                    opened = self._stream_opened(stream_id, zero_rtt_usable)
                    if opened is not None:
                        had.append(opened)
        return had

    def _stream_opened(self, stream_id: int, zero_rtt_usable: bool) -> int | None:
        """The earliest round of a client frame that opened ``stream_id`` (one on it or above)."""
        key = (stream_id, zero_rtt_usable)
        if key not in self._opened_round:
            rounds = [rnd for (stream, early), rnd in self.client_streams.items()
                      if stream >= stream_id and (zero_rtt_usable or not early)]
            self._opened_round[key] = min(rounds) if rounds else None
        return self._opened_round[key]

    def after_client(self, decoded: DecodedDatagram, rnd: int) -> None:
        for packet in decoded.packets:
            if self.client_finished_round is None and any(
                m.msg_type == FINISHED and m.epoch == "handshake" for m in packet.messages
            ):
                self.client_finished_round = rnd
            early = packet.packet.packet_type == "0rtt"
            for frame in packet.frames or ():
                stream_id = getattr(frame, "stream_id", None)
                if (client_bidi(stream_id) and (stream_id, early) not in self.client_streams
                        and len(self.client_streams) < MAX_STREAMS):
                    self.client_streams[(stream_id, early)] = rnd
                    self._opened_round.clear()

    def after_server(self, decoded: DecodedDatagram, rnd: int) -> None:
        for packet in decoded.packets:
            quic_packet = packet.packet
            if quic_packet.packet_type in ("initial", "handshake", "retry") and quic_packet.scid:
                self.server_cid_rounds.setdefault(quic_packet.scid, rnd)
            if quic_packet.packet_type == "version_negotiation" and self.version_negotiation_round is None:
                self.version_negotiation_round = rnd


# Made once per datagram: its __init__ is written out, as TcpSegment's is (handshake.trace.packet).
@dataclass(slots=True, unsafe_hash=True, init=False)
class QuicDatagramRound:
    """One datagram as the counter saw it: what it carried, and its round."""

    decoded: DecodedDatagram
    round: DatagramRound

    def __init__(self, decoded: DecodedDatagram, round: DatagramRound) -> None:
        self.decoded = decoded
        self.round = round


class QuicFlowReader:
    """A connection's datagrams, opened and counted, in capture order: ``add`` them one by one,
    or iterate once over ``flow.datagrams``."""

    def __init__(self, flow: QuicFlow, keylog: KeyLog | None = None) -> None:
        self.flow = flow
        self.decoder = QuicDecoder(flow, keylog)
        self.counter = QuicRoundCounter()
        self.evidence = _Evidence()
        self.path = PathLeg()
        self._client_round1_at = -1.0
        """When the client's first datagram past round 0 was seen (-1.0: not yet)."""
        self.first_initial_missing = False
        """The client's first Initial (CRYPTO from offset 0) is not in the capture."""
        self._client_initial_seen = False
        self._server_flight: list[tuple[float, int]] = []
        """(time, round) of the server datagrams that carried its handshake flight (CRYPTO in
        Handshake packets), for the client's first 1-RTT packet to name without keys."""
        self._one_rtt_seen = False
        self.errors: list[str] = []
        """Datagrams the reader failed on (a bug: each is reported, none stops the analysis)."""

    @property
    def first_initial_seen(self) -> bool:
        """The capture holds the client's first Initial (what a Retry or a VN would answer)."""
        return self._client_initial_seen and not self.first_initial_missing

    def __iter__(self) -> Iterator[QuicDatagramRound]:
        for datagram in self.flow.datagrams:
            yield self.add(datagram)

    def add(self, datagram: QuicDatagram) -> QuicDatagramRound:
        """Open and count the connection's next datagram."""
        decoded = self.open(datagram)
        if datagram.from_client:
            if not self._client_initial_seen or self.path.leg_s is None:
                self._client_datagram(decoded)
            self.path.answered_back(datagram.time)
        elif decoded.packets:
            self.path.answered(datagram.time)  # the first server datagram: an Initial, Retry or VN
        rnd = self._count(decoded)
        if datagram.from_client:
            self.evidence.after_client(decoded, rnd.round)
            if rnd.round >= 1 and self._client_round1_at < 0:
                self._client_round1_at = datagram.time
        else:
            self.evidence.after_server(decoded, rnd.round)
            flight = [] if self._one_rtt_seen else [p for p in decoded.packets if continues_flight(p)]
            if flight:
                # Only datagrams of handshake data pair up: TLS writes the flight at once, while an
                # ACK of a ClientHello's first Initial (chromium splits it in two) may precede it
                # by the server's whole computation (6.4 ms in CI), which is no bottleneck.
                self.path.flight_packet(datagram.time, datagram.wire_bytes)
                if any(packet.packet.packet_type == "handshake" for packet in flight):
                    self._server_flight.append((datagram.time, rnd.round))
        return QuicDatagramRound(decoded, rnd)

    def _flight_had(self, decoded: DecodedDatagram) -> list[int]:
        """Without keys: the client's first 1-RTT packet proves it had the server's handshake
        flight (RFC 9001 §4.1.4: 1-RTT keys come with the server's Finished), i.e. every
        flight datagram that could have reached it by then."""
        if self._one_rtt_seen or not any(p.packet.packet_type == "1rtt" and p.frames is None for p in decoded.packets):
            return []
        self._one_rtt_seen = True
        time = decoded.datagram.time
        return [rnd for seen_at, rnd in self._server_flight if self.path.client_could_have(time, seen_at)]

    def _client_datagram(self, decoded: DecodedDatagram) -> None:
        """The client's Initials: the path's first exchange, and whether the capture holds the first."""
        for packet in decoded.packets:
            if packet.packet.packet_type != "initial":
                continue
            self.path.asked(decoded.datagram.time)
            if not self._client_initial_seen and packet.frames is not None:
                crypto = [frame for frame in packet.frames if isinstance(frame, CryptoFrame)]
                if crypto:
                    self._client_initial_seen = True
                    if min(frame.offset for frame in crypto) > 0:
                        # RFC 9000 §17.2.2: the ClientHello starts the Initial CRYPTO stream at
                        # offset 0; a first Initial seen from later on means an earlier one was
                        # sent and missed, and with it bytes the 3x bound counts.
                        self.first_initial_missing = True
                        self.counter.amplification_limit_applies = False

    def open(self, datagram: QuicDatagram) -> DecodedDatagram:
        """Open the connection's next datagram without counting its round (``add`` does both)."""
        try:
            return self.decoder.decode(datagram)
        except Exception as error:  # noqa: BLE001 - one unreadable datagram must not hide the rest
            if len(self.errors) < MAX_ERRORS:
                self.errors.append(f"datagram at {datagram.time:.6f} s not read: {type(error).__name__}: {error}")
            return DecodedDatagram(datagram, (), len(datagram.payload))

    def _count(self, decoded: DecodedDatagram) -> DatagramRound:
        counter, decoder = self.counter, self.decoder
        from_client = decoded.datagram.from_client
        sent, acks = [], []
        for packet in decoded.packets:
            if packet.packet_number is not None and packet.space is not None:
                sent.append((packet.space, packet.packet_number))
                for frame in packet.frames or ():
                    if isinstance(frame, AckFrame):
                        acks.append((packet.space, frame.ranges))
            if from_client and packet.packet.packet_type == "initial" and packet.packet.token:
                # A token may validate the client's address at once (RFC 9000 §8.1.3): if it
                # came from NEW_TOKEN rather than this connection's Retry, 3x proves nothing.
                counter.amplification_limit_applies = False
        if decoder.retry is not None:
            counter.amplification_limit_applies = False
        if from_client:
            had = self.evidence.client_had(decoded, self.flow) + self._flight_had(decoded)
            return counter.add(True, len(decoded.datagram.payload), sent=sent, acks=acks, had=had)
        had = self.evidence.server_had(decoded, decoder.tls.facts.early_data != "rejected")
        answered_at = self._client_round1_at
        may = answered_at >= 0 and not self.path.before_it_arrived(decoded.datagram.time, answered_at)
        return counter.add(False, len(decoded.datagram.payload), sent=sent, acks=acks, had=had,
                           client_may_have_answered=may)


def quic_datagram_rounds(flow: QuicFlow, keylog: KeyLog | None = None) -> list[QuicDatagramRound]:
    """Every datagram of the connection with its round (for ladders and tests)."""
    return list(QuicFlowReader(flow, keylog))
