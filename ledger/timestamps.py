"""Timestamps as the hub spells them: ISO-8601 in UTC with milliseconds.

One spelling everywhere, so that timestamps compare as strings in the same
order as the times they name (the stores sort and index them as text).
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime


def format_timestamp(moment: datetime) -> str:
    """ISO-8601 in UTC with milliseconds: one spelling, so strings sort as times do."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def parse_timestamp(text: str) -> datetime:
    """Parse the ISO-8601 spellings senders use (``Z``, offsets, 0-7 fraction digits).

    Naive times are taken as UTC, which is what every known sender means.
    """
    value = text.strip()
    match = re.fullmatch(r"(.*T\d\d:\d\d:\d\d)\.(\d+)(Z|[+-]\d\d:?\d\d)?", value)
    if match:  # Python wants at most 6 fraction digits; GitHub sends 7
        value = f"{match[1]}.{match[2][:6].ljust(6, '0')}{match[3] or ''}"
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment


#: The last millisecond :func:`now_timestamp` spelled, and its spelling (none yet).
_now: tuple[int, str] = (-1, "")


def now_timestamp() -> str:
    """The current time, normalised; the events of a batch mostly share one millisecond,
    so its spelling (``strftime`` is the slow part) is reused within it."""
    global _now  # a one-entry cache; replacing the tuple is atomic
    millis = time.time_ns() // 1_000_000
    if _now[0] != millis:
        seconds, rest = divmod(millis, 1000)  # no float: it could round 261 ms down to 260
        moment = datetime.fromtimestamp(seconds, UTC).replace(microsecond=rest * 1000)
        _now = (millis, format_timestamp(moment))
    return _now[1]


def duration_between(started_at: str | None, completed_at: str | None) -> int | None:
    """Milliseconds between two normalised timestamps, or ``None`` when either is unknown."""
    if not started_at or not completed_at:
        return None
    delta = parse_timestamp(completed_at) - parse_timestamp(started_at)
    return max(0, round(delta.total_seconds() * 1000))
