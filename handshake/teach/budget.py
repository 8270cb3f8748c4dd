"""Which variants reach the first byte within a time budget, and by how much.

Every answer comes from runs of the engine at that network (the counted TTFB), not from
n × RTT: a budget must account for what the chain, the loss or the rate add.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from handshake.net.link import LinkConfig
from handshake.runner import RunOptions, Row, compare
from handshake.variants import Variant

SEARCH_TOLERANCE_S = 0.00001
"""Bisection stops when the RTT is known to 10 µs."""


@dataclass
class BudgetRow:
    variant: str
    fits: bool
    ttfb_ms: float | None
    margin_ms: float | None
    """Budget minus TTFB: how much slack is left (negative: over budget)."""
    round_trips: int | None
    max_rtt_ms: float | None = None
    """With an RTT range: the largest RTT in it at which the variant still fits (None: not even at its start)."""

    def as_dict(self) -> dict:
        return asdict(self)


def _row_fits(row: Row, budget_s: float) -> bool:
    return row.ttfb_ms is not None and row.ttfb_ms <= budget_s * 1000 + 1e-9


def at_rtt(variants: list[Variant], link: LinkConfig, options: RunOptions, budget_s: float) -> list[BudgetRow]:
    out = []
    for row in compare(variants, link, options=options):
        margin = None if row.ttfb_ms is None else round(budget_s * 1000 - row.ttfb_ms, 3)
        out.append(BudgetRow(row.variant, _row_fits(row, budget_s), row.ttfb_ms, margin, row.round_trips))
    return out


def _fits_at(variant: Variant, link: LinkConfig, options: RunOptions, budget_s: float, rtt_s: float) -> Row | None:
    row = compare([variant], replace(link, delay_s=rtt_s / 2), options=options)[0]
    return row if _row_fits(row, budget_s) else None


def largest_rtt(
    variants: list[Variant], link: LinkConfig, options: RunOptions, budget_s: float, low_s: float, high_s: float
) -> list[BudgetRow]:
    """For each variant, the largest RTT in [low, high] whose run still fits the budget (bisection).

    TTFB grows with RTT on a link without loss; with loss the seeded run decides, and the
    answer is for that seed.
    """
    out = []
    for variant in variants:
        best = _fits_at(variant, link, options, budget_s, low_s)
        if best is None:
            out.append(BudgetRow(variant.name, False, None, None, None, None))
            continue
        best_rtt = low_s
        top = _fits_at(variant, link, options, budget_s, high_s)
        if top is not None:
            best, best_rtt = top, high_s
        else:
            lo, hi = low_s, high_s
            while hi - lo > SEARCH_TOLERANCE_S:
                mid = (lo + hi) / 2
                row = _fits_at(variant, link, options, budget_s, mid)
                if row is None:
                    hi = mid
                else:
                    lo, best, best_rtt = mid, row, mid
        margin = round(budget_s * 1000 - best.ttfb_ms, 3)  # type: ignore[operator]
        out.append(BudgetRow(variant.name, True, best.ttfb_ms, margin, best.round_trips, round(best_rtt * 1000, 2)))
    return out
