"""Summary statistics of durations, the same wherever the hub reports them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def percentile(ordered: Sequence[int | float], percent: int) -> int | float | None:
    """Nearest-rank percentile of sorted values: always one of the measured values.

    Integer arithmetic for the rank, so that p95 of 20 values is the 19th,
    never the 20th by a floating-point accident.
    """
    if not ordered:
        return None
    return ordered[max(0, -(-percent * len(ordered) // 100) - 1)]


def percentile_of_counts(counts: Mapping[int, int], percent: int) -> int | None:
    """:func:`percentile` of the values ``counts`` holds each so many times, without
    spelling them out: what aggregated durations are summarised with."""
    total = sum(counts.values())
    if not total:
        return None
    rank = max(0, -(-percent * total // 100) - 1)
    seen = 0
    for value in sorted(counts):
        seen += counts[value]
        if seen > rank:
            return value
    raise AssertionError("unreachable: the ranks add up to the total")
