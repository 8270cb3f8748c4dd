"""A server that waits and a server that is busy: the timestamp echo shows both heard the
client's ACK, only the times tell which one waited for it (DESIGN.md §6)."""

from __future__ import annotations

from handshake.analysis.tcp.connection import TcpConnectionAnalyzer
from handshake.analysis.tcp.flows import FlowPacket
from handshake.trace.packet import ACK, SYN, TcpSegment, timestamp_option

CLIENT, SERVER = ("10.0.0.1", 40000), ("10.0.0.2", 80)
REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
HEAD = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"


def _seg(seq, ack, flags, payload=b"", ts=(0, 0)):
    return TcpSegment(0, 0, seq, ack, flags, 65535, (timestamp_option(*ts),), payload)


def _analyze(body_at: float):
    """A client-side capture at 100 ms RTT: the server sends its head at once, the client ACKs
    it, the body follows at ``body_at`` echoing that ACK."""
    req_end = 101 + len(REQUEST)
    packets = [
        (0.0, True, _seg(100, 0, SYN, ts=(1, 0))),
        (0.1, False, _seg(500, 101, SYN | ACK, ts=(2, 1))),
        (0.1, True, _seg(101, 501, ACK, REQUEST, ts=(3, 2))),
        (0.2, False, _seg(501, req_end, ACK, HEAD, ts=(4, 3))),
        (0.2, True, _seg(req_end, 501 + len(HEAD), ACK, ts=(5, 4))),  # a pure ACK
        (body_at, False, _seg(501 + len(HEAD), req_end, ACK, b"0123456789", ts=(6, 5))),
    ]
    analyzer = TcpConnectionAnalyzer(CLIENT, SERVER, steps=True)
    steps = [analyzer.add(FlowPacket(time, from_client, segment, 100)) for time, from_client, segment in packets]
    return analyzer.report(), steps


def test_data_sent_at_once_on_the_echoed_ack_waited_for_it():
    _, steps = _analyze(body_at=0.3)
    assert [step.round for step in steps] == [0, 1, 1, 2, 2, 3]


def test_data_sent_long_after_the_echoed_ack_is_server_time_not_a_round_trip():
    report, steps = _analyze(body_at=0.45)
    assert [step.round for step in steps] == [0, 1, 1, 2, 2, 2]
    assert report.causes == []


def test_server_time_is_what_the_server_held_the_request_for():
    report, _ = _analyze(body_at=0.3)
    assert (report.round_trips, report.round_trips_basis) == (2, "clear")
    assert report.ttfb_s is not None and abs(report.ttfb_s - 0.2) < 1e-9
    assert report.server_s == 0.0
