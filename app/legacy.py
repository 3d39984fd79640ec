"""Adapters for the flat formats existing pipelines still send (LEGACY.md §2-§5).

Each is a subclass of the typed schemas' base, so the same fields validate the
same values and the result is the same normalised :class:`~ledger.events.Event`;
only the shape differs.  None of these bodies carries a deployment id we can
always trust, so each declares a *join policy* (:class:`~ledger.events.Join`)
that the ledger applies inside the store's write transaction.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from marshmallow import fields, pre_load

from app.fields import Count, Name, Seconds, Status, Text
from app.schemas import (
    DeploymentCompletedSchema,
    EventSchema,
    RunSchema,
    StepSchema,
    step_type_for,
)
from ledger.events import DEFAULT_JOB, OPEN_STATUSES, Join

#: LEGACY.md §3: the summary's step keys, in the order they run, with readable names.
SUMMARY_STEPS: dict[str, str] = {
    "validate_artifact": "Validate artifact",
    "parse_secrets": "Parse secrets",
    "server_init": "Initialise server",
    "deploy_project": "Deploy project",
    "configure_nginx": "Configure nginx",
    "start_service": "Start service",
    "test_website_static": "Test website (static)",
    "test_website_backend": "Test website (backend)",
}

#: ``notify-dashboard.sh`` pastes its arguments unescaped into this ten-key template.
_TEMPLATE_KEYS = (
    "project",
    "status",
    "duration",
    "timestamp",
    "sourceRepo",
    "runId",
    "deployType",
    "serverHost",
    "logs",
    "errorMessage",
)


def _template_pattern() -> re.Pattern[bytes]:
    parts = []
    for index, key in enumerate(_TEMPLATE_KEYS):
        quote = b"" if key == "duration" else b'"'
        lead = rb"\A\s*\{\s*" if index == 0 else rb",\s*"
        parts.append(
            lead
            + b'"'
            + key.encode()
            + rb'"\s*:\s*'
            + quote
            + b"(?P<"
            + key.encode()
            + b">.*)"
            + quote
        )
    return re.compile(b"".join(parts) + rb"\s*\}\s*\Z", re.DOTALL)


_TEMPLATE = _template_pattern()


def recover_template(body: bytes) -> dict[str, Any] | None:
    """Recover a ``notify-dashboard.sh`` body that unescaped text made invalid JSON.

    Each value is taken verbatim between its key and the next key, as LEGACY.md
    §2 prescribes; anything that does not fit the fixed template is ``None``.
    """
    match = _TEMPLATE.match(body)
    if match is None:
        return None
    try:
        values = {key: match[key].decode("utf-8") for key in _TEMPLATE_KEYS}
    except UnicodeDecodeError:
        return None
    duration = values["duration"].strip()
    return {**values, "duration": duration, "_repaired": True}


class LegacyDeploymentSchema(RunSchema):
    """LEGACY.md §2: ``notify-dashboard.sh`` and older workflows, no ``type``."""

    requires_project = True

    default_status = None
    type = fields.String(load_default="legacy")
    duration = Seconds()
    deployType = Name()
    serverHost = Name()

    def join_policy(self, data: dict[str, Any]) -> Join | None:
        status = data.get("status")
        return Join.NEW if status and status[0] in OPEN_STATUSES else Join.LATEST_OPEN

    def resolve_type(self, data: dict[str, Any], payload: dict[str, Any]) -> str:
        running = payload["status"] in OPEN_STATUSES
        return "deployment_started" if running else "deployment_completed"

    def fill(self, data: dict[str, Any], payload: dict[str, Any], timestamp: str) -> None:
        for key in ("deployType", "serverHost"):
            if data.get(key):
                payload["extra"][key] = data[key]
        payload["repaired"] = bool(payload["extra"].pop("_repaired", False))
        if payload["status"] in OPEN_STATUSES:
            payload["started_at"] = timestamp
        else:
            payload["completed_at"] = timestamp
            payload["duration_ms"] = data.get("duration")


class SummarySchema(DeploymentCompletedSchema):
    """LEGACY.md §3: one deployment's final summary, with ``step_details``."""

    requires_project = True

    type = fields.String(load_default="summary")
    branch = Name()
    commit = Name()
    actor = Name()
    step_details = fields.Dict(
        keys=fields.String(), values=Status(empty="skipped"), load_default=None
    )

    def join_policy(self, data: dict[str, Any]) -> Join | None:
        return Join.LATEST_OPEN

    def resolve_type(self, data: dict[str, Any], payload: dict[str, Any]) -> str:
        running = payload["status"] in OPEN_STATUSES
        return "deployment_started" if running else "deployment_completed"

    def fill(self, data: dict[str, Any], payload: dict[str, Any], timestamp: str) -> None:
        super().fill(data, payload, timestamp)
        if payload["commit"] == "latest":  # a placeholder, not a commit
            payload["commit"] = None
            payload["extra"]["commit_hash"] = "latest"
        details: dict[str, tuple[str, bool]] = data.get("step_details") or {}
        order = list(SUMMARY_STEPS) + sorted(set(details) - set(SUMMARY_STEPS))
        payload["steps"] = [
            {
                "job": DEFAULT_JOB,
                "step": SUMMARY_STEPS.get(key, key.replace("_", " ").capitalize()),
                "key": key,
                "status": details[key][0],
                "step_number": number,
            }
            for number, key in enumerate((k for k in order if k in details), start=1)
        ]


class StepBodySchema(StepSchema):
    """LEGACY.md §4: one step of a deployment the body does not identify."""

    requires_project = True

    default_status = None
    type = fields.String(load_default="step")
    branch = Name()
    commit = Name()
    actor = Name()
    step_number = Count()

    def join_policy(self, data: dict[str, Any]) -> Join | None:
        return Join.LATEST_OPEN

    def resolve_type(self, data: dict[str, Any], payload: dict[str, Any]) -> str:
        if payload["commit"] == "latest":
            payload["commit"] = None
        return step_type_for(payload["status"])


class ProjectStatusSchema(EventSchema):
    """LEGACY.md §5: a project-level note; recorded and broadcast, never a deployment."""

    requires_project = True

    requires_deployment = False
    default_status = "running"
    type = fields.String(load_default="project_status")
    status_type = Name(required=True)
    status_value = Text()

    event_type: ClassVar[str | None] = "project_status"

    @pre_load
    def _free_status(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """A project's status is free text here, not the deployment status vocabulary."""
        if not isinstance(data, dict):  # marshmallow answers "Invalid input type." (422)
            return data
        data = dict(data)
        if "status" in data:
            data["status_value"] = data.pop("status")
        return data

    def fill(self, data: dict[str, Any], payload: dict[str, Any], timestamp: str) -> None:
        payload["status"] = None
        payload["extra"]["status_type"] = data["status_type"]
        if data.get("status_value") is not None:
            payload["extra"]["status"] = data["status_value"]


LEGACY_DEPLOYMENT = LegacyDeploymentSchema()
SUMMARY = SummarySchema()
STEP_BODY = StepBodySchema()
PROJECT_STATUS = ProjectStatusSchema()
