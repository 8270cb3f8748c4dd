"""A server that waits and a server that is busy: the timestamp echo shows both heard the
client's ACK; only the times, and what the server had in flight, tell which one waited for it
(DESIGN.md §6)."""

from __future__ import annotations

from handshake.analysis.tcp.connection import TcpConnectionAnalyzer
from handshake.analysis.tcp.flows import FlowPacket
from handshake.trace.packet import ACK, SYN, TcpSegment, mss_option, timestamp_option

CLIENT, SERVER = ("10.0.0.1", 40000), ("10.0.0.2", 80)
REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
MSS = 1460


def _seg(seq, ack, flags, payload=b"", ts=(0, 0)):
    options = (mss_option(MSS), timestamp_option(*ts)) if flags & SYN else (timestamp_option(*ts),)
    return TcpSegment(0, 0, seq, ack, flags, 65535, options, payload)


def _analyze(flight: int, more_at: float):
    """A client-side capture at 100 ms RTT: the server answers with ``flight`` bytes at once,
    the client ACKs them, and 10 more bytes follow at ``more_at`` echoing that ACK."""
    req_end = 101 + len(REQUEST)
    answer = b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * (flight - 19)
    packets = [
        (0.0, True, _seg(100, 0, SYN, ts=(1, 0))),
        (0.1, False, _seg(500, 101, SYN | ACK, ts=(2, 1))),
        (0.1, True, _seg(101, 501, ACK, REQUEST, ts=(3, 2))),
    ]
    for start in range(0, len(answer), MSS):
        packets.append((0.2, False, _seg(501 + start, req_end, ACK, answer[start:start + MSS], ts=(4, 3))))
    packets += [
        (0.2, True, _seg(req_end, 501 + len(answer), ACK, ts=(5, 4))),  # a pure ACK of it all
        (more_at, False, _seg(501 + len(answer), req_end, ACK, b"0123456789", ts=(6, 5))),
    ]
    analyzer = TcpConnectionAnalyzer(CLIENT, SERVER, steps=True)
    steps = [analyzer.add(FlowPacket(time, from_client, segment, 100)) for time, from_client, segment in packets]
    return analyzer.report(), steps


def test_data_sent_at_once_on_the_echoed_ack_after_a_full_flight_waited_for_it():
    _, steps = _analyze(flight=10 * MSS, more_at=0.3)
    assert steps[-1].round == 3


def test_data_sent_long_after_the_echoed_ack_is_server_time_not_a_round_trip():
    report, steps = _analyze(flight=10 * MSS, more_at=0.45)
    assert steps[-1].round == 2
    assert report.causes == []


def test_a_server_with_under_two_segments_in_flight_was_not_held_by_its_window():
    """RFC 5681 §3.1: no congestion window is under two segments, so after a 40-byte flight the
    next data, however soon, was the server computing, not waiting (wolfSSL does this)."""
    _, steps = _analyze(flight=40, more_at=0.3)
    assert steps[-1].round == 2


def test_server_time_is_what_the_server_held_the_request_for():
    report, _ = _analyze(flight=40, more_at=0.3)
    assert (report.round_trips, report.round_trips_basis) == (2, "clear")
    assert report.ttfb_s is not None and abs(report.ttfb_s - 0.2) < 1e-9
    assert report.server_s == 0.0
