"""The round-trip counter reads causality off the headers, so link conditions that do not drop
packets do not change the count, and a pcap written to disk counts the same as the live trace."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handshake.analysis.tcp.flows import FlowPacket, tcp_flows
from handshake.analysis.tcp.rounds import TcpRoundCounter
from handshake.net.link import LinkConfig
from handshake.runner import VariantRun, row_from_run, run_sim, write_capture
from handshake.trace.packet import ACK, SYN, TcpSegment, timestamp_option
from handshake.trace.pcap import iter_capture, ip_payload
from handshake.trace.record import Trace, TracedPacket
from handshake.variants import CATALOG


def _seg(seq, ack, flags, payload=b"", ts=None):
    options = () if ts is None else (timestamp_option(*ts),)
    return TcpSegment(1000, 443, seq, ack, flags, 65535, options, payload)


def _rounds(packets):
    counter = TcpRoundCounter()
    return [counter.add(FlowPacket(t, c, s, 40)).round for t, c, s in packets]


def test_each_answered_exchange_is_one_round():
    rounds = _rounds(
        [
            (0.0, True, _seg(100, 0, SYN)),
            (0.1, False, _seg(500, 101, SYN | ACK)),
            (0.1, True, _seg(101, 501, ACK, b"GET")),
            (0.2, False, _seg(501, 104, ACK, b"200")),
        ]
    )
    assert rounds == [0, 1, 1, 2]


def test_a_pure_ack_counts_only_through_the_timestamp_echo():
    # Server flight: one segment, then (after the client's pure ACK) another. Without timestamps
    # the ACK number cannot show the wait; with them TSecr does.
    def exchange(with_ts):
        def ts(v, e):
            return (v, e) if with_ts else None

        return _rounds(
            [
                (0.0, True, _seg(100, 0, SYN, ts=ts(10, 0))),
                (0.1, False, _seg(500, 101, SYN | ACK, ts=ts(70, 10))),
                (0.1, True, _seg(101, 501, ACK, b"hello", ts=ts(110, 70))),
                (0.2, False, _seg(501, 106, ACK, b"A" * 10, ts=ts(170, 110))),
                (0.2, True, _seg(106, 511, ACK, ts=ts(210, 170))),  # pure ACK
                (0.3, False, _seg(511, 106, ACK, b"B" * 10, ts=ts(270, 210))),
            ]
        )

    assert exchange(True)[-1] == 3
    assert exchange(False)[-1] == 2


def test_packets_sharing_a_timestamp_tick_count_the_first_only():
    rounds = _rounds(
        [
            (0.0, True, _seg(100, 0, SYN, ts=(10, 0))),
            (0.0001, False, _seg(500, 101, SYN | ACK, ts=(70, 10))),
            (0.0002, True, _seg(101, 501, ACK, b"x", ts=(10, 70))),  # same tick as the SYN
            (0.0003, False, _seg(501, 101, ACK, b"y", ts=(71, 10))),  # echoes tick 10: only the SYN is sure
        ]
    )
    assert rounds[-1] == 1


def _from_pcap(path) -> list[TracedPacket]:
    out = []
    for frame in iter_capture(path):
        data = ip_payload(frame.linktype, frame.data)
        if data is not None:
            out.append(TracedPacket(frame.time, data))
    return out


def test_a_written_pcap_counts_the_same_as_the_live_trace(tmp_path):
    for name in ("tls12", "tls13-0rtt", "tfo-tls13"):
        run = run_sim(CATALOG[name], LinkConfig.from_rtt(0.08))
        pcap, keylog = write_capture(run, tmp_path)
        reread = VariantRun(run.variant, Trace(_from_pcap(pcap), keylog.read_text()), run.warmup_connections)
        live, disk = row_from_run(run), row_from_run(reread)
        assert live.as_dict() == disk.as_dict()
        assert len(tcp_flows(reread.trace.packets)) == 1 + run.warmup_connections


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    variant=st.sampled_from(sorted(CATALOG)),
    rtt_ms=st.integers(2, 400),
    jitter_fraction=st.sampled_from([0.0, 0.1, 0.4]),
    rate=st.sampled_from([float("inf"), 100e6, 2e6]),
    seed=st.integers(0, 2**20),
)
def test_rate_and_order_keeping_jitter_change_time_not_round_trips(variant, rtt_ms, jitter_fraction, rate, seed):
    delay = rtt_ms / 2000
    link = LinkConfig(delay_s=delay, jitter_s=delay * jitter_fraction, rate_bps=rate, seed=seed)
    row = row_from_run(run_sim(CATALOG[variant], link))
    assert row.round_trips == CATALOG[variant].expected_round_trips, row.causes
    assert row.causes == []
    assert row.ttfb_ms >= row.round_trips * rtt_ms * (1 - jitter_fraction) - 1e-6


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    variant=st.sampled_from(sorted(CATALOG)),
    rtt_ms=st.integers(2, 400),
    jitter_fraction=st.sampled_from([0.05, 0.2, 0.5]),
    seed=st.integers(0, 2**20),
)
def test_every_extra_round_trip_under_jitter_has_a_named_cause(variant, rtt_ms, jitter_fraction, seed):
    # netem's jitter reorders packets; a data segment that overtakes its SYN-ACK is dropped by the
    # client (RFC 793: no data before the SYN is known) and costs a retransmission.
    delay = rtt_ms / 2000
    link = LinkConfig(delay_s=delay, jitter_s=delay * jitter_fraction, jitter_reorders=True, seed=seed)
    row = row_from_run(run_sim(CATALOG[variant], link))
    expected = CATALOG[variant].expected_round_trips
    assert row.round_trips >= expected
    if row.round_trips > expected:
        assert row.causes


@settings(max_examples=2000)
@given(time=st.floats(allow_nan=True, allow_infinity=True)
       | st.integers(-10**9, 10**9).map(lambda half_us: half_us * 0.5e-6)  # exact ties, rounded to even
       | st.floats(0, 1e6))
def test_the_microsecond_grid_is_python_round_half_to_even(time):
    """on_microseconds rounds in floats (compiled, round() is a generic call); it must give
    exactly what round(time * 1e6) / 1e6 gives, ties and huge values included."""
    from handshake.analysis.report import on_microseconds

    try:
        expected = round(time * 1_000_000) / 1_000_000
    except (ValueError, OverflowError):
        expected = time
    got = on_microseconds(time)
    assert got == expected or (got != got and expected != expected)
