"""Query-string parameters, parsed strictly: a bad one is a 400 that names it.

Never a silently different answer: a limit that is not a whole number, a
parameter longer than any name the hub stores, or a number outside its range
is refused, whichever route it was sent to.
"""

from __future__ import annotations

from typing import overload

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
