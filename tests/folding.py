"""What a store makes of deliveries, without a store: repeats dropped, then each deployment folded.

A store keeps the first event of each ``event_id`` (later ones are repeats,
``docs/EVENTS.md``) and renders a deployment from the set of its events
(``ledger/view.py``).  The sender translations' tests use this to check that
their deliveries give the same views in any order; the stores themselves run
the same properties in ``tests/integration/test_store_contract.py``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ledger.events import Event
from ledger.view import build_view


def stored(deliveries: Iterable[list[Event]]) -> list[Event]:
    """The events a store keeps from ``deliveries`` in this order: first of each id."""
    seen: set[str] = set()
    kept: list[Event] = []
    for events in deliveries:
        for event in events:
            if event.dedup_key is not None:
                if event.dedup_key in seen:
                    continue
                seen.add(event.dedup_key)
            kept.append(event)
    return kept


def views(deliveries: Iterable[list[Event]]) -> dict[str, dict[str, Any]]:
    """Each deployment's view after ``deliveries``, without ``updated_at`` and ``last_event_id``."""
    events = stored(deliveries)
    by_deployment: dict[str, list[Event]] = {}
    for event in events:
        if event.deployment_id is not None:
            by_deployment.setdefault(event.deployment_id, []).append(event)
    return {
        deployment_id: dict(build_view(deployment_id, members))
        for deployment_id, members in sorted(by_deployment.items())
    }
