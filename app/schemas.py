"""Marshmallow schemas that turn typed event bodies into :class:`~ledger.events.Event`.

One schema per event type, dispatched on ``type`` with a plain dict.  Every
schema keeps keys it does not know under ``payload.extra`` (senders add keys
freely; CONTRACT.md forbids rejecting them) and fills the same payload keys for
every type, so consumers never special-case a sender.  The flat legacy formats
live in ``legacy.py`` and end in the same ``Event``.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any, ClassVar

from marshmallow import (
    INCLUDE,
    Schema,
    ValidationError,
    fields,
    missing,
    post_load,
    pre_load,
    validates_schema,
)

from app.fields import Count, Millis, Name, Seconds, Status, Text, Timestamp
from app.load_plan import load
from ledger.events import (
    DEFAULT_JOB,
    EVENT_TYPES,
    LOG_LEVELS,
    OPEN_STATUSES,
    PROJECT_ONLY_TYPES,
    RUN_METADATA,
    Event,
    Join,
    empty_payload,
)
from ledger.timestamps import duration_between, now_timestamp

#: Old or camelCase spellings mapped onto the one name the schemas declare.
ALIASES: dict[str, str] = {
    "errorMessage": "error",
    "error_message": "error",
    "sourceRepo": "repository",
    "step_logs": "logs",
    "step_duration": "duration",
    "step_order": "step_number",
    "commit_hash": "commit",
    "triggered_by": "actor",
    "runId": "deployment_id",
}

#: Payload keys copied from the loaded data unchanged when a schema declares them.
_COPIED = (
    "message",
    "logs",
    "error",
    *RUN_METADATA,
    "step_number",
    "from_deployment_id",
    "reason",
)

LEVEL_WORDS: dict[str, str] = {
    **{level: level for level in LOG_LEVELS},
    "trace": "debug",
    "notice": "info",
    "warn": "warning",
    "err": "error",
    "critical": "error",
    "fatal": "error",
}


def apply_aliases(data: dict[str, Any]) -> dict[str, Any]:
    """Rename old keys; when both spellings are sent the new one wins and the old is kept."""
    if ALIASES.keys().isdisjoint(data):
        return data
    renamed = dict(data)
    for old, new in ALIASES.items():
        if old in renamed and new not in renamed:
            renamed[new] = renamed.pop(old)
    return renamed


def step_type_for(status: str) -> str:
    """A step body that only says its status is a start while running, else an end."""
    return "step_started" if status in OPEN_STATUSES else "step_completed"


def split_step_name(name: str) -> tuple[str, str]:
    """``"deploy-project / deploy"`` is job ``deploy-project``, step ``deploy``."""
    job, sep, step = name.partition(" / ")
    if sep and job.strip() and step.strip():
        return job.strip(), step.strip()
    return DEFAULT_JOB, name


class EventSchema(Schema):
    """Fields every event may carry; subclasses add their type's keys and rules."""

    class Meta:
        unknown = INCLUDE

    #: The type the loaded event gets (``None``: the body's own ``type``).
    event_type: ClassVar[str | None] = None
    #: Keys this schema's own ``pre_load`` renames, beyond :data:`ALIASES`.
    renames: ClassVar[dict[str, str]] = {}
    #: Status when the body gives none (``None``: status is required).
    default_status: ClassVar[str | None] = "running"
    requires_deployment: ClassVar[bool] = True
    #: Whether ``project`` must be given (the legacy bodies: a deployment id alone will not do).
    requires_project: ClassVar[bool] = False

    type = fields.String(required=True)
    project = Name(load_default=None)
    deployment_id = Name(load_default=None)
    timestamp = Timestamp(load_default=None)
    event_id = Name(load_default=None)
    message = Text()
    logs = Text()

    @pre_load
    def _rename(self, data: Any, **kwargs: Any) -> Any:
        if not isinstance(data, dict):
            raise ValidationError("An event must be a JSON object.", "_schema")
        return apply_aliases(data)

    @validates_schema
    def _check_project(self, data: dict[str, Any], **kwargs: Any) -> None:
        if self.requires_project and not data.get("project"):
            raise ValidationError("Missing data for required field.", "project")

    @validates_schema
    def _check_identity(self, data: dict[str, Any], **kwargs: Any) -> None:
        if not self.requires_deployment:
            return
        if not data.get("deployment_id") and self.join_policy(data) is None:
            raise ValidationError("Missing data for required field.", "deployment_id")
        if not (self.requires_project or data.get("project") or data.get("deployment_id")):
            raise ValidationError("Missing data for required field.", "project")  # said once
        if (
            "status" in self.declared_fields  # not load_fields: a fitted copy may lack it
            and data.get("status") is None
            and (self.default_status is None)
        ):
            raise ValidationError("Missing data for required field.", "status")

    def join_policy(self, data: dict[str, Any]) -> Join | None:
        """How a body without a deployment id finds its deployment (legacy only)."""
        return None

    @cached_property
    def _declared(self) -> tuple[frozenset[str], tuple[str, ...]]:
        """The field names, and which of :data:`_COPIED` are among them: worked out once
        per schema instead of once per event (a fitted copy has them all too)."""
        declared = frozenset(self.declared_fields)
        return declared, tuple(key for key in _COPIED if key in declared)

    def fields_for(self, keys: frozenset[str]) -> tuple[str, ...]:
        """The fields that must be visited to load a body with ``keys``, in order.

        A field the body does not give (under any of its spellings) and that is
        neither required nor defaulted loads as nothing, which every schema here
        treats as ``None`` (``data.get``): skipping it changes nothing.
        """
        given = set(apply_aliases(dict.fromkeys(keys)))
        given.update(new for old, new in self.renames.items() if old in given)
        return tuple(
            name
            for name, field in self.load_fields.items()
            if name in given or field.required or field.load_default not in (None, missing)
        )

    @post_load
    def _to_event(self, data: dict[str, Any], **kwargs: Any) -> Event:
        declared, copied = self._declared
        payload = empty_payload()
        payload["extra"] = {key: value for key, value in data.items() if key not in declared}
        for key in copied:
            if data.get(key) is not None:
                payload[key] = data[key]
        loaded_status = data.get("status") if "status" in declared else None
        status, retry = loaded_status or (self.default_status, False)
        payload["status"] = status
        payload["retry"] = retry
        payload["source_format"] = data["type"]
        timestamp = data.get("timestamp") or now_timestamp()
        self.fill(data, payload, timestamp)
        if payload["duration_ms"] is None:
            payload["duration_ms"] = duration_between(
                payload["started_at"], payload["completed_at"]
            )
        return Event(
            type=self.resolve_type(data, payload),
            project=data.get("project") or "",
            deployment_id=data.get("deployment_id"),
            timestamp=timestamp,
            payload=payload,
            dedup_key=data.get("event_id"),
            join=None if data.get("deployment_id") else self.join_policy(data),
        )

    def fill(self, data: dict[str, Any], payload: dict[str, Any], timestamp: str) -> None:
        """Put the type's own keys into ``payload``; the base type has none."""

    def resolve_type(self, data: dict[str, Any], payload: dict[str, Any]) -> str:
        return self.event_type or str(data["type"])


class RunSchema(EventSchema):
    """Events about a run (not log lines or metrics) may name its workflow and error.

    Kept out of the base so the many ``log_entry`` events of a batch validate
    only the fields they can carry.
    """

    status = Status(load_default=None)
    error = Text()
    workflow_name = Name()
    workflow_id = Name()
    repository = Name()


class DeploymentStartedSchema(RunSchema):
    branch = Name()
    commit = Name()
    commit_timestamp = Timestamp()
    actor = Name()
    environment = Name()
    run_url = Text(max_length=2000)
    started_at = Timestamp()

    def fill(self, data: dict[str, Any], payload: dict[str, Any], timestamp: str) -> None:
        payload["started_at"] = data.get("started_at") or timestamp
        if data.get("commit_timestamp"):
            payload["extra"]["commit_timestamp"] = data["commit_timestamp"]


class DeploymentCompletedSchema(RunSchema):
    default_status = None
    duration = Seconds()
    duration_ms = Millis()
    started_at = Timestamp()
    completed_at = Timestamp()

    def fill(self, data: dict[str, Any], payload: dict[str, Any], timestamp: str) -> None:
        payload["started_at"] = data.get("started_at")
        payload["completed_at"] = data.get("completed_at") or timestamp
        payload["duration_ms"] = _first(data, "duration_ms", "duration")


class StepSchema(RunSchema):
    """``step_started``/``step_completed``; ``step_name`` may encode ``"job / step"``."""

    renames: ClassVar[dict[str, str]] = {"step_status": "status"}

    step_name = Name()
    job = Name()
    step = Name()
    step_status = Status(load_default=None)
    step_number = Count()
    duration = Seconds()
    duration_ms = Millis()
    started_at = Timestamp()
    completed_at = Timestamp()

    @pre_load
    def _step_status(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        if data.get("step_status") not in (None, ""):
            data = {**data, "status": data["step_status"]}
            data.pop("step_status")
        return data

    @validates_schema
    def _check_step(self, data: dict[str, Any], **kwargs: Any) -> None:
        if not data.get("step_name") and not data.get("step"):
            raise ValidationError("Missing data for required field.", "step_name")

    def fill(self, data: dict[str, Any], payload: dict[str, Any], timestamp: str) -> None:
        job, step = (
            split_step_name(data["step_name"])
            if data.get("step_name")
            else (DEFAULT_JOB, data["step"])
        )
        payload["job"] = data.get("job") or job
        payload["step"] = data["step"] if data.get("step") else step
        terminal = payload["status"] not in OPEN_STATUSES
        payload["started_at"] = data.get("started_at") or (None if terminal else timestamp)
        payload["completed_at"] = data.get("completed_at") or (timestamp if terminal else None)
        if terminal:  # a start's "duration": 0 means "not yet", not "took no time"
            payload["duration_ms"] = _first(data, "duration_ms", "duration")


class StepStartedSchema(StepSchema):
    event_type = "step_started"


class StepCompletedSchema(StepSchema):
    event_type = "step_completed"
    default_status = None


class StepManualSchema(StepSchema):
    """A step reported by hand: its status word decides whether it started or ended."""

    default_status = None

    def resolve_type(self, data: dict[str, Any], payload: dict[str, Any]) -> str:
        return step_type_for(payload["status"])


class LogEntrySchema(EventSchema):
    step_name = Name()
    job = Name()
    step = Name()
    level = fields.String(load_default="info")

    @validates_schema
    def _check_log(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data.get("message") is None and data.get("logs") is None:
            raise ValidationError("Missing data for required field.", "message")
        if str(data.get("level", "info")).lower() not in LEVEL_WORDS:
            allowed = ", ".join(LOG_LEVELS)
            raise ValidationError(f"Unknown level; allowed: {allowed}.", "level")

    def fill(self, data: dict[str, Any], payload: dict[str, Any], timestamp: str) -> None:
        payload["status"] = None
        payload["level"] = LEVEL_WORDS[data["level"].lower()]
        if data.get("step_name"):
            payload["job"], payload["step"] = split_step_name(data["step_name"])
        payload["job"] = data.get("job") or payload["job"]
        payload["step"] = data.get("step") or payload["step"]


class MetricsUpdateSchema(EventSchema):
    metrics = fields.Dict(keys=fields.String(), load_default=None)

    def fill(self, data: dict[str, Any], payload: dict[str, Any], timestamp: str) -> None:
        payload["status"] = None
        metrics = dict(data.get("metrics") or {})
        for key, value in list(payload["extra"].items()):  # top-level numbers are metrics too
            if isinstance(value, int | float) and not isinstance(value, bool):
                metrics[key] = payload["extra"].pop(key)
        if not metrics:
            raise ValidationError({"metrics": ["Missing data for required field."]})
        payload["metrics"] = metrics


class DeploymentRollbackSchema(RunSchema):
    from_deployment_id = Name()
    reason = Text()


class TestEventSchema(EventSchema):
    """``test`` pings: answered and logged, never a deployment."""

    requires_deployment = False

    def fill(self, data: dict[str, Any], payload: dict[str, Any], timestamp: str) -> None:
        payload["status"] = None


SCHEMAS: dict[str, EventSchema] = {
    "deployment_started": DeploymentStartedSchema(),
    "deployment_completed": DeploymentCompletedSchema(),
    "step_started": StepStartedSchema(),
    "step_completed": StepCompletedSchema(),
    "step_manual": StepManualSchema(),
    "log_entry": LogEntrySchema(),
    "metrics_update": MetricsUpdateSchema(),
    "deployment_rollback": DeploymentRollbackSchema(),
    "test": TestEventSchema(),
}
assert set(SCHEMAS) - {"step_manual"} <= set(EVENT_TYPES)  # noqa: S101 - import-time invariant
assert set(EVENT_TYPES) >= PROJECT_ONLY_TYPES  # noqa: S101 - import-time invariant


#: Fitted copies of the typed schemas (:func:`fitted`), by schema and a body's keys.
_FITTED: dict[tuple[EventSchema, frozenset[str]], EventSchema] = {}
#: Copies kept at most; bodies with other key sets then load with the whole schema.
FITTED_MAX = 512


def fitted(schema: EventSchema, data: dict[str, Any]) -> EventSchema:
    """``schema`` limited (marshmallow's ``only``) to the fields ``data`` can fill.

    Why: marshmallow visits every declared field for every body, given or not,
    and that visit is most of the cost of loading an event; a step event
    declares 21 fields where a pipeline typically sends 6.  What loads is the
    same (see :meth:`EventSchema.fields_for`); a copy is made once for each key
    set a sender uses, and at most :data:`FITTED_MAX` are kept.
    """
    key = (schema, frozenset(data))
    copy = _FITTED.get(key)
    if copy is None:
        if len(_FITTED) >= FITTED_MAX:
            return schema
        only = schema.fields_for(key[1])
        whole = len(only) == len(schema.load_fields)  # nothing to skip: the schema itself
        copy = _FITTED[key] = schema if whole else type(schema)(only=only)
    return copy


def load_typed_event(data: dict[str, Any]) -> Event:
    """Load a body that names its ``type``; raise ``ValidationError`` naming the field."""
    kind = data.get("type")
    schema = SCHEMAS.get(kind) if isinstance(kind, str) else None
    if schema is None:
        allowed = ", ".join(sorted(SCHEMAS))
        raise ValidationError(
            {"type": [f"Unknown event type {str(kind)[:40]!r}; allowed: {allowed}."]}
        )
    return load_with(schema, data)


def load_with(schema: EventSchema, data: Any) -> Event:
    """Load one body with ``schema`` (by its load plan, ``app/load_plan.py``, when the
    body is valid); its ``post_load`` always builds an Event."""
    event = load(schema, data)
    assert isinstance(event, Event)  # noqa: S101 - post_load always returns an Event
    return event


def _first(data: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if data.get(key) is not None:
            return data[key]
    return None
