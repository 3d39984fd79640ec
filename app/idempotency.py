"""Which ids make a request or an event a repeat, and whose ids they are.

A sender retries: a request repeated with the same delivery id (the
``Idempotency-Key``, ``X-GitHub-Delivery`` or ``webhook-id`` header) answers
the first one's ids and stores nothing, and so does an event repeated with
the same ``event_id``.  Two rules keep those ids from being borrowed:

* **Only signed ids count when a request is signed.**  Standard Webhooks sign
  ``webhook-id`` with the body, so it is the delivery id and any other header
  is ignored: a captured request replayed with a fresh unsigned
  ``Idempotency-Key`` is still the same delivery.  GitHub's HMAC signs the
  body only, so no header is trusted then; the ``event_id`` values inside the
  signed body (GitHub runs and jobs always carry them) still deduplicate.
* **Ids are the sender's own.**  Every id is scoped to the credential that
  authenticated the request (a fingerprint, never the secret) and to the
  project(s) it is about, so sender B posting first with sender A's key or
  ``event_id`` cannot make A's events vanish as "duplicates".

A delivery id repeated with a different body is a mistake in the sender
(Stripe's rule): it answers 409 and stores nothing, instead of claiming the
new body was stored.  An ``event_id`` repeated with other content keeps the
first event (translations such as GitHub's may send one event again with
more detail).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import orjson

from app.auth import Sender
from ledger.events import Event

#: Headers that identify one delivery, in the order they are looked at.
DELIVERY_HEADERS = ("X-GitHub-Delivery", "Idempotency-Key", "webhook-id")
#: The same headers as WSGI environ keys, read directly on every request.
_DELIVERY_ENVIRON = tuple(
    (name, "HTTP_" + name.upper().replace("-", "_")) for name in DELIVERY_HEADERS
)


def delivery_key(sender: Sender, environ: Mapping[str, Any], events: list[Event]) -> str | None:
    """The request's delivery id, scoped to its sender and projects, or ``None``."""
    if sender.signed:
        found = ("webhook-id", sender.signed_id) if sender.signed_id else None
    else:
        found = next(
            ((name, environ[key]) for name, key in _DELIVERY_ENVIRON if environ.get(key)), None
        )
    if found is None:
        return None
    projects = sorted({event.project for event in events})
    return orjson.dumps([sender.scope, projects, *found]).decode()


def scoped(sender: Sender, events: list[Event]) -> list[Event]:
    """``events`` with each ``event_id`` scoped to its sender and project."""
    return [
        event
        if event.dedup_key is None
        else event.with_(
            dedup_key=orjson.dumps([sender.scope, event.project, event.dedup_key]).decode()
        )
        for event in events
    ]


def body_digest(body: bytes) -> str:
    """What tells a repeated delivery from another body sent under the same id."""
    return hashlib.sha256(body).hexdigest()
