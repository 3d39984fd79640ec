"""Query-string parameters, parsed strictly: a bad one is a 400 that names it.

Never a silently different answer: a limit that is not a whole number, a
parameter longer than any name the hub stores, or a number outside its range
is refused, whichever route it was sent to.
"""

from __future__ import annotations

import re
from datetime import UTC, timedelta, timezone, tzinfo
from typing import overload
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import request

from app.errors import BadRequest
from ledger.timestamps import format_timestamp, parse_timestamp

#: Longest value any parameter may have (the longest name a sender may give).
MAX_PARAM_LENGTH = 200
#: Most rows one page of any listing may hold.
MAX_LIMIT = 1000
#: The largest sequence number (log line, event) a store can hold: SQLite's 64-bit integer.
MAX_SEQ = (1 << 63) - 1


def param(name: str) -> str | None:
    """The parameter's value, ``None`` when absent or empty."""
    value = request.args.get(name)
    if value is None or value == "":
        return None
    return bounded(f"query parameter {name!r}", name, value)


def bounded(what: str, name: str, value: str) -> str:
    """``value`` (a parameter or a path part) unless it is longer than any stored name."""
    if len(value) > MAX_PARAM_LENGTH:
        raise BadRequest(f"{what} is too long", {name: [f"At most {MAX_PARAM_LENGTH} characters."]})
    return value


@overload
def whole_number(name: str, *, default: int, low: int, high: int) -> int: ...


@overload
def whole_number(name: str, *, default: None, low: int, high: int) -> int | None: ...


def whole_number(name: str, *, default: int | None, low: int, high: int) -> int | None:
    """A whole number from ``low`` to ``high`` written in ASCII digits, else ``default``."""
    raw = param(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:
        raise BadRequest(
            f"query parameter {name!r} must be a whole number from {low} to {high}",
            {name: [f"Must be between {low} and {high}."]},
        )
    return int(raw)


def limit(default: int) -> int:
    """``limit``: rows per page, from 1 to :data:`MAX_LIMIT`."""
    return whole_number("limit", default=default, low=1, high=MAX_LIMIT)


def one_of(name: str, choices: tuple[str, ...]) -> str | None:
    """The parameter's value when it is one of ``choices``, ``None`` when absent."""
    value = param(name)
    if value is not None and value not in choices:
        raise BadRequest(
            f"query parameter {name!r} must be one of: {', '.join(choices)}",
            {name: [f"Must be one of: {', '.join(choices)}."]},
        )
    return value


def timestamp(name: str) -> str | None:
    """An ISO-8601 time (``Z``, an offset, or naive UTC), as the hub spells times."""
    raw = param(name)
    if raw is None:
        return None
    try:
        return format_timestamp(parse_timestamp(raw))
    except (ValueError, OverflowError):
        raise BadRequest(
            f"query parameter {name!r} must be an ISO-8601 time such as 2025-03-01T10:00:00Z",
            {name: ["Not an ISO-8601 time."]},
        ) from None


#: An IANA time zone name: letters first, then letters, digits, ``_+-``, parts joined by ``/``.
_ZONE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_+-]{0,30}(?:/[A-Za-z0-9_+-]{1,30}){0,2}")
_OFFSET = re.compile(r"[+-]?[0-9]{1,4}")
#: The furthest offsets from UTC any place uses: UTC-12:00 to UTC+14:00.
MIN_UTC_OFFSET, MAX_UTC_OFFSET = -12 * 60, 14 * 60


def time_zone() -> tuple[tzinfo, str]:
    """The time zone days are counted in, and its name: ``tz`` (an IANA name such as
    ``Europe/Berlin``) or ``utc_offset`` (minutes east of UTC, e.g. ``120`` or ``-300``),
    at most one of them; UTC when neither is given."""
    name, offset = param("tz"), param("utc_offset")
    if name is not None and offset is not None:
        raise BadRequest(
            "give the query parameter 'tz' or 'utc_offset', not both",
            {"tz": ["Not together with utc_offset."], "utc_offset": ["Not together with tz."]},
        )
    if name is not None:
        return _named_zone(name), name
    if offset is not None:
        return _offset_zone(offset)
    return UTC, "UTC"


def _named_zone(name: str) -> tzinfo:
    refusal = BadRequest(
        "query parameter 'tz' must name a time zone, such as UTC or Europe/Berlin",
        {"tz": ["Not a known IANA time zone name."]},
    )
    if not _ZONE_NAME.fullmatch(name):
        raise refusal
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise refusal from None


def _offset_zone(raw: str) -> tuple[tzinfo, str]:
    minutes = int(raw) if _OFFSET.fullmatch(raw) else None
    if minutes is None or not MIN_UTC_OFFSET <= minutes <= MAX_UTC_OFFSET:
        raise BadRequest(
            "query parameter 'utc_offset' must be minutes east of UTC, "
            f"a whole number from {MIN_UTC_OFFSET} to {MAX_UTC_OFFSET}",
            {"utc_offset": [f"Must be between {MIN_UTC_OFFSET} and {MAX_UTC_OFFSET}."]},
        )
    if minutes == 0:
        return UTC, "UTC"
    sign = "+" if minutes > 0 else "-"
    hours, rest = divmod(abs(minutes), 60)
    return timezone(timedelta(minutes=minutes)), f"UTC{sign}{hours:02d}:{rest:02d}"
