"""tc-style values: every accepted spelling, and every refusal naming the value and the problem."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from handshake.errors import UsageError
from handshake.units import format_duration, parse_duration, parse_percent, parse_rate, parse_size


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("100ms", 0.1),
        ("1.5s", 1.5),
        ("250us", 0.00025),
        ("0.1ms", 0.0001),
        ("2sec", 2.0),
        ("2secs", 2.0),
        ("20msec", 0.02),
        ("20msecs", 0.02),
        ("7usec", 7e-6),
        ("7usecs", 7e-6),
        ("100MS", 0.1),  # tc matches units without regard to case
        (" 100 ms ", 0.1),
        ("1e2ms", 0.1),
        (".5s", 0.5),
        ("0", 0.0),
        ("0.0", 0.0),
        ("0ms", 0.0),
        ("-0", 0.0),
        ("+5ms", 0.005),
    ],
)
def test_parse_duration_accepts_tc_time_units(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("abc", "bad duration 'abc': expected a number with a unit such as 100ms, 1.5s, 250us"),
        ("", "bad duration '': expected a number with a unit"),
        ("   ", "bad duration '   ': expected a number with a unit"),
        ("nan", "bad duration 'nan'"),
        ("inf", "bad duration 'inf'"),
        ("infms", "bad duration 'infms'"),
        ("1.2.3ms", "bad duration '1.2.3ms'"),
        ("ms", "bad duration 'ms'"),
        ("-5ms", "duration must not be negative: '-5ms'"),
        ("100", "bad duration '100': add a unit such as 100ms (tc would read a bare number as microseconds)"),
        ("5m", "bad duration '5m': unknown unit 'm', expected us, ms or s"),
        ("5min", "bad duration '5min': unknown unit 'min'"),
        ("5ns", "bad duration '5ns': unknown unit 'ns'"),
        ("5%", "bad duration '5%': unknown unit '%'"),
        ("1e400s", "duration '1e400s' is too large"),
        ("1e999999999s", "duration '1e999999999s' is too large"),
    ],
)
def test_parse_duration_refuses_with_one_line(text: str, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_duration(text)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_parse_duration_names_the_value_in_errors() -> None:
    with pytest.raises(UsageError, match=r"^delay must not be negative: '-5ms'$"):
        parse_duration("-5ms", name="delay")
    with pytest.raises(UsageError, match=r"^bad jitter 'x'"):
        parse_duration("x", name="jitter")


@pytest.mark.parametrize("value", [5, 0.1, None, b"5ms"])
def test_parse_duration_wants_a_string(value: object) -> None:
    with pytest.raises(UsageError, match="expected a string"):
        parse_duration(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "fraction"),
    [
        ("1%", 0.01),
        ("0.5%", 0.005),
        ("100%", 1.0),
        ("0%", 0.0),
        ("0", 0.0),
        (" 2.5 % ", 0.025),
        ("1e-3%", 1e-5),
    ],
)
def test_parse_percent_gives_a_fraction(text: str, fraction: float) -> None:
    assert parse_percent(text) == fraction


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("150%", "loss 150% is over 100%"),
        ("100.001%", "loss 100.001% is over 100%"),
        ("-1%", "loss must not be negative: '-1%'"),
        ("1", "bad loss '1': add a percent sign, e.g. 1% (tc would read a bare number as a percentage)"),
        ("0.01", "bad loss '0.01': add a percent sign"),
        ("5x", "bad loss '5x': expected a percentage such as 1% or 0.5%"),
        ("%", "bad loss '%': expected a number with a unit"),
        ("", "bad loss ''"),
        ("nan%", "bad loss 'nan%'"),
        ("inf%", "bad loss 'inf%'"),
    ],
)
def test_parse_percent_refuses_with_one_line(text: str, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_percent(text, name="loss")
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize(
    ("text", "bits_per_second"),
    [
        ("10mbit", 10e6),
        ("1.5gbit", 1.5e9),
        ("500kbit", 500e3),
        ("64bit", 64.0),
        ("2tbit", 2e12),
        ("10Mbit", 10e6),
        ("1kibit", 1024.0),
        ("1mibit", 1024.0**2),
        ("1gibit", 1024.0**3),
        ("1tibit", 1024.0**4),
        # tc: "bps" units are BYTES per second
        ("100bps", 800.0),
        ("1kbps", 8e3),
        ("1mbps", 8e6),
        ("1MBps", 8e6),
        ("1gbps", 8e9),
        ("1tbps", 8e12),
        ("1kibps", 8 * 1024.0),
        ("1mibps", 8 * 1024.0**2),
    ],
)
def test_parse_rate_uses_tc_units(text: str, bits_per_second: float) -> None:
    assert parse_rate(text) == bits_per_second


@pytest.mark.parametrize("text", ["0", "0mbit", "0.0", "0bps"])
def test_a_zero_rate_means_no_limit(text: str) -> None:
    assert parse_rate(text) == math.inf


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("10", "bad rate '10': add a unit such as 10mbit (tc would read a bare number as bits per second)"),
        ("10mb", "bad rate '10mb': unknown unit 'mb', expected bit, kbit, mbit"),
        ("0xyz", "bad rate '0xyz': unknown unit 'xyz'"),
        ("-1mbit", "rate must not be negative: '-1mbit'"),
        ("fast", "bad rate 'fast': expected a number with a unit such as 10mbit"),
        ("", "bad rate ''"),
        ("inf", "bad rate 'inf'"),
        ("nanmbit", "bad rate 'nanmbit'"),
        ("1e400bit", "rate '1e400bit' is too large"),
    ],
)
def test_parse_rate_refuses_with_one_line(text: str, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_rate(text)
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize(
    ("text", "size"),
    [("1200", 1200), ("0", 0), ("64KB", 64_000), ("64kb", 64_000), ("16KiB", 16_384), ("1.5KB", 1_500),
     ("1MB", 1_000_000), ("2MiB", 2_097_152), (" 20 KB ", 20_000), ("100B", 100)],
)
def test_parse_size_reads_bytes_with_decimal_and_binary_multiples(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("20kq", "bad size '20kq': unknown unit 'kq', expected B, KB, MB, KiB or MiB"),
        ("1.5", "bad size '1.5': not a whole number of bytes"),
        ("0.1KiB", "bad size '0.1KiB': not a whole number of bytes"),
        ("-1KB", "size must not be negative: '-1KB'"),
        ("17MB", "size 17MB is over the 16,777,216-byte limit"),
        ("1e400", "size 1e400 is over"),
        ("big", "bad size 'big': expected a number with a unit such as 64KB"),
    ],
)
def test_parse_size_refuses_with_one_line(text: str, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_size(text)
    assert str(caught.value).startswith(message)


@given(st.integers(min_value=0, max_value=2**24))
def test_a_bare_byte_count_reads_back(size: int) -> None:
    assert parse_size(str(size)) == size == parse_size(f"{size}B")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.1, "100ms"),
        (1.5, "1.5s"),
        (0.00025, "250us"),
        (0.0003, "300us"),  # not 299.99999999999994us
        (1.0, "1s"),
        (0.001, "1ms"),
        (60.0, "60s"),
        (0.0, "0ms"),
        (-0.02, "-20ms"),
        (1e-9, "0.001us"),
    ],
)
def test_format_duration_picks_the_largest_unit(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize("seconds", [math.nan, math.inf, -math.inf])
def test_format_duration_refuses_non_finite(seconds: float) -> None:
    with pytest.raises(ValueError):
        format_duration(seconds)


@given(st.floats(min_value=0, max_value=1e6, allow_nan=False))
def test_format_then_parse_gives_the_duration_back(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds, rel=1e-11, abs=1e-300)
