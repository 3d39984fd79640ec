"""The fold: a deployment's lifecycle events reduced to its state, whatever their order.

Webhooks arrive late, twice and out of order (a completion before its start, a
step reported after the deployment ended).  Rather than patching a stored row
with whatever came last, the ledger folds a deployment's lifecycle events in
one fixed order: exact duplicates removed, then sorted by ``(timestamp, type
rank, content)``.  The result depends only on the set of events, never on
their arrival order; ``tests/unit/test_fold.py`` checks that over random
permutations, duplicates and late events.

The state is serialisable (:meth:`Fold.dumps`), so a store keeps it and a new
event that sorts after everything folded is simply applied to it; an event
that sorts earlier makes the ledger fold again (``ledger/recorder.py``).
"""

from __future__ import annotations

import zlib
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

import orjson

from ledger.durations import minus
from ledger.events import (
    EXTRA_METADATA,
    LIFECYCLE_TYPES,
    OPEN_STATUSES,
    RUN_METADATA,
    TERMINAL_STATUSES,
    Event,
    compact_payload,
)
from ledger.projects import resolve_project

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

#: Longest value of an :data:`~ledger.events.EXTRA_METADATA` entry the view keeps.
MAX_METADATA_LENGTH = 2000
#: zlib level of stored folds: level 1 keeps nearly all of level 6's saving, for less CPU.
FOLD_COMPRESSION = 1
#: What a deflated fold is deflated against (zlib's preset dictionary): the keys and
#: common values of a fold's JSON, most common last, so that even a deployment's first
#: fold finds them to refer back to.  Never changed: every fold deflated with it needs
#: it to be read (zlib notes the dictionary's checksum in each one; a better dictionary
#: would be added beside this one and chosen by that checksum when reading).
FOLD_DICTIONARY = (
    b'"rollback":{"to":"from":"reason":},"retries":"step_number":"message":"error":"key":'
    b'"actor":"repository":"workflow_id":"run_url":"https://github.com/","environment_url":'
    b'"version":"deployment_rollback","step_started","status":"running","status":"pending",'
    b'"status":"cancelled","status":"skipped",{"status":"success","started_at":"20",'
    b'"completed_at":"20","duration_ms":,"metadata":{"branch":"main","commit":"'
    b'","environment":"production","workflow_name":"Deploy"},"projects":["'
    b'"],"first_ts":"20","last_ts":"20","last_key":["20",5,"[\\"deployment_completed\\",\\"20'
    b'\\",{\\"completed_at\\":\\"20\\",\\"source_format\\":\\"deployment_completed\\",'
    b'\\"status\\":\\"success\\"}]"],"created_ts":"20","steps":[{"job":"build","name":"",'
    b'"first_seen":"20","status":"failure","started_at":"20","completed_at":"20",'
    b'"duration_ms":,"error":"","failed_runs":1},{"job":"deploy","name":"","first_seen":"20",'
    b'"status":"success","started_at":"20","completed_at":"20","duration_ms":'
)

#: Where an event sorts in the fold: time, then type rank, then content.
SortKey = tuple[str, int, str]


def content_key(event: Event) -> bytes:
    """What makes two events the same, whatever id or arrival order they got.

    Of the compact payload (protocol 2): a fold keeps its last event's key, and
    the nulls of the full payload were most of a stored fold's bytes.
    """
    return orjson.dumps(
        [event.type, event.timestamp, event.deployment_id, compact_payload(event.payload)],
        option=orjson.OPT_SORT_KEYS,
    )


def sort_key(event: Event, key: bytes) -> SortKey:
    """Fold order: time, then starts before ends, then content (for a total order)."""
    return event.timestamp, TYPE_RANK.get(event.type, 9), key.decode()


@dataclass
class Step:
    """One step as its events leave it."""

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
    #: Times it ended in failure, re-runs included: a step that failed and then passed on
    #: a re-run of the same deployment is flaky (``ledger/trends.py``).
    failed_runs: int = 0

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
            if status == "failure":
                self.failed_runs += 1
        started = payload.get("started_at")
        if started and (self.started_at is None or started < self.started_at):
            self.started_at = started
        if payload.get("step_number") is not None:
            self.step_number = payload["step_number"]
        self.error = payload.get("error") or self.error
        self.message = payload.get("message") or self.message
        self.key = payload.get("key") or self.key


@dataclass
class Fold:
    """The running state of a deployment's fold; serialisable, so it can resume.

    ``projects`` holds every project name the deployment's events gave (the
    event that created it included, whatever its type); ``created_ts`` is
    that event's timestamp, which places a deployment whose start is unknown.
    """

    status: str | None = None
    started_at: str | None = None
    completed_at: str | None = None
    duration_ms: int | None = None
    error: str | None = None
    message: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    rollback: dict[str, Any] | None = None
    steps: dict[tuple[str, str], Step] = field(default_factory=dict)
    projects: list[str] = field(default_factory=list)
    first_ts: str | None = None
    last_ts: str | None = None
    last_key: SortKey | None = None
    created_ts: str | None = None

    @classmethod
    def of(cls, events: list[Event]) -> Fold:
        """Fold from scratch: drop exact duplicates, sort, apply in order."""
        fold = cls()
        fold.apply_all(events)
        return fold

    def apply_all(self, events: list[Event]) -> None:
        """Apply lifecycle ``events`` that all sort after what is folded, in fold order."""
        keyed = {content_key(e): e for e in events if e.type in LIFECYCLE_TYPES}
        for key, event in sorted(keyed.items(), key=lambda item: sort_key(item[1], item[0])):
            self.apply(event, key)

    def follows(self, event: Event, key: bytes) -> bool:
        """Whether ``event`` sorts after everything folded, so it may simply be applied."""
        return self.last_key is None or sort_key(event, key) > self.last_key

    def note(self, event: Event) -> None:
        """Remember the project and time of an event of the deployment that shapes nothing."""
        if event.project not in self.projects:
            self.projects.append(event.project)
        if self.created_ts is None:
            self.created_ts = event.timestamp

    def apply(self, event: Event, key: bytes) -> None:
        self.last_key = sort_key(event, key)
        self.note(event)
        self.first_ts = min(self.first_ts or event.timestamp, event.timestamp)
        self.last_ts = max(self.last_ts or event.timestamp, event.timestamp)
        payload = event.payload
        for name in RUN_METADATA:
            if payload.get(name) is not None:
                self.metadata[name] = payload[name]
        extra = payload.get("extra") or {}
        for name in EXTRA_METADATA:
            value = extra.get(name)
            if isinstance(value, str) and value:
                self.metadata[name] = value[:MAX_METADATA_LENGTH]
        if event.type == "deployment_started":
            self._start(payload.get("started_at") or event.timestamp, payload)
        elif event.type == "deployment_completed":
            self.status = payload["status"]
            self.completed_at = payload.get("completed_at") or event.timestamp
            self.duration_ms = payload.get("duration_ms")
            if payload.get("started_at"):
                self._earliest_start(payload["started_at"])
            self.error = payload.get("error") or self.error
            self.message = payload.get("message") or self.message
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
        self.message = payload.get("message") or self.message

    def _earliest_start(self, started_at: str) -> None:
        if self.started_at is None or started_at < self.started_at:
            self.started_at = started_at

    def _step(self, job: str, name: str, timestamp: str) -> Step:
        step = self.steps.get((job, name))
        if step is None:
            step = self.steps[job, name] = Step(job=job, name=name, first_seen=timestamp)
        return step

    def copy(self) -> Fold:
        """An independent copy, to fold on without changing this one.

        It goes through the state :meth:`dumps` keeps (not deflated): that holds
        every field a fold has, as a store reads it back, and costs a fraction of
        ``copy.deepcopy`` (a quarter for one step, less the more steps;
        docs/BENCHMARKS.md).
        """
        return self._of_state(orjson.loads(self._state()))

    @property
    def project(self) -> str:
        return resolve_project(self.projects)

    def dumps(self) -> bytes:
        """The fold as stores keep it: fields at their defaults (most of a step's) left out,
        which :meth:`loads` puts back, and the JSON deflated against
        :data:`FOLD_DICTIONARY` (a deployment's fold is the largest thing a store keeps of
        it; figures in docs/BENCHMARKS.md)."""
        deflate = zlib.compressobj(FOLD_COMPRESSION, zdict=FOLD_DICTIONARY)
        return deflate.compress(self._state()) + deflate.flush()

    def _state(self) -> bytes:
        """The fields away from their defaults, as JSON."""
        state = _changed(self, ("steps",))
        state["steps"] = [_changed(step, ()) for step in self.steps.values()]
        return orjson.dumps(state)

    @classmethod
    def loads(cls, raw: bytes) -> Fold:
        """A fold from :meth:`dumps`, also of an earlier version: plain JSON (written
        before folds were deflated) or deflated without the dictionary (zlib uses it only
        where the data asks for it), missing fields default."""
        if raw[:1] != b"{":
            inflate = zlib.decompressobj(zdict=FOLD_DICTIONARY)
            raw = inflate.decompress(raw) + inflate.flush()
        return cls._of_state(orjson.loads(raw))

    @classmethod
    def _of_state(cls, state: dict[str, Any]) -> Fold:
        steps = [Step(**step) for step in state.pop("steps", [])]
        last_key = state.pop("last_key", None)
        fold = cls(**state, last_key=tuple(last_key) if last_key else None)
        fold.steps = {(step.job, step.name): step for step in steps}
        return fold

    def headline(self) -> tuple[str, str | None, str | None]:
        """``(status, completed_at, started_at)`` without rendering the job tree.

        This is what the stores index on every write, so it avoids the cost of
        rendering; a status inferred over steps equals one inferred over jobs.
        """
        status = self.status or infer_status([s.status for s in self.steps.values()])
        completed_at = self.completed_at if status in TERMINAL_STATUSES else None
        # The first event's time stands in for an unknown start, unless that event is
        # the completion itself: then the start is unknown, not "0 ms before the end".
        first_seen = self.first_ts if self.first_ts != completed_at else None
        started_at = self.started_at or earliest(
            [s.started_at for s in self.steps.values()] + [first_seen]
        )
        if self.duration_ms is not None and completed_at and not self.started_at:
            started_at = minus(completed_at, self.duration_ms)  # as ledger.durations.span does
        return status, completed_at, started_at

    def sort_ts(self) -> str:
        """Where the deployment sorts in newest-first lists: its start, else when it appeared."""
        return self.headline()[2] or self.created_ts or self.first_ts or ""


def infer_status(statuses: list[str], settled: str = "running") -> str:
    """A status from parts: any failure fails; else running while any part runs.

    A deployment with no deployment-level event stays ``running`` even when all
    steps ended (more may come); a job is ``success`` once all its steps ended.
    """
    if "failure" in statuses:
        return "failure"
    if any(s in OPEN_STATUSES for s in statuses) or not statuses:
        return "running" if statuses or settled == "running" else settled
    if "cancelled" in statuses:
        return "cancelled"
    if settled == "success" and all(s == "skipped" for s in statuses):
        return "skipped"
    return settled


def earliest(times: list[str | None]) -> str | None:
    known = [t for t in times if t]
    return min(known) if known else None


def _changed(state: Fold | Step, skip: tuple[str, ...]) -> dict[str, Any]:
    """The fields of ``state`` that differ from their defaults (a required field always)."""
    return {
        name: value
        for name, default in (_STEP_DEFAULTS if isinstance(state, Step) else _FOLD_DEFAULTS)
        if name not in skip and (value := getattr(state, name)) != default
    }


def _defaults(kind: type[Fold | Step]) -> tuple[tuple[str, Any], ...]:
    """Each field of a dataclass with its default (a required field: a value none equals)."""
    required = object()
    return tuple(
        (
            f.name,
            f.default
            if f.default is not MISSING
            else f.default_factory()
            if f.default_factory is not MISSING
            else required,
        )
        for f in fields(kind)
    )


_FOLD_DEFAULTS = _defaults(Fold)
_STEP_DEFAULTS = _defaults(Step)
