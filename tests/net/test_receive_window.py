"""The receiver's window as Linux's autotuning offers it: 64 KB at first, about 80 KB soon, more
as the application reads faster; a right edge that never moves back, so a hole holds the sender."""

from __future__ import annotations

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from handshake.net.link import LinkConfig
from handshake.net.receive_window import ReceiveWindow
from handshake.net.tcp import TcpState
from handshake.trace.packet import OPT_WSCALE, decode, seq_diff

from .test_sack import MSS, _drop_first_copy_of
from .test_tcp import transfer


def _server_windows(sim) -> list[tuple[float, int, int]]:
    """(time, ACK number, window in bytes) of each server segment, scaled as its SYN-ACK said."""
    out, shift = [], 0
    for traced in sim.trace:
        segment = decode(traced.data).transport
        if segment.sport != 443:
            continue
        if segment.syn:
            shift = (segment.option(OPT_WSCALE) or b"\0")[0]
            out.append((traced.time, segment.ack, segment.window))
        else:
            out.append((traced.time, segment.ack, segment.window << shift))
    return out


def test_the_window_starts_at_64_kb_then_grows_with_what_was_read():
    window = ReceiveWindow(1460)
    assert window.initial == 64240 and window.offered(0) == 64240  # Linux's SYN: 44 segments of 1460
    for _ in range(10):
        window.segment_arrived(1448)
    assert window.offered(0) == window.clamp == 81264  # 0.62 of tcp_rmem[1]'s 128 KB
    assert window.offered(20_000) == 81264 - 20_000  # bytes held out of order take their room
    window.read(30_000, 0.0, 0.1)
    window.read(30_000, 0.1, 0.1)  # a round trip: 60 KB read, more than 10 segments
    assert window.clamp > 2 * 60_000


def test_a_long_transfer_is_offered_64_kb_first_and_much_more_later():
    sim, session, sinks = transfer(b"w" * 1_000_000, LinkConfig(delay_s=0.05))
    windows = _server_windows(sim)
    assert windows[0][2] == 64240
    early = [w for time, _, w in windows if time < 0.35]
    assert max(early) <= 81920  # the clamp, 81,264, rounded up to the 1 KB the scale counts in
    assert max(w for _, _, w in windows) > 500_000
    assert bytes(sinks[0].received) == b"w" * 1_000_000


def test_a_hole_holds_the_right_edge_and_stops_the_sender_there():
    """One segment of the fourth flight lost: while it is missing the server's ACK stays below it,
    so the window's right edge cannot pass one window beyond the hole, and the client, whose
    congestion window would allow more, waits at that edge until the retransmission fills it."""
    sim, session, _ = transfer(b"h" * 400 * MSS, LinkConfig(delay_s=0.05), dropped=_drop_first_copy_of(40 * MSS))
    isn = session.tcp.iss
    hole = isn + 1 + 40 * MSS
    edges = [(time, ack + window) for time, ack, window in _server_windows(sim)[1:] if ack == hole]
    assert edges, "the server acknowledged up to the hole"
    right_edge = max(edge for _, edge in edges)
    sent_past = [decode(t.data).transport for t in sim.trace if decode(t.data).transport.sport != 443]
    ends = [seq_diff(s.seq, isn) + len(s.payload) for s in sent_past if s.payload]
    assert max(ends) > seq_diff(right_edge, isn)  # the transfer went on after the hole
    stalled = [s for s in sent_past if s.payload and seq_diff(s.seq, right_edge) >= 0]
    first_after = min(t.time for t in sim.trace if decode(t.data).transport.sport != 443
                      and decode(t.data).transport.payload and seq_diff(decode(t.data).transport.seq, right_edge) >= 0)
    assert stalled and first_after > edges[0][0]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 300_000), st.sampled_from([0.0, 0.01, 0.05]), st.integers(0, 2**31),
       st.frozensets(st.integers(0, 200), max_size=6))
def test_the_right_edge_never_moves_back_and_the_sender_stays_inside_it(size, loss, seed, drops):
    """RFC 7323 §2.4 as Linux keeps it: whatever is lost, each window the receiver offers ends at
    or past the one before (read from the capture, the link neither reordering nor delaying
    unevenly), and no data segment ends past the last edge the sender had heard of."""
    payload = bytes(range(256)) * (size // 256 + 1)
    sim, session, sinks = transfer(payload[:size], LinkConfig(delay_s=0.02, loss=loss, seed=seed), frozenset(drops))
    assume(session.tcp.state != TcpState.CLOSED)
    isn = session.tcp.iss
    edge = None
    shift = 0
    for traced in sim.trace:
        segment = decode(traced.data).transport
        if segment.sport == 443:
            if segment.syn:
                shift = (segment.option(OPT_WSCALE) or b"\0")[0]
                edge = segment.ack + segment.window
                continue
            new_edge = segment.ack + (segment.window << shift)
            assert edge is None or seq_diff(new_edge, edge) >= 0
            edge = new_edge
        elif segment.payload and edge is not None and not segment.syn:
            assert seq_diff(segment.seq + len(segment.payload), edge) <= 0, seq_diff(segment.seq, isn)
    assert bytes(sinks[0].received) == payload[:size]
