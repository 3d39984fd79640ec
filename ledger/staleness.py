"""When a run that is still open has gone quiet for too long to be believed running.

A cancelled runner or a lost delivery leaves a deployment "running" forever;
what the hub can honestly say is that nothing has been heard of it since
``last_news_at`` (the last time the hub received any event of it, of any
type).  Past ``HUB_STALE_AFTER`` an open deployment is *stale*, and so are its
open jobs and steps: the page shows it with its own badge and stops its timer
at the last news.  Any new event revives it.  The stalled-step alert uses the
same rule with its own threshold.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ledger.events import OPEN_STATUSES
from ledger.timestamps import format_timestamp, parse_timestamp


def news_at(received: float) -> str:
    """The spelling of a receipt time (seconds since the epoch) in views."""
    return format_timestamp(datetime.fromtimestamp(received, UTC))


def quiet_for(last_news_at: str | None, now: float) -> float:
    """Seconds since the last news (0 when none is known)."""
    if not last_news_at:
        return 0.0
    return max(0.0, now - parse_timestamp(last_news_at).timestamp())


def is_stale(status: str, last_news_at: str | None, now: float, after: float) -> bool:
    """Whether something in ``status`` last heard of at ``last_news_at`` is stale by ``now``.

    ``after`` of 0 turns staleness off.
    """
    return bool(after) and status in OPEN_STATUSES and quiet_for(last_news_at, now) > after


def mark_stale(view: Any, now: float, after: float) -> Any:
    """``view`` (a deployment view or list row) with ``stale`` set on it and on its open
    jobs and steps, from its ``last_news_at``; returns the same object."""
    stale = is_stale(view["status"], view.get("last_news_at"), now, after)
    view["stale"] = stale
    jobs = view.get("jobs")
    if isinstance(jobs, list):
        for job in jobs:
            job["stale"] = stale and job["status"] in OPEN_STATUSES
            for step in job["steps"]:
                step["stale"] = stale and step["status"] in OPEN_STATUSES
    return view
