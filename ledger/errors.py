"""Why the hub refuses a body or an event, in words that know nothing of HTTP.

The decoders, sender translations and the ledger raise these; the web layer
(``app/errors.py``) is the one place that maps them to a status and the
contract's JSON error body, so the same refusal reads the same on every route
and in every process.

::

    EventError
    ├── Malformed   the body cannot be read at all (not JSON, not UTF-8)
    └── Invalid     readable, but not an event the hub can take (field errors in ``details``)
"""

from __future__ import annotations

from typing import Any


class EventError(ValueError):
    """A refusal with a message for people and ``details`` for programs."""

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(message={self.message!r}, details={self.details!r})"


class Malformed(EventError):
    """The body is not JSON (or not UTF-8): nothing in it could be read."""


class Invalid(EventError):
    """The body is JSON but not a valid event; ``details`` names the fields."""
