"""Summary statistics of durations, the same wherever the hub reports them."""

from __future__ import annotations

from collections.abc import Sequence


def percentile(ordered: Sequence[int | float], percent: int) -> int | float | None:
    """Nearest-rank percentile of sorted values: always one of the measured values.

    Integer arithmetic for the rank, so that p95 of 20 values is the 19th,
    never the 20th by a floating-point accident.
    """
    if not ordered:
        return None
    return ordered[max(0, -(-percent * len(ordered) // 100) - 1)]
