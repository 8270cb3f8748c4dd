"""Bounded bookkeeping for long connections: byte ranges seen once, numbers seen once.

A capture may hold a connection of millions of packets; what the analysis remembers about it
must not grow with them. Both structures here merge what they hold: a range of sequence space
(or a run of packet numbers) costs one entry however many packets covered it.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from typing import Any, Final, Generic, TypeVar

Tag = TypeVar("Tag")

MAX_PIECES: Final = 1024
"""Pieces a ``FirstSeenRanges`` keeps before it merges its lowest neighbours."""


def _index_after(entries: list[Any], value: int) -> int:
    """``bisect_right`` by each entry's start (``entries`` is sorted by it): the index of the first
    entry that starts above ``value``. Written out because bisect's ``key`` calls back into Python
    for every comparison; new entries mostly go last, so that is tried first."""
    high = len(entries)
    if not high or entries[high - 1][0] <= value:
        return high
    low = 0
    while low < high:
        middle = (low + high) // 2
        if value < entries[middle][0]:
            high = middle
        else:
            low = middle + 1
    return low


class FirstSeenRanges(Generic[Tag]):
    """Disjoint ranges [start, end) of one sequence space, each with when it was first seen and a
    tag of the packet that first carried it (e.g. its TCP TSval).

    Past ``max_pieces`` the lowest two adjacent pieces merge and keep the earlier time, so memory
    stays bounded and only the "first sent at" of very old data loses precision (a
    retransmission of it is still recognised as one).
    """

    def __init__(self, max_pieces: int = MAX_PIECES) -> None:
        self._pieces: list[tuple[int, int, float, Tag | None]] = []  # sorted by start, disjoint
        self._max = max(2, max_pieces)

    def __len__(self) -> int:
        return len(self._pieces)

    def __iter__(self) -> Iterator[tuple[int, int, float, Tag | None]]:
        """(start, end, first seen, tag) of each piece, in order."""
        return iter(self._pieces)

    def covered_since(self, start: int, end: int) -> float | None:
        """When [start, end) had all been seen already: the time its first byte was first seen."""
        pieces = self.pieces_over(start, end)
        return None if pieces is None else pieces[0][2]

    def pieces_over(self, start: int, end: int) -> list[tuple[int, int, float, Tag | None]] | None:
        """The pieces that hold [start, end), in order; None unless all of it has been seen."""
        pieces = self._pieces
        index = _index_after(pieces, start) - 1
        if index < 0 or pieces[index][1] <= start:
            return None
        over = [pieces[index]]
        position = pieces[index][1]
        index += 1
        while position < end:
            if index >= len(pieces) or pieces[index][0] > position:
                return None
            over.append(pieces[index])
            position = max(position, pieces[index][1])
            index += 1
        return over

    def earliest_above(self, start: int, accept: Callable[[Tag | None], bool]) -> float | None:
        """The earliest first-seen time among pieces beginning above ``start`` whose tag
        ``accept`` takes; None if there is none."""
        pieces = self._pieces
        index = _index_after(pieces, start)
        best = None
        for _, _, time, tag in pieces[index:]:
            if accept(tag) and (best is None or time < best):
                best = time
        return best

    def add(self, start: int, end: int, time: float, tag: Tag | None = None) -> None:
        """Remember the parts of [start, end) not seen before as first seen now."""
        if end <= start:
            return
        pieces = self._pieces
        index = _index_after(pieces, start) - 1
        if index < 0 or pieces[index][1] <= start:
            index += 1
        position, gaps = start, []
        while index < len(pieces) and pieces[index][0] < end:
            piece_start, piece_end = pieces[index][0], pieces[index][1]
            if piece_start > position:
                gaps.append((position, piece_start))
            position = max(position, piece_end)
            index += 1
        if position < end:
            gaps.append((position, end))
        for gap_start, gap_end in gaps:
            pieces.insert(_index_after(pieces, gap_start), (gap_start, gap_end, time, tag))
        while len(pieces) > self._max:
            self._shrink()

    def _shrink(self) -> None:
        pieces = self._pieces
        for i in range(len(pieces) - 1):
            a, b = pieces[i], pieces[i + 1]
            if a[1] == b[0]:
                earlier = a if a[2] <= b[2] else b
                pieces[i:i + 2] = [(a[0], b[1], earlier[2], earlier[3])]
                return
        del pieces[0]  # no neighbours touch (a corrupt stream full of holes): forget the lowest


class NumberSet:
    """A set of non-negative integers kept as merged runs: packet numbers, which come mostly in
    order, cost one run however many there are. Past ``max_runs`` the lowest runs are forgotten."""

    def __init__(self, max_runs: int = MAX_PIECES) -> None:
        self._runs: list[list[int]] = []  # sorted, disjoint, non-adjacent [low, high]
        self._max = max(1, max_runs)

    def __contains__(self, number: int) -> bool:
        runs = self._runs
        index = _index_after(runs, number) - 1
        return index >= 0 and runs[index][1] >= number

    def missing_in(self, low: int, high: int) -> bool:
        """Whether some number from ``low`` to ``high`` (inclusive) is not in the set."""
        runs = self._runs
        index = _index_after(runs, low) - 1
        return index < 0 or runs[index][1] < high

    def add(self, number: int) -> None:
        runs = self._runs
        index = _index_after(runs, number) - 1
        if index >= 0 and runs[index][1] >= number:
            return
        joins_left = index >= 0 and runs[index][1] == number - 1
        joins_right = index + 1 < len(runs) and runs[index + 1][0] == number + 1
        if joins_left and joins_right:
            runs[index][1] = runs[index + 1][1]
            del runs[index + 1]
        elif joins_left:
            runs[index][1] = number
        elif joins_right:
            runs[index + 1][0] = number
        else:
            runs.insert(index + 1, [number, number])
            if len(runs) > self._max:
                del runs[0]


class RecentSet:
    """The last ``size`` distinct keys added (FIFO): enough to spot a duplicated packet, which
    arrives close behind its original, without remembering every packet of a connection."""

    def __init__(self, size: int = 1024) -> None:
        self._keys: dict[Hashable, None] = {}
        self._size = size

    def __contains__(self, key: Hashable) -> bool:
        return key in self._keys

    def add(self, key: Hashable) -> None:
        keys = self._keys
        if key in keys:
            return
        keys[key] = None
        if len(keys) > self._size:
            del keys[next(iter(keys))]
