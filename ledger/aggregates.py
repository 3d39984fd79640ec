"""Aggregates kept as deployments are stored, so that reads cost O(projects x days).

``GET /api/projects`` counts each project's deployments by status and
``GET /api/delivery-metrics`` sums a window's deployments per project,
environment and day.  Computed from the rows on every call, both cost
O(deployments) and grow with history; kept as counters, they cost what the
answer holds.

Each deployment contributes **cells**: ``(group, field)`` counters it adds one
to, decided here from its :class:`Facts` alone.  A store keeps, beside each
deployment's row, the facts it last counted, and when a write changes the
deployment (a late event, a status that moved, a retention prune that removed
it) adds :func:`change`: the new facts' cells minus the old ones'.  The aggregate is then
always :func:`tally` over the current views, whatever the order of events,
their repeats or what was pruned; the operator ``check`` recomputes it so.

Groups and fields are text, so that SQLite keeps them as rows and Redis as
hash fields without another definition; the parts of a field are joined with
``\\x1f``, which names never hold (``app/fields.py`` refuses control
characters).  Days and hours are those of the deployment's start in UTC; a
reader counting days of another time zone sums the hours it needs (and asks
for single deployments where an hour is split between two of its days).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, NamedTuple

from ledger.durations import span
from ledger.fold import Fold
from ledger.timestamps import format_timestamp, parse_timestamp

#: Joins the parts of a field; no name may contain it.
SEP = "\x1f"
#: ``project␟status``: each project's deployments by status.
PROJECTS = "projects"
#: ``project␟environment``: deployments per project and environment ("" for none).
ENVIRONMENTS = "environments"
#: ``day:<YYYY-MM-DD>`` → ``project␟environment␟status``: deployments started that UTC day.
DAY = "day:"
#: ``hour:<YYYY-MM-DD>`` → ``environment␟HH␟status``: all projects' starts per UTC hour.
HOUR = "hour:"
#: ``project-hour:<project>`` → ``YYYY-MM-DDTHH␟environment␟status``: one project's starts.
PROJECT_HOUR = "project-hour:"
#: ``duration:<YYYY-MM-DD>`` → ``project␟environment␟ms``: durations of decided deployments.
DURATION = "duration:"

#: The statuses that end a deployment for the delivery figures.
DECIDED = ("success", "failure")

Cell = tuple[str, str]


class Facts(NamedTuple):
    """What a deployment's view says that the aggregates count: its list row's fields."""

    project: str
    status: str
    environment: str | None
    started_at: str | None
    completed_at: str | None
    duration_ms: int | None


def facts(fold: Fold) -> Facts:
    """A fold's facts, as :func:`ledger.view.render` spells them, without the job tree."""
    status, completed_at, headline_start = fold.headline()
    started_at, duration = span(headline_start, completed_at, fold.duration_ms)
    return Facts(
        fold.project,
        status,
        fold.metadata.get("environment"),
        started_at,
        completed_at,
        duration,
    )


def row_facts(row: Mapping[str, Any]) -> Facts:
    """A view's or list row's facts: what recomputing the aggregates reads."""
    return Facts(
        row["project"],
        row["status"],
        row.get("environment"),
        row.get("started_at"),
        row.get("completed_at"),
        row.get("duration_ms"),
    )


def join(*parts: str) -> str:
    return SEP.join(parts)


def split(field: str) -> list[str]:
    return field.split(SEP)


def utc_hour(timestamp: str) -> str:
    """``YYYY-MM-DDTHH`` of a timestamp, in UTC."""
    return format_timestamp(parse_timestamp(timestamp))[:13]


def cells(item: Facts) -> list[Cell]:
    """The counters one deployment adds one to."""
    environment = item.environment or ""
    found: list[Cell] = [
        (PROJECTS, join(item.project, item.status)),
        (ENVIRONMENTS, join(item.project, environment)),
    ]
    if item.started_at:
        hour = utc_hour(item.started_at)
        day = hour[:10]
        found += [
            (DAY + day, join(item.project, environment, item.status)),
            (HOUR + day, join(environment, hour[11:], item.status)),
            (PROJECT_HOUR + item.project, join(hour, environment, item.status)),
        ]
        if item.status in DECIDED and item.duration_ms is not None:
            found.append((DURATION + day, join(item.project, environment, str(item.duration_ms))))
    return found


def change(old: Iterable[Cell], new: Iterable[Cell]) -> dict[Cell, int]:
    """What to add to each counter when a deployment's cells go from ``old`` to ``new``
    (``[]`` for a deployment not stored before, or removed); unchanged cells are left out."""
    delta: Counter[Cell] = Counter(new)
    delta.subtract(old)
    return {cell: n for cell, n in delta.items() if n}


def tally(items: Iterable[Facts]) -> dict[Cell, int]:
    """The aggregates of a set of deployments, recomputed from scratch: the definition
    that the counters a store keeps up to date must always equal."""
    counts: Counter[Cell] = Counter()
    for item in items:
        counts.update(cells(item))
    return dict(counts)


def splits_a_day(hour: str, zone: tzinfo) -> bool:
    """Whether a day of ``zone`` begins inside the UTC hour ``hour`` (``YYYY-MM-DDTHH``)."""
    start = datetime.fromisoformat(f"{hour}:00+00:00")
    last = start + timedelta(minutes=59, seconds=59, milliseconds=999)
    offset = zone.utcoffset(start)
    whole = offset is not None and offset % timedelta(hours=1) == timedelta(0)
    if whole and zone.utcoffset(last) == offset:
        return False  # whole hours from UTC all through it: its days begin on the hour
    return start.astimezone(zone).date() != last.astimezone(zone).date()


def whole_days_from(since: str) -> str:
    """The first UTC midnight after ``since``: a window's whole days, which the counters
    count, begin there; its part before is counted deployment by deployment."""
    midnight = (
        parse_timestamp(since).astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    )
    return format_timestamp(midnight + timedelta(days=1))


def next_hour(hour: str) -> str:
    return format_timestamp(datetime.fromisoformat(f"{hour}:00+00:00") + timedelta(hours=1))


def counted(counts: Mapping[str, Mapping[str, int]], project: str | None) -> int:
    """Deployments the per-project status counts hold, of one project or of all: what an
    answer built from the aggregates says it looked at."""
    return sum(
        n
        for name, statuses in counts.items()
        if project is None or name == project
        for n in statuses.values()
    )
