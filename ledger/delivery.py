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
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, cast

import orjson

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
    the zone's days begin on a whole hour.  ``outages`` are each project's, over
    the deployments of the environment chosen only (:meth:`only` leaves them).
    """

    #: ``(project, environment, status)`` → deployments.
    statuses: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    #: ``(project, environment, duration_ms)`` → decided deployments that took it.
    durations: Counter[tuple[str, str, int]] = field(default_factory=Counter)
    #: ``(environment, moment, status)`` → deployments started that day.
    starts: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    #: project → its outages: restores and the failure still open.
    outages: dict[str, Outages] = field(default_factory=dict)

    def environments(self) -> set[str]:
        """Every environment the window's deployments named."""
        return {environment for _, environment, _ in self.statuses if environment}

    def only(self, environment: str | None) -> Window:
        """The deployments to ``environment`` (all of them for ``None``); outages are left
        out of another environment's (:func:`outages_of` them)."""
        if environment is None:
            return self
        return Window(
            Counter({k: n for k, n in self.statuses.items() if k[1] == environment}),
            Counter({k: n for k, n in self.durations.items() if k[1] == environment}),
            Counter({k: n for k, n in self.starts.items() if k[0] == environment}),
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


def count(window: Window, item: Facts, moment: str | None = None) -> None:
    """Count one deployment into ``window`` (all but its part in outages); its start is
    counted at ``moment`` when given (a time on the same day of the reader's zone)."""
    project, status = item.project, item.status
    environment = item.environment or ""
    window.statuses[project, environment, status] += 1
    if status in DECIDED and item.duration_ms is not None:
        window.durations[project, environment, item.duration_ms] += 1
    count_start(window, item, moment)


def count_start(window: Window, item: Facts, moment: str | None = None) -> None:
    """Count only the start of one deployment into ``window``, at ``moment`` if given."""
    if item.started_at:
        window.starts[item.environment or "", moment or item.started_at, item.status] += 1


def window_of_rows(rows: Iterable[ListRow]) -> Window:
    """The window of these deployment rows: the definition a store's aggregates equal."""
    window = Window()
    items = [row_facts(row) for row in rows]
    for item in items:
        count(window, item)
    window.outages = outages_of(items)
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
    listed = list(rows)
    window = window_of_rows(listed)
    named = window.environments()
    environment = choose_environment(asked, named)
    chosen = window.only(environment)
    if environment is not None:
        chosen.outages = outages_of(
            row_facts(row) for row in listed if row.get("environment") == environment
        )
    return DeliveryWindow(chosen, environment, named, truncated)


def ended(item: Facts) -> tuple[str, str] | None:
    """``(completed_at, status)`` of a deployment that outages count: a decided one."""
    if item.status in DECIDED and item.completed_at:
        return item.completed_at, item.status
    return None


#: ``(project, environment or None for all of them, UTC day of completion)``.
OutageKey = tuple[str, str | None, str]


def outage_keys(item: Facts | None) -> list[OutageKey]:
    """The day summaries a deployment is part of: its project's, in all environments and
    in its own, on the UTC day it completed (none while it is not decided)."""
    end = ended(item) if item is not None else None
    if item is None or end is None:
        return []
    day = end[0][:10]
    keys: list[OutageKey] = [(item.project, None, day)]
    if item.environment:
        keys.append((item.project, item.environment, day))
    return keys


def outage_days(items: Iterable[Facts]) -> dict[OutageKey, Outages]:
    """The day summaries of these deployments, recomputed from scratch: what a store that
    keeps them must always hold."""
    ends: dict[OutageKey, list[tuple[str, str]]] = {}
    for item in items:
        for key in outage_keys(item):
            ends.setdefault(key, []).append(cast(tuple[str, str], ended(item)))
    return {key: Outages.of(pairs) for key, pairs in ends.items()}


def outages_of(items: Iterable[Facts]) -> dict[str, Outages]:
    """Each project's outages over these deployments."""
    return outages_by_project(
        (item.project, *end) for item in items if (end := ended(item)) is not None
    )


def outages_by_project(ends: Iterable[tuple[str, str, str]]) -> dict[str, Outages]:
    """Each project's outages over ``(project, completed_at, status)`` of decided deployments."""
    by_project: dict[str, list[tuple[str, str]]] = {}
    for project, completed_at, status in ends:
        by_project.setdefault(project, []).append((completed_at, status))
    return {project: Outages.of(pairs) for project, pairs in by_project.items()}


@dataclass(frozen=True, slots=True)
class Outages:
    """Restores of a stretch of one project's decided deployments in completion order.

    A run of failures counts once, from its first failure to the next success,
    as the one outage it is.  A stretch is summed up without what came before
    it, so that a store can keep one per day and join them in order
    (:meth:`then`); joined, they are the stretch they cover.

    ``lead`` is the first failure before the first success (with no success:
    the first failure), ``first_success`` the first success, ``restores`` the
    outages that ended after it, and ``open_since`` the first failure after the
    last success, still open.
    """

    lead: str | None = None
    first_success: str | None = None
    restores: tuple[int, ...] = ()
    open_since: str | None = None

    @classmethod
    def of(cls, ends: Iterable[tuple[str, str]]) -> Outages:
        """The outages of ``(completed_at, status)`` pairs, in any order (one at a time,
        what :meth:`then` of one-deployment stretches gives)."""
        lead = first_success = open_since = None
        restores: list[int] = []
        for completed_at, status in sorted(ends):
            if status == "failure":
                if first_success is None:
                    lead = lead or completed_at
                elif open_since is None:
                    open_since = completed_at
            elif first_success is None:
                first_success = completed_at
            elif open_since is not None:
                restores.append(_millis(open_since, completed_at))
                open_since = None
        return cls(lead, first_success, tuple(restores), open_since)

    @property
    def failing_since(self) -> str | None:
        """When the outage still open at the stretch's end began."""
        return self.lead if self.first_success is None else self.open_since

    def then(self, later: Outages) -> Outages:
        """This stretch followed by ``later``."""
        if later.first_success is None:
            if self.first_success is None:
                return Outages(lead=self.lead or later.lead)
            return replace(self, open_since=self.open_since or later.lead)
        if self.first_success is None:
            return replace(later, lead=self.lead or later.lead)
        since = self.open_since or later.lead
        joined = (_millis(since, later.first_success),) if since else ()
        return Outages(
            self.lead,
            self.first_success,
            self.restores + joined + later.restores,
            later.open_since,
        )

    def all_restores(self) -> list[int]:
        """Milliseconds of every outage that ended, first to last."""
        first = self.lead and self.first_success
        head = [_millis(self.lead, self.first_success)] if first else []  # type: ignore[arg-type]
        return head + list(self.restores)

    def encode(self) -> bytes:
        return orjson.dumps([self.lead, self.first_success, self.restores, self.open_since])

    @classmethod
    def decode(cls, raw: bytes) -> Outages:
        lead, first_success, restores, open_since = orjson.loads(raw)
        return cls(lead, first_success, tuple(restores), open_since)


def _millis(start: str, end: str) -> int:
    delta = parse_timestamp(end) - parse_timestamp(start)
    return round(delta.total_seconds() * 1000)


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
    outages = [
        summary for name, summary in window.outages.items() if project is None or name == project
    ]
    restores = [ms for summary in outages for ms in summary.all_restores()]
    open_since = min(
        (since for summary in outages if (since := summary.failing_since)), default=None
    )
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
