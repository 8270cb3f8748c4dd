"""Counts without a key log: the request and the answer found by causality and timing
(``analysis.keyless``), checked against the same captures decrypted."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from handshake.analysis.capture import inspect_packets
from handshake.analysis.keyless import FIRST, LATER, NONE, KeylessResponse
from handshake.analysis.keylog import parse_keylog
from handshake.analysis.server_time import PathLeg
from handshake.net.link import LinkConfig
from handshake.runner import RunOptions, run_sim
from handshake.variants import CATALOG

COUNTED_WITHOUT_KEYS = [name for name, variant in CATALOG.items() if not variant.early_data]
KNOBS = {
    "plain": RunOptions(),
    "big chain": RunOptions(key_type="rsa2048", intermediates=4),
    "64 KB answer": RunOptions(response_bytes=65536),
    "HelloRetryRequest": RunOptions(hrr=True),
    "Retry": RunOptions(retry=True),
    "cold": RunOptions(cold=True),
}


def _measured(run, keys: bool):
    keylog = parse_keylog(run.trace.keylog) if keys else None
    return inspect_packets([(p.time, p.data) for p in run.trace.packets], keylog)[-1].report


@pytest.mark.parametrize("knob", KNOBS)
@pytest.mark.parametrize("variant", COUNTED_WITHOUT_KEYS)
def test_without_keys_the_count_and_ttfb_are_those_the_keys_give(variant, knob):
    run = run_sim(CATALOG[variant], LinkConfig.from_rtt(0.1), KNOBS[knob])
    keyed, keyless = _measured(run, True), _measured(run, False)
    assert (keyless.round_trips, keyless.ttfb_s, keyless.setup_round_trips) == \
        (keyed.round_trips, keyed.ttfb_s, keyed.setup_round_trips)
    assert keyless.round_trips is not None
    tls = CATALOG[variant].tls_version
    if tls is None:
        assert keyless.round_trips_basis == keyed.round_trips_basis == "clear"
    else:
        assert keyless.round_trips_basis == "inferred"
        assert any(note.startswith("inferred without a key log") for note in keyless.notes)


@pytest.mark.parametrize("seed", range(1, 9))
@pytest.mark.parametrize("variant", ["tls12", "tls13", "tfo-tls13", "quic"])
def test_under_loss_an_inferred_count_is_the_decrypted_one(variant, seed):
    run = run_sim(CATALOG[variant], LinkConfig.from_rtt(0.1, loss=0.05, seed=seed))
    keyed, keyless = _measured(run, True), _measured(run, False)
    if keyless.round_trips is not None:
        assert (keyless.round_trips, keyless.ttfb_s) == (keyed.round_trips, keyed.ttfb_s)


def test_early_data_without_keys_stays_uncounted():
    """The request may be early data and its answer 0.5-RTT data in the server's first flight:
    without keys that cannot be told from the flight, so no count is given."""
    for variant in ("tls13-0rtt", "tfo-tls13-0rtt", "quic-0rtt"):
        report = _measured(run_sim(CATALOG[variant], LinkConfig.from_rtt(0.1)), False)
        assert report.round_trips is None and report.early_data == "sent"


# --- the finder on its own ------------------------------------------------------------------

def _path(leg_s: float = 0.1) -> PathLeg:
    path = PathLeg()
    path.asked(0.0)
    path.answered(leg_s)
    return path


def _with_request(at: float = 1.0) -> KeylessResponse:
    finder = KeylessResponse()
    assert not finder.client_record(True, 36, 53, 53, 100, at, 2)  # the client's Finished
    assert finder.client_record(True, 200, 217, 53, 317, at, 2)  # the request
    return finder


def test_the_request_follows_a_finished_sized_record():
    finder = KeylessResponse()
    assert not finder.client_record(True, 900, 917, 53, 917, 1.0, 2)  # a client Certificate
    assert not finder.client_record(True, 36, 53, 53, 970, 1.0, 2)  # Finished
    assert finder.client_record(True, 100, 117, 53, 1087, 1.0, 2)
    assert finder.request_end == 1087


def test_a_record_sent_before_the_server_had_the_request_is_not_the_answer():
    finder = _with_request()
    assert finder.server_record(40, 1.05, False, _path(), chatter=True) == NONE
    assert finder.server_record(300, 1.1, True, _path(), chatter=True) == FIRST


def test_what_follows_at_once_chatter_after_server_time_is_the_answer():
    finder, path = _with_request(), _path()
    assert finder.server_record(250, 1.1, True, path, chatter=True) == FIRST  # a ticket, at once
    assert finder.server_record(250, 1.1, True, path, chatter=True) == NONE  # another
    finder.client_packet(1.1)  # the client's ACK of them
    assert finder.server_record(400, 1.35, True, path, chatter=True) == LATER  # 250 ms later
    assert finder.final and finder.replaced == "time" and finder.at_once_records == 2


def test_a_later_record_clocked_out_by_a_client_ack_is_not_a_later_answer():
    finder, path = _with_request(), _path()
    assert finder.server_record(250, 1.1, True, path, chatter=True) == FIRST
    finder.client_packet(1.15)
    assert finder.server_record(1400, 1.25, True, path, chatter=True) == NONE  # at once on that ACK
    assert finder.final and not finder.replaced


def test_an_alert_or_goaway_after_server_time_is_no_answer():
    finder, path = _with_request(), _path()
    assert finder.server_record(250, 1.1, True, path, chatter=True) == FIRST
    assert finder.server_record(17, 76.1, True, path, chatter=True) == NONE  # a GOAWAY at the idle timeout
    assert not finder.replaced


def test_a_small_packet_after_server_time_does_not_hide_the_answer_close_behind_it():
    """aioquic on a busy machine, seen through chromium: HANDSHAKE_DONE at once on the client's
    Finished, then after 45 ms of server time 4 bytes on its QPACK encoder stream and, 0.7 ms
    later, the response HEADERS. The answer is the HEADERS, not the HANDSHAKE_DONE."""
    finder, path = _with_request(), _path()
    assert finder.server_record(30, 1.1, True, path, chatter=True) == FIRST  # HANDSHAKE_DONE, at once
    finder.client_packet(1.125)  # the client's delayed ACK of it
    assert finder.server_record(8, 1.145, True, path, chatter=True) == NONE  # the encoder stream
    assert not finder.final
    assert finder.server_record(500, 1.1457, True, path, chatter=True) == LATER
    assert finder.final and finder.replaced == "time" and finder.at_once_records == 1


def test_a_settings_ack_is_never_the_answer_however_late():
    """nginx to chromium over a loaded machine: its HTTP/2 SETTINGS ACK (9 bytes of plaintext)
    left past the at-once tolerance and 2 ms ahead of the answer; it cannot start one."""
    finder, path = _with_request(), _path()
    assert finder.server_record(9, 1.13, True, path, chatter=True) == NONE
    assert not finder.final
    assert finder.server_record(10, 1.132, True, path, chatter=True) == FIRST  # the shortest HEADERS


def test_an_at_once_record_too_big_for_chatter_is_the_answer():
    finder, path = _with_request(), _path()
    assert finder.server_record(250, 1.1, True, path, chatter=True) == FIRST
    assert finder.server_record(16384, 1.1, True, path, chatter=True) == LATER
    assert finder.replaced == "size"


def test_where_no_chatter_is_possible_the_first_record_after_the_request_is_final():
    finder, path = _with_request(), _path()
    assert finder.server_record(250, 1.1, True, path, chatter=False) == FIRST
    assert finder.final
    assert finder.server_record(400, 1.35, True, path, chatter=False) == NONE


def test_another_request_in_between_keeps_the_first_answer():
    finder, path = _with_request(), _path()
    assert finder.server_record(250, 1.1, True, path, chatter=True) == FIRST
    finder.client_record(True, 300, 317, 53, 700, 1.2, 3)  # a second request, not a control frame
    assert finder.server_record(400, 1.5, True, path, chatter=True) == NONE


@given(st.floats(0, 10), st.floats(0, 1), st.floats(-1, 10), st.floats(-1, 10))
def test_server_time_is_never_negative_and_at_once_means_within_the_tolerance(asked, leg, sent, heard):
    path = PathLeg()
    path.asked(asked)
    path.answered(asked + leg)
    server_time = path.server_time(sent, heard)
    at_once = path.at_once(sent, heard)
    if heard < 0:
        assert server_time is None and at_once is None
    else:
        assert server_time is not None and server_time >= 0
        assert at_once == (sent - heard - path.leg_s <= path.tolerance_s)
        if path.before_it_arrived(sent, heard):
            assert at_once


def test_a_paced_answer_going_on_past_the_at_once_tolerance_is_no_later_answer():
    """aioquic paces a long answer 9 ms a packet: the packets after the tolerance follow the ones
    before closely, so they continue the first answer rather than start a later one."""
    finder, path = _with_request(), _path()
    assert finder.server_record(1200, 1.1, True, path, chatter=True) == FIRST
    for step in range(1, 6):
        verdict = finder.server_record(1200, 1.1 + 0.009 * step, True, path, chatter=True)
        assert verdict == NONE
    assert finder.final and not finder.replaced


# --- QUIC: HANDSHAKE_DONE's burst, then the answer within the at-once spell -----------------

def test_an_answer_after_a_pause_within_the_at_once_burst_replaces_the_handshake_done():
    """aioquic in CI, seen through chromium at 100 ms RTT: HANDSHAKE_DONE at once on the client's
    Finished, the response 3-9 ms later, both well within the at-once tolerance (30 ms)."""
    finder, path = KeylessResponse(grouped=True), _path()
    assert finder.client_record(False, 400, 430, None, 0, 1.0, 1)  # the first 1-RTT packet
    assert finder.server_record(21, 1.1, True, path, chatter=True) == FIRST  # HANDSHAKE_DONE
    assert finder.server_record(15, 1.1035, True, path, chatter=True) == NONE  # ACK, QPACK encoder
    assert finder.server_record(498, 1.105, True, path, chatter=True) == LATER
    assert finder.final and finder.replaced == "group"
    assert "after a pause within its at-once burst" in finder.note("1-RTT packet", "HANDSHAKE_DONE, tickets")


def test_tls_keeps_the_first_of_an_at_once_burst():
    """Over TLS, where no HANDSHAKE_DONE marks the burst's start, the rule does not apply."""
    finder, path = _with_request(), _path()
    assert finder.server_record(250, 1.1, True, path, chatter=True) == FIRST
    assert finder.server_record(498, 1.104, True, path, chatter=True) == NONE
    assert not finder.replaced


def test_chatter_spread_by_a_slow_bottleneck_is_no_pause():
    """Google's chatter (641, 149, 51, 55 bytes, back to back) reaching a client behind 1 Mbit/s:
    the second packet arrives 1.2 ms after the first, which the wire explains."""
    path = _path()
    s_per_byte = 8 / 1e6
    for i in range(3):  # the server's handshake flight, back to back at the bottleneck
        path.flight_packet(0.1 + i * 1250 * s_per_byte, 1250)
    assert path.s_per_byte == pytest.approx(s_per_byte)
    finder = KeylessResponse(grouped=True)
    finder.client_record(False, 400, 430, None, 0, 1.0, 1)
    t = 1.1
    assert finder.server_record(641, t, True, path, chatter=True) == FIRST
    for size in (149, 51, 55):
        t += (size + 28) * s_per_byte
        assert finder.server_record(size, t, True, path, chatter=True) == NONE
    assert not finder.replaced
    assert finder.server_record(498, t + 0.005, True, path, chatter=True) == LATER  # then a pause
    assert finder.replaced == "group"


def test_a_full_first_packet_is_an_answer_going_on_not_chatter():
    finder, path = KeylessResponse(grouped=True), _path()
    finder.client_record(False, 400, 430, None, 0, 1.0, 1)
    assert finder.server_record(1200, 1.1, True, path, chatter=True) == FIRST
    assert finder.server_record(1200, 1.109, True, path, chatter=True) == NONE  # paced, 9 ms on
    assert not finder.replaced


def test_a_packet_pair_broken_by_a_client_packet_it_may_answer_is_not_measured():
    path = _path(0.1)
    path.flight_packet(0.2, 1200)
    path.answered_back(0.15)  # seen before the first of the pair: no matter
    path.flight_packet(0.201, 1200)
    assert path.s_per_byte == pytest.approx(0.001 / 1200)
    path.answered_back(0.202)
    path.flight_packet(0.4, 1200)  # 198 ms on: it may answer that client packet
    assert path.s_per_byte == pytest.approx(0.001 / 1200)


@given(st.lists(st.tuples(st.floats(0, 1), st.integers(1, 1500)), min_size=2, max_size=20))
def test_the_bottleneck_is_the_tightest_pair(gaps):
    path = _path(0.1)
    times = [1.0]
    path.flight_packet(times[0], 1200)
    for gap, size in gaps:
        times.append(times[-1] + gap)
        path.flight_packet(times[-1], size)
    assert path.s_per_byte == min((b - a) / size for a, b, (_, size) in zip(times, times[1:], gaps))
    assert path.wire_time(1000) == pytest.approx(1000 * path.s_per_byte)
