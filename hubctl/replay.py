"""Re-post events to a hub: from a JSON-lines file, or from another hub's ``/api/events``.

What ``/api/events``, the WebSocket and ``hubctl tail --json`` give out are
*normalised* events (``id``, ``type``, ``project``, ``deployment_id``,
``timestamp``, ``payload``), which no ingest route takes as they are.
:func:`to_bodies` turns each back into the typed body (CONTRACT.md "Event
types") that loads into the same normalised event, with
``event_id = "replay-<original id>"``, so replaying the same events twice
stores them once.  Lines without a ``payload`` are taken to be typed bodies
already and are posted as they are.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from hubctl.hub import CommandError, HubClient, Posted
from ledger.events import RUN_METADATA

#: Payload keys that typed bodies carry under the same name.
PAYLOAD_FIELDS = (
    "job",
    "step",
    "step_number",
    "duration_ms",
    "started_at",
    "completed_at",
    "message",
    "logs",
    "level",
    "error",
    "metrics",
    *RUN_METADATA,
    "from_deployment_id",
    "reason",
)

#: Largest replay file read; a hub's whole history is better replayed hub to hub.
MAX_FILE_BYTES = 512 * 1024 * 1024


def to_bodies(event: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """``(route, typed body)`` pairs that recreate one normalised event."""
    payload = event.get("payload")
    if not isinstance(payload, dict):
        return [("deployment", event)]
    kind = str(event.get("type"))
    base: dict[str, Any] = {
        "project": event.get("project"),
        "timestamp": event.get("timestamp"),
        "event_id": f"replay-{event.get('id')}",
    }
    if event.get("deployment_id") is not None:
        base["deployment_id"] = event["deployment_id"]
    extra = payload.get("extra")
    if not isinstance(extra, dict):
        extra = {}
    if kind == "project_status":
        return [("project-status", {**extra, **base, "status": extra.get("status")})]
    body: dict[str, Any] = {**extra, "type": kind, **base}
    for name in PAYLOAD_FIELDS:
        if payload.get(name) is not None:
            body[name] = payload[name]
    status = payload.get("status")
    if status is not None:
        body["status"] = "retrying" if payload.get("retry") and status == "running" else status
    bodies = [("deployment", body)]
    for number, step in enumerate(payload.get("steps") or [], start=1):  # a summary's steps
        bodies.append(
            (
                "deployment",
                {
                    **base,
                    "type": "step_completed",
                    "event_id": f"replay-{event.get('id')}-step-{number}",
                    "job": step.get("job"),
                    "step": step.get("step"),
                    "status": step.get("status"),
                    "step_number": step.get("step_number", number),
                },
            )
        )
    return bodies


def read_file(path: str) -> Iterator[dict[str, Any]]:
    """Events from JSON lines, or from one saved ``/api/events`` answer (``{"events": [...]}``)."""
    try:
        if path == "-":
            text = sys.stdin.read(MAX_FILE_BYTES + 1)
        else:
            with Path(path).open(encoding="utf-8") as handle:
                text = handle.read(MAX_FILE_BYTES + 1)
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"cannot read {path}: {exc}") from None
    if len(text) > MAX_FILE_BYTES:
        raise CommandError(f"{path} is larger than {MAX_FILE_BYTES} bytes; split it")
    if text.lstrip().startswith("{"):
        try:
            whole = json.loads(text)
        except ValueError:
            whole = None
        if isinstance(whole, dict) and isinstance(whole.get("events"), list):
            yield from whole["events"]
            return
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError as exc:
            raise CommandError(f"{path}, line {number}: not JSON ({exc})") from None
        if not isinstance(value, dict):
            raise CommandError(f"{path}, line {number}: an event must be a JSON object")
        yield value


def replay(events: Iterable[dict[str, Any]], target: HubClient) -> tuple[int, Posted]:
    """Post ``events`` in order (batched per route); return how many and the hub's ids."""
    pending: list[dict[str, Any]] = []
    route = "deployment"
    ids: list[str] = []
    count = 0
    duplicate = True

    def flush() -> None:
        nonlocal duplicate
        if pending:
            posted = target.post_events(pending, route)
            ids.extend(posted.ids)
            duplicate &= posted.duplicate
            pending.clear()

    for event in events:
        count += 1
        for body_route, body in to_bodies(event):
            if body_route != route:
                flush()
                route = body_route
            pending.append(body)
    flush()
    return count, Posted(ids, duplicate and bool(ids))
