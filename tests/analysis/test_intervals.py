"""Bounded bookkeeping: merged ranges and number runs answer like the plain sets they replace,
and past their caps they stay small instead of growing with the connection."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from handshake.analysis.intervals import FirstSeenRanges, NumberSet, RecentSet

segments = st.lists(st.tuples(st.integers(0, 200), st.integers(1, 40)), max_size=30)


def _naive_first_seen(history, start, end):
    """When every byte of [start, end) had been seen: the first time byte ``start`` was."""
    seen = {}
    for s, e, t in history:
        for byte in range(s, e):
            seen.setdefault(byte, t)
    if all(byte in seen for byte in range(start, end)):
        return seen[start]
    return None


@settings(max_examples=300, deadline=None)
@given(segments)
def test_first_seen_ranges_answer_like_a_set_of_bytes(segs):
    ranges = FirstSeenRanges()
    history = []
    for time, (start, length) in enumerate(segs):
        end = start + length
        assert ranges.covered_since(start, end) == _naive_first_seen(history, start, end)
        ranges.add(start, end, float(time))
        history.append((start, end, float(time)))


def test_earliest_above_takes_only_accepted_tags():
    ranges = FirstSeenRanges()
    ranges.add(0, 10, 1.0, tag=5)
    ranges.add(10, 20, 2.0, tag=9)
    ranges.add(20, 30, 3.0, tag=7)
    assert ranges.earliest_above(5, lambda tag: tag < 8) == 3.0
    assert ranges.earliest_above(5, lambda tag: True) == 2.0
    assert ranges.earliest_above(25, lambda tag: True) is None


def test_an_in_order_stream_of_a_million_segments_keeps_a_bounded_list():
    ranges = FirstSeenRanges(max_pieces=64)
    for i in range(100_000):
        ranges.add(i * 10, i * 10 + 10, float(i))
    assert len(ranges) <= 64
    assert ranges.covered_since(999_990, 1_000_000) == 99_999.0  # recent data keeps its time
    assert ranges.covered_since(0, 10) is not None  # old data is still known to be old


def test_a_stream_full_of_holes_forgets_its_lowest_pieces():
    ranges = FirstSeenRanges(max_pieces=8)
    for i in range(100):
        ranges.add(i * 10, i * 10 + 5, float(i))
    assert len(ranges) <= 8 and ranges.covered_since(990, 995) == 99.0


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 100), max_size=60))
def test_number_set_answers_like_a_set(numbers):
    runs = NumberSet()
    plain = set()
    for n in numbers:
        assert (n in runs) == (n in plain)
        runs.add(n)
        plain.add(n)
    assert all(n in runs for n in plain) and not any(n in runs for n in range(101) if n not in plain)


def test_consecutive_numbers_are_one_run():
    runs = NumberSet(max_runs=4)
    for n in range(100_000):
        runs.add(n)
    assert len(runs._runs) == 1 and 99_999 in runs and 100_000 not in runs


def test_recent_set_forgets_the_oldest():
    recent = RecentSet(size=3)
    for key in "abcd":
        recent.add(key)
    assert "a" not in recent and all(k in recent for k in "bcd")
