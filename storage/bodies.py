"""What both stores keep of an event beside its type, project, deployment and id: its body.

A store keeps those four in columns (SQLite) or fields (Redis) of their own,
so the body holds only the rest of the wire shape, under short keys: the
timestamp (``t``) and the compact payload (``q``, protocol 2: null and
default keys left out), without what most events repeat: a
``source_format`` that is the event's type (one that is not, or none, is
written out, none as null), and a ``started_at``/``completed_at`` that is
the event's timestamp (``a``: a bit for each, :data:`AT_TIMESTAMP`).  The
SQLite store also keeps a ``log_entry``'s text once, in its log lines: the
body then names them (``l``: first line id and count) instead of holding the
message, and :func:`event_of` takes the text back from them.

Bodies written before (``p`` for the compact payload as it was, or the wire
shape's ``timestamp``/``payload``) read as they are.
"""

from __future__ import annotations

from typing import Any

import orjson

from ledger.events import Event, compact_payload, full_payload
from ledger.logs import LogLine

#: Payload keys left out of a body when they are its timestamp (bit ``1 << index``).
AT_TIMESTAMP = ("started_at", "completed_at")


def pack(event: Event, lines: tuple[int, int] | None = None) -> bytes:
    """The body of ``event``; ``lines`` (first id, count): its message is kept there."""
    payload = compact_payload(event.payload)
    body: dict[str, Any] = {"t": event.timestamp, "q": payload}
    if payload.get("source_format") == event.type:
        del payload["source_format"]
    else:
        payload["source_format"] = payload.get("source_format")
    same = 0
    for bit, key in enumerate(AT_TIMESTAMP):
        if payload.get(key) == event.timestamp:
            del payload[key]
            same |= 1 << bit
    if same:
        body["a"] = same
    if lines is not None:
        del payload["message"]
        body["l"] = lines
    return orjson.dumps(body)


def text_in_lines(event: Event, lines: list[LogLine]) -> bool:
    """Whether ``lines`` give ``event``'s message back exactly (joined by newlines), so the
    body need not hold it: a ``log_entry`` whose message is its only text."""
    message = event.payload.get("message")
    return (
        event.type == "log_entry"
        and isinstance(message, str)
        and bool(lines)
        and "\n".join(line.text for line in lines) == message
    )


def unpack(raw: bytes) -> dict[str, Any]:
    return dict(orjson.loads(raw))


def lines_of(body: dict[str, Any]) -> tuple[int, int] | None:
    """The (first id, count) of the log lines holding the body's message, if they do."""
    found = body.get("l")
    return None if found is None else (int(found[0]), int(found[1]))


def event_of(
    body: dict[str, Any],
    *,
    event_type: str,
    project: str,
    deployment_id: str | None,
    event_id: str,
    text: str | None = None,
) -> Event:
    """The event an unpacked body was packed from; ``text``: the message its lines hold."""
    timestamp = body["t"] if "t" in body else body["timestamp"]
    if "q" in body:
        payload = body["q"]
        if "source_format" not in payload:
            payload["source_format"] = event_type
        elif payload["source_format"] is None:
            del payload["source_format"]
        for bit, key in enumerate(AT_TIMESTAMP):
            if body.get("a", 0) & 1 << bit:
                payload[key] = timestamp
    else:
        payload = body["p"] if "p" in body else body["payload"]
    if text is not None:
        payload["message"] = text
    return Event(
        type=event_type,
        project=project,
        deployment_id=deployment_id,
        timestamp=timestamp,
        payload=full_payload(payload),
        id=event_id,
    )
