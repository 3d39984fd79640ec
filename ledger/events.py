"""The one normalised event shape that every sender format is turned into.

Stores, the deployment view, the read API and the broadcaster only ever see
:class:`Event`; the many wire formats end at ``schemas.py``/``legacy.py``.
Kept free of Flask so the broadcaster can run without the web app.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

#: Event types after normalisation (``step_manual`` and the legacy bodies become these).
EVENT_TYPES: tuple[str, ...] = (
    "deployment_started",
    "step_started",
    "step_completed",
    "log_entry",
    "metrics_update",
    "deployment_completed",
    "deployment_rollback",
    "project_status",
    "test",
)

#: Types that carry no deployment: they are logged and broadcast to the project only.
PROJECT_ONLY_TYPES = frozenset({"project_status", "test"})

#: Types that shape the deployment view; the others (log lines, metrics) are kept beside it.
LIFECYCLE_TYPES = frozenset(
    {
        "deployment_started",
        "step_started",
        "step_completed",
        "deployment_completed",
        "deployment_rollback",
    }
)

#: The status vocabulary of LEGACY.md after normalisation.
STATUSES: tuple[str, ...] = ("pending", "running", "success", "failure", "cancelled", "skipped")
TERMINAL_STATUSES = frozenset({"success", "failure", "cancelled", "skipped"})
#: A deployment, job or step in one of these may still change: it is open.
OPEN_STATUSES = frozenset({"running", "pending"})

#: Every word senders use, mapped onto :data:`STATUSES`; ``retrying`` also sets ``retry``.
STATUS_WORDS: dict[str, str] = {
    "success": "success",
    "succeeded": "success",
    "completed": "success",
    "failed": "failure",
    "failure": "failure",
    "error": "failure",
    "cancelled": "cancelled",
    "canceled": "cancelled",
    "skipped": "skipped",
    "running": "running",
    "started": "running",
    "in_progress": "running",
    "retrying": "running",
    "pending": "pending",
    "queued": "pending",
}

LOG_LEVELS: tuple[str, ...] = ("debug", "info", "warning", "error")

#: What a run is: its source and workflow; the view keeps the latest value of each.
RUN_METADATA: tuple[str, ...] = (
    "branch",
    "commit",
    "actor",
    "environment",
    "repository",
    "workflow_name",
    "workflow_id",
    "run_url",
)

#: Run metadata that has no payload key of its own: senders put it under ``payload.extra``
#: (typed bodies as unknown keys, translations by name) and the view shows the latest value.
EXTRA_METADATA: tuple[str, ...] = ("environment_url", "version")

#: Keys of ``Event.payload``: always all present (``None`` when unknown), whatever the type.
PAYLOAD_KEYS: tuple[str, ...] = (
    "job",
    "step",
    "step_number",
    "status",
    "retry",
    "duration_ms",
    "started_at",
    "completed_at",
    "message",
    "logs",
    "level",
    "error",
    "metrics",
    "steps",
    *RUN_METADATA,
    "from_deployment_id",
    "reason",
    "source_format",
    "repaired",
    "extra",
)

#: Longest identifier (project, deployment id, job, step) a sender may give.
MAX_NAME_LENGTH = 200

#: The job that steps without ``"job / step"`` in their name belong to.
DEFAULT_JOB = "default"


_EMPTY_PAYLOAD: dict[str, Any] = {**dict.fromkeys(PAYLOAD_KEYS), "retry": False, "repaired": False}


def empty_payload() -> dict[str, Any]:
    """A payload with every key present, so consumers never test for missing keys."""
    payload = _EMPTY_PAYLOAD.copy()
    payload["extra"] = {}
    return payload


#: The values a payload key has when the sender said nothing of it; the wire and the
#: store leave such keys out (protocol 2), and :func:`full_payload` puts them back.
PAYLOAD_DEFAULTS: dict[str, Any] = {"retry": False, "repaired": False, "extra": {}}

#: The version of the event shape: 2 leaves out payload keys that are null or at
#: their default (:data:`PAYLOAD_DEFAULTS`) and a null ``deployment_id``; 1 sent all.
PROTOCOL = 2


def compact_payload(payload: dict[str, Any]) -> dict[str, Any]:
    """``payload`` without the keys a reader takes as null or default (what is sent)."""
    return {
        key: value
        for key, value in payload.items()
        if value is not None and PAYLOAD_DEFAULTS.get(key) != value
    }


def full_payload(compact: dict[str, Any]) -> dict[str, Any]:
    """Every payload key again, missing ones null or default (what the code reads)."""
    payload = empty_payload()
    payload.update(compact)
    return payload


class Join(StrEnum):
    """How an event that names no deployment (a legacy body) finds one.

    The ledger decides inside the write (``ledger/recorder.py``), from the
    deployments open at that moment.
    """

    #: A new deployment (a ``running`` legacy body starts one).
    NEW = "new"
    #: The project's newest open deployment, or a new one when none is open.
    LATEST_OPEN = "latest_open"
    #: The deployment the event stored just before it went to (a lifecycle event's
    #: log lines, :mod:`ledger.companions`); the newest open one when there is none.
    PRECEDING = "preceding"


@dataclass(slots=True)
class Event:
    """One normalised event; ``id`` is empty until the store accepts it.

    ``dedup_key`` (the sender's ``event_id``), ``join`` (how a legacy body
    without a deployment id finds its deployment, :class:`Join`) and
    ``lines_follow`` (its log lines are carried by the ``log_entry`` events
    stored right after it, :mod:`ledger.companions`) steer storing only and
    are not part of the wire shape.

    Never changed once made (every subscriber's queue shares it): :meth:`with_`
    and :meth:`with_id` make changed copies.  It is not a frozen dataclass only
    because a frozen one's ``__init__`` costs several times as much, and ingest
    builds two for every event.
    """

    type: str
    project: str
    deployment_id: str | None
    timestamp: str
    payload: dict[str, Any] = field(default_factory=empty_payload)
    id: str = ""
    dedup_key: str | None = None
    join: Join | None = None
    lines_follow: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The wire shape of CONTRACT.md (protocol 2: null and default keys left out):
        what the store keeps and clients receive."""
        wire: dict[str, Any] = {"id": self.id, "type": self.type, "project": self.project}
        if self.deployment_id is not None:
            wire["deployment_id"] = self.deployment_id
        wire["timestamp"] = self.timestamp
        wire["payload"] = compact_payload(self.payload)
        return wire

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Event:
        """An event from its wire shape, either protocol's: missing keys are null or default."""
        return cls(
            type=data["type"],
            project=data["project"],
            deployment_id=data.get("deployment_id"),
            timestamp=data["timestamp"],
            payload=full_payload(data.get("payload") or {}),
            id=data["id"],
        )

    def with_(self, **changes: Any) -> Event:
        return replace(self, **changes)

    def with_id(self, event_id: str) -> Event:
        """The event as stored: ``with_(id=...)`` without ``replace``'s per-field
        introspection, which ingest would otherwise pay for every event."""
        return Event(
            self.type,
            self.project,
            self.deployment_id,
            self.timestamp,
            self.payload,
            event_id,
            self.dedup_key,
            self.join,
            self.lines_follow,
        )
