"""A modeled TCP connection, sans-IO: segments in, segments out, time passed in by the caller.

It models what decides how many round trips a handshake costs, the way Linux does it:
the 3-way handshake, TCP Fast Open (RFC 7413: cookie request on a cold SYN, data in the SYN
with a cached cookie), MSS segmentation, an initial window of 10 segments with slow start
(RFC 6928, RFC 5681), delayed ACKs (40 ms in ticks, every second full segment) with Linux's quick-ACK
start and its ping-pong mode, Nagle's algorithm where a socket leaves it on, timestamps
(RFC 7323, as Linux sends them by default), and retransmission on an RTO that starts at 1 s
(RFC 6298 §2.1, SYN included) and backs off exponentially, a SYN's only after its first four
retransmissions (Linux 6.5+). Its timers follow Linux's where they
decide what a loss costs: an ACK of retransmitted bytes still gives an RTT sample from the
timestamp echo (``tcp_ack_update_rtt``), so one lost SYN does not leave the RTO backed off; and
a tail loss probe (RFC 8985 §7, ``tcp_schedule_loss_probe``) goes out after 2·SRTT (+200 ms with
one segment out) or at the RTO, whichever is first, after which the RTO restarts unbacked-off.
Linux sends probes only on connections that negotiated SACK, as two Linux hosts always do.

What decides a page's cost under loss follows Linux too: SACK blocks (RFC 2018), losses found by
RACK (RFC 8985, ``net.sack``) and repaired at the pace of Proportional Rate Reduction (RFC 6937),
CUBIC congestion avoidance (RFC 9438, ``net.cubic``), a window counted in packets that grows only
while it is what holds the sender back (``tcp_is_cwnd_limited``), and an immediate ACK when a
hole fills; and the receiver's window as Linux's autotuning offers it (``net.receive_window``),
whose right edge a hole holds still. Left out: D-SACK and undo of spurious recoveries, HyStart,
pacing.

The surface copies aioquic's ``QuicConnection``: ``receive_segment``, ``segments_to_send``,
``get_timer``, ``handle_timer``, ``next_event``; the engine owns the clock and the wire.
"""

from __future__ import annotations

import hashlib
import math
from collections import deque
from dataclasses import dataclass
from enum import Enum

from handshake.trace.packet import (
    ACK,
    FIN,
    PSH,
    SYN,
    OPT_FASTOPEN,
    OPT_MSS,
    OPT_SACK,
    OPT_SACK_PERM,
    OPT_TIMESTAMP,
    OPT_WSCALE,
    SEQ_MOD,
    TcpSegment,
    seq_diff,
)

from handshake.net.cubic import Cubic
from handshake.net.receive_window import ReceiveWindow
from handshake.net.sack import Scoreboard, SentSegment, sack_blocks


def seq_add(a: int, b: int) -> int:
    return (a + b) % SEQ_MOD


@dataclass(frozen=True)
class TcpConfig:
    """Per-host TCP settings; defaults are Linux's."""

    mss: int = 1460
    """Largest payload this host accepts (MTU 1500 less 40 bytes of IPv4 + TCP headers)."""
    initial_window_segments: int = 10
    initial_rto_s: float = 1.0
    min_rto_s: float = 0.2
    max_rto_s: float = 120.0
    delayed_ack_s: float = 0.04
    quickack_segments: int = 16
    """Data segments ACKed at once at the start of a connection (Linux TCP_MAX_QUICKACKS)."""
    syn_retries: int = 6
    syn_linear_timeouts: int = 4
    """SYN retransmissions that keep the initial RTO before it backs off: 1, 1, 1, 1, 1, 2, 4 s
    (``net.ipv4.tcp_syn_linear_timeouts``, Linux 6.5 and later; 0 gives 6.1's 1, 2, 4, 8 s)."""
    tail_loss_probe: bool = True
    """Linux's TLP (``net.ipv4.tcp_early_retrans = 3``, the default)."""
    timer_tick_s: float = 0.004
    """A jiffy at CONFIG_HZ=250 (Debian's kernels): the TLP's fixed delay with several segments out is two."""
    receive_window: int | None = None
    """A fixed window to offer, in bytes; None (the default) offers what Linux's autotuning would
    (``net.receive_window``): 64 KB at first, about 80 KB soon, more once the application has
    read faster round after round."""
    window_scale: int = 10
    """Linux's for tcp_rmem[2] = 32 MB (``tcp_select_initial_window``): windows in units of 1 KB."""
    timestamps: bool = True
    sack: bool = True
    """Selective acknowledgments (RFC 2018), on in Linux by default (``net.ipv4.tcp_sack = 1``):
    with them, losses are found by RACK (``net.sack``) and repaired at the pace of Proportional
    Rate Reduction (RFC 6937), as Linux does; without, by three duplicate ACKs, one at a time."""
    fastopen: bool = False
    """Client: try TFO (cookie request when cold). Server: accept TFO (answer cookie requests, take SYN data)."""
    nodelay: bool = True
    """TCP_NODELAY, which curl, browsers and nginx set on their sockets. False is Linux's socket
    default, Nagle's algorithm (RFC 896) as Linux runs it (Minshall's variant, ``tcp_nagle_check``):
    a segment shorter than the MSS waits while an earlier short one is unacknowledged."""


class TcpState(Enum):
    SYN_SENT = "SYN_SENT"
    SYN_RCVD = "SYN_RCVD"
    ESTABLISHED = "ESTABLISHED"
    FIN_WAIT = "FIN_WAIT"
    CLOSED = "CLOSED"


@dataclass(frozen=True)
class Connected:
    """The handshake finished (client: SYN-ACK received; server: ACK of the SYN-ACK, or TFO data accepted)."""


@dataclass(frozen=True)
class DataReceived:
    """In-order bytes of the peer's stream, delivered exactly once."""

    data: bytes


@dataclass(frozen=True)
class FastOpenCookieReceived:
    """The server's SYN-ACK carried a TFO cookie; the client host should cache it for this server."""

    cookie: bytes


@dataclass(frozen=True)
class PeerClosed:
    """The peer's FIN arrived in order: no more data will come."""


@dataclass(frozen=True)
class ConnectionFailed:
    """The SYN was retransmitted syn_retries times without an answer."""


TcpEvent = Connected | DataReceived | FastOpenCookieReceived | PeerClosed | ConnectionFailed


def fastopen_cookie_for(secret: bytes, client_addr: str) -> bytes:
    """The server's TFO cookie: a MAC of the client's address (RFC 7413 §4.1.2), 8 bytes like Linux."""
    return hashlib.blake2s(client_addr.encode(), key=secret, digest_size=8).digest()


class TcpConnection:
    """One end of a modeled TCP connection."""

    def __init__(
        self,
        *,
        local_port: int,
        remote_port: int,
        isn: int,
        config: TcpConfig,
        ts_offset: int = 0,
    ) -> None:
        self.local_port = local_port
        self.remote_port = remote_port
        self.config = config
        self.state = TcpState.CLOSED
        self._events: deque[TcpEvent] = deque()
        self._ts_offset = ts_offset
        self._ts_recent = 0

        # Sender.
        self.iss = isn
        self.snd_una = isn
        self.snd_nxt = isn
        self._send_buffer = bytearray()  # app bytes from iss+1 on, kept until acked
        self._buffer_base = seq_add(isn, 1)  # sequence number of _send_buffer[0]
        self._fin_queued = False
        self._syn_acked = False
        self._max_sent = isn  # highest sequence number sent so far, to reject ACKs of the future
        self._peer_mss = 536
        self._peer_window = 65535
        self._peer_window_shift = 0  # the peer's window scale (RFC 7323 §2.2), from its SYN or SYN-ACK
        self.cwnd = 0
        self.ssthresh = 1 << 30
        self._rto_s = config.initial_rto_s
        self._srtt_s: float | None = None
        self._rttvar_s = 0.0
        self._rto_deadline: float | None = None
        self._backoff = 0
        self._rtt_probe: tuple[int, float] | None = None  # (seq that must be acked, send time)
        self._retransmitted_up_to: int | None = None  # end of the highest retransmitted bytes not yet acked
        self._short_end: int | None = None  # end of the last segment shorter than the MSS (Linux: snd_sml)
        self._probe_deadline: float | None = None  # the tail loss probe's, before the RTO's
        self._probe_high: int | None = None  # snd_nxt when the outstanding probe went out (tlp_high_seq)
        self._probe_pending = False
        self._probe_retransmitted = False
        self._recovery_high: int | None = None  # no probes until the ACK passes this (Linux: CA_Loss/Recovery)
        self._dupacks = 0
        self._fast_retransmit_pending = False
        self._syn_data = b""
        self._cookie_option: bytes | None = None  # client SYN: None, b"" (request) or cookie
        self.retransmissions = 0
        self._sack_ok = False  # both SYNs offered SACK
        self._scoreboard = Scoreboard()
        self._cubic = Cubic(config.mss)
        self._min_rtt_s = -1.0
        self._fast_recovery = False  # Linux's CA_Recovery (PRR), not CA_Loss after an RTO
        self._prior_cwnd = 0
        self._prr_delivered = 0
        self._prr_out = 0
        self._reorder_deadline: float | None = None  # RACK's timer (ICSK_TIME_REO_TIMEOUT)
        self._cwnd_limited = False  # the window, not the application, held sending back this round
        self._max_packets_out = 0
        self._cwnd_usage_end = 0  # offset; past it a new round of use starts (cwnd_usage_seq)
        self._stopped_by_cwnd = False

        # Receiver.
        self.irs = 0
        self.rcv_nxt = 0
        self._out_of_order: dict[int, bytes] = {}
        self._out_of_order_arrival: dict[int, int] = {}  # seq -> arrival count, for SACK block order
        self._receive_window = ReceiveWindow(config.mss)
        self._right_edge: int | None = None  # of the window last offered: it never moves back
        self._arrivals = 0
        self._unacked_segments = 0
        self._quickacks = config.quickack_segments
        self.pingpong = False
        """Linux's ping-pong (interactive) mode: this end answered data within the delayed-ACK
        time of receiving it, so its ACKs wait to ride on its next answer, quick-ACKs or not.
        Entered on such an answer (``tcp_event_data_sent``, tcp_pingpong_thresh = 1) and on the
        peer's FIN; left when a delayed ACK's timer fires (``tcp_delack_timer_handler``)."""
        self._data_received_at: float | None = None  # when in-order data last arrived (lrcvtime)
        self._ack_now = False
        self._ack_deadline: float | None = None
        self._peer_fin_seq: int | None = None

        # Server side TFO.
        self._synack_cookie: bytes | None = None
        self._synack_pending = False

    # ---- opening -------------------------------------------------------------------------

    def connect(self, now: float, data: bytes = b"", fastopen_cookie: bytes | None = None) -> None:
        """Client: send a SYN; with TFO on, it asks for a cookie or, with one cached, carries data."""
        self.state = TcpState.SYN_SENT
        self._send_buffer += data
        self._sack_ok = self.config.sack  # offered; the SYN-ACK settles it
        if self.config.fastopen:
            if fastopen_cookie:
                self._cookie_option = fastopen_cookie
                self._syn_data = bytes(self._send_buffer[: self.config.mss])
            else:
                self._cookie_option = b""

    @classmethod
    def accept(
        cls,
        syn: TcpSegment,
        now: float,
        *,
        local_port: int,
        isn: int,
        config: TcpConfig,
        expected_cookie: bytes | None,
        ts_offset: int = 0,
    ) -> TcpConnection:
        """Server: answer a SYN. ``expected_cookie`` is this client's valid TFO cookie (None: TFO off)."""
        conn = cls(local_port=local_port, remote_port=syn.sport, isn=isn, config=config, ts_offset=ts_offset)
        conn.state = TcpState.SYN_RCVD
        conn.irs = syn.seq
        conn.rcv_nxt = seq_add(syn.seq, 1)
        conn._peer_mss = syn.mss or 536
        conn._sack_ok = config.sack and syn.option(OPT_SACK_PERM) is not None
        conn._cubic.mss = conn._smss
        conn._learn_window(syn)
        conn._update_ts_recent(syn)
        conn._synack_pending = True
        cookie = syn.fastopen_cookie
        if config.fastopen and expected_cookie is not None and cookie is not None:
            if cookie == b"":
                conn._synack_cookie = expected_cookie
            elif cookie == expected_cookie:
                # RFC 7413 §4.2.2: a valid cookie lets the server take the SYN's data at once and
                # answer before the handshake completes.
                if syn.payload:
                    conn.rcv_nxt = seq_add(conn.rcv_nxt, len(syn.payload))
                    conn._events.append(DataReceived(syn.payload))
                conn.state = TcpState.ESTABLISHED
                conn._events.append(Connected())
            else:
                conn._synack_cookie = expected_cookie  # invalid cookie: ignore the data, send a fresh one
        conn.cwnd = config.initial_window_segments * conn._smss
        return conn

    # ---- application side ------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        if data:
            self._send_buffer += data

    def close(self) -> None:
        """Queue a FIN after all data already given to send()."""
        self._fin_queued = True

    def next_event(self) -> TcpEvent | None:
        return self._events.popleft() if self._events else None

    # ---- timers ----------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        deadlines = [d for d in (self._probe_deadline, self._rto_deadline, self._ack_deadline,
                                 self._reorder_deadline) if d is not None]
        return min(deadlines) if deadlines else None

    def handle_timer(self, now: float) -> None:
        if self._ack_deadline is not None and now >= self._ack_deadline:
            self._ack_deadline = None
            self._ack_now = True
            self.pingpong = False  # the answer the ACK waited for did not come
        if self._reorder_deadline is not None and now >= self._reorder_deadline:
            self._reorder_deadline = None
            self._detect_losses(now)
        if self._probe_deadline is not None and now >= self._probe_deadline:
            self._probe_deadline = None
            self._probe_pending = True
        elif self._rto_deadline is not None and now >= self._rto_deadline:
            self._on_retransmission_timeout(now)

    def _on_retransmission_timeout(self, now: float) -> None:
        self._backoff += 1
        self.retransmissions += 1
        self._rtt_probe = None  # Karn: no RTT sample from a retransmitted segment
        self._probe_high = None
        recovery_high = self._recovery_high
        self._recovery_high = self._max_sent
        if self.state == TcpState.SYN_SENT:
            if self._backoff > self.config.syn_retries:
                self.state = TcpState.CLOSED
                self._rto_deadline = None
                self._events.append(ConnectionFailed())
                return
            # Linux retransmits a TFO SYN without its data; the data follows the handshake.
            self._syn_data = b""
            self.snd_nxt = self.iss
        elif not self._syn_acked:
            # Server: the SYN-ACK (and any TFO answer behind it) went unacknowledged.
            self._synack_pending = True
            self._rewind()
        elif self._sack_ok:
            # tcp_enter_loss: everything not SACKed is lost and goes again in order, from a
            # window of one; the threshold drops only on the first timeout of a loss episode.
            if recovery_high is None:
                self.ssthresh = self._cubic.reduced(self.cwnd)
            self._cubic.timed_out()
            self._scoreboard.mark_all_lost()
            self._fast_recovery = False
            self._reorder_deadline = None
            self.cwnd = (self._scoreboard.in_flight() + 1) * self._smss
        else:
            self.ssthresh = self._cubic.reduced(self.cwnd)
            self._cubic.timed_out()
            self.cwnd = self._smss
            self._rewind()  # go back N: resend from the first unacknowledged byte
        if not (self.state == TcpState.SYN_SENT and self._backoff <= self.config.syn_linear_timeouts):
            self._rto_s = min(self._rto_s * 2, self.config.max_rto_s)  # a SYN's first retries keep it
        self._rto_deadline = None  # re-armed when the retransmission is sent

    # ---- receiving -------------------------------------------------------------------------

    def receive_segment(self, segment: TcpSegment, now: float) -> None:
        if self.state == TcpState.CLOSED:
            return
        if segment.rst:
            self.state = TcpState.CLOSED
            self._rto_deadline = self._ack_deadline = None
            return
        if self.state == TcpState.SYN_SENT:
            self._receive_synack(segment, now)
            return
        if segment.syn:
            if self.state in (TcpState.SYN_RCVD, TcpState.ESTABLISHED) and segment.seq == self.irs and not segment.has_ack:
                # A retransmitted SYN: our SYN-ACK was lost (or is late). Answer it again.
                self._synack_pending = True
                self._rewind()
            else:
                self._ack_now = True  # a retransmitted SYN-ACK: our ACK was lost
            return
        self._update_ts_recent(segment)
        if segment.has_ack:
            self._process_ack(segment, now)
        self._process_payload(segment, now)

    def _receive_synack(self, segment: TcpSegment, now: float) -> None:
        if not (segment.syn and segment.has_ack) or seq_diff(segment.ack, self.iss) <= 0:
            return
        if seq_diff(segment.ack, self._max_sent) > 0:
            return  # acknowledges more than we ever sent (the SYN data counts even if a retry left it out)
        self.irs = segment.seq
        self.rcv_nxt = seq_add(segment.seq, 1)
        self._peer_mss = segment.mss or 536
        self._sack_ok = self.config.sack and segment.option(OPT_SACK_PERM) is not None
        self._cubic.mss = self._smss
        self._learn_window(segment)
        self._update_ts_recent(segment)
        self.state = TcpState.ESTABLISHED
        self._syn_acked = True
        self.cwnd = self.config.initial_window_segments * self._smss
        cookie = segment.fastopen_cookie
        if cookie:
            self._events.append(FastOpenCookieReceived(cookie))
        self._events.append(Connected())
        self._ack_now = True
        self._advance_una(segment.ack, now, segment.timestamps)
        # SYN data the server did not acknowledge (no or invalid cookie) is sent again, RFC 7413 §4.2.2.
        if seq_diff(self.snd_nxt, self.snd_una) > 0:
            self._rewind()
        self._syn_data = b""
        self._process_payload(segment, now)

    def _learn_window(self, syn: TcpSegment) -> None:
        """The peer's SYN (or SYN-ACK): its window, never scaled in a SYN (RFC 7323 §2.2), and the
        scale its later windows carry."""
        self._peer_window = syn.window
        shift = syn.option(OPT_WSCALE)
        self._peer_window_shift = min(shift[0], 14) if shift is not None and len(shift) == 1 else 0

    def _process_ack(self, segment: TcpSegment, now: float) -> None:
        ack = segment.ack
        if self.state == TcpState.SYN_RCVD and seq_diff(ack, self.iss) > 0:
            self.state = TcpState.ESTABLISHED
            self._syn_acked = True
            self._events.append(Connected())
        elif not self._syn_acked and seq_diff(ack, self.iss) > 0:
            self._syn_acked = True  # TFO server: the client's ACK covers our SYN-ACK
        self._peer_window = segment.window << self._peer_window_shift
        advance = seq_diff(ack, self.snd_una)
        if self._sack_ok and self._syn_acked:
            self._process_ack_with_sack(segment, advance, now)
            return
        if advance > 0 and seq_diff(ack, self._max_sent) <= 0:
            self._advance_una(ack, now, segment.timestamps)
            self._grow_cwnd(advance, now)
            self._dupacks = 0
            self._probe_acked(ack)
        elif advance == 0 and not segment.payload and not segment.fin and self._bytes_in_flight > 0:
            self._dupacks += 1
            if self._dupacks == 3:
                # RFC 5681 §3.2 fast retransmit (without SACK or NewReno's partial-ack care).
                self.ssthresh = self._cubic.reduced(self.cwnd)
                self.cwnd = self.ssthresh + 3 * self._smss
                self._fast_retransmit_pending = True
                self._recovery_high = self._max_sent
                self._probe_deadline = None
                self.retransmissions += 1

    def _process_ack_with_sack(self, segment: TcpSegment, advance: int, now: float) -> None:
        """``tcp_ack`` with SACK: the scoreboard learns what was delivered, RACK marks what is
        lost, and the window either shrinks by PRR (in recovery) or grows (slow start, CUBIC)."""
        ack = segment.ack
        delivered = 0  # segments newly acknowledged or SACKed
        una_advanced = advance > 0 and seq_diff(ack, self._max_sent) <= 0
        if una_advanced:
            delivered += self._scoreboard.acknowledged(self._offset(ack), now)
            self._advance_una(ack, now, segment.timestamps)
            self._probe_acked(ack)
        blocks = self._sack_blocks_of(segment)
        if blocks:
            delivered += self._scoreboard.selectively_acknowledged(blocks, now)
        newly_lost = self._detect_losses(now)
        if self._fast_recovery:
            self._reduce_cwnd(delivered, una_advanced and not newly_lost)
        elif delivered > 0 and self._is_cwnd_limited():
            self._grow_cwnd(delivered * self._smss, now, per_ack_limit=False)

    def _is_cwnd_limited(self) -> bool:
        """``tcp_is_cwnd_limited``: the window grows only when it was used, in slow start when
        it is under twice the most segments out this round; a handshake's one-segment flights
        leave it at its initial 10."""
        if self._cwnd_limited:
            return True
        return self.cwnd < self.ssthresh and self.cwnd_segments < 2 * self._max_packets_out

    def _validate_cwnd(self, limited: bool) -> None:
        """``tcp_cwnd_validate``, after a round of sending: remember whether the window held it
        back, or else the most segments out, until the round's data is acknowledged."""
        packets_out = len(self._scoreboard.segments)
        if self._offset(self.snd_una) >= self._cwnd_usage_end or limited or \
                (not self._cwnd_limited and packets_out > self._max_packets_out):
            self._cwnd_limited = limited
            self._max_packets_out = packets_out
            self._cwnd_usage_end = self._offset(self.snd_nxt)

    def _sack_blocks_of(self, segment: TcpSegment) -> list[tuple[int, int]]:
        """The segment's SACK blocks as stream offsets, those above the cumulative ACK and within
        what was sent (a D-SACK block below it says nothing the scoreboard needs)."""
        data = segment.option(OPT_SACK)
        if not data:
            return []
        low, high = self._offset(self.snd_una), self._offset(self._max_sent)
        blocks = []
        for i in range(0, len(data) - 7, 8):
            left = self._offset(int.from_bytes(data[i:i + 4], "big"))
            right = self._offset(int.from_bytes(data[i + 4:i + 8], "big"))
            if low <= left < right <= high:
                blocks.append((left, right))
        return blocks

    def _detect_losses(self, now: float) -> bool:
        """RACK over the scoreboard; a first loss starts fast recovery, and segments not yet
        due get the reordering timer (their longest wait plus two ticks, ``tcp_rack_reo_timeout``)."""
        srtt = self._srtt_s if self._srtt_s is not None else self.config.initial_rto_s
        newly_lost, wait = self._scoreboard.detect_losses(now, srtt, self._recovery_high is not None)
        if newly_lost and self._recovery_high is None:
            self._enter_fast_recovery()
        self._reorder_deadline = now + wait + 2 * self.config.timer_tick_s if wait > 0 else None
        return newly_lost

    def _enter_fast_recovery(self) -> None:
        """``tcp_enter_recovery``: remember the window, drop the threshold to β of it (CUBIC),
        and let PRR pace the sending down to it as ACKs come."""
        self._fast_recovery = True
        self._recovery_high = self._max_sent
        self._prior_cwnd = max(self.cwnd, 1)
        self.ssthresh = self._cubic.reduced(self.cwnd)
        self._prr_delivered = self._prr_out = 0
        self._probe_deadline = None

    def _reduce_cwnd(self, delivered: int, una_advanced: bool) -> None:
        """Proportional Rate Reduction (RFC 6937) as ``tcp_cwnd_reduction``, in segments
        (``delivered``: newly on this ACK): while what is in flight exceeds the threshold, send
        in proportion to what was delivered; below it, catch up as slow start would, never
        beyond the threshold."""
        if delivered <= 0:
            return
        self._prr_delivered += delivered
        pipe = self._scoreboard.in_flight()
        ssthresh, prior_cwnd = self.ssthresh // self._smss, max(self._prior_cwnd // self._smss, 1)
        room = ssthresh - pipe
        if room < 0:
            allowed = (ssthresh * self._prr_delivered + prior_cwnd - 1) // prior_cwnd - self._prr_out
        else:
            allowed = min(room, max(self._prr_delivered - self._prr_out, delivered) + (1 if una_advanced else 0))
        allowed = max(allowed, 0 if self._prr_out else 1)  # the first retransmission goes at once
        self.cwnd = (pipe + allowed) * self._smss

    def _advance_una(self, ack: int, now: float, timestamps: tuple[int, int] | None = None) -> None:
        if self._retransmitted_up_to is not None:
            # Linux takes an RTT sample from the timestamp echo when the ACK covers retransmitted
            # bytes, where Karn's rule alone would leave the RTO backed off.
            if timestamps is not None and timestamps[1] and self.config.timestamps:
                echoed_ms = (self._ts_offset + int(now * 1000) - timestamps[1]) % SEQ_MOD
                self._sample_rtt(max(echoed_ms, 1) / 1000)
            if seq_diff(ack, self._retransmitted_up_to) >= 0:
                self._retransmitted_up_to = None
        elif self._rtt_probe is not None and seq_diff(ack, self._rtt_probe[0]) >= 0:
            self._sample_rtt(now - self._rtt_probe[1])
        if self._rtt_probe is not None and seq_diff(ack, self._rtt_probe[0]) >= 0:
            self._rtt_probe = None
        if self._recovery_high is not None and seq_diff(ack, self._recovery_high) >= 0:
            self._recovery_high = None
            if self._fast_recovery:
                self._fast_recovery = False
                self.cwnd = self.ssthresh  # tcp_end_cwnd_reduction
        consumed = seq_diff(ack, self._buffer_base)
        if consumed > 0:
            data_consumed = min(consumed, len(self._send_buffer))
            del self._send_buffer[:data_consumed]
            self._buffer_base = seq_add(self._buffer_base, data_consumed)
        self.snd_una = ack
        if seq_diff(self.snd_nxt, ack) < 0:
            self.snd_nxt = ack
        self._backoff = 0
        self._rto_deadline = now + self._rto_s if self._bytes_in_flight > 0 else None
        self._schedule_probe(now)

    def _schedule_probe(self, now: float) -> None:
        """Arm the tail loss probe as ``tcp_schedule_loss_probe`` does: 2·SRTT, plus 200 ms for
        the peer's delayed ACK when one segment is out (two ticks otherwise), never after the RTO."""
        self._probe_deadline = None
        if not (self.config.tail_loss_probe and self._syn_acked and self._bytes_in_flight > 0):
            return
        if self.state not in (TcpState.ESTABLISHED, TcpState.FIN_WAIT):
            return
        if self._recovery_high is not None or self._probe_high is not None or self._backoff:
            return
        if self._srtt_s is None:
            timeout = self.config.initial_rto_s
        else:
            segments_out = -(-self._bytes_in_flight // self._smss)
            extra = self.config.min_rto_s if segments_out == 1 else 2 * self.config.timer_tick_s
            timeout = 2 * self._srtt_s + extra
        deadline = now + timeout
        if self._rto_deadline is not None:
            deadline = min(deadline, self._rto_deadline)
        self._probe_deadline = deadline

    def _probe_acked(self, ack: int) -> None:
        """``tcp_process_tlp_ack``: once the ACK passes the probe, a retransmitted probe that
        repaired a loss halves the window (CWR); one that sent new data needs nothing."""
        if self._probe_high is None:
            return
        if not self._probe_retransmitted and seq_diff(ack, self._probe_high) >= 0:
            self._probe_high = None
        elif seq_diff(ack, self._probe_high) > 0:
            self.ssthresh = self._cubic.reduced(self.cwnd)
            self.cwnd = self.ssthresh
            self._probe_high = None

    def _sample_rtt(self, rtt_s: float) -> None:
        """RFC 6298 §2 smoothing, with Linux's floor: RTO = SRTT + max(4·RTTVAR, 200 ms)
        (``tcp_set_rto``: the minimum bounds the variance term, not the sum)."""
        if self._min_rtt_s < 0 or rtt_s < self._min_rtt_s:
            self._min_rtt_s = rtt_s
        if self._srtt_s is None:
            self._srtt_s = rtt_s
            self._rttvar_s = rtt_s / 2
        else:
            self._rttvar_s = 0.75 * self._rttvar_s + 0.25 * abs(self._srtt_s - rtt_s)
            self._srtt_s = 0.875 * self._srtt_s + 0.125 * rtt_s
        rto = self._srtt_s + max(4 * self._rttvar_s, self.config.min_rto_s)
        self._rto_s = min(rto, self.config.max_rto_s)

    def _grow_cwnd(self, acked: int, now: float, per_ack_limit: bool = True) -> None:
        """Slow start up to the threshold, then CUBIC with what is left (``tcp_slow_start``
        hands the remainder on). With SACK ``acked`` is whole segments delivered, all of
        which count as in Linux; without, bytes, at most two segments' worth per ACK
        (RFC 3465, L = 2)."""
        if self.cwnd < self.ssthresh:
            step = min(acked, 2 * self._smss) if per_ack_limit else acked
            grown = min(self.cwnd + step, max(self.ssthresh, self.cwnd))
            acked -= grown - self.cwnd
            self.cwnd = grown
            if acked <= 0 or self.cwnd < self.ssthresh:
                return
        self.cwnd = self._cubic.grown(self.cwnd, acked, now, self._min_rtt_s)

    def _process_payload(self, segment: TcpSegment, now: float) -> None:
        payload = segment.payload
        seq = segment.seq
        if segment.syn:
            seq = seq_add(seq, 1)
        if payload:
            offset = seq_diff(self.rcv_nxt, seq)
            if offset >= len(payload):
                self._ack_now = True  # a duplicate: tell the sender what we have
            elif offset < 0:
                self._out_of_order.setdefault(seq, payload)
                self._arrivals += 1
                self._out_of_order_arrival[seq] = self._arrivals
                self._ack_now = True  # out of order: duplicate ACK at once (RFC 5681 §4.2)
            else:
                had_hole = bool(self._out_of_order)
                before = self.rcv_nxt
                self._deliver(payload[offset:])
                while self.rcv_nxt in self._out_of_order:
                    self._deliver(self._out_of_order.pop(self.rcv_nxt))
                self._drain_out_of_order()
                self._receive_window.segment_arrived(len(payload))
                self._receive_window.read(seq_diff(self.rcv_nxt, before), now, self._srtt_s)
                if had_hole and not self._out_of_order:
                    self._ack_now = True  # the gap is filled: ACK at once (RFC 5681 §4.2)
                    self._out_of_order_arrival.clear()
                self._data_received_at = now
                self._unacked_segments += 1
                if self._quickacks > 0 and not self.pingpong:
                    # Linux starts a connection in quick-ACK mode: each data segment is ACKed at
                    # once, by the kernel, before the application has read it.
                    self._quickacks -= 1
                    self._ack_now = True
                elif self._out_of_order or self._unacked_segments >= 2:
                    self._ack_now = True
                elif self._ack_deadline is None:
                    self._ack_deadline = self._delayed_ack_deadline(now)
        if segment.fin:
            fin_seq = seq_add(seq, len(payload))
            self._peer_fin_seq = fin_seq
            if self.state == TcpState.ESTABLISHED:
                # Linux's tcp_fin enters ping-pong mode: the ACK waits a little, so the
                # application's close() usually carries it on its own FIN.
                self.pingpong = True
                if self._ack_deadline is None:
                    self._ack_deadline = self._delayed_ack_deadline(now)
            else:
                self._ack_now = True  # our FIN is out: ACK theirs at once (FIN-WAIT → TIME-WAIT)
        if self._peer_fin_seq is not None and self._peer_fin_seq == self.rcv_nxt:
            self.rcv_nxt = seq_add(self.rcv_nxt, 1)
            self._peer_fin_seq = None
            self._events.append(PeerClosed())

    def _delayed_ack_deadline(self, now: float) -> float:
        """When a delayed ACK's timer fires, in Linux's jiffies: ``tcp_send_delayed_ack`` sets it
        ``delayed_ack_s`` after the current tick, and the timer wheel fires a timer at the tick
        after its expiry (never early), so 40-44 ms after the data at CONFIG_HZ=250 (the tick
        counted from virtual time 0). Measured on Linux through the shim: 42.8-44.6 ms (tests/kernel/test_nagle.py)."""
        tick = self.config.timer_tick_s
        current = math.floor(round(now / tick, 6))
        return (current + round(self.config.delayed_ack_s / tick) + 1) * tick

    def _deliver(self, data: bytes) -> None:
        self.rcv_nxt = seq_add(self.rcv_nxt, len(data))
        self._events.append(DataReceived(data))

    def _drain_out_of_order(self) -> None:
        """Merge buffered segments that now overlap rcv_nxt partly (retransmissions cut differently)."""
        progressed = True
        while progressed and self._out_of_order:
            progressed = False
            for seq in list(self._out_of_order):
                payload = self._out_of_order[seq]
                offset = seq_diff(self.rcv_nxt, seq)
                if offset >= len(payload):
                    del self._out_of_order[seq]
                elif offset >= 0:
                    del self._out_of_order[seq]
                    self._deliver(payload[offset:])
                    progressed = True

    def _update_ts_recent(self, segment: TcpSegment) -> None:
        ts = segment.timestamps
        if ts is not None:
            self._ts_recent = ts[0]

    # ---- sending ---------------------------------------------------------------------------

    @property
    def _smss(self) -> int:
        return min(self.config.mss, self._peer_mss) - (12 if self.config.timestamps else 0)

    @property
    def pipe(self) -> int:
        """Segments in flight as the congestion window counts them (with SACK: RFC 6675's pipe)."""
        return self._scoreboard.in_flight()

    @property
    def cwnd_segments(self) -> int:
        """The congestion window in whole segments, as Linux keeps it."""
        return self.cwnd // self._smss

    @property
    def _bytes_in_flight(self) -> int:
        return max(seq_diff(self.snd_nxt, self.snd_una), 0)

    def _options(self, now: float, syn: bool) -> tuple[tuple[int, bytes], ...]:
        options: list[tuple[int, bytes]] = []
        if syn:
            options.append((OPT_MSS, self.config.mss.to_bytes(2, "big")))
            if self._sack_ok:
                options.append((OPT_SACK_PERM, b""))
        if self.config.timestamps:
            tsval = (self._ts_offset + int(now * 1000)) % SEQ_MOD
            options.append((OPT_TIMESTAMP, tsval.to_bytes(4, "big") + self._ts_recent.to_bytes(4, "big")))
        if syn:
            options.append((OPT_WSCALE, bytes([self.config.window_scale])))
        return tuple(options)

    def _sack_option(self) -> tuple[tuple[int, bytes], ...]:
        """The SACK blocks an ACK carries while data sits out of order (RFC 2018 §4)."""
        if not (self._sack_ok and self._out_of_order):
            return ()
        pieces = []
        for seq, payload in self._out_of_order.items():
            start = seq_diff(seq, self.rcv_nxt)
            if start + len(payload) > 0:
                pieces.append((start, start + len(payload), self._out_of_order_arrival.get(seq, 0)))
        blocks = sack_blocks(pieces, 3 if self.config.timestamps else 4)
        if not blocks:
            return ()
        data = b"".join(seq_add(self.rcv_nxt, left).to_bytes(4, "big") + seq_add(self.rcv_nxt, right).to_bytes(4, "big")
                        for left, right in blocks)
        return ((OPT_SACK, data),)

    def _window_field(self, syn: bool) -> int:
        """The window field: a SYN's unscaled (RFC 7323 §2.2), others scaled and rounded up, the
        right edge never moved back (RFC 7323 §2.4: Linux does not shrink a window it offered)."""
        fixed = self.config.receive_window
        scale = self.config.window_scale
        if syn:
            return min(self._receive_window.initial if fixed is None else fixed, 65535)
        if fixed is not None:
            return min(fixed >> scale, 65535)
        held = sum(len(payload) for payload in self._out_of_order.values())
        window = self._receive_window.offered(held)
        if self._right_edge is not None:
            window = max(window, seq_diff(self._right_edge, self.rcv_nxt))
        field = min((window + (1 << scale) - 1) >> scale, 65535)
        self._right_edge = seq_add(self.rcv_nxt, field << scale)
        return field

    def _segment(self, now: float, seq: int, flags: int, payload: bytes = b"", extra=()) -> TcpSegment:
        syn = bool(flags & SYN)
        window = self._window_field(syn)
        if flags & ACK:
            self._ack_now = False
            self._ack_deadline = None
            self._unacked_segments = 0
            if not syn:
                extra = tuple(extra) + self._sack_option()
        return TcpSegment(
            sport=self.local_port,
            dport=self.remote_port,
            seq=seq,
            ack=self.rcv_nxt if flags & ACK else 0,
            flags=flags,
            window=window,
            options=self._options(now, syn) + tuple(extra),
            payload=payload,
        )

    def _arm_rto(self, now: float) -> None:
        if self._rto_deadline is None:
            self._rto_deadline = now + self._rto_s

    def segments_to_send(self, now: float) -> list[TcpSegment]:
        out: list[TcpSegment] = []
        if self.state == TcpState.CLOSED:
            return out
        if self.state == TcpState.SYN_SENT:
            if self.snd_nxt == self.iss:
                extra = () if self._cookie_option is None else ((OPT_FASTOPEN, self._cookie_option),)
                data = self._syn_data if self._backoff == 0 else b""
                out.append(self._segment(now, self.iss, SYN, data, extra))
                self.snd_nxt = seq_add(self.iss, 1 + len(data))
                self._note_sent(self.snd_nxt, now)
                self._arm_rto(now)
            return out
        if self._synack_pending:
            extra = () if self._synack_cookie is None else ((OPT_FASTOPEN, self._synack_cookie),)
            out.append(self._segment(now, self.iss, SYN | ACK, b"", extra))
            self._synack_pending = False
            if self.snd_nxt == self.iss:
                self.snd_nxt = seq_add(self.iss, 1)
            self._note_sent(seq_add(self.iss, 1), now)
            self._arm_rto(now)
        if self.state == TcpState.SYN_RCVD:
            return out  # no data before the handshake completes (unless TFO made us ESTABLISHED)
        if self._fast_retransmit_pending:
            self._fast_retransmit_pending = False
            segment = self._data_segment(now, self.snd_una)
            if segment is not None:
                out.append(segment)
        if self._sack_ok:
            out.extend(self._retransmit_lost(now))
        if self._probe_pending:
            self._probe_pending = False
            out.extend(self._send_probe(now))
        sent_new = False
        self._stopped_by_cwnd = False
        while True:
            segment = self._next_new_segment(now)
            if segment is None:
                break
            out.append(segment)
            sent_new = True
        if self._sack_ok and (sent_new or self._stopped_by_cwnd):
            self._validate_cwnd(self._stopped_by_cwnd or self.pipe >= self.cwnd_segments)
        if sent_new:
            self._schedule_probe(now)
        if self._ack_now:
            out.append(self._segment(now, self.snd_nxt, ACK))
        return out

    def _send_probe(self, now: float) -> list[TcpSegment]:
        """``tcp_send_loss_probe``: one new segment if the peer's window takes it, else the last
        segment sent again; then the RTO restarts from now, not backed off."""
        probe = self._next_new_segment(now, probe=True)
        self._probe_retransmitted = probe is None
        if probe is None and self._sack_ok:
            last = self._scoreboard.last_unsacked()
            if last is not None:
                probe = self._resend(last, now)
        elif probe is None:
            sent = seq_diff(self.snd_nxt, self._buffer_base)
            fin_sent = self._fin_queued and sent == len(self._send_buffer) + 1
            data_end = sent - (1 if fin_sent else 0)
            start = max(data_end - self._smss, 0)
            probe = self._data_segment(now, seq_add(self._buffer_base, start))
            if probe is not None:
                self.retransmissions += 1
        if probe is None:
            return []
        self._probe_high = self.snd_nxt
        self._rto_deadline = now + self._rto_s
        return [probe]

    def _retransmit_lost(self, now: float) -> list[TcpSegment]:
        """``tcp_xmit_retransmit_queue``: segments marked lost, in order, while what is in
        flight is below the congestion window."""
        out = []
        while self.pipe < self.cwnd_segments:
            lost = self._scoreboard.next_lost()
            if lost is None:
                break
            out.append(self._resend(lost, now))
        return out

    def _resend(self, sent: SentSegment, now: float) -> TcpSegment:
        """One scoreboard segment again, cut as it was first sent."""
        start = sent.start - self._offset(self._buffer_base)
        payload = bytes(self._send_buffer[start : start + sent.size - (1 if sent.fin else 0)])
        flags = ACK | (PSH if payload else 0) | (FIN if sent.fin else 0)
        seq = seq_add(self.iss, sent.start)
        self._scoreboard.resent(sent, now)
        self.retransmissions += 1
        if self._fast_recovery:
            self._prr_out += 1
        self._arm_rto(now)
        self._note_sent(seq_add(seq, sent.size), now)
        return self._segment(now, seq, flags, payload)

    def _offset(self, seq: int) -> int:
        """A sequence number as a stream offset from the ISN (the scoreboard's; streams here
        stay far below the 2 GB where it would wrap)."""
        return seq_diff(seq, self.iss)

    def _rewind(self) -> None:
        """Send again from the first unacknowledged byte (go back N)."""
        self.snd_nxt = self.snd_una
        self._scoreboard.forget_from(self._offset(self.snd_una))

    def _data_segment(self, now: float, seq: int) -> TcpSegment | None:
        """The segment starting at ``seq`` (a retransmission), or None when nothing is there."""
        offset = seq_diff(seq, self._buffer_base)
        if offset < 0:
            seq, offset = self._buffer_base, 0
        # Cut to the peer's window as Linux's tcp_retransmit_skb does: a segment resent in one
        # piece may hold more than the one first sent.
        room = max(self._peer_window - max(seq_diff(seq, self.snd_una), 0), 0)
        payload = bytes(self._send_buffer[offset : offset + min(self._smss, room)])
        fin = self._fin_queued and offset + len(payload) == len(self._send_buffer)
        if not payload and not fin:
            return None
        flags = ACK | (PSH if payload else 0) | (FIN if fin else 0)
        self._arm_rto(now)
        self._note_sent(seq_add(seq, len(payload) + (1 if fin else 0)), now)
        return self._segment(now, seq, flags, payload)

    def _next_new_segment(self, now: float, probe: bool = False) -> TcpSegment | None:
        """The next segment of unsent bytes the windows allow; a loss probe heeds the peer's window only."""
        offset = seq_diff(self.snd_nxt, self._buffer_base)
        if offset < 0:
            return None  # the SYN itself is not yet acknowledged
        available = len(self._send_buffer) - offset
        if probe and available <= 0:
            return None
        if self._sack_ok or probe:
            window = self._peer_window - self._bytes_in_flight
        else:
            window = min(self.cwnd, self._peer_window) - self._bytes_in_flight
        if available < 0 or (available == 0 and not self._fin_queued):
            return None  # nothing new (a FIN, once sent, sits one past the data)
        size = max(min(available, self._smss, window), 0)
        if available > 0 and size <= 0:
            return None  # the congestion or receive window is full
        if self._sack_ok and not probe and self.pipe >= self.cwnd_segments:
            self._stopped_by_cwnd = True
            return None  # the congestion window is full, counted in packets as Linux does
        if not probe and self._nagle_holds(size, available):
            return None
        payload = bytes(self._send_buffer[offset : offset + size])
        fin = self._fin_queued and offset + len(payload) == len(self._send_buffer)
        flags = ACK | (PSH if payload and offset + len(payload) == len(self._send_buffer) else 0) | (FIN if fin else 0)
        segment = self._segment(now, self.snd_nxt, flags, payload)
        end = seq_add(self.snd_nxt, len(payload) + (1 if fin else 0))
        if fin and self.state == TcpState.ESTABLISHED:
            self.state = TcpState.FIN_WAIT
        if self._sack_ok:
            self._scoreboard.sent(self._offset(self.snd_nxt), self._offset(end), now, fin)
            if self._fast_recovery:
                self._prr_out += 1
        self.snd_nxt = end
        self._note_sent(end, now)
        self._arm_rto(now)
        if payload:
            if len(payload) < self._smss:
                self._short_end = end
            received_at = self._data_received_at
            if received_at is not None and now - received_at < self.config.delayed_ack_s:
                self.pingpong = True
        return segment

    def _nagle_holds(self, size: int, available: int) -> bool:
        """Whether Nagle's algorithm keeps the last, short segment back: unless TCP_NODELAY, a
        FIN is queued (close() pushes what is left), or no short segment is unacknowledged."""
        if self.config.nodelay or self._fin_queued or size >= self._smss or size < available:
            return False
        short_end = self._short_end
        return short_end is not None and self._bytes_in_flight > 0 and seq_diff(short_end, self.snd_una) > 0

    def _note_sent(self, end: int, now: float) -> None:
        if seq_diff(end, self._max_sent) > 0:
            if self._rtt_probe is None and self._backoff == 0:
                self._rtt_probe = (end, now)
            self._max_sent = end
        else:
            # A retransmission (Karn: it gives no RTT sample of its own; its ACK's timestamp echo will).
            self._rtt_probe = None
            if self._retransmitted_up_to is None or seq_diff(end, self._retransmitted_up_to) > 0:
                self._retransmitted_up_to = end
