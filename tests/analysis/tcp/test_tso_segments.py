"""A TSO/GSO super-segment (one captured TCP segment of many MSS) in the TCP analysis' own parts."""

from __future__ import annotations

from handshake.analysis.tcp.retransmissions import Retransmissions
from handshake.trace.packet import ACK, TcpSegment, timestamp_option

MSS = 1448


def _segment(seq: int, size: int, tsval: int) -> TcpSegment:
    return TcpSegment(443, 50000, seq, 1, ACK, 65535, (timestamp_option(tsval, 7),), bytes(size))


def test_one_mss_resent_from_a_super_segment_is_a_retransmission():
    """The sending host's capture holds 44 MSS in one packet; the NIC's 10th segment was lost on
    the path and the stack resends that one MSS: a data retransmission, 200 ms after its copy.
    New data after the super-segment, and the super-segment itself, are not."""
    found = Retransmissions("server")
    assert not found.check(_segment(1000, 44 * MSS, 100), 1.0, (100, 7))
    assert found.check(_segment(1000 + 9 * MSS, MSS, 300), 1.2, (300, 7))
    assert not found.check(_segment(1000 + 44 * MSS, 20 * MSS, 301), 1.21, (301, 7))
    assert [(what, [round(delay, 3) for _, delay in events]) for what, events in found.found.items()] == [("data", [0.2])]


def test_a_super_segment_that_resends_mss_sized_segments_is_a_retransmission():
    """The other way round: MSS-sized segments first, then GSO resends them as one packet
    (a timeout resends the whole flight; Linux builds it as one super-segment)."""
    found = Retransmissions("server")
    for k in range(10):
        assert not found.check(_segment(1000 + k * MSS, MSS, 100), 1.0, (100, 7))
    assert found.check(_segment(1000, 10 * MSS, 400), 1.3, (400, 7))
    assert [(what, len(events)) for what, events in found.found.items()] == [("data", 1)]
