"""The netem-style link model: when does a packet arrive, if at all, and in how many copies.

Both engines use this one model (the virtual-time engine, and the kernel TUN forwarder on the
monotonic clock), so it knows about neither: time is an argument, and the answer is a list of
arrival times. It follows ``tc-netem(8)`` and the kernel's ``sch_netem.c`` wherever they decide a
rule, and says so where it departs from them.

Per packet, in netem's order:

1. **duplicate** -- netem first decides whether to make a second copy; then one **loss** event
   may remove one copy, and the duplicate re-enters the qdisc, where it meets its own loss event
   (``netem_enqueue``: ``count = 1 + dup; if (loss_event) --count;`` then the clone is enqueued
   again). So with duplication a packet survives its first loss, and the second copy can be lost
   by itself. Loss is Bernoulli or netem's Gilbert-Elliott model (``loss gemodel p r 1-h 1-k``).
2. **rate** -- serialization at ``rate_bps``: the link is busy until the previous packet has
   left, so queueing delay accumulates and each packet takes ``size * 8 / rate_bps`` seconds.
3. **delay** + **jitter** sampled from the configured distribution, clamped at zero.
4. **reorder** -- with probability ``reorder`` a packet skips the delay (netem: "to use
   reordering, a delay option must be specified"; reordered packets are sent immediately).

Departures from netem: rate is modeled as a bottleneck before the delay line (as Mahimahi's
``mm-link`` inside ``mm-delay``), while netem folds the transmission time into the time to send;
the two agree when there is no jitter, but with jitter netem's rate never reorders and this model
can. A reordered packet here still pays its serialization time. Correlations (``delay 10ms 5ms
25%``), ``gap``, corruption, ECN marking, slotting and netem's queue limit are not modeled.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

from handshake.errors import UsageError

__all__ = ["JITTER_DISTRIBUTIONS", "LinkConfig", "LinkDirection", "Link"]

JITTER_DISTRIBUTIONS = ("uniform", "normal", "pareto", "paretonormal")
"""netem's jitter distributions: uniform is the default, the others are iproute2's tables."""

NETEM_TABLE_MAX = 32767 / 8192
"""netem's distribution tables hold int16 values scaled by NETEM_DIST_SCALE (8192), so no sample
exceeds about 4 jitters from the delay."""

PARETO_MIN = -2 / 3
"""The smallest pareto sample: iproute2's table is ``(u ** (-1/3) - 1.5) * 4/3`` (shape 3, mean
removed), which is -2/3 at u = 1."""

_STANDARD_NORMAL = NormalDist()


def _check_seconds(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UsageError(f"{name} must be a finite number of seconds, got {value!r}")
    if value < 0:
        raise UsageError(f"{name} must not be negative: {value!r} s")


def _check_fraction(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise UsageError(f"{name} must be a fraction from 0 to 1, got {value!r}")
    if value < 0:
        raise UsageError(f"{name} must not be negative: {value * 100:g}%")
    if value > 1:
        raise UsageError(f"{name} {value * 100:g}% is over 100%")


@dataclass(frozen=True)
class LinkConfig:
    """One direction's netem settings; both directions of a link normally share one config.

    Fractions are 0..1 (``parse_percent`` gives them), times are seconds, rates bits per second.
    """

    delay_s: float = 0.0
    """One-way delay (netem ``delay``); the path RTT is twice this."""
    jitter_s: float = 0.0
    """netem's jitter: uniform gives delay +- jitter, normal uses it as the standard deviation,
    pareto and paretonormal scale netem's tables by it."""
    jitter_distribution: str = "uniform"
    """One of JITTER_DISTRIBUTIONS (netem ``distribution``)."""
    jitter_reorders: bool = False
    """netem draws each packet's delay on its own, so jitter lets a packet overtake the one sent
    a microsecond before it — a SYN-ACK overtaken by the data behind it costs TFO an RTO. Real
    queues keep order, so by default a packet never arrives before the one sent ahead of it
    (what netem does once a ``rate`` is set). True restores netem's reordering jitter."""
    loss: float = 0.0
    """Bernoulli loss probability per packet (netem ``loss random``)."""
    ge_p: float | None = None
    """Gilbert-Elliott: probability of moving from the good to the bad state (``loss gemodel p``).
    None means no GE model; setting it replaces Bernoulli loss."""
    ge_r: float | None = None
    """GE: probability of moving from bad back to good; None means netem's default, 1 - p,
    which makes the model Bernoulli with loss p."""
    ge_1_h: float = 1.0
    """GE: loss probability in the bad state (netem ``1-h``, default 100%)."""
    ge_1_k: float = 0.0
    """GE: loss probability in the good state (netem ``1-k``, default 0%)."""
    rate_bps: float = math.inf
    """Bottleneck rate in bits per second; math.inf is no limit (netem without ``rate``)."""
    reorder: float = 0.0
    """Probability that a packet skips the delay (netem ``reorder``, which needs a delay)."""
    duplicate: float = 0.0
    """Probability that a packet is sent twice (netem ``duplicate``)."""
    seed: int = 0
    """Seeds every random choice; the same seed and calls give the same arrivals."""

    def __post_init__(self) -> None:
        _check_seconds("delay", self.delay_s)
        _check_seconds("jitter", self.jitter_s)
        if self.jitter_distribution not in JITTER_DISTRIBUTIONS:
            raise UsageError(
                f"unknown jitter distribution {self.jitter_distribution!r}:"
                f" expected one of {', '.join(JITTER_DISTRIBUTIONS)}"
            )
        for name in ("loss", "reorder", "duplicate", "ge_1_h", "ge_1_k"):
            _check_fraction(name, getattr(self, name))
        if self.ge_p is None:
            if self.ge_r is not None or self.ge_1_h != 1.0 or self.ge_1_k != 0.0:
                raise UsageError(
                    "ge_r, ge_1_h and ge_1_k need ge_p (netem: loss gemodel p [r [1-h [1-k]]])"
                )
        else:
            _check_fraction("ge_p", self.ge_p)
            if self.loss:
                raise UsageError("give either loss or a Gilbert-Elliott model (ge_p), not both")
            if self.ge_r is not None:
                _check_fraction("ge_r", self.ge_r)
        rate = self.rate_bps
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not rate > 0:
            raise UsageError(
                f"rate must be a positive number of bits per second (math.inf for no limit),"
                f" got {rate!r}"
            )
        if self.reorder and not self.delay_s:
            raise UsageError(
                "reorder needs a delay: netem reorders by sending some packets without the delay"
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise UsageError(f"seed must be an integer, got {self.seed!r}")

    @classmethod
    def from_rtt(cls, rtt_s: float, **kw: Any) -> LinkConfig:
        """A link whose path RTT is ``rtt_s``: two equal one-way delays of ``rtt_s / 2``.

        Other settings (jitter, loss, ...) apply to each direction, as netem on both interfaces.
        """
        if "delay_s" in kw:
            raise TypeError("from_rtt() sets delay_s from rtt_s; pass one or the other")
        _check_seconds("rtt", rtt_s)
        return cls(delay_s=rtt_s / 2, **kw)

    @property
    def rtt_s(self) -> float:
        """The path round-trip time without jitter or queueing: two one-way delays."""
        return 2 * self.delay_s

    @property
    def gilbert_elliott(self) -> bool:
        """True when loss follows netem's Gilbert-Elliott model rather than Bernoulli."""
        return self.ge_p is not None

    @property
    def effective_ge_r(self) -> float | None:
        """GE's bad-to-good probability, with iproute2's default ``r = 1 - p`` filled in."""
        if self.ge_p is None:
            return None
        return 1.0 - self.ge_p if self.ge_r is None else self.ge_r

    @property
    def mean_loss(self) -> float:
        """The long-run fraction of packets (copies) lost: ``loss``, or the GE stationary rate.

        GE spends p / (p + r) of packets in the bad state and loses 1-h of those and 1-k of the
        rest; with p + r = 0 it never leaves the good state it starts in.
        """
        if self.ge_p is None:
            return self.loss
        p, r = self.ge_p, self.effective_ge_r
        assert r is not None
        bad = p / (p + r) if p + r else 0.0
        return bad * self.ge_1_h + (1 - bad) * self.ge_1_k

    def delay_range_s(self) -> tuple[float, float]:
        """(min, max) one-way delay before queueing, over every jitter sample netem can draw."""
        low, high = {
            "uniform": (-1.0, 1.0),
            "normal": (-NETEM_TABLE_MAX, NETEM_TABLE_MAX),
            "pareto": (PARETO_MIN, NETEM_TABLE_MAX),
            "paretonormal": ((-NETEM_TABLE_MAX + 3 * PARETO_MIN) / 4, NETEM_TABLE_MAX),
        }[self.jitter_distribution]
        return (
            max(0.0, self.delay_s + low * self.jitter_s),
            max(0.0, self.delay_s + high * self.jitter_s),
        )

    def describe(self) -> dict[str, Any]:
        """The settings for JSON output: ``rtt_ms`` always, other keys only when they matter."""
        out: dict[str, Any] = {"rtt_ms": _round(self.rtt_s * 1e3)}
        out["delay_ms"] = _round(self.delay_s * 1e3)
        if self.jitter_s:
            out["jitter_ms"] = _round(self.jitter_s * 1e3)
            out["jitter_distribution"] = self.jitter_distribution
            if self.jitter_reorders:
                out["jitter_reorders"] = True
        ge_r = self.effective_ge_r
        if self.ge_p is not None and ge_r is not None:
            out["loss_model"] = "gemodel"
            out["ge_p_pct"] = _round(self.ge_p * 100)
            out["ge_r_pct"] = _round(ge_r * 100)
            out["ge_1_h_pct"] = _round(self.ge_1_h * 100)
            out["ge_1_k_pct"] = _round(self.ge_1_k * 100)
        if self.mean_loss:
            out["loss_pct"] = _round(self.mean_loss * 100)
        if math.isfinite(self.rate_bps):
            out["rate_mbit"] = _round(self.rate_bps / 1e6)
        if self.reorder:
            out["reorder_pct"] = _round(self.reorder * 100)
        if self.duplicate:
            out["duplicate_pct"] = _round(self.duplicate * 100)
        if self.jitter_s or self.gilbert_elliott or self.loss or self.reorder or self.duplicate:
            out["seed"] = self.seed
        return out


def _round(value: float) -> float:
    """Hide float noise (0.1 * 3 = 0.30000000000000004) in reported numbers."""
    return round(value, 6)


class LinkDirection:
    """One direction of a link ("c2s" or "s2c"), with its own random stream and bottleneck.

    The stream is seeded from ``config.seed`` and ``label``, so the two directions draw
    independently and each is reproducible on its own: what one direction carries never changes
    what the other decides.
    """

    def __init__(self, config: LinkConfig, label: str) -> None:
        self.config = config
        self.label = label
        # A str seed is hashed with SHA-512 by random.seed (version 2): stable across processes,
        # unlike hash(), which PYTHONHASHSEED randomizes.
        self._rng = random.Random(f"handshake.net.link/{config.seed}/{label}")
        self._ge_bad = False  # Gilbert-Elliott state; netem starts in the good state
        self._busy_until_s = -math.inf  # when the bottleneck has sent the last packet it took
        self._last_arrival_s = -math.inf  # keeps order when jitter must not reorder
        self._ge_r = config.effective_ge_r or 0.0  # only read when ge_p is set

    def __repr__(self) -> str:
        return f"LinkDirection({self.config!r}, {self.label!r})"

    def transmit(self, size_bytes: int, now: float) -> list[float]:
        """Arrival times of a ``size_bytes`` packet sent at ``now``: [] if lost, two if duplicated.

        Call in send order (``now`` never decreasing); the times are not sorted.
        """
        if size_bytes < 0:
            raise ValueError(f"packet size must not be negative: {size_bytes}")
        duplicated = bool(self.config.duplicate) and self._chance(self.config.duplicate)
        copies = 2 if duplicated else 1
        if self._loss_event():
            copies -= 1  # netem: a loss removes one copy; a duplicated packet still goes once
        if copies == 2 and self._loss_event():
            copies -= 1  # netem re-enqueues the clone, which meets a loss event of its own
        return [self._deliver(size_bytes, now) for _ in range(copies)]

    def _chance(self, probability: float) -> bool:
        return self._rng.random() < probability

    def _loss_event(self) -> bool:
        """netem's ``loss_event``: Bernoulli, or one step of the Gilbert-Elliott chain.

        As ``loss_gilb_ell`` does, the state moves first and the packet is then lost with the
        loss probability of the state it was sent in.
        """
        config = self.config
        if config.ge_p is None:
            return bool(config.loss) and self._chance(config.loss)
        if not self._ge_bad:
            if self._chance(config.ge_p):
                self._ge_bad = True
            return self._chance(config.ge_1_k)
        if self._chance(self._ge_r):
            self._ge_bad = False
        return self._chance(config.ge_1_h)

    def _deliver(self, size_bytes: int, now: float) -> float:
        """Arrival time of one copy that survived loss: serialize, then delay (or reorder)."""
        config = self.config
        departure_s = now
        if math.isfinite(config.rate_bps):
            departure_s = max(now, self._busy_until_s) + size_bytes * 8 / config.rate_bps
            self._busy_until_s = departure_s
        if config.reorder and self._chance(config.reorder):
            return departure_s
        arrival_s = departure_s + self._sample_delay_s()
        if not config.jitter_reorders:
            arrival_s = max(arrival_s, self._last_arrival_s)
            self._last_arrival_s = arrival_s
        return arrival_s

    def _sample_delay_s(self) -> float:
        """netem's ``tabledist(latency, jitter, dist)``, continuous rather than a 4096-row table."""
        config = self.config
        if not config.jitter_s:
            return config.delay_s
        u = self._rng.random()
        distribution = config.jitter_distribution
        if distribution == "uniform":
            unit = 2 * u - 1
        elif distribution == "normal":
            unit = _normal(u)
        elif distribution == "pareto":
            unit = _pareto(u)
        else:
            # iproute2's paretonormal.c averages the two tables row by row: (normal + 3 pareto) / 4.
            unit = min(NETEM_TABLE_MAX, (_normal(u) + 3 * _pareto(u)) / 4)
        return max(0.0, config.delay_s + unit * config.jitter_s)


def _normal(u: float) -> float:
    """Standard normal quantile of ``u``, clipped to netem's table range."""
    if u <= 0.0:
        return -NETEM_TABLE_MAX
    return max(-NETEM_TABLE_MAX, min(NETEM_TABLE_MAX, _STANDARD_NORMAL.inv_cdf(u)))


def _pareto(u: float) -> float:
    """iproute2's pareto table at quantile ``u``: shape 3, mean 0, capped at the int16 limit."""
    return min(NETEM_TABLE_MAX, ((1.0 - u) ** (-1 / 3) - 1.5) * 4 / 3)


class Link:
    """Both directions of one link: ``c2s`` (client to server) and ``s2c``."""

    def __init__(self, config: LinkConfig) -> None:
        self.config = config
        self.c2s = LinkDirection(config, "c2s")
        self.s2c = LinkDirection(config, "s2c")
