"""Delivery metrics of a set of deployments: frequency, failure rate, time to restore.

The four figures teams track (after DORA) computed from deployment rows as the
list API gives them, so that the page makes one bounded request instead of
paging through every deployment, and alerts and reports use the same numbers.
Days are counted in a time zone the caller names (UTC unless told), so that a
page showing local times shows local days too.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from ledger.stats import percentile
from ledger.timestamps import format_timestamp, parse_timestamp
from ledger.view import ListRow


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
    days = max((end - start).total_seconds() / 86400, 1e-9)
    by_project: dict[str, list[ListRow]] = {}
    for row in rows:
        by_project.setdefault(row["project"], []).append(row)
    return {
        "window": {
            "from": format_timestamp(start),
            "to": format_timestamp(end),
            "days": round(days, 3),
            "time_zone": zone_name,
        },
        "daily": _daily(rows, start, end, zone),
        "overall": _project_metrics(rows, days),
        "projects": [
            {"project": name, **_project_metrics(members, days)}
            for name, members in sorted(by_project.items())
        ],
    }


def _daily(
    rows: Iterable[ListRow], start: datetime, end: datetime, zone: tzinfo
) -> list[dict[str, Any]]:
    """Deployments started on each day of the window, as ``zone`` counts days, by outcome."""
    counts: dict[str, Counter[str]] = {}
    day = start.astimezone(zone).date()
    while day <= end.astimezone(zone).date():
        counts[day.isoformat()] = Counter()
        day += timedelta(days=1)
    for row in rows:
        started_at = row.get("started_at")
        if not started_at:
            continue
        bucket = counts.get(parse_timestamp(started_at).astimezone(zone).date().isoformat())
        if bucket is not None:
            bucket[_outcome(row["status"])] += 1
    return [
        {"date": date, **{o: c[o] for o in ("success", "failure", "other")}}
        for date, c in counts.items()
    ]


def _outcome(status: str) -> str:
    return status if status in ("success", "failure") else "other"


def _project_metrics(rows: list[ListRow], days: float) -> dict[str, Any]:
    statuses = Counter(row["status"] for row in rows)
    decided = statuses["success"] + statuses["failure"]
    restores, open_since = _restores(rows)
    durations = sorted(
        duration
        for row in rows
        if row["status"] in ("success", "failure") and (duration := row["duration_ms"]) is not None
    )
    return {
        "deployments": len(rows),
        "per_day": round(len(rows) / days, 3),
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
            "count": len(durations),
            **{f"p{p}": percentile(durations, p) for p in (50, 90, 95)},
        },
    }


def _restores(rows: list[ListRow]) -> tuple[list[int], str | None]:
    """Milliseconds from each first failure to the next success, and the oldest open failure.

    Each project's deployments are taken in completion order; a run of failures
    counts once, from its first failure, as the one outage it is.
    """
    ended = sorted(
        (row["project"], completed_at, row["status"])
        for row in rows
        if row["status"] in ("success", "failure") and (completed_at := row["completed_at"])
    )
    restores: list[int] = []
    still_failing: list[str] = []
    failing_since: str | None = None
    for index, (project, completed_at, status) in enumerate(ended):
        if status == "failure" and failing_since is None:
            failing_since = completed_at
        elif status == "success" and failing_since is not None:
            delta = parse_timestamp(completed_at) - parse_timestamp(failing_since)
            restores.append(round(delta.total_seconds() * 1000))
            failing_since = None
        last_of_project = index + 1 == len(ended) or ended[index + 1][0] != project
        if last_of_project and failing_since is not None:
            still_failing.append(failing_since)
        if last_of_project:
            failing_since = None
    return restores, min(still_failing, default=None)
