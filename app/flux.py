"""``POST /api/webhooks/flux``: a Flux notification-controller event, translated and validated.

The translation is ``senders/flux.py``; this is the part only the server
needs, as ``app/github.py`` and ``app/gitlab.py`` are for theirs.
"""

from __future__ import annotations

from app.github import load_bodies
from app.ingest import json_depth, parse_json
from ledger.errors import Invalid
from ledger.events import Event
from senders.flux import event_bodies


def decode_event(body: bytes, *, max_depth: int) -> list[Event]:
    """The events of one ``POST /api/webhooks/flux`` body (after its signature was checked)."""
    payload = parse_json(body, "flux")
    if json_depth(payload, max_depth) > max_depth:
        raise Invalid(f"JSON is nested deeper than {max_depth} levels", {"max_depth": max_depth})
    return load_bodies(event_bodies(payload), "Flux")
