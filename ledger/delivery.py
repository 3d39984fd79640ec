"""Delivery metrics of a set of deployments: frequency, failure rate, time to restore.

The four figures teams track (after DORA) computed from deployment rows as the
list API gives them, so that the page makes one bounded request instead of
paging through every deployment, and alerts and reports use the same numbers.
Days are counted in a time zone the caller names (UTC unless told), so that a
page showing local times shows local days too.

The figures are computed from a :class:`Window`: counters of the window's
deployments by project, environment and status, their durations, their starts
and their completions.  :func:`window_of_rows` is its definition over rows; a
store that keeps aggregates (``ledger/aggregates.py``) fills the same counters
from them without reading each deployment, and the figures are the same.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from ledger.aggregates import DECIDED, Facts, row_facts
from ledger.environments import DEFAULT_ENVIRONMENT
from ledger.stats import percentile_of_counts
from ledger.timestamps import format_timestamp, parse_timestamp
from ledger.view import ListRow

#: ``environment=*``: every deployment counts, whatever its environment.
ALL_ENVIRONMENTS = "*"


@dataclass(slots=True)
class Window:
    """What the figures of a window's deployments are computed from.

    Environments are ``""`` for deployments that named none.  ``starts`` count
    deployments by a moment whose day (in the caller's zone) is their start's
    day: their exact start, or the start of the UTC hour they started in when
    the zone's days begin on a whole hour.  ``ended`` holds each decided
    deployment's completion; a store may leave out one whose status equals the
    previous one's of the same project and environment (it changes no restore).
    """

    #: ``(project, environment, status)`` → deployments.
    statuses: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    #: ``(project, environment, duration_ms)`` → decided deployments that took it.
    durations: Counter[tuple[str, str, int]] = field(default_factory=Counter)
    #: ``(environment, moment, status)`` → deployments started that day.
    starts: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    #: ``(project, environment, completed_at, status)`` of decided deployments.
    ended: list[tuple[str, str, str, str]] = field(default_factory=list)

    def add(self, other: Window) -> None:
        self.statuses.update(other.statuses)
        self.durations.update(other.durations)
        self.starts.update(other.starts)
        self.ended += other.ended

    def environments(self) -> set[str]:
        """Every environment the window's deployments named."""
        return {environment for _, environment, _ in self.statuses if environment}

    def only(self, environment: str | None) -> Window:
        """The deployments to ``environment`` (all of them for ``None``)."""
        if environment is None:
            return self
        return Window(
            Counter({k: n for k, n in self.statuses.items() if k[1] == environment}),
            Counter({k: n for k, n in self.durations.items() if k[1] == environment}),
            Counter({k: n for k, n in self.starts.items() if k[0] == environment}),
            [item for item in self.ended if item[1] == environment],
        )


@dataclass(frozen=True, slots=True)
class DeliveryWindow:
    """What a store answers for a window: its deployments to the environment chosen
    (:func:`choose_environment`), every environment the window named, and whether the
    store stopped reading before the window's oldest deployment."""

    window: Window
    environment: str | None
    environments: set[str]
    truncated: bool


def count(window: Window, item: Facts, *, ended: bool = True) -> None:
    """Count one deployment into ``window`` (its completion too, unless told not to)."""
    project, status = item.project, item.status
    environment = item.environment or ""
    window.statuses[project, environment, status] += 1
    if status in DECIDED:
        if item.duration_ms is not None:
            window.durations[project, environment, item.duration_ms] += 1
        if ended and item.completed_at:
            window.ended.append((project, environment, item.completed_at, status))
    if item.started_at:
        window.starts[environment, item.started_at, status] += 1


def window_of_rows(rows: Iterable[ListRow]) -> Window:
    """The window of these deployment rows: the definition a store's aggregates equal."""
    window = Window()
    for row in rows:
        count(window, row_facts(row))
    return window


def choose_environment(asked: str | None, named: set[str]) -> str | None:
    """The environment the figures are restricted to: the one asked for; without one,
    ``production`` when the window deployed there, else none (every deployment counts,
    as with ``*``)."""
    if asked == ALL_ENVIRONMENTS:
        return None
    if asked:
        return asked
    return DEFAULT_ENVIRONMENT if DEFAULT_ENVIRONMENT in named else None


def delivery_of_rows(rows: Iterable[ListRow], asked: str | None, truncated: bool) -> DeliveryWindow:
    """The answer of a store that reads the window's rows (``asked`` as for
    :func:`choose_environment`)."""
    window = window_of_rows(rows)
    named = window.environments()
    environment = choose_environment(asked, named)
    return DeliveryWindow(window.only(environment), environment, named, truncated)


def summarise(
    rows: list[ListRow],
    *,
    start: datetime,
    end: datetime,
    zone: tzinfo = UTC,
    zone_name: str = "UTC",
) -> dict[str, Any]:
    """The metrics of deployment rows (as the list API gives them) over ``start..end``,
    with ``daily`` buckets that are the calendar days of ``zone`` (called ``zone_name``)."""
    return summarise_window(
        window_of_rows(rows), start=start, end=end, zone=zone, zone_name=zone_name
    )


def summarise_window(
    window: Window,
    *,
    start: datetime,
    end: datetime,
    zone: tzinfo = UTC,
    zone_name: str = "UTC",
) -> dict[str, Any]:
    """The metrics of a window's deployments, as :func:`summarise` gives them for rows."""
    days = max((end - start).total_seconds() / 86400, 1e-9)
    names = sorted({project for project, _, _ in window.statuses})
    return {
        "window": {
            "from": format_timestamp(start),
            "to": format_timestamp(end),
            "days": round(days, 3),
            "time_zone": zone_name,
        },
        "daily": _daily(window.starts, start, end, zone),
        "overall": _project_metrics(window, None, days),
        "projects": [{"project": name, **_project_metrics(window, name, days)} for name in names],
    }


def _daily(
    starts: Counter[tuple[str, str, str]], start: datetime, end: datetime, zone: tzinfo
) -> list[dict[str, Any]]:
    """Deployments started on each day of the window, as ``zone`` counts days, by outcome."""
    counts: dict[str, Counter[str]] = {}
    day = start.astimezone(zone).date()
    while day <= end.astimezone(zone).date():
        counts[day.isoformat()] = Counter()
        day += timedelta(days=1)
    days: dict[str, str] = {}  # moment -> its day in the zone; moments repeat across keys
    for (_, moment, status), n in starts.items():
        date = days.get(moment)
        if date is None:
            date = days[moment] = parse_timestamp(moment).astimezone(zone).date().isoformat()
        bucket = counts.get(date)
        if bucket is not None:
            bucket[_outcome(status)] += n
    return [
        {"date": date, **{o: c[o] for o in ("success", "failure", "other")}}
        for date, c in counts.items()
    ]


def _outcome(status: str) -> str:
    return status if status in DECIDED else "other"


def _project_metrics(window: Window, project: str | None, days: float) -> dict[str, Any]:
    """The figures of one project's deployments in the window (``None``: every project's)."""
    statuses: Counter[str] = Counter()
    for (name, _, status), n in window.statuses.items():
        if project is None or name == project:
            statuses[status] += n
    durations: Counter[int] = Counter()
    for (name, _, duration), n in window.durations.items():
        if project is None or name == project:
            durations[duration] += n
    deployments = sum(statuses.values())
    decided = statuses["success"] + statuses["failure"]
    ended = window.ended if project is None else [e for e in window.ended if e[0] == project]
    restores, open_since = _restores(ended)
    return {
        "deployments": deployments,
        "per_day": round(deployments / days, 3),
        "statuses": {status: statuses[status] for status in sorted(statuses)},
        "change_failure_rate": round(statuses["failure"] / decided, 4) if decided else None,
        "time_to_restore_ms": {
            "count": len(restores),
            "median": round(statistics.median(restores)) if restores else None,
            "mean": round(statistics.fmean(restores)) if restores else None,
            "max": max(restores) if restores else None,
        },
        "failing_since": open_since,
        "duration_ms": {
            "count": sum(durations.values()),
            **{f"p{p}": percentile_of_counts(durations, p) for p in (50, 90, 95)},
        },
    }


def _restores(ended: Iterable[tuple[str, str, str, str]]) -> tuple[list[int], str | None]:
    """Milliseconds from each first failure to the next success, and the oldest open failure.

    Each project's deployments are taken in completion order; a run of failures
    counts once, from its first failure, as the one outage it is.
    """
    ordered = sorted((project, completed_at, status) for project, _, completed_at, status in ended)
    restores: list[int] = []
    still_failing: list[str] = []
    failing_since: str | None = None
    for index, (project, completed_at, status) in enumerate(ordered):
        if status == "failure" and failing_since is None:
            failing_since = completed_at
        elif status == "success" and failing_since is not None:
            delta = parse_timestamp(completed_at) - parse_timestamp(failing_since)
            restores.append(round(delta.total_seconds() * 1000))
            failing_since = None
        last_of_project = index + 1 == len(ordered) or ordered[index + 1][0] != project
        if last_of_project and failing_since is not None:
            still_failing.append(failing_since)
        if last_of_project:
            failing_since = None
    return restores, min(still_failing, default=None)
