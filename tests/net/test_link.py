"""The link model, stated as tc-netem(8) and sch_netem.c state it."""

import math
import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from handshake.errors import UsageError
from handshake.net.link import (
    JITTER_DISTRIBUTIONS,
    NETEM_TABLE_MAX,
    PARETO_MIN,
    Link,
    LinkConfig,
    LinkDirection,
)

N = 20_000
FAST = settings(max_examples=60, deadline=None)


def within(observed: float, expected: float, n: int, inflation: float = 1.0) -> bool:
    """Is a sample fraction within 5 standard errors of a binomial proportion (x inflation)?"""
    sd = math.sqrt(expected * (1 - expected) / n * inflation)
    return abs(observed - expected) <= 5 * sd + 1e-12


def send_many(config: LinkConfig, n: int = N, size_bytes: int = 100) -> list[list[float]]:
    direction = LinkDirection(config, "c2s")
    return [direction.transmit(size_bytes, i * 1e-3) for i in range(n)]


# --- strategies ---------------------------------------------------------------------------------

fractions = st.sampled_from([0.0, 0.01, 0.1, 0.5, 1.0]) | st.floats(0, 1)
delays = st.floats(0, 0.5)
sends = st.lists(
    st.tuples(st.floats(0, 0.05), st.integers(0, 1500)),  # (gap since previous send, size)
    min_size=1,
    max_size=40,
)


@st.composite
def configs(draw: st.DrawFn, *, lossless: bool = False, rate: bool = True) -> LinkConfig:
    delay_s = draw(delays)
    return LinkConfig(
        delay_s=delay_s,
        jitter_s=draw(st.floats(0, 0.2)),
        jitter_distribution=draw(st.sampled_from(JITTER_DISTRIBUTIONS)),
        loss=0.0 if lossless else draw(fractions),
        duplicate=0.0 if lossless else draw(fractions),
        reorder=draw(fractions) if delay_s > 0 else 0.0,
        rate_bps=draw(st.sampled_from([math.inf, 1e6, 1e8])) if rate else math.inf,
        seed=draw(st.integers(0, 2**64)),
    )


def run(config: LinkConfig, schedule: list[tuple[float, int]]) -> list[tuple[float, int, list[float]]]:
    """(send time, size, arrivals) for each packet of a schedule of (gap, size)."""
    direction = LinkDirection(config, "c2s")
    now, out = 0.0, []
    for gap_s, size_bytes in schedule:
        now += gap_s
        out.append((now, size_bytes, direction.transmit(size_bytes, now)))
    return out


# --- arrival times ------------------------------------------------------------------------------


@FAST
@given(configs(), sends)
def test_no_packet_arrives_before_it_is_sent(config: LinkConfig, schedule: list) -> None:
    for now, size_bytes, arrivals in run(config, schedule):
        for arrival in arrivals:
            assert arrival >= now + size_bytes * 8 / config.rate_bps
            assert arrival >= 0


@FAST
@given(configs(), sends)
def test_a_delayed_packet_is_not_early_by_more_than_the_jitter(config: LinkConfig, schedule: list) -> None:
    low_s, _ = config.delay_range_s()
    if config.jitter_distribution == "uniform":
        assert low_s == max(0.0, config.delay_s - config.jitter_s)
    floor_s = 0.0 if config.reorder else low_s  # a reordered packet skips the delay
    for now, _, arrivals in run(config, schedule):
        for arrival in arrivals:
            assert arrival >= now + floor_s - 1e-12


@FAST
@given(configs(rate=False), sends)
def test_without_a_rate_no_packet_is_later_than_delay_plus_jitter_bound(config: LinkConfig, schedule: list) -> None:
    _, high_s = config.delay_range_s()
    for now, _, arrivals in run(config, schedule):
        for arrival in arrivals:
            assert arrival <= now + high_s + 1e-12


@FAST
@given(configs(lossless=True), sends)
def test_without_loss_or_duplication_every_packet_arrives_exactly_once(config: LinkConfig, schedule: list) -> None:
    assert all(len(arrivals) == 1 for _, _, arrivals in run(config, schedule))


@FAST
@given(delays, st.sampled_from([64e3, 1e6, 10e6, 1e9]), st.integers(0, 2**32), sends)
def test_a_rate_limit_keeps_order_and_spaces_packets_by_their_serialization_time(
    delay_s: float, rate_bps: float, seed: int, schedule: list
) -> None:
    config = LinkConfig(delay_s=delay_s, rate_bps=rate_bps, seed=seed)
    previous_arrival = -math.inf
    for now, size_bytes, arrivals in run(config, schedule):
        (arrival,) = arrivals
        serialization_s = size_bytes * 8 / rate_bps
        assert arrival >= now + delay_s + serialization_s - 1e-12
        assert arrival - previous_arrival >= serialization_s - 1e-9
        previous_arrival = arrival


def test_a_burst_queues_behind_the_bottleneck() -> None:
    # 1500 bytes at 12 Mbit/s take 1 ms on the wire: ten sent at once leave 1 ms apart.
    direction = LinkDirection(LinkConfig(delay_s=0.05, rate_bps=12e6), "c2s")
    arrivals = [direction.transmit(1500, 0.0)[0] for _ in range(10)]
    assert arrivals == pytest.approx([0.05 + 0.001 * k for k in range(1, 11)])
    # once the queue has drained, the next packet pays only its own serialization
    assert direction.transmit(1500, 1.0) == pytest.approx([1.051])


def test_without_jitter_every_packet_takes_exactly_the_delay() -> None:
    direction = LinkDirection(LinkConfig.from_rtt(0.2), "s2c")
    assert [direction.transmit(1200, t) for t in (0.0, 0.5, 0.5)] == [[0.1], [0.6], [0.6]]


def test_jitter_never_makes_a_delay_negative() -> None:
    config = LinkConfig(delay_s=0.001, jitter_s=0.1, jitter_distribution="normal", seed=3, jitter_reorders=True)
    arrivals = [a for (a,) in send_many(config, 2000)]
    assert min(a - i * 1e-3 for i, a in enumerate(arrivals)) == 0.0


# --- jitter distributions -----------------------------------------------------------------------
# These check netem's per-packet delay draw, so they let jitter reorder (jitter_reorders=True):
# keeping order would lift some delays to the packet ahead's.


def delays_of(config: LinkConfig, n: int = N) -> list[float]:
    return [arrival - i * 1e-3 for i, (arrival,) in enumerate(send_many(config, n))]


def test_uniform_jitter_spreads_evenly_over_delay_plus_or_minus_jitter() -> None:
    samples = delays_of(LinkConfig(delay_s=0.1, jitter_s=0.01, seed=1, jitter_reorders=True))
    assert 0.09 <= min(samples) < 0.0901 and 0.0999 < max(samples) < 0.11
    assert statistics.fmean(samples) == pytest.approx(0.1, abs=5 * 0.01 / math.sqrt(3 * N))


def test_normal_jitter_is_the_standard_deviation() -> None:
    samples = delays_of(LinkConfig(delay_s=0.1, jitter_s=0.01, jitter_distribution="normal", seed=1, jitter_reorders=True))
    assert statistics.fmean(samples) == pytest.approx(0.1, abs=5 * 0.01 / math.sqrt(N))
    assert statistics.stdev(samples) == pytest.approx(0.01, rel=0.05)
    assert 0.1 - NETEM_TABLE_MAX * 0.01 <= min(samples) and max(samples) <= 0.1 + NETEM_TABLE_MAX * 0.01


@pytest.mark.parametrize("distribution", ["pareto", "paretonormal"])
def test_pareto_jitter_has_mean_delay_and_a_long_right_tail(distribution: str) -> None:
    config = LinkConfig(delay_s=0.1, jitter_s=0.01, jitter_distribution=distribution, seed=1, jitter_reorders=True)
    samples = delays_of(config)
    assert statistics.fmean(samples) == pytest.approx(0.1, abs=0.0005)
    assert statistics.median(samples) < 0.1  # skewed: most packets a little early, a few very late
    assert max(samples) - 0.1 > 2 * (0.1 - min(samples))
    low_s, high_s = config.delay_range_s()
    assert low_s - 1e-12 <= min(samples) and max(samples) <= high_s + 1e-12


def test_pareto_jitter_is_never_earlier_than_two_thirds_of_the_jitter() -> None:
    # iproute2's pareto table is (u ** (-1/3) - 1.5) * 4/3, whose smallest value is -2/3.
    assert LinkConfig(delay_s=0.1, jitter_s=0.03, jitter_distribution="pareto", jitter_reorders=True).delay_range_s()[0] == (
        pytest.approx(0.1 + PARETO_MIN * 0.03)
    )
    samples = delays_of(LinkConfig(delay_s=0.1, jitter_s=0.03, jitter_distribution="pareto", seed=2, jitter_reorders=True), 5000)
    assert min(samples) >= 0.08 - 1e-12


# --- loss ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("loss", [0.01, 0.1, 0.5])
def test_bernoulli_loss_drops_the_configured_fraction(loss: float) -> None:
    lost = sum(not a for a in send_many(LinkConfig(loss=loss, seed=7)))
    assert within(lost / N, loss, N)


def test_loss_of_100_percent_drops_everything_and_0_percent_nothing() -> None:
    assert all(a == [] for a in send_many(LinkConfig(loss=1.0), 1000))
    assert all(len(a) == 1 for a in send_many(LinkConfig(loss=0.0), 1000))


def markov_inflation(p: float, r: float) -> float:
    """Variance inflation of a two-state chain's sample mean: (1 + rho) / (1 - rho), rho = 1-p-r."""
    rho = 1 - p - r
    return (1 + rho) / (1 - rho)


@pytest.mark.parametrize(
    ("p", "r", "one_minus_h", "one_minus_k", "stationary"),
    [
        (0.05, 0.5, 1.0, 0.0, 0.05 / 0.55),  # simple Gilbert: the bad state always loses
        (0.02, 0.3, 0.7, 0.01, 0.0625 * 0.7 + 0.9375 * 0.01),  # full Gilbert-Elliott
        (0.01, 0.1, 0.5, 0.0, 0.01 / 0.11 * 0.5),  # Gilbert
    ],
)
def test_gilbert_elliott_loses_its_stationary_fraction(
    p: float, r: float, one_minus_h: float, one_minus_k: float, stationary: float
) -> None:
    config = LinkConfig(ge_p=p, ge_r=r, ge_1_h=one_minus_h, ge_1_k=one_minus_k, seed=11)
    assert config.mean_loss == pytest.approx(stationary)
    lost = sum(not a for a in send_many(config))
    assert within(lost / N, stationary, N, markov_inflation(p, r))


def test_simple_gilbert_losses_come_in_bursts_of_mean_length_one_over_r() -> None:
    outcomes = [not a for a in send_many(LinkConfig(ge_p=0.02, ge_r=0.25, seed=5))]
    bursts, run_length = [], 0
    for lost in outcomes + [False]:
        if lost:
            run_length += 1
        elif run_length:
            bursts.append(run_length)
            run_length = 0
    assert statistics.fmean(bursts) == pytest.approx(1 / 0.25, rel=0.15)


def test_gemodel_with_only_p_is_bernoulli_as_the_man_page_says() -> None:
    # tc-netem(8): "To use the Bernoulli model, the only needed parameter is p while the others
    # will be set to the default values r=1-p, 1-h=1 and 1-k=0."
    config = LinkConfig(ge_p=0.1, seed=2)
    assert config.effective_ge_r == pytest.approx(0.9) and config.mean_loss == pytest.approx(0.1)
    outcomes = [not a for a in send_many(config)]
    assert within(sum(outcomes) / N, 0.1, N)
    after_a_loss = [b for a, b in zip(outcomes, outcomes[1:]) if a]
    assert within(sum(after_a_loss) / len(after_a_loss), 0.1, len(after_a_loss))  # no bursts


# --- duplication --------------------------------------------------------------------------------


@pytest.mark.parametrize("duplicate", [0.01, 0.2])
def test_duplicate_sends_the_configured_fraction_twice(duplicate: float) -> None:
    copies = [len(a) for a in send_many(LinkConfig(delay_s=0.01, duplicate=duplicate, seed=4))]
    assert set(copies) <= {1, 2}
    assert within(copies.count(2) / N, duplicate, N)


def test_a_duplicated_packet_survives_one_loss_as_in_netem() -> None:
    # sch_netem: count = 1 + dup; a loss event takes one away, and only a count of 2 is cloned.
    assert all(len(a) == 1 for a in send_many(LinkConfig(loss=1.0, duplicate=1.0), 1000))


def test_duplicate_and_loss_combine_as_in_netem() -> None:
    # The clone re-enters netem and meets its own loss event: P(none) = (1-d)L, P(two) = d(1-L)^2.
    d, loss = 0.3, 0.2
    copies = [len(a) for a in send_many(LinkConfig(loss=loss, duplicate=d, seed=9))]
    assert within(copies.count(0) / N, (1 - d) * loss, N)
    assert within(copies.count(2) / N, d * (1 - loss) ** 2, N)


# --- reorder ------------------------------------------------------------------------------------


def test_reorder_sends_that_fraction_without_the_delay() -> None:
    config = LinkConfig(delay_s=0.05, reorder=0.25, seed=8)
    undelayed = sum(a == [i * 1e-3] for i, a in enumerate(send_many(config)))
    assert within(undelayed / N, 0.25, N)


def test_a_reordered_packet_overtakes_the_ones_sent_before_it() -> None:
    direction = LinkDirection(LinkConfig(delay_s=0.1, reorder=0.5, seed=1), "c2s")
    arrivals = [direction.transmit(100, i * 0.01)[0] for i in range(50)]
    assert arrivals != sorted(arrivals)


# --- determinism and independence ----------------------------------------------------------------

MIXED = LinkConfig(
    delay_s=0.02, jitter_s=0.005, jitter_distribution="paretonormal", loss=0.05,
    duplicate=0.05, reorder=0.05, rate_bps=5e6, seed=42, jitter_reorders=True,
)


@FAST
@given(configs(), sends)
def test_the_same_seed_and_calls_give_the_same_arrivals(config: LinkConfig, schedule: list) -> None:
    assert run(config, schedule) == run(config, schedule)


def test_another_seed_gives_other_arrivals() -> None:
    other = LinkConfig(**{**MIXED.__dict__, "seed": 43})
    assert send_many(MIXED, 200) == send_many(MIXED, 200)
    assert send_many(MIXED, 200) != send_many(other, 200)


def test_the_two_directions_draw_independently() -> None:
    link = Link(MIXED)
    c2s = [link.c2s.transmit(500, i * 1e-3) for i in range(200)]
    s2c = [link.s2c.transmit(500, i * 1e-3) for i in range(200)]
    assert c2s != s2c
    # what the client sends does not change what the server's direction decides
    alone = LinkDirection(MIXED, "s2c")
    assert [alone.transmit(500, i * 1e-3) for i in range(200)] == s2c


def test_the_two_directions_lose_packets_independently() -> None:
    link = Link(LinkConfig(loss=0.5, seed=6))
    both = [(not link.c2s.transmit(100, 0.0), not link.s2c.transmit(100, 0.0)) for _ in range(N)]
    assert within(sum(a and b for a, b in both) / N, 0.25, N)


# --- configuration ------------------------------------------------------------------------------


def test_from_rtt_splits_the_rtt_into_two_equal_delays() -> None:
    config = LinkConfig.from_rtt(0.2, loss=0.01)
    assert config.delay_s == 0.1 and config.rtt_s == 0.2 and config.loss == 0.01
    with pytest.raises(TypeError):
        LinkConfig.from_rtt(0.2, delay_s=0.1)
    with pytest.raises(UsageError, match="rtt must not be negative"):
        LinkConfig.from_rtt(-0.2)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"delay_s": -0.001}, "delay must not be negative"),
        ({"delay_s": math.nan}, "delay must be a finite number of seconds"),
        ({"delay_s": math.inf}, "delay must be a finite number of seconds"),
        ({"delay_s": "100ms"}, "delay must be a finite number of seconds"),
        ({"jitter_s": -1.0}, "jitter must not be negative"),
        ({"jitter_distribution": "gaussian"}, "unknown jitter distribution 'gaussian': expected one of uniform"),
        ({"loss": 1.5}, "loss 150% is over 100%"),
        ({"loss": -0.1}, "loss must not be negative"),
        ({"loss": math.nan}, "loss must be a fraction from 0 to 1"),
        ({"duplicate": 2.0}, "duplicate 200% is over 100%"),
        ({"delay_s": 0.01, "reorder": 1.01}, "reorder 101% is over 100%"),
        ({"reorder": 0.1}, "reorder needs a delay"),
        ({"reorder": 0.1, "jitter_s": 0.01}, "reorder needs a delay"),
        ({"ge_p": 1.2}, "ge_p 120% is over 100%"),
        ({"ge_p": 0.1, "ge_r": -0.5}, "ge_r must not be negative"),
        ({"ge_p": 0.1, "ge_1_h": 3.0}, "ge_1_h 300% is over 100%"),
        ({"ge_r": 0.5}, "ge_r, ge_1_h and ge_1_k need ge_p"),
        ({"ge_1_k": 0.01}, "ge_r, ge_1_h and ge_1_k need ge_p"),
        ({"ge_p": 0.1, "loss": 0.1}, "give either loss or a Gilbert-Elliott model"),
        ({"rate_bps": 0}, "rate must be a positive number"),
        ({"rate_bps": -1e6}, "rate must be a positive number"),
        ({"rate_bps": math.nan}, "rate must be a positive number"),
        ({"seed": 1.5}, "seed must be an integer"),
    ],
)
def test_bad_settings_are_usage_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(UsageError, match=f"^{message}"):
        LinkConfig(**kwargs)


def test_describe_always_gives_rtt_and_only_meaningful_keys() -> None:
    assert LinkConfig().describe() == {"rtt_ms": 0.0, "delay_ms": 0.0}
    assert LinkConfig.from_rtt(0.1).describe() == {"rtt_ms": 100.0, "delay_ms": 50.0}
    assert MIXED.describe() == {
        "rtt_ms": 40.0, "delay_ms": 20.0, "jitter_ms": 5.0, "jitter_distribution": "paretonormal", "jitter_reorders": True,
        "loss_pct": 5.0, "rate_mbit": 5.0, "reorder_pct": 5.0, "duplicate_pct": 5.0, "seed": 42,
    }


def test_describe_reports_the_gilbert_elliott_long_run_loss() -> None:
    described = LinkConfig.from_rtt(0.1, ge_p=0.05, ge_r=0.5).describe()
    assert described["loss_model"] == "gemodel"
    assert described["loss_pct"] == pytest.approx(100 * 0.05 / 0.55, abs=1e-6)
    assert (described["ge_p_pct"], described["ge_r_pct"], described["ge_1_h_pct"], described["ge_1_k_pct"]) == (
        5.0, 50.0, 100.0, 0.0,
    )


def test_a_negative_packet_size_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        LinkDirection(LinkConfig(), "c2s").transmit(-1, 0.0)


def test_jitter_keeps_packet_order_unless_asked_to_reorder():
    from handshake.net.link import LinkConfig, LinkDirection

    def arrivals(reorders: bool) -> list[float]:
        link = LinkDirection(LinkConfig(delay_s=0.05, jitter_s=0.02, jitter_reorders=reorders, seed=3), "c2s")
        return [link.transmit(100, i * 0.0001)[0] for i in range(500)]

    in_order = arrivals(False)
    assert in_order == sorted(in_order)
    netem = arrivals(True)
    assert netem != sorted(netem)  # netem's own jitter lets packets overtake each other
