"""netem-style values from the command line and scenario files: durations, percentages, rates, sizes.

The unit spellings are tc's (``tc(8)``, iproute2 ``get_time`` / ``get_rate64``), matched without
regard to case as tc does. Where tc guesses a unit for a bare number, we refuse instead: tc reads
``delay 100`` as 100 *microseconds* and ``rate 10`` as 10 *bits* per second, and nobody who types
those means that. A bare zero is unambiguous and is allowed everywhere.

Every parse error is a :class:`~handshake.errors.UsageError` whose one line names the value and
what is wrong with it. Numbers go through :class:`~decimal.Decimal`, so ``"0.1ms"`` is exactly the
float nearest 0.0001 s rather than ``0.1 / 1000`` with its rounding.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, Overflow, localcontext

from handshake.errors import UsageError

__all__ = ["parse_duration", "parse_percent", "parse_rate", "parse_size", "format_duration"]

_NUMBER_WITH_UNIT = re.compile(
    r"\s*(?P<number>[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*(?P<unit>[A-Za-z%]*)\s*"
)

# tc's time units, in seconds per unit.
_DURATION_UNITS: dict[str, Decimal] = {
    **dict.fromkeys(("s", "sec", "secs"), Decimal(1)),
    **dict.fromkeys(("ms", "msec", "msecs"), Decimal("1e-3")),
    **dict.fromkeys(("us", "usec", "usecs"), Decimal("1e-6")),
}

# tc's rate units, in bits per second per unit. "bps" is BYTES per second in tc (so "mbps" is
# megabytes, 8 Mbit/s); "bit" is bits. The "i" forms are binary (kibit = 1024 bit/s).
_RATE_UNITS: dict[str, Decimal] = {
    "bit": Decimal(1),
    "kbit": Decimal(10**3),
    "mbit": Decimal(10**6),
    "gbit": Decimal(10**9),
    "tbit": Decimal(10**12),
    "kibit": Decimal(2**10),
    "mibit": Decimal(2**20),
    "gibit": Decimal(2**30),
    "tibit": Decimal(2**40),
    "bps": Decimal(8),
    "kbps": Decimal(8 * 10**3),
    "mbps": Decimal(8 * 10**6),
    "gbps": Decimal(8 * 10**9),
    "tbps": Decimal(8 * 10**12),
    "kibps": Decimal(8 * 2**10),
    "mibps": Decimal(8 * 2**20),
    "gibps": Decimal(8 * 2**30),
    "tibps": Decimal(8 * 2**40),
}


def _split(text: object, name: str, expected: str) -> tuple[Decimal, str]:
    """(number, lower-case unit) of ``text``, or a UsageError that says what was expected; no
    value here may be negative."""
    if not isinstance(text, str):
        raise UsageError(f"bad {name} {text!r}: expected a string such as {expected}")
    match = _NUMBER_WITH_UNIT.fullmatch(text)
    if match is None:
        raise UsageError(f"bad {name} {text!r}: expected a number with a unit such as {expected}")
    number = Decimal(match["number"])
    if number < 0:
        raise UsageError(f"{name} must not be negative: {text!r}")
    return number, match["unit"].lower()


def _scaled(number: Decimal, scale: Decimal, name: str, text: str) -> float:
    """``number * scale`` as a float, or a UsageError when it does not fit in one."""
    with localcontext() as context:
        context.traps[Overflow] = False  # an overflow becomes Infinity, reported below
        result = float(number * scale)
    if not math.isfinite(result):
        raise UsageError(f"{name} {text!r} is too large")
    return abs(result)  # abs: "-0" is zero, not a negative zero


def parse_duration(text: str, name: str = "duration") -> float:
    """Seconds in ``text`` such as ``"100ms"``, ``"1.5s"``, ``"250us"`` (tc's time units).

    ``name`` is what the value is for (``"delay"``, ``"jitter"``) and appears in error messages.
    A bare ``"0"`` is zero; any other bare number is refused, because tc would read it as
    microseconds.
    """
    number, unit = _split(text, name, "100ms, 1.5s, 250us")
    if not unit:
        if number == 0:
            return 0.0
        raise UsageError(
            f"bad {name} {text!r}: add a unit such as {text.strip()}ms"
            f" (tc would read a bare number as microseconds)"
        )
    scale = _DURATION_UNITS.get(unit)
    if scale is None:
        raise UsageError(f"bad {name} {text!r}: unknown unit {unit!r}, expected us, ms or s")
    return _scaled(number, scale, name, text)


def parse_percent(text: str, name: str = "percentage") -> float:
    """The fraction 0..1 in ``text`` such as ``"1%"``, ``"0.5%"``, ``"100%"``; a bare ``"0"`` is 0.

    A bare non-zero number is refused: tc reads ``loss 1`` as 1 %, but to a Python user ``0.01``
    looks like a fraction, and the two readings differ a hundredfold.
    """
    number, unit = _split(text, name, "1% or 0.5%")
    if not unit:
        if number == 0:
            return 0.0
        raise UsageError(
            f"bad {name} {text!r}: add a percent sign, e.g. {text.strip()}%"
            f" (tc would read a bare number as a percentage)"
        )
    if unit != "%":
        raise UsageError(f"bad {name} {text!r}: expected a percentage such as 1% or 0.5%")
    if number > 100:
        raise UsageError(f"{name} {text.strip()} is over 100%")
    return _scaled(number, Decimal("0.01"), name, text)


def parse_rate(text: str, name: str = "rate") -> float:
    """Bits per second in ``text`` such as ``"10mbit"``, ``"1.5gbit"``, ``"500kbps"`` (tc's units).

    As in tc, ``bit`` units are bits and ``bps`` units are BYTES per second (``"1mbps"`` is
    8 Mbit/s); ``kibit``/``mibit``/... are binary multiples. A zero rate, bare ``"0"`` or with a
    unit, means "no limit" as netem's ``rate 0`` does, and returns ``math.inf`` (the value
    :class:`~handshake.net.link.LinkConfig` uses for an unlimited link). Any other bare number is
    refused, because tc would read it as bits per second.
    """
    number, unit = _split(text, name, "10mbit, 1.5gbit, 500kbit")
    if number == 0 and (not unit or unit in _RATE_UNITS):
        return math.inf
    if not unit:
        raise UsageError(
            f"bad {name} {text!r}: add a unit such as {text.strip()}mbit"
            f" (tc would read a bare number as bits per second)"
        )
    scale = _RATE_UNITS.get(unit)
    if scale is None:
        raise UsageError(
            f"bad {name} {text!r}: unknown unit {unit!r}, expected bit, kbit, mbit, gbit, tbit"
            f" (bits/s), bps, kbps, mbps, gbps (BYTES/s) or kibit, mibit, ... (binary)"
        )
    return _scaled(number, scale, name, text)


# Byte counts: decimal and binary multiples spelled out, so that "kb" is never a guess between
# tc's 1024 and everyone else's 1000.
_SIZE_UNITS: dict[str, int] = {
    "b": 1, "kb": 10**3, "mb": 10**6, "kib": 2**10, "mib": 2**20,
}


def parse_size(text: str, name: str = "size", *, maximum: int = 2**24) -> int:
    """Bytes in ``text`` such as ``"64KB"`` (64,000), ``"16KiB"`` (16,384), ``"1MB"`` or a bare
    ``"1200"``: a byte count has no unit to guess, so a bare number is bytes. Up to ``maximum``."""
    number, unit = _split(text, name, "64KB, 16KiB or 1200")
    scale = _SIZE_UNITS.get(unit or "b")
    if scale is None:
        raise UsageError(f"bad {name} {text!r}: unknown unit {unit!r}, expected B, KB, MB, KiB or MiB")
    size = number * scale
    if size != size.to_integral_value():
        raise UsageError(f"bad {name} {text!r}: not a whole number of bytes")
    if size > maximum:
        raise UsageError(f"{name} {text.strip()} is over the {maximum:,}-byte limit")
    return int(size)


def format_duration(seconds: float) -> str:
    """``seconds`` in the largest tc unit that keeps it >= 1: 0.1 -> "100ms", 1.5 -> "1.5s".

    The inverse of :func:`parse_duration` to 12 significant digits (enough to hide float noise
    such as 0.0003 s = 299.99999999999994 us). Zero is "0ms".
    """
    if not math.isfinite(seconds):
        raise ValueError(f"cannot format a duration of {seconds!r} seconds")
    sign = "-" if seconds < 0 else ""
    magnitude = abs(seconds)
    if magnitude == 0:
        return "0ms"
    if magnitude >= 1:
        value, unit = magnitude, "s"
    elif magnitude >= 1e-3:
        value, unit = magnitude * 1e3, "ms"
    else:
        value, unit = magnitude * 1e6, "us"
    return f"{sign}{value:.12g}{unit}"
