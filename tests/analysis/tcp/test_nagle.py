"""The Nagle watch on its own: which client segments it takes for held by Nagle's algorithm, fed
offsets and times as the analyzer feeds them (a capture at the client, 100 ms RTT)."""

from __future__ import annotations

from handshake.analysis.server_time import PathLeg
from handshake.analysis.tcp.nagle import NagleWatch

FULL = 1448
RTT = 0.1


def _path() -> PathLeg:
    """A client-side capture: the SYN-ACK 100 ms after the SYN, the client's ACK at once."""
    path = PathLeg()
    path.asked(0.0)
    path.answered(RTT)
    path.answered_back(RTT)
    return path


def test_a_short_write_held_for_a_delayed_ack_is_named_with_the_delay():
    watch, path = NagleWatch(), _path()
    assert watch.client_data(0, 150, 0.1, 1, FULL, path) is None
    watch.server_ack(150, 0.244, bare=True)  # 100 ms and a 44 ms delayed ACK
    hold = watch.client_data(150, 350, 0.2441, 2, FULL, path)
    assert hold is not None and hold.bare_release
    assert round(hold.waited_s, 4) == 0.1441 and round(hold.ack_delay_s, 3) == 0.044
    assert hold.cause == ("Nagle: a client write waited 144 ms for the ACK of the short segment before it, "
                          "which the server delayed 44 ms")
    hold.in_request = True
    assert hold.cause.startswith("Nagle: the request's second write waited 144 ms for the ACK of its first")


def test_a_client_that_took_its_time_after_the_ack_was_not_held():
    watch, path = NagleWatch(), _path()
    watch.client_data(0, 150, 0.1, 1, FULL, path)
    watch.server_ack(150, 0.2, bare=True)
    assert watch.client_data(150, 350, 0.23, 2, FULL, path) is None


def test_server_data_after_the_ack_may_be_what_the_client_answered():
    """A TLS client's Finished follows the server's flight, which an ACK of its ClientHello led:
    a hold, but not a bare one, for the caller to judge."""
    watch, path = NagleWatch(), _path()
    watch.client_data(0, 300, 0.1, 1, FULL, path)
    watch.server_ack(300, 0.2, bare=True)
    watch.server_ack(300, 0.2009, bare=False)
    hold = watch.client_data(300, 380, 0.2015, 2, FULL, path)
    assert hold is not None and not hold.bare_release


def test_a_full_segment_or_a_gap_in_the_stream_is_no_hold():
    watch, path = NagleWatch(), _path()
    watch.client_data(0, FULL, 0.1, 1, FULL, path)  # full: Nagle never holds behind it
    watch.server_ack(FULL, 0.2, bare=True)
    assert watch.client_data(FULL, FULL + 100, 0.2001, 2, FULL, path) is None
    watch.server_ack(FULL + 100, 0.3, bare=True)
    assert watch.client_data(FULL + 200, FULL + 300, 0.3001, 3, FULL, path) is None  # not where the stream was


def test_a_short_segment_behind_a_full_window_may_have_waited_for_the_window():
    """Ten segments out, the last one short: a congestion window may have held what came next."""
    watch, path = NagleWatch(), _path()
    for index in range(9):
        watch.client_data(index * FULL, (index + 1) * FULL, 0.1, 1, FULL, path)
    watch.client_data(9 * FULL, 9 * FULL + 700, 0.1, 1, FULL, path)
    watch.server_ack(9 * FULL + 700, 0.2, bare=True)
    assert watch.client_data(9 * FULL + 700, 9 * FULL + 900, 0.2001, 2, FULL, path) is None


def test_a_full_segment_between_the_short_one_and_the_held_tail_still_counts():
    """Headers, a full segment of body, and the body's short tail, which Minshall's rule holds
    while the headers' segment is out."""
    watch, path = NagleWatch(), _path()
    watch.client_data(0, 150, 0.1, 1, FULL, path)
    watch.client_data(150, 150 + FULL, 0.1, 1, FULL, path)
    watch.server_ack(150, 0.2, bare=True)
    hold = watch.client_data(150 + FULL, 150 + FULL + 500, 0.2001, 2, FULL, path)
    assert hold is not None and round(hold.waited_s, 4) == 0.1001
