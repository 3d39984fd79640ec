"""Which events a subscription wants: one project, one deployment or all, maybe some types.

Shared by the WebSocket session, the SSE stream and the stores' history
queries, so that replay and live delivery can never disagree on a match.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ledger.events import EVENT_TYPES, Event

#: The topic of a subscription to every project.
ALL = "all"
#: The patterns a ``types`` entry may be besides a type: ``"*"`` (every type) and
#: ``"<family>_*"`` for each family of types (``deployment_*``, ``step_*``, ...).
TYPE_PATTERNS: dict[str, frozenset[str]] = {
    "*": frozenset(EVENT_TYPES),
    **{
        f"{family}_*": frozenset(t for t in EVENT_TYPES if t.startswith(f"{family}_"))
        for family in dict.fromkeys(t.split("_")[0] for t in EVENT_TYPES if "_" in t)
    },
}


def expand_types(entries: Iterable[object]) -> frozenset[str]:
    """The event types ``entries`` name, outright or by a pattern of :data:`TYPE_PATTERNS`.

    Patterns are expanded here, once, so a filter holds plain types and matching
    an event stays one set lookup.  Raises ``ValueError`` naming the first entry
    that is neither.
    """
    found: set[str] = set()
    for entry in entries:
        if isinstance(entry, str) and entry in TYPE_PATTERNS:
            found |= TYPE_PATTERNS[entry]
        elif isinstance(entry, str) and entry in EVENT_TYPES:
            found.add(entry)
        else:
            shown = str(entry)[:50]
            raise ValueError(
                f"unknown event type {shown!r} in 'types'; patterns: {', '.join(TYPE_PATTERNS)}"
            )
    return frozenset(found)


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
