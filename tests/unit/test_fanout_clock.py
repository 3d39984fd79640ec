"""The fan-out clock: one lag sample per stored request in a run, deliveries counted per run.

Samples are process-global, so each test reads the registry before and after.
The clock's time source is replaced by a counter so that each ``stored`` call
has its own, known commit time.
"""

from __future__ import annotations

import itertools

import pytest
from prometheus_client import REGISTRY

from app.ingest import load_one
from broadcaster import fanout_clock
from broadcaster.fanout_clock import FanoutClock
from broadcaster.hub import Envelope

EVENT = load_one(
    {"type": "log_entry", "project": "web", "deployment_id": "1", "message": "m"}, "deployment"
)


class Ticks:
    """A monotonic clock that advances one second each time it is read."""

    def __init__(self) -> None:
        self._count = itertools.count(1000)

    def monotonic(self) -> float:
        return float(next(self._count))


@pytest.fixture
def ticks(monkeypatch: pytest.MonkeyPatch) -> Ticks:
    clock = Ticks()
    monkeypatch.setattr(fanout_clock, "time", clock)
    return clock


def samples() -> tuple[float, float, float]:
    """Lag observations, their sum, and deliveries counted so far in this process."""
    return (
        REGISTRY.get_sample_value("hub_fanout_lag_seconds_count") or 0.0,
        REGISTRY.get_sample_value("hub_fanout_lag_seconds_sum") or 0.0,
        REGISTRY.get_sample_value("hub_deliveries_total") or 0.0,
    )


def since(before: tuple[float, float, float]) -> tuple[float, float, float]:
    count, total, deliveries = samples()
    return count - before[0], total - before[1], deliveries - before[2]


def run(*seqs: int) -> list[Envelope]:
    return [Envelope(seq, EVENT) for seq in seqs]


def test_a_run_of_one_request_is_timed_once(ticks: Ticks) -> None:
    clock = FanoutClock()
    clock.stored([1, 2, 3, 4])  # committed at t=1000
    before = samples()
    clock.dispatched(run(1, 2, 3, 4), 8)  # dispatched at t=1001
    assert since(before) == (1, 1.0, 8)


def test_a_run_spanning_requests_is_timed_once_per_request(ticks: Ticks) -> None:
    clock = FanoutClock()
    clock.stored([1, 2])  # t=1000
    clock.stored([3])  # t=1001
    clock.stored([4, 5])  # t=1002
    before = samples()
    clock.dispatched(run(1, 2, 3, 4, 5), 5)  # read at t=1003, 1004, 1005
    count, total, deliveries = since(before)
    assert (count, deliveries) == (3, 5)
    assert total == pytest.approx((1003 - 1000) + (1004 - 1001) + (1005 - 1002))


def test_a_run_nobody_received_is_not_timed_or_counted(ticks: Ticks) -> None:
    clock = FanoutClock()
    clock.stored([1, 2])
    clock.stored([3])
    before = samples()
    clock.dispatched(run(1, 2), 0)
    assert since(before) == (0, 0, 0)
    clock.dispatched(run(3), 2)  # the entries of the undelivered run are gone, not reused
    count, _, deliveries = since(before)
    assert (count, deliveries) == (1, 2)


def test_entries_before_the_run_are_dropped_untimed(ticks: Ticks) -> None:
    """Events dispatched before anyone listened leave nothing to time later runs with."""
    clock = FanoutClock()
    clock.stored([1, 2])  # never dispatched: nobody subscribed then
    clock.stored([5, 6])
    before = samples()
    clock.dispatched(run(5, 6), 1)
    assert since(before)[0] == 1
    clock.dispatched(run(1, 2), 1)  # can no longer happen; were it to, nothing is left
    count, _, deliveries = since(before)
    assert (count, deliveries) == (1, 2)


def test_entries_after_the_run_wait_for_their_own_run(ticks: Ticks) -> None:
    """A request split over two runs (two deployments) is timed in each."""
    clock = FanoutClock()
    clock.stored([1, 2, 3, 4])
    before = samples()
    clock.dispatched(run(1, 2), 1)
    clock.dispatched(run(3, 4), 1)
    assert since(before)[0] == 2


def test_events_another_worker_stored_are_not_timed(ticks: Ticks) -> None:
    clock = FanoutClock()
    clock.stored([2, 4])  # 1, 3 and 5 were stored by another worker
    before = samples()
    clock.dispatched(run(1), 1)
    clock.dispatched(run(3), 1)
    clock.dispatched(run(5), 1)
    count, _, deliveries = since(before)
    assert (count, deliveries) == (0, 3)
    clock.stored([6])
    clock.dispatched(run(6, 7), 2)
    count, _, deliveries = since(before)
    assert (count, deliveries) == (1, 5)


def test_the_clock_keeps_at_most_its_capacity(ticks: Ticks) -> None:
    """While nobody subscribes the oldest entries fall off; the newest still time their run."""
    clock = FanoutClock(capacity=3)
    clock.stored([1, 2])
    clock.stored([3, 4, 5])
    before = samples()
    clock.dispatched(run(1, 2, 3, 4, 5), 1)
    assert since(before)[0] == 1  # 1 and 2 fell off: only the second request is timed
