"""The deployment view: a pure function of a deployment's lifecycle events.

Webhooks arrive late, twice and out of order (a completion before its start, a
step reported after the deployment ended).  Rather than patching a stored row
with whatever came last, the store re-folds the deployment's lifecycle events
after each write.  The fold first removes exact duplicates and sorts by
``(timestamp, type rank, content)``, so the result depends only on the set of
events, never on their arrival order; ``tests/unit/test_view.py`` checks that
over random permutations.  Log lines and metrics are kept beside the view
(they are many and need no fold).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field, fields
from datetime import timedelta
from typing import Any

import orjson

from ledger.events import RUN_METADATA, TERMINAL_STATUSES, Event
from ledger.timestamps import duration_between, format_timestamp, parse_timestamp

#: Tie-break for events stamped with the same instant: starts before ends.
TYPE_RANK = {
    "deployment_started": 0,
    "step_started": 1,
    "log_entry": 2,
    "metrics_update": 3,
    "step_completed": 4,
    "deployment_completed": 5,
    "deployment_rollback": 6,
}

#: Types that shape the view; the rest (logs, metrics, project notes) are stored beside it.
LIFECYCLE_TYPES = (
    "deployment_started",
    "step_started",
    "step_completed",
    "deployment_completed",
    "deployment_rollback",
)

UNKNOWN_PROJECT = "unknown"


def content_key(event: Event) -> bytes:
    """What makes two events the same, whatever id or arrival order they got."""
    return orjson.dumps(
        [event.type, event.timestamp, event.deployment_id, event.payload],
        option=orjson.OPT_SORT_KEYS,
    )


def sort_key(event: Event, key: bytes) -> tuple[str, int, str]:
    """Fold order: time, then starts before ends, then content (for a total order)."""
    return event.timestamp, TYPE_RANK.get(event.type, 9), key.decode()


def resolve_project(projects: list[str]) -> str:
    """A deployment's project: the real name any event gave (senders may say ``unknown``)."""
    named = sorted({p for p in projects if p and p != UNKNOWN_PROJECT})
    return named[0] if named else UNKNOWN_PROJECT


@dataclass
class _Step:
    job: str
    name: str
    first_seen: str
    status: str = "pending"
    step_number: int | None = None
    started_at: str | None = None
    completed_at: str | None = None
    duration_ms: int | None = None
    retries: int = 0
    error: str | None = None
    message: str | None = None
    key: str | None = None

    def apply(self, event: Event, payload: dict[str, Any]) -> None:
        status = payload.get("status") or "running"
        if payload.get("retry"):
            self.retries += 1
        if status not in TERMINAL_STATUSES:
            if self.status in TERMINAL_STATUSES:  # a later start: the step runs again
                self.completed_at = None
                self.duration_ms = None
            self.status = status
        else:
            self.status = status
            self.completed_at = payload.get("completed_at") or event.timestamp
            self.duration_ms = payload.get("duration_ms")
        started = payload.get("started_at")
        if started and (self.started_at is None or started < self.started_at):
            self.started_at = started
        if payload.get("step_number") is not None:
            self.step_number = payload["step_number"]
        self.error = payload.get("error") or self.error
        self.message = payload.get("message") or payload.get("logs") or self.message
        self.key = payload.get("key") or self.key

    def to_dict(self) -> dict[str, Any]:
        duration = self.duration_ms
        if duration is None and self.status in TERMINAL_STATUSES:
            duration = duration_between(self.started_at, self.completed_at)
        return {
            "name": self.name,
            "key": self.key,
            "status": self.status,
            "step_number": self.step_number,
            "started_at": self.started_at,
            "completed_at": self.completed_at if self.status in TERMINAL_STATUSES else None,
            "duration_ms": duration,
            "retries": self.retries,
            "error": self.error,
            "message": self.message,
        }


@dataclass
class Fold:
    """The running state of a deployment's fold; serialisable, so it can resume.

    Events almost always arrive in timestamp order, so the store keeps this state
    beside the view and applies a new event to it directly when the event sorts
    after every event already folded (``last_key``); only an event that sorts
    earlier makes the store re-fold from the log.  Both paths give the same
    result, which ``tests/unit/test_view.py`` checks.
    """

    status: str | None = None
    started_at: str | None = None
    completed_at: str | None = None
    duration_ms: int | None = None
    error: str | None = None
    message: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    rollback: dict[str, Any] | None = None
    steps: dict[tuple[str, str], _Step] = field(default_factory=dict)
    projects: list[str] = field(default_factory=list)
    first_ts: str | None = None
    last_ts: str | None = None
    last_key: tuple[str, int, str] | None = None

    @classmethod
    def of(cls, events: list[Event]) -> Fold:
        """Fold from scratch: drop exact duplicates, sort, apply in order."""
        fold = cls()
        keyed = {content_key(e): e for e in events if e.type in LIFECYCLE_TYPES}
        for key, event in sorted(keyed.items(), key=lambda item: sort_key(item[1], item[0])):
            fold.apply(event, key)
        return fold

    def follows(self, event: Event, key: bytes) -> bool:
        """Whether ``event`` sorts after everything folded, so it may simply be applied."""
        return self.last_key is None or sort_key(event, key) > self.last_key

    def apply(self, event: Event, key: bytes) -> None:
        self.last_key = sort_key(event, key)
        if event.project not in self.projects:
            self.projects.append(event.project)
        self.first_ts = min(self.first_ts or event.timestamp, event.timestamp)
        self.last_ts = max(self.last_ts or event.timestamp, event.timestamp)
        payload = event.payload
        for name in RUN_METADATA:
            if payload.get(name) is not None:
                self.metadata[name] = payload[name]
        if event.type == "deployment_started":
            self._start(payload.get("started_at") or event.timestamp, payload)
        elif event.type == "deployment_completed":
            self.status = payload["status"]
            self.completed_at = payload.get("completed_at") or event.timestamp
            self.duration_ms = payload.get("duration_ms")
            if payload.get("started_at"):
                self._earliest_start(payload["started_at"])
            self.error = payload.get("error") or self.error
            self.message = payload.get("message") or payload.get("logs") or self.message
            for number, summary in enumerate(payload.get("steps") or [], start=1):
                self._step(summary["job"], summary["step"], event.timestamp).apply(
                    event, {**summary, "step_number": summary.get("step_number", number)}
                )
        elif event.type == "deployment_rollback":
            self.rollback = {
                "from_deployment_id": payload.get("from_deployment_id"),
                "reason": payload.get("reason"),
                "at": event.timestamp,
            }
        elif event.type in ("step_started", "step_completed"):
            self._step(payload["job"], payload["step"], event.timestamp).apply(event, payload)

    def _start(self, started_at: str, payload: dict[str, Any]) -> None:
        if self.status in TERMINAL_STATUSES:  # started again after it ended: a re-run
            self.completed_at = None
            self.duration_ms = None
            self.started_at = started_at
        self.status = payload.get("status") or "running"
        self._earliest_start(started_at)
        self.message = payload.get("message") or payload.get("logs") or self.message

    def _earliest_start(self, started_at: str) -> None:
        if self.started_at is None or started_at < self.started_at:
            self.started_at = started_at

    def _step(self, job: str, name: str, timestamp: str) -> _Step:
        step = self.steps.get((job, name))
        if step is None:
            step = self.steps[job, name] = _Step(job=job, name=name, first_seen=timestamp)
        return step

    def dumps(self) -> bytes:
        state = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "steps"}
        state["steps"] = list(self.steps.values())  # orjson writes dataclasses natively
        return orjson.dumps(state)

    @classmethod
    def loads(cls, raw: bytes) -> Fold:
        state = orjson.loads(raw)
        steps = [_Step(**step) for step in state.pop("steps")]
        last_key = state.pop("last_key")
        fold = cls(**state, last_key=tuple(last_key) if last_key else None)
        fold.steps = {(step.job, step.name): step for step in steps}
        return fold

    def headline(self) -> tuple[str, str | None, str | None]:
        """``(status, completed_at, started_at)`` without rendering the job tree.

        This is what the store indexes on every write, so it avoids the cost of
        :meth:`render`; a status inferred over steps equals one inferred over jobs.
        """
        status = self.status or _infer_status([s.status for s in self.steps.values()])
        completed_at = self.completed_at if status in TERMINAL_STATUSES else None
        # The first event's time stands in for an unknown start, unless that event is
        # the completion itself: then the start is unknown, not "0 ms before the end".
        first_seen = self.first_ts if self.first_ts != completed_at else None
        started_at = self.started_at or _earliest(
            [s.started_at for s in self.steps.values()] + [first_seen]
        )
        if self.duration_ms is not None and completed_at and not self.started_at:
            started_at = _minus(completed_at, self.duration_ms)
        return status, completed_at, started_at

    def render(self, deployment_id: str) -> dict[str, Any]:
        """The tree the read API serves."""
        status, completed_at, started_at = self.headline()
        duration = self.duration_ms if completed_at else None
        if duration is None:
            duration = duration_between(started_at, completed_at)
        return {
            "deployment_id": deployment_id,
            "project": resolve_project(self.projects),
            "status": status,
            "status_inferred": self.status is None,
            "started_at": started_at,
            "completed_at": completed_at,
            "duration_ms": duration,
            "error": self.error,
            "message": self.message,
            **{name: self.metadata.get(name) for name in RUN_METADATA},
            "rollback": self.rollback,
            "jobs": _jobs(self.steps.values()),
            "updated_at": self.last_ts,
        }


def build_view(deployment_id: str, events: list[Event]) -> dict[str, Any]:
    """Fold a deployment's lifecycle events into the tree the read API serves."""
    fold = Fold.of(events)
    for event in events:  # log and metrics events still name the project
        if event.project not in fold.projects:
            fold.projects.append(event.project)
    return fold.render(deployment_id)


def _jobs(steps: Any) -> list[dict[str, Any]]:
    by_job: dict[str, list[_Step]] = {}
    for step in steps:
        by_job.setdefault(step.job, []).append(step)
    jobs = []
    for name, members in by_job.items():
        members.sort(
            key=lambda s: (
                s.step_number if s.step_number is not None else 1 << 30,
                s.started_at or s.first_seen,
                s.name,
            )
        )
        rendered = [s.to_dict() for s in members]
        status = _infer_status([s["status"] for s in rendered], settled="success")
        started = _earliest([s["started_at"] for s in rendered])
        ends = [s["completed_at"] for s in rendered]
        completed = max(e for e in ends if e) if status in TERMINAL_STATUSES and any(ends) else None
        jobs.append(
            {
                "name": name,
                "status": status,
                "started_at": started,
                "completed_at": completed,
                "duration_ms": duration_between(started, completed),
                "steps": rendered,
                "_order": min(s.started_at or s.first_seen for s in members),
            }
        )
    jobs.sort(key=lambda j: (j.pop("_order"), j["name"]))
    return jobs


def _infer_status(statuses: list[str], settled: str = "running") -> str:
    """A status from parts: any failure fails; else running while any part runs.

    A deployment with no deployment-level event stays ``running`` even when all
    steps ended (more may come); a job is ``success`` once all its steps ended.
    """
    if "failure" in statuses:
        return "failure"
    if any(s in ("running", "pending") for s in statuses) or not statuses:
        return "running" if statuses or settled == "running" else settled
    if "cancelled" in statuses:
        return "cancelled"
    if settled == "success" and all(s == "skipped" for s in statuses):
        return "skipped"
    return settled


def _earliest(times: list[str | None]) -> str | None:
    known = [t for t in times if t]
    return min(known) if known else None


def _minus(timestamp: str, millis: int) -> str:
    return format_timestamp(parse_timestamp(timestamp) - timedelta(milliseconds=millis))


def log_lines_of(event: Event) -> list[tuple[str | None, str | None, str, str, str]]:
    """``(job, step, level, timestamp, text)`` for each log line an event carries.

    A ``log_entry``'s message, any other event's ``logs`` and its ``error`` (at
    level ``error``) all become lines, one per line of text.
    """
    payload = event.payload
    if event.type == "log_entry":
        texts = [(payload.get("level") or "info", payload.get("message") or payload.get("logs"))]
    else:
        texts = [("info", payload.get("logs")), ("error", payload.get("error"))]
    return [
        (payload.get("job"), payload.get("step"), level, event.timestamp, line)
        for level, text in texts
        if text
        for line in str(text).splitlines() or [""]
    ]


def list_row(view: dict[str, Any], metrics: bytes | None) -> dict[str, Any]:
    """A deployments-list row: the view without its step tree, plus step counts."""
    steps = [step for job in view["jobs"] for step in job["steps"]]
    row = {key: value for key, value in view.items() if key != "jobs"}
    row["jobs"] = len(view["jobs"])
    row["steps"] = {
        "total": len(steps),
        **{
            s: sum(1 for st in steps if st["status"] == s)
            for s in ("success", "failure", "running", "skipped", "cancelled")
        },
    }
    row["metrics"] = orjson.loads(metrics) if metrics else None
    return row


def encode_cursor(sort_ts: str, deployment_id: str) -> str:
    """An opaque keyset cursor for the newest-first deployments list."""
    return base64.urlsafe_b64encode(orjson.dumps([sort_ts, deployment_id])).decode()


def decode_cursor(cursor: str) -> tuple[str, str]:
    """Raise ``ValueError`` for a cursor the API did not hand out."""
    try:
        sort_ts, deployment_id = orjson.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (binascii.Error, orjson.JSONDecodeError, ValueError, TypeError):
        raise ValueError("not a cursor from this API") from None
    if not isinstance(sort_ts, str) or not isinstance(deployment_id, str):
        raise ValueError("not a cursor from this API")
    return sort_ts, deployment_id
