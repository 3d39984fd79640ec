"""Lenient-but-exact marshmallow fields for what real senders put on the wire.

Shell scripts send numbers as strings, ``""`` for "unknown", ids as numbers or
strings, and GitHub timestamps with seven fraction digits.  These fields accept
all of that and normalise it, while still rejecting values that mean nothing
(``"abc"`` seconds, a status word nobody defined) with a message that says what
would have been accepted.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from marshmallow import ValidationError, fields

from ledger.events import MAX_NAME_LENGTH, STATUS_WORDS
from ledger.timestamps import format_timestamp, parse_timestamp

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class Text(fields.Field[str | None]):
    """Any Unicode text (ANSI codes included); numbers become their decimal text.

    ``""`` and ``null`` load as ``None`` so that "unknown" has one spelling.
    """

    def __init__(self, *, max_length: int | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("allow_none", True)
        super().__init__(**kwargs)
        self.max_length = max_length

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> str | None:
        if isinstance(value, bool):
            raise ValidationError("Not a valid string.")
        if isinstance(value, int | float):
            value = str(value)
        if not isinstance(value, str):
            raise ValidationError("Not a valid string.")
        if value == "":
            return None
        if self.max_length is not None and len(value) > self.max_length:
            raise ValidationError(f"Longer than {self.max_length} characters.")
        return value


class Name(Text):
    """An identifier (project, deployment id, job, step): one line, bounded length."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_length=MAX_NAME_LENGTH, **kwargs)

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> str | None:
        text = super()._deserialize(value, attr, data, **kwargs)
        if text is None:
            return None
        text = text.strip()
        if _CONTROL.search(text):
            raise ValidationError("Must not contain control characters.")
        return text or None


#: The longest duration a sender may report: ten years, in milliseconds.  Larger numbers
#: mean a bug in the sender, and beyond 64 bits they could not even be stored.
MAX_DURATION_MS = 10 * 365 * 86400 * 1000
#: The highest step number a sender may give.
MAX_STEP_NUMBER = 1_000_000


class Number(fields.Field[Any]):
    """A finite number from 0 to :attr:`maximum`, given as a JSON number or a numeric string.

    Every number is range-checked here, at validation, so that no value can
    pass and then fail where it is stored (with everyone's writes beside it).
    """

    #: The largest value accepted, in the unit the sender writes.
    maximum: float = float(MAX_DURATION_MS)
    unit = ""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("allow_none", True)
        super().__init__(**kwargs)

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> float | None:
        if isinstance(value, bool):
            raise ValidationError("Not a valid number.")
        if isinstance(value, str):
            if value.strip() == "":
                return None
            try:
                value = float(value)
            except ValueError:
                raise ValidationError("Not a valid number.") from None
        if not isinstance(value, int | float) or not math.isfinite(value):
            raise ValidationError("Not a valid number.")
        if not 0 <= value <= self.maximum:
            raise ValidationError(f"Must be between 0 and {self.maximum:.0f}{self.unit}.")
        return float(value)


class Seconds(Number):
    """A duration in seconds on the wire, in whole milliseconds once loaded."""

    maximum = MAX_DURATION_MS / 1000
    unit = " seconds"

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> int | None:
        seconds = super()._deserialize(value, attr, data, **kwargs)
        return None if seconds is None else round(seconds * 1000)


class Millis(Number):
    """A duration already in milliseconds."""

    unit = " milliseconds"

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> int | None:
        millis = super()._deserialize(value, attr, data, **kwargs)
        return None if millis is None else round(millis)


class Count(Number):
    """A whole, non-negative number such as a step's position."""

    maximum = MAX_STEP_NUMBER

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> int | None:
        number = super()._deserialize(value, attr, data, **kwargs)
        if number is None:
            return None
        if not number.is_integer():
            raise ValidationError("Not a whole number.")
        return int(number)


class Timestamp(fields.Field[str | None]):
    """ISO-8601 in any of the senders' spellings; loaded as the one normalised spelling."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("allow_none", True)
        super().__init__(**kwargs)

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> str | None:
        if value is None or value == "":
            return None
        if not isinstance(value, str) or len(value) > 64:
            raise ValidationError("Not a valid ISO-8601 timestamp.")
        try:
            return format_timestamp(parse_timestamp(value))
        except (ValueError, OverflowError):
            raise ValidationError("Not a valid ISO-8601 timestamp.") from None


class Status(fields.Field[tuple[str, bool] | None]):
    """A status word in any vocabulary of LEGACY.md, loaded as ``(status, retry)``."""

    def __init__(self, *, empty: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("allow_none", True)
        super().__init__(**kwargs)
        self.empty = empty

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> tuple[str, bool] | None:
        if value is None or value == "":
            return None if self.empty is None else (self.empty, False)
        if not isinstance(value, str):
            raise ValidationError("Not a valid status.")
        word = value.strip().lower()
        if word not in STATUS_WORDS:
            allowed = ", ".join(sorted(STATUS_WORDS))
            raise ValidationError(f"Unknown status {value[:40]!r}; allowed: {allowed}.")
        return STATUS_WORDS[word], word == "retrying"
