"""Which events a subscription wants: one project, one deployment or all, maybe some types.

Shared by the WebSocket session, the SSE stream and the stores' history
queries, so that replay and live delivery can never disagree on a match.
"""

from __future__ import annotations

from dataclasses import dataclass

from ledger.events import Event

#: The topic of a subscription to every project.
ALL = "all"


@dataclass(frozen=True, slots=True)
class Filter:
    """At most one of ``project`` and ``deployment_id`` is set (neither: every event of
    every project); ``types`` narrows it."""

    project: str | None = None
    deployment_id: str | None = None
    types: frozenset[str] | None = None

    def __post_init__(self) -> None:
        if self.project is not None and self.deployment_id is not None:
            raise ValueError("a filter names one project, one deployment, or neither (all)")

    @property
    def topic(self) -> str:
        """A stable name for the filter's stream, e.g. ``project:web``; ``all`` for all."""
        if self.project is not None:
            return f"project:{self.project}"
        if self.deployment_id is not None:
            return f"deployment:{self.deployment_id}"
        return ALL

    def matches(self, event: Event) -> bool:
        if self.types is not None and event.type not in self.types:
            return False
        if self.project is not None:
            return event.project == self.project
        if self.deployment_id is not None:
            return event.deployment_id == self.deployment_id
        return True
