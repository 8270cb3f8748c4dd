"""SACK, RACK, PRR and CUBIC in the modeled TCP: what Linux does after a loss, seen on the wire."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from handshake.net.cubic import BETA, Cubic
from handshake.net.link import LinkConfig
from handshake.net.sack import Scoreboard, sack_blocks
from handshake.trace.packet import OPT_SACK, OPT_SACK_PERM, TcpSegment, decode, seq_diff

from .test_tcp import transfer

MSS = 1448


def _client_data(sim) -> list[tuple[float, TcpSegment]]:
    out = []
    for traced in sim.trace:
        segment = decode(traced.data).transport
        if isinstance(segment, TcpSegment) and segment.payload and segment.sport != 443:
            out.append((traced.time, segment))
    return out


def _drop_first_copy_of(*offsets: int):
    """Drop the client's first copy of the segments starting ``offsets`` bytes into its stream."""
    seen: set[int] = set()
    state: dict[str, int] = {}

    def dropped(from_client: bool, packet) -> bool:
        segment = packet.transport
        if from_client and segment.syn:
            state["isn"] = segment.seq
        if not from_client or not segment.payload or "isn" not in state:
            return False
        offset = seq_diff(segment.seq, state["isn"]) - 1
        if offset in offsets and offset not in seen:
            seen.add(offset)
            return True
        return False

    return dropped


def test_both_syns_offer_sack_and_acks_carry_the_blocks_of_what_came_past_a_hole():
    sim, session, sinks = transfer(b"s" * 40 * MSS, LinkConfig(delay_s=0.05), dropped=_drop_first_copy_of(10 * MSS))
    syns = [decode(t.data).transport for t in sim.trace if decode(t.data).transport.syn]
    assert all(syn.option(OPT_SACK_PERM) is not None for syn in syns) and len(syns) == 2
    isn = syns[0].seq
    blocks = []
    for traced in sim.trace:
        segment = decode(traced.data).transport
        data = segment.option(OPT_SACK) if segment.sport == 443 else None
        if data:
            blocks.append((seq_diff(int.from_bytes(data[:4], "big"), isn) - 1,
                           seq_diff(int.from_bytes(data[4:8], "big"), isn) - 1))
    assert blocks and all(left == 11 * MSS for left, _ in blocks)  # just past the hole
    assert [right for _, right in blocks] == sorted(right for _, right in blocks)  # growing
    assert bytes(sinks[0].received) == b"s" * 40 * MSS


def test_one_loss_in_a_long_transfer_is_repaired_a_round_trip_later_without_a_timeout():
    """Segment 11 of 40 lost: the segments behind it are SACKed, three of them mark it lost at
    once (RACK's window is zero from the third), and it goes again one RTT after it first left,
    not after the 1 s RTO or a tail loss probe."""
    sim, session, _ = transfer(b"s" * 40 * MSS, LinkConfig(delay_s=0.05), dropped=_drop_first_copy_of(10 * MSS))
    sends = [(time, seq_diff(segment.seq, session.tcp.iss) - 1) for time, segment in _client_data(sim)]
    copies = [time for time, offset in sends if offset == 10 * MSS]
    assert len(copies) == 2
    assert copies[1] - copies[0] == pytest.approx(0.1, abs=0.002)
    assert session.tcp.retransmissions == 1


def test_recovery_leaves_cubic_beta_of_the_window_not_half():
    """One segment of the second round lost: when RACK finds it, the window is the 20 of that
    round plus one per segment acknowledged before the hole (slow start); recovery ends at 0.7 of
    it (CUBIC's β, as ``tcp_end_cwnd_reduction`` sets it), where Reno would halve it, and the
    segments PRR lets out during recovery keep what is in flight near that."""
    sim, session, _ = transfer(b"s" * 60 * MSS, LinkConfig(delay_s=0.05), dropped=_drop_first_copy_of(20 * MSS))
    tcp = session.tcp
    window_at_loss = tcp.ssthresh / BETA / MSS
    assert 30 <= window_at_loss <= 35
    assert tcp.cwnd_segments >= tcp.ssthresh // MSS > window_at_loss / 2 + 3
    assert tcp.retransmissions == 1


def test_one_sacked_segment_waits_a_quarter_rtt_before_the_hole_is_lost():
    """RACK's reordering window: with fewer than three segments SACKed the sender allows the
    hole min_RTT/4 to arrive late (``tcp_rack_reo_wnd``), then marks it lost by its timer."""
    board = Scoreboard()
    board.sent(1, 1 + MSS, 0.0, False)
    board.sent(1 + MSS, 1 + 2 * MSS, 0.0, False)
    assert board.acknowledged(1, 0.1) == 0
    # the second segment is SACKed a round trip after it left
    assert board.selectively_acknowledged([(1 + MSS, 1 + 2 * MSS)], 0.1) == 1
    lost, wait = board.detect_losses(0.1, 0.1, recovering=False)
    assert not lost and wait == pytest.approx(0.025)
    lost, wait = board.detect_losses(0.125, 0.1, recovering=False)
    assert lost and board.next_lost() is board.segments[0] and board.in_flight() == 0


def test_three_sacked_segments_mark_the_hole_lost_at_once():
    board = Scoreboard()
    for i in range(5):
        board.sent(1 + i * MSS, 1 + (i + 1) * MSS, 0.0, False)
    board.selectively_acknowledged([(1 + 2 * MSS, 1 + 5 * MSS)], 0.1)
    lost, wait = board.detect_losses(0.1, 0.1, recovering=False)
    assert lost and wait == 0.0
    assert [segment.lost for segment in board.segments] == [True, True, False, False, False]
    assert board.in_flight() == 0
    board.resent(board.segments[0], 0.1)
    assert board.in_flight() == 1 and board.next_lost() is board.segments[1]


def test_a_late_original_after_a_retransmission_gives_no_rtt_sample_to_rack():
    """RFC 8985 §6.2 step 2: an ACK sooner after a retransmission than the minimum RTT is the
    original's; RACK's clock does not move to the retransmission's send time."""
    board = Scoreboard()
    board.sent(1, 1 + MSS, 0.0, False)
    board.sent(1 + MSS, 1 + 2 * MSS, 0.0, False)
    board.selectively_acknowledged([(1 + MSS, 1 + 2 * MSS)], 0.1)  # min RTT 100 ms
    board.segments[0].lost = True
    board.resent(board.segments[0], 0.2)
    assert board.acknowledged(1 + 2 * MSS, 0.21) == 1  # 10 ms after the resend: the original
    assert board.min_rtt_s == pytest.approx(0.1)


pieces = st.lists(st.tuples(st.integers(1, 50_000), st.integers(1, 3000)).map(lambda p: (p[0], p[0] + p[1])),
                  max_size=12)


@given(pieces)
def test_sack_blocks_cover_exactly_what_sits_out_of_order(spans):
    """RFC 2018 §4: merged, disjoint, the newest arrival's block first; with room for all of
    them, their union is exactly the bytes held."""
    arrivals = [(start, end, n) for n, (start, end) in enumerate(spans)]
    blocks = sack_blocks(arrivals, limit=len(spans) + 1)
    held = set().union(*(range(start, end) for start, end in spans)) if spans else set()
    covered = set().union(*(range(left, right) for left, right in blocks)) if blocks else set()
    assert covered == held
    ordered = sorted(blocks)
    assert all(a[1] < b[0] for a, b in zip(ordered, ordered[1:]))  # disjoint, not even touching
    if spans:
        newest = spans[-1]
        assert blocks[0][0] <= newest[0] and newest[1] <= blocks[0][1]
    assert len(sack_blocks(arrivals, limit=3)) == min(3, len(blocks))


def test_cubic_grows_back_to_the_window_of_the_loss_in_k_seconds():
    """RFC 9438 §4.2: after a loss at W_max the window returns to W_max at K = ∛(W_max·(1−β)/C)
    seconds, and not before (concave growth), then grows beyond it (convex)."""
    cubic = Cubic(MSS)
    w_max = 100 * MSS
    cwnd = cubic.reduced(w_max)
    assert cwnd == int(w_max * BETA)
    k = (100 * (1 - BETA) / 0.4) ** (1 / 3)
    now, rtt = 0.0, 0.1
    reached = None
    while now < 2 * k + 1:
        cwnd = cubic.grown(cwnd, cwnd, now, rtt)  # a window's worth acknowledged each RTT
        now += rtt
        if reached is None and cwnd >= w_max:
            reached = now
    assert reached is not None and abs(reached - k) < 0.35
    assert cwnd > 1.2 * w_max
