"""Ranges on the command line: RTTs `A:B` for a budget's search, `A:B:STEP` for a sweep; losses
`A:B:STEP` (percentages) for a sweep against loss."""

from __future__ import annotations

from handshake.errors import UsageError
from handshake.units import parse_duration, parse_percent

MAX_SWEEP_POINTS = 10_000


def parse_rtt_range(text: str, *, with_step: bool) -> tuple[float, float, float | None]:
    """(low_s, high_s, step_s); step is None without one. Errors name the part that is wrong."""
    parts = text.split(":")
    if len(parts) != (3 if with_step else 2):
        shape = "A:B:STEP, e.g. 10ms:300ms:10ms" if with_step else "A:B, e.g. 10ms:300ms"
        raise UsageError(f"bad RTT range {text!r}: expected {shape}")
    low = parse_duration(parts[0], "rtt range start")
    high = parse_duration(parts[1], "rtt range end")
    if high < low:
        raise UsageError(f"bad RTT range {text!r}: the end is below the start")
    step = None
    if with_step:
        step = parse_duration(parts[2], "rtt range step")
        if step <= 0:
            raise UsageError(f"bad RTT range {text!r}: the step must be above zero")
        if (high - low) / step + 1 > MAX_SWEEP_POINTS:
            raise UsageError(f"RTT range {text!r} has more than {MAX_SWEEP_POINTS} points")
    return low, high, step


def rtt_points(low_s: float, high_s: float, step_s: float) -> list[float]:
    """low, low+step, ... up to high (inclusive within rounding), in seconds."""
    count = int((high_s - low_s) / step_s + 1e-9) + 1
    return [round(low_s + i * step_s, 9) for i in range(count)]


def parse_loss_range(text: str) -> list[float]:
    """The losses (fractions) of ``0%:5%:1%``: start, start+step, ... up to the end. Errors name
    the part that is wrong."""
    parts = text.split(":")
    if len(parts) != 3:
        raise UsageError(f"bad loss range {text!r}: expected A:B:STEP, e.g. 0%:5%:1%")
    low = parse_percent(parts[0], "loss range start")
    high = parse_percent(parts[1], "loss range end")
    step = parse_percent(parts[2], "loss range step")
    if high < low:
        raise UsageError(f"bad loss range {text!r}: the end is below the start")
    if high >= 1:
        raise UsageError(f"bad loss range {text!r}: a loss of 100 % or more lets nothing through")
    if step <= 0:
        raise UsageError(f"bad loss range {text!r}: the step must be above zero")
    if (high - low) / step + 1 > MAX_SWEEP_POINTS:
        raise UsageError(f"loss range {text!r} has more than {MAX_SWEEP_POINTS} points")
    return rtt_points(low, high, step)
