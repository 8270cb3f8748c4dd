"""Head-of-line blocking read from the packets (issue 12): h2c flows and QUIC streams built by
hand, where every wait is known exactly, and HTTP/2 and HTTP/3 pages of the simulator with one
answer packet lost."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings, strategies as st

from handshake.analysis.http.head_of_line import (_measure, _Space, head_of_line_blocking,
                                                  quic_head_of_line_blocking)
from handshake.analysis.http.http2 import DATA, PREFACE
from handshake.analysis.keylog import parse_keylog
from handshake.analysis.quic.flows import quic_flows
from handshake.analysis.tcp.flows import FlowPacket, TcpFlow, tcp_flows
from handshake.net.link import LinkConfig
from handshake.page import parse_page
from handshake.runner import RunOptions, row_from_run, run_sim
from handshake.trace.packet import ACK, SYN, TcpSegment
from handshake.variants import CATALOG

CLIENT_ISN, SERVER_ISN = 1000, 50_000


def frame(stream: int, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([DATA, 0]) + struct.pack(">I", stream) + payload


def segment(from_client: bool, offset: int, payload: bytes = b"", flags: int = ACK) -> TcpSegment:
    if from_client:
        return TcpSegment(40000, 80, CLIENT_ISN + 1 + offset, SERVER_ISN + 1, flags, 1000, (), payload)
    return TcpSegment(80, 40000, SERVER_ISN + 1 + offset, CLIENT_ISN + 1 + len(PREFACE), flags, 1000, (), payload)


def h2c_flow(answer: bytes, arrivals: list[tuple[float, int, int]]) -> TcpFlow:
    """An h2c connection whose server stream ``answer`` arrives in the pieces
    (time, start, end) given, in that order."""
    packets = [
        FlowPacket(0.0, True, TcpSegment(40000, 80, CLIENT_ISN, 0, SYN, 1000, (), b""), 60),
        FlowPacket(0.1, False, TcpSegment(80, 40000, SERVER_ISN, CLIENT_ISN + 1, SYN | ACK, 1000, (), b""), 60),
        FlowPacket(0.1, True, segment(True, 0, PREFACE), 100),
    ]
    packets += [FlowPacket(time, False, segment(False, start, answer[start:end]), 100) for time, start, end in arrivals]
    return TcpFlow(("198.18.0.1", 40000), ("198.18.0.2", 80), packets)


STREAMS = (1, 3, 5, 7)
ANSWER = b"".join(frame(stream, bytes(991)) for stream in STREAMS)  # 1000 bytes a frame


def test_streams_behind_a_lost_segment_of_another_wait_until_it_is_resent():
    # Stream 1's frame is lost and resent at 0.5 s; the frames of 3, 5 and 7 came at 0.2-0.22 s.
    flow = h2c_flow(ANSWER, [(0.2, 1000, 2000), (0.21, 2000, 3000), (0.22, 3000, 4000), (0.5, 0, 1000)])
    blocking = head_of_line_blocking(flow, None)
    assert blocking is not None and blocking.streams == 4
    assert blocking.waited_s == pytest.approx({3: 0.3, 5: 0.29, 7: 0.28})
    assert blocking.total_s == pytest.approx(0.87)
    assert blocking.cause == ("head-of-line blocking: 3 streams of 4 waited 870 ms in total behind missing "
                              "segments of other streams")


def test_a_stream_waiting_for_its_own_bytes_is_not_blocked_by_another():
    # The first half of stream 3's frame is lost: its second half waits, but for stream 3's own
    # bytes; stream 5 behind it waits for another's.
    flow = h2c_flow(ANSWER, [(0.2, 0, 1000), (0.21, 1500, 2000), (0.22, 2000, 3000), (0.5, 1000, 1500),
                             (0.5, 3000, 4000)])
    blocking = head_of_line_blocking(flow, None)
    assert blocking is not None and blocking.waited_s == pytest.approx({5: 0.28})


def test_in_order_arrival_blocks_nothing():
    flow = h2c_flow(ANSWER, [(0.2 + i / 100, i * 1000, i * 1000 + 1000) for i in range(4)])
    blocking = head_of_line_blocking(flow, None)
    assert blocking is not None and blocking.waited_s == {} and blocking.cause is None


@settings(max_examples=100, deadline=None)
@given(st.permutations(range(8)), st.lists(st.floats(0.0, 1.0), min_size=8, max_size=8))
def test_any_arrival_order_charges_no_stream_more_than_it_waited(order, gaps):
    """Eight 500-byte pieces in any order: a stream's wait never exceeds the time from its frame's
    completion to the moment everything before it had come, and a frame that came in order waits
    for nothing."""
    time, arrivals = 0.2, []
    for piece, gap in zip(order, gaps):
        time += gap
        arrivals.append((time, piece * 500, piece * 500 + 500))
    blocking = head_of_line_blocking(h2c_flow(ANSWER, arrivals), None)
    assert blocking is not None
    came = {start: at for at, start, _ in arrivals}
    for index, stream in enumerate(STREAMS):
        done = max(came[index * 1000], came[index * 1000 + 500])
        readable = max(came[start] for start in range(0, index * 1000 + 1000, 500))
        assert blocking.waited_s.get(stream, 0.0) <= readable - done + 1e-9
        if readable == done:
            assert stream not in blocking.waited_s


def test_a_server_that_speaks_first_is_not_measured():
    flow = h2c_flow(b"220 smtp.example ESMTP\r\n", [(0.2, 0, 25)])
    del flow.packets[2]
    assert head_of_line_blocking(flow, None) is None


# --- pages of the simulator ---------------------------------------------------------------------

PAGE = parse_page("10x20KB")
LINK = LinkConfig.from_rtt(0.1)


def page_run(variant: str, http: str, drops: tuple[str, ...] = ()):
    return run_sim(CATALOG[variant], LINK, RunOptions(page=PAGE, http=http, drops=drops))


def test_an_http2_page_without_loss_waits_for_nothing():
    row = row_from_run(page_run("tls13", "2"))
    assert row.head_of_line_ms == 0.0
    assert not any("head-of-line" in cause for cause in row.causes)


def test_one_lost_segment_in_an_http2_page_holds_other_streams_a_round_trip():
    """The 60th full-sized server packet lies among the objects after the HTML: fast retransmit
    resends it a round trip later, and the streams whose records came behind it wait about that."""
    run = page_run("tls13", "2", ("server-data:60",))
    assert run.dropped == ("server-data:60",)
    row = row_from_run(run)
    (flow,) = [f for f in tcp_flows(run.trace.packets) if f.client[1] == run.client_port]
    blocking = head_of_line_blocking(flow, parse_keylog(run.trace.keylog))
    assert blocking is not None and blocking.streams == 10
    assert 1 <= len(blocking.waited_s) < 9
    assert all(0 < wait <= 0.1 + 1e-6 for wait in blocking.waited_s.values()), blocking.waited_s
    assert row.head_of_line_ms == pytest.approx(blocking.total_s * 1000, abs=1e-3)
    assert blocking.cause in row.causes


@pytest.mark.parametrize("variant", ["tls13", "http"])
def test_http1_answers_wait_only_for_their_own_bytes(variant):
    """Six connections, one answer at a time on each: the lost packet holds back its own answer
    only (over TLS its record, in plain HTTP the bytes behind it)."""
    run = page_run(variant, "1.1", ("server-data:40",))
    assert run.dropped == ("server-data:40",)
    flows = tcp_flows(run.trace.packets)
    parts = [head_of_line_blocking(flow, parse_keylog(run.trace.keylog) if run.trace.keylog else None)
             for flow in flows]
    assert len(parts) == 6 and all(part is not None and part.waited_s == {} for part in parts)
    assert sum(part.streams for part in parts) == 10  # type: ignore[union-attr]
    assert [len(part.own_waited_s) for part in parts].count(1) == 1  # type: ignore[union-attr]
    row = row_from_run(run)
    assert row.head_of_line_ms == 0.0
    assert any(note.startswith("no head-of-line blocking: 1 stream waited ") for note in row.notes), row.notes


def test_an_http3_page_with_the_same_loss_shows_streams_waiting_only_for_themselves():
    run = page_run("quic", "2", ("server-data:60",))
    assert run.dropped == ("server-data:60",)
    (flow,) = quic_flows(run.trace.packets)
    blocking = quic_head_of_line_blocking(flow, parse_keylog(run.trace.keylog))
    assert blocking is not None and blocking.streams == 10
    assert blocking.waited_s == {} and blocking.own_waited_s, blocking
    assert all(0 < wait < 0.3 for wait in blocking.own_waited_s.values())
    row = row_from_run(run)
    assert row.head_of_line_ms == 0.0
    assert not any("head-of-line" in cause for cause in row.causes)
    assert any(note.startswith("no head-of-line blocking: ") and note.endswith("own lost bytes only")
               for note in row.notes), row.notes


def test_an_http3_page_without_loss_waits_for_nothing():
    row = row_from_run(page_run("quic", "2"))
    assert row.head_of_line_ms == 0.0 and not any("head-of-line" in note for note in row.notes)


def test_a_quic_stream_is_held_only_by_its_own_gaps():
    """Stream 0's first kilobyte is lost and resent at 0.5 s; its second came at 0.2 s, and
    stream 4 at 0.21 s: stream 0 waited 0.3 s for itself, stream 4 for nothing."""
    spaces: dict[int, _Space] = {0: _Space(), 4: _Space()}
    for stream, start, time in ((0, 1000, 0.2), (4, 0, 0.21), (0, 0, 0.5)):
        spaces[stream].read_as_it_comes(start, start + 1000, time)
    for stream, space in spaces.items():
        space.pieces_as_units({stream})
    blocking = _measure(list(spaces.values()))
    assert blocking.streams == 2 and blocking.waited_s == {}
    assert blocking.own_waited_s == pytest.approx({0: 0.3})


def test_a_hole_in_no_streams_bytes_is_no_other_streams():
    """A lost SETTINGS-like frame on stream 0 holds stream 3's frame up, but that is not
    head-of-line blocking between streams: stream 3 waited for the connection, counted as its own."""
    answer = frame(0, bytes(991)) + frame(3, bytes(991))
    blocking = head_of_line_blocking(h2c_flow(answer, [(0.2, 1000, 2000), (0.5, 0, 1000)]), None)
    assert blocking is not None and blocking.waited_s == {}
    assert blocking.own_waited_s == pytest.approx({3: 0.3})
