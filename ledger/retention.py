"""Which deployments pruning removes: past the age limit or beyond the count limit.

Whole deployments go, never part of one, so a view can always be folded again
from what is left; project notes (events with no deployment) go by the same
limits on their own.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Retention:
    """``days`` of age and ``max_events`` in the log kept; 0 turns a limit off."""

    days: float = 0.0
    max_events: int = 0

    @property
    def active(self) -> bool:
        return bool(self.days or self.max_events)

    def age_cutoff(self, now: float) -> float | None:
        """Activity before this moment (seconds since the epoch) is too old, or ``None``."""
        return now - self.days * 86400 if self.days else None

    def excess(self, total_events: int) -> int:
        """How many of the oldest events are over the count limit."""
        if not self.max_events or total_events <= self.max_events:
            return 0
        return total_events - self.max_events
