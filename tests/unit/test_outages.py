"""Outages summed up by stretch join into the outages of the whole (``ledger/delivery.py``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from ledger.delivery import Outages
from ledger.stats import percentile, percentile_of_counts
from ledger.timestamps import format_timestamp

BASE = datetime(2025, 8, 1, tzinfo=UTC)

ends = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=500).map(
            lambda minutes: format_timestamp(BASE + timedelta(minutes=minutes))
        ),
        st.sampled_from(["success", "failure"]),
    ),
    max_size=30,
)


def restores_one_by_one(pairs: list[tuple[str, str]]) -> tuple[list[int], str | None]:
    """The rule spelled out: a run of failures is one outage, from its first failure."""
    restores: list[int] = []
    since: str | None = None
    for completed_at, status in sorted(pairs):
        if status == "failure" and since is None:
            since = completed_at
        elif status == "success" and since is not None:
            delta = datetime.fromisoformat(completed_at) - datetime.fromisoformat(since)
            restores.append(round(delta.total_seconds() * 1000))
            since = None
    return restores, since


@given(pairs=ends, cut=st.integers(min_value=0, max_value=30))
def test_stretches_join_into_the_whole(pairs: list[tuple[str, str]], cut: int) -> None:
    ordered = sorted(pairs)
    joined = Outages.of(ordered[:cut]).then(Outages.of(ordered[cut:]))
    assert joined == Outages.of(pairs)
    assert (joined.all_restores(), joined.failing_since) == restores_one_by_one(pairs)


@given(a=ends, b=ends, c=ends)
def test_joining_is_associative(
    a: list[tuple[str, str]], b: list[tuple[str, str]], c: list[tuple[str, str]]
) -> None:
    x, y, z = Outages.of(a), Outages.of(b), Outages.of(c)
    assert x.then(y).then(z) == x.then(y.then(z))
    assert Outages.decode(x.encode()) == x


@given(values=st.lists(st.integers(min_value=0, max_value=20), max_size=40))
def test_percentiles_of_counts_are_the_percentiles_of_the_values(values: list[int]) -> None:
    counts: dict[int, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    for percent in (50, 90, 95):
        assert percentile_of_counts(counts, percent) == percentile(sorted(values), percent)
