"""One definition of every duration the hub reports, so that no two figures disagree.

A step's and a deployment's duration is ``completed_at - started_at`` when
both times are known (a completion stamped before its start counts as 0 ms):
the times are what the page draws, so the label must be theirs.  Only when
the start is unknown does the sender's own duration count, and then the
start is placed that long before the completion, so that the times and the
duration still agree.  A job spans its steps: from its first step's start to
its last step's end.  Something still open has no duration; it has a start,
and the page counts from there.
"""

from __future__ import annotations

from datetime import timedelta

from ledger.timestamps import duration_between, format_timestamp, parse_timestamp


def span(
    started_at: str | None, completed_at: str | None, reported_ms: int | None
) -> tuple[str | None, int | None]:
    """``(started_at, duration_ms)`` of something that started at ``started_at`` (if known)
    and completed at ``completed_at`` (``None``: still open), whose sender said it took
    ``reported_ms``."""
    took = duration(started_at, completed_at, reported_ms)
    if completed_at is None or started_at is not None or took is None:
        return started_at, took
    return minus(completed_at, took), took


def duration(
    started_at: str | None, completed_at: str | None, reported_ms: int | None
) -> int | None:
    """The duration :func:`span` gives, without placing an unknown start (which costs
    parsing a timestamp: step trends count thousands of durations per answer)."""
    if completed_at is None:
        return None
    if started_at is not None:
        return duration_between(started_at, completed_at)
    return reported_ms


def minus(timestamp: str, millis: int) -> str:
    """The time ``millis`` milliseconds before ``timestamp``."""
    return format_timestamp(parse_timestamp(timestamp) - timedelta(milliseconds=millis))
