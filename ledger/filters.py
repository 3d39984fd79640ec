"""Which events a subscription wants: one project or one deployment, maybe some types.

Shared by the WebSocket session, the SSE stream and the stores' history
queries, so that replay and live delivery can never disagree on a match.
"""

from __future__ import annotations

from dataclasses import dataclass

from ledger.events import Event


@dataclass(frozen=True, slots=True)
class Filter:
    """Exactly one of ``project`` and ``deployment_id`` is set; ``types`` narrows it."""

    project: str | None = None
    deployment_id: str | None = None
    types: frozenset[str] | None = None

    def __post_init__(self) -> None:
        if (self.project is None) == (self.deployment_id is None):
            raise ValueError("a filter names exactly one project or one deployment")

    @property
    def topic(self) -> str:
        """A stable name for the filter's stream, e.g. ``project:web``."""
        if self.project is not None:
            return f"project:{self.project}"
        return f"deployment:{self.deployment_id}"

    def matches(self, event: Event) -> bool:
        if self.types is not None and event.type not in self.types:
            return False
        if self.project is not None:
            return event.project == self.project
        return event.deployment_id == self.deployment_id
