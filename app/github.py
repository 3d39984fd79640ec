"""``POST /api/webhooks/github``: a delivery's body, translated and validated.

The translation of runs and jobs is ``senders/github.py`` (``hubctl`` uses it
too); this is the part only the server needs: the route's bounds, and loading
the translated bodies through the schemas every other event passes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from app.ingest import json_depth, load_each, parse_json
from app.schemas import load_typed_event
from ledger.errors import Invalid, Malformed
from ledger.events import Event
from senders.github import RECORDED_EVENTS, IgnoredDelivery, delivery_bodies, ping_answer


def load_bodies(bodies: Sequence[dict[str, Any]], source: str = "GitHub") -> list[Event]:
    """Validate translated bodies exactly as posted ones are; name the body that fails."""
    return load_each(
        bodies,
        load_typed_event,
        lambda _, body: (
            f"{source} data gave an invalid {body.get('type')} event; nothing was stored"
        ),
    )


def decode_delivery(
    body: bytes,
    event_name: str | None,
    projects: Mapping[str, str],
    *,
    max_depth: int,
    max_events: int,
) -> list[Event]:
    """The events of one ``POST /api/webhooks/github`` body (after its signature was checked).

    A ``ping`` (sent when the hook is made, or by "Redeliver") stores nothing
    and is answered with what the hook will record.

    The same bounds as any other ingest apply: nesting depth, and as many
    events as one batch may hold (a job's steps give two events each).
    """
    if event_name == "ping":
        try:
            payload: Any = parse_json(body, "github")
        except Malformed:
            payload = None
        raise IgnoredDelivery("'ping' records nothing", message=ping_answer(payload, projects))
    if event_name not in RECORDED_EVENTS:
        shown = repr(event_name[:50]) if event_name else "a delivery without X-GitHub-Event"
        raise IgnoredDelivery(
            f"{shown} is not recorded; only {', '.join(RECORDED_EVENTS[:-1])} "
            f"and {RECORDED_EVENTS[-1]}"
        )
    payload = parse_json(body, "github")
    if json_depth(payload, max_depth) > max_depth:
        raise Invalid(f"JSON is nested deeper than {max_depth} levels", {"max_depth": max_depth})
    bodies = delivery_bodies(event_name, payload, projects)
    if len(bodies) > max_events:
        raise Invalid(
            f"the delivery gives {len(bodies)} events; at most {max_events} are allowed",
            {"events": [f"At most {max_events} events."]},
        )
    return load_bodies(bodies)
