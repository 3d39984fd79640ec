"""A lifecycle event's log text, stored as ``log_entry`` events right after it.

Lifecycle events (``deployment_*``, ``step_*``) reach every page that shows a
status, list pages included, while log lines matter only to whoever reads the
log.  So a lifecycle event that carries ``logs`` is stored as itself without
them, followed by companion ``log_entry`` events: one with the logs (level
``info``) and, when it has one, one with its ``error`` (level ``error``,
which the lifecycle event keeps too, for the view).  The log lines are the
same lines in the same order as when the lifecycle event carried them, and a
lifecycle frame stays small whatever the size of the log.

A companion goes to the same deployment: the one its lifecycle event names,
or for a legacy body that names none, the one that body went to
(:attr:`~ledger.events.Join.PRECEDING`).  Its ``event_id`` is derived from
the lifecycle event's, so a repeated delivery repeats both.
"""

from __future__ import annotations

from typing import NamedTuple

from ledger.events import LIFECYCLE_TYPES, Event, Join, empty_payload


class Split(NamedTuple):
    """The events to store, and where the sender's own events are among them (what a
    sender is answered: one id per event it sent, companions are the hub's)."""

    events: list[Event]
    own: list[int]


def with_companions(events: list[Event]) -> Split:
    """``events`` with each lifecycle event's log text moved into companions after it."""
    if not any(event.type in LIFECYCLE_TYPES and event.payload["logs"] for event in events):
        return Split(events, list(range(len(events))))
    split = Split([], [])
    for event in events:
        split.own.append(len(split.events))
        if event.type in LIFECYCLE_TYPES and event.payload["logs"]:
            split.events.extend(_split(event))
        else:
            split.events.append(event)
    return split


def _split(event: Event) -> list[Event]:
    lifecycle = event.with_(payload={**event.payload, "logs": None}, lines_follow=True)
    texts = [("logs", "info", event.payload["logs"]), ("error", "error", event.payload["error"])]
    return [lifecycle] + [
        _companion(event, name, level, text) for name, level, text in texts if text
    ]


def _companion(event: Event, name: str, level: str, text: str) -> Event:
    payload = empty_payload()
    payload.update(
        job=event.payload["job"],
        step=event.payload["step"],
        level=level,
        message=text,
        source_format=event.payload["source_format"],
    )
    return Event(
        "log_entry",
        event.project,
        event.deployment_id,
        event.timestamp,
        payload,
        dedup_key=None if event.dedup_key is None else f"{event.dedup_key}#{name}",
        join=None if event.deployment_id is not None else Join.PRECEDING,
    )
