"""``POST /api/webhooks/gitlab``: a GitLab delivery's body, translated and validated.

The translation is ``senders/gitlab.py``; this is the part only the server
needs: the route's bounds, and loading the translated bodies through the
schemas every other event passes (``app/github.py`` does the same for GitHub).
"""

from __future__ import annotations

from collections.abc import Mapping

from app.github import load_bodies
from app.ingest import json_depth, parse_json
from ledger.errors import Invalid
from ledger.events import Event
from senders.github import IgnoredDelivery
from senders.gitlab import RECORDED_HOOKS, delivery_bodies


def decode_delivery(
    body: bytes,
    hook: str | None,
    projects: Mapping[str, str],
    *,
    max_depth: int,
    max_events: int,
) -> list[Event]:
    """The events of one ``POST /api/webhooks/gitlab`` body (after its token was checked).

    ``hook`` is the ``X-Gitlab-Event`` header; other hooks (``Push Hook``, the
    test button's samples, ...) store nothing.
    """
    if hook not in RECORDED_HOOKS:
        shown = repr(hook[:50]) if hook else "a delivery without X-Gitlab-Event"
        raise IgnoredDelivery(
            f"{shown} is not recorded; only {', '.join(RECORDED_HOOKS[:-1])} "
            f"and {RECORDED_HOOKS[-1]}"
        )
    payload = parse_json(body, "gitlab")
    if json_depth(payload, max_depth) > max_depth:
        raise Invalid(f"JSON is nested deeper than {max_depth} levels", {"max_depth": max_depth})
    bodies = delivery_bodies(hook, payload, projects)
    if len(bodies) > max_events:
        raise Invalid(
            f"the delivery gives {len(bodies)} events; at most {max_events} are allowed",
            {"events": [f"At most {max_events} events."]},
        )
    return load_bodies(bodies, "GitLab")
