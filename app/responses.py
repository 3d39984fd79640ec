"""JSON Schemas of every body the hub answers with, and of the normalised event.

What the hub *accepts* is described from the marshmallow schemas that validate
it (``app/openapi.py``); what it *sends* is written here, once, as JSON Schema
(draft 2020-12, which OpenAPI 3.1 takes as it is).  The vocabularies come from
the constants the code itself uses (event types, statuses, log levels, error
codes), so a new word cannot be sent without appearing here.  Objects are
closed (``additionalProperties: false``): a key the code adds must be written
here too, or the tests that validate real responses against these schemas fail.

``EVENT`` is shared: the read API's event log and the WebSocket and SSE
``event`` frames (``broadcaster/frames.py``) carry the same object.
"""

from __future__ import annotations

from typing import Any

from app.errors import HubError
from ledger.events import (
    EVENT_TYPES,
    EXTRA_METADATA,
    LOG_LEVELS,
    PAYLOAD_KEYS,
    RUN_METADATA,
    STATUSES,
)

JsonSchema = dict[str, Any]


def nullable(schema: JsonSchema) -> JsonSchema:
    """``schema`` or ``null``."""
    return {"anyOf": [schema, {"type": "null"}]}


def closed(
    properties: dict[str, JsonSchema],
    description: str | None = None,
    *,
    optional: tuple[str, ...] = (),
    **more: Any,
) -> JsonSchema:
    """An object with exactly ``properties``, every one but the ``optional`` always present."""
    schema: JsonSchema = {
        "type": "object",
        "properties": properties,
        "required": [name for name in properties if name not in optional],
        "additionalProperties": False,
        **more,
    }
    if description:
        schema = {"description": description, **schema}
    return schema


EVENT_ID: JsonSchema = {
    "type": "string",
    "pattern": "^[0-9]{13}-[0-9]{12}$",
    "description": "`<epoch>-<seq>`, 13 + 12 digits: ids compare as strings do (EVENTS.md).",
}
TIMESTAMP: JsonSchema = {
    "type": "string",
    "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z$",
    "description": "ISO-8601 in UTC with milliseconds, whatever spelling was sent.",
}
STATUS: JsonSchema = {"enum": list(STATUSES)}
LEVEL: JsonSchema = {"enum": list(LOG_LEVELS)}
MILLIS: JsonSchema = {"type": "integer", "minimum": 0}
COUNT: JsonSchema = {"type": "integer", "minimum": 0}
TEXT: JsonSchema = {"type": "string"}
OBJECT: JsonSchema = {"type": "object"}

_SUMMARY_STEP = closed(
    {
        "job": TEXT,
        "step": TEXT,
        "key": TEXT,
        "status": STATUS,
        "step_number": COUNT,
    },
    "A step of a summary body (`/webhook/deployment`): its key in `step_details`, its "
    "readable name and its result.",
)

#: The type of each payload key (all of them nullable but ``retry``, ``repaired``,
#: ``source_format`` and ``extra``).
_PAYLOAD_TYPES: dict[str, JsonSchema] = {
    "job": TEXT,
    "step": TEXT,
    "step_number": COUNT,
    "status": STATUS,
    "retry": {"type": "boolean"},
    "duration_ms": MILLIS,
    "started_at": TIMESTAMP,
    "completed_at": TIMESTAMP,
    "message": TEXT,
    "logs": TEXT,
    "level": LEVEL,
    "error": TEXT,
    "metrics": {
        "type": "object",
        "description": "`metrics_update`: the metrics as sent (numbers and strings).",
    },
    "steps": {"type": "array", "items": _SUMMARY_STEP},
    **dict.fromkeys(RUN_METADATA, TEXT),
    "from_deployment_id": TEXT,
    "reason": TEXT,
    "source_format": {
        "type": "string",
        "description": "What was sent: the body's own `type`, or `legacy`, `summary`, `step`, "
        "`project_status` for the bodies of LEGACY.md.",
    },
    "repaired": {
        "type": "boolean",
        "description": "A `notify-dashboard.sh` body recovered from invalid JSON.",
    },
    "extra": {
        "type": "object",
        "description": "The sender's keys the hub does not know, verbatim.",
    },
}
assert tuple(_PAYLOAD_TYPES) == PAYLOAD_KEYS  # noqa: S101 - import-time invariant

PAYLOAD = closed(
    _PAYLOAD_TYPES,
    "Protocol 2: a key whose value is null, or at its default (`retry` and `repaired` "
    "false, `extra` empty), is left out; a reader takes a missing key as that value "
    "(CONTRACT.md). `source_format` is always there.",
    optional=tuple(key for key in PAYLOAD_KEYS if key != "source_format"),
)

EVENT = closed(
    {
        "id": EVENT_ID,
        "type": {"enum": list(EVENT_TYPES)},
        "project": {
            "type": "string",
            "description": '`""` only for a `test` event that named none.',
        },
        "deployment_id": {
            "type": "string",
            "description": "Left out for `test` and `project_status`, which have none.",
        },
        "timestamp": TIMESTAMP,
        "payload": PAYLOAD,
    },
    "The normalised event (EVENTS.md): what the store keeps and every client receives.",
    optional=("deployment_id",),
)

_METRICS = {
    "type": "object",
    "properties": {
        "_at": {
            **TIMESTAMP,
            "description": "The timestamp of the `metrics_update` event these metrics came from.",
        }
    },
    "required": ["_at"],
    "description": "The latest metrics by timestamp, as sent, with `_at`.",
}
_STALE: JsonSchema = {
    "type": "boolean",
    "description": "Still open, but nothing heard of it for `HUB_STALE_AFTER`.",
}
_ROLLBACK = closed(
    {
        "from_deployment_id": nullable(TEXT),
        "reason": nullable(TEXT),
        "at": TIMESTAMP,
    }
)

#: What a deployment listing row and the whole deployment share.
_DEPLOYMENT_FIELDS: dict[str, JsonSchema] = {
    "deployment_id": TEXT,
    "project": TEXT,
    "status": STATUS,
    "status_inferred": {
        "type": "boolean",
        "description": "No deployment event yet: the status is inferred from the steps.",
    },
    "started_at": nullable(TIMESTAMP),
    "completed_at": nullable(TIMESTAMP),
    "duration_ms": nullable(MILLIS),
    "error": nullable(TEXT),
    "message": nullable(TEXT),
    **{name: nullable(TEXT) for name in (*RUN_METADATA, *EXTRA_METADATA)},
    "rollback": nullable(_ROLLBACK),
    "updated_at": nullable(
        {**TIMESTAMP, "description": "The timestamp of the latest lifecycle event."}
    ),
    "metrics": nullable(_METRICS),
    "last_news_at": nullable(
        {**TIMESTAMP, "description": "When the hub last received any event of it."}
    ),
    "stale": _STALE,
}

STEP = closed(
    {
        "name": TEXT,
        "key": nullable({**TEXT, "description": "A summary step's key in `step_details`."}),
        "status": STATUS,
        "step_number": nullable(COUNT),
        "started_at": nullable(TIMESTAMP),
        "completed_at": nullable(TIMESTAMP),
        "duration_ms": nullable(MILLIS),
        "retries": COUNT,
        "error": nullable(TEXT),
        "message": nullable(TEXT),
        "stale": _STALE,
    }
)
JOB = closed(
    {
        "name": TEXT,
        "status": STATUS,
        "started_at": nullable(TIMESTAMP),
        "completed_at": nullable(TIMESTAMP),
        "duration_ms": nullable(MILLIS),
        "steps": {"type": "array", "items": {"$ref": "#/components/schemas/Step"}},
        "stale": _STALE,
    }
)
DEPLOYMENT = closed(
    {
        **_DEPLOYMENT_FIELDS,
        "jobs": {"type": "array", "items": {"$ref": "#/components/schemas/Job"}},
        "last_event_id": EVENT_ID,
        "log_lines": COUNT,
        "failure": nullable({"$ref": "#/components/schemas/Failure"}),
        "eta": nullable({"$ref": "#/components/schemas/Eta"}),
    },
    "The deployment view (EVENTS.md): jobs in order, each job's steps in order.",
)
DEPLOYMENT_ROW = closed(
    {
        **_DEPLOYMENT_FIELDS,
        "jobs": {**COUNT, "description": "How many jobs."},
        "steps": closed(
            {
                "total": COUNT,
                **dict.fromkeys(("success", "failure", "running", "skipped", "cancelled"), COUNT),
            },
            "Steps by status.",
        ),
    },
    "A deployment without its step tree, with counts instead.",
)

LOG_LINE = closed(
    {
        "id": {
            "type": "string",
            "pattern": "^[0-9]+$",
            "description": "The line's id: give it as `after` to read on.",
        },
        "job": nullable(TEXT),
        "step": nullable(TEXT),
        "level": LEVEL,
        "timestamp": TIMESTAMP,
        "message": TEXT,
        "event_id": EVENT_ID,
    }
)

PROJECT = closed(
    {
        "project": TEXT,
        "latest_deployment": {"$ref": "#/components/schemas/DeploymentRow"},
        "counts": closed(
            dict.fromkeys(("total", "success", "failure", "running", "cancelled"), COUNT),
            "Deployments by status (`running` includes `pending`).",
        ),
    }
)

_NULLABLE_MILLIS = nullable(MILLIS)
_PROJECT_METRICS: dict[str, JsonSchema] = {
    "deployments": COUNT,
    "per_day": {"type": "number", "minimum": 0},
    "statuses": {
        "type": "object",
        "propertyNames": STATUS,
        "additionalProperties": COUNT,
        "description": "Deployments by status; only statuses that occurred.",
    },
    "change_failure_rate": nullable({"type": "number", "minimum": 0, "maximum": 1}),
    "time_to_restore_ms": closed(
        {
            "count": COUNT,
            "median": _NULLABLE_MILLIS,
            "mean": _NULLABLE_MILLIS,
            "max": _NULLABLE_MILLIS,
        }
    ),
    "failing_since": nullable(TIMESTAMP),
    "duration_ms": closed(
        {"count": COUNT, "p50": _NULLABLE_MILLIS, "p90": _NULLABLE_MILLIS, "p95": _NULLABLE_MILLIS}
    ),
}
DELIVERY_METRICS = closed(
    {
        "window": closed(
            {
                "from": TIMESTAMP,
                "to": TIMESTAMP,
                "days": {"type": "number", "minimum": 0},
                "time_zone": {
                    **TEXT,
                    "description": "The zone `daily` counts days in: `UTC`, the `tz` given, "
                    "or `UTC±hh:mm` for a `utc_offset`.",
                },
            }
        ),
        "daily": {
            "type": "array",
            "items": closed(
                {
                    "date": {
                        "type": "string",
                        "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
                        "description": "A calendar day of `window.time_zone`.",
                    },
                    "success": COUNT,
                    "failure": COUNT,
                    "other": COUNT,
                }
            ),
        },
        "overall": closed(_PROJECT_METRICS),
        "projects": {"type": "array", "items": closed({"project": TEXT, **_PROJECT_METRICS})},
        "truncated": {
            "type": "boolean",
            "description": "More deployments started in the window than one answer reads.",
        },
        "environment": nullable(
            {**TEXT, "description": "The environment counted; `null`: every deployment."}
        ),
        "environments": {
            "type": "array",
            "items": TEXT,
            "description": "The environments the window's deployments went to.",
        },
    }
)

_DEPLOYMENT_REF = closed(
    {
        "deployment_id": TEXT,
        "status": STATUS,
        **{
            name: nullable(TEXT)
            for name in ("branch", "commit", "version", "actor", "run_url", "environment_url")
        },
        "started_at": nullable(TIMESTAMP),
        "completed_at": nullable(TIMESTAMP),
        "last_news_at": nullable(
            {**TIMESTAMP, "description": "When the hub last received any event of it."}
        ),
        "stale": _STALE,
    }
)
ENVIRONMENTS = closed(
    {
        "environments": {
            "type": "array",
            "items": closed(
                {
                    "project": TEXT,
                    "environment": TEXT,
                    "current": nullable(
                        {**_DEPLOYMENT_REF, "description": "The last that succeeded."}
                    ),
                    "since": nullable(
                        {**TIMESTAMP, "description": "When the current one completed."}
                    ),
                    "in_progress": nullable(
                        {**_DEPLOYMENT_REF, "description": "A newer one still open."}
                    ),
                    "latest": _DEPLOYMENT_REF,
                    "deployments": COUNT,
                }
            ),
        },
        "projects": {"type": "array", "items": TEXT},
        "environment_names": {
            "type": "array",
            "items": TEXT,
            "description": "Development first, production last.",
        },
        "scanned": {**COUNT, "description": "How many deployments were read."},
        "truncated": {
            "type": "boolean",
            "description": "There were more deployments than one answer reads.",
        },
    },
    "Each project's state per environment, from its newest deployments.",
)

_LINK: JsonSchema = {
    "type": "string",
    "description": "The dashboard's page of the deployment, opened at the line "
    "(`#/deployments/<id>?job=&step=&line=`).",
}
_LINE_REF = closed(
    {
        "id": {**TEXT, "description": "The line's id in `/logs` pages."},
        "text": {**TEXT, "description": "The line, terminal escapes removed."},
        "job": nullable(TEXT),
        "step": nullable(TEXT),
        "link": _LINK,
    },
    "The log line that explains a failure.",
)
_STEP_FAILURE = closed(
    {
        "job": TEXT,
        "step": TEXT,
        "line": nullable(_LINE_REF),
        "message": nullable(TEXT),
        "signature": TEXT,
    }
)
FAILURE = closed(
    {
        "job": nullable(TEXT),
        "step": nullable(TEXT),
        "line": nullable(_LINE_REF),
        "message": nullable({**TEXT, "description": "The step's or deployment's error."}),
        "signature": {**TEXT, "description": "Equal for failures that differ only in details."},
        "pattern": {**TEXT, "description": "The failing line with its details taken out."},
        "failed_at": TIMESTAMP,
        "seen": closed(
            {
                "count": COUNT,
                "first_seen": nullable(TIMESTAMP),
                "last_seen": nullable(TIMESTAMP),
                "deployments": {"type": "array", "items": TEXT},
            },
            "Earlier failures with the same signature.",
        ),
        "steps": {"type": "array", "items": _STEP_FAILURE},
    },
    "Why a failed deployment failed (EVENTS.md, log analysis).",
)
ETA = closed(
    {
        "remaining_ms": MILLIS,
        "finish_at": TIMESTAMP,
        "basis": {**COUNT, "description": "How many earlier successful runs it is taken from."},
        "progress": {"type": "number", "minimum": 0, "maximum": 1},
    },
    "When a running deployment should end, from its project's recent successful runs.",
)
FAILURES_PAGE = closed(
    {
        "items": {
            "type": "array",
            "items": closed(
                {
                    "signature": TEXT,
                    "pattern": TEXT,
                    "sample": {**TEXT, "description": "The newest failing line of the group."},
                    "count": COUNT,
                    "first_seen": TIMESTAMP,
                    "last_seen": TIMESTAMP,
                    "projects": {"type": "array", "items": TEXT},
                    "steps": {
                        "type": "array",
                        "items": closed(
                            {"job": nullable(TEXT), "step": nullable(TEXT), "count": COUNT}
                        ),
                    },
                    "deployments": {"type": "array", "items": TEXT},
                }
            ),
        },
        "next_cursor": nullable(TEXT),
    },
    "Failed deployments of the window grouped by signature, most frequent first.",
)
SEARCH_PAGE = closed(
    {
        "items": {
            "type": "array",
            "items": closed(
                {
                    "id": TEXT,
                    "deployment_id": TEXT,
                    "project": TEXT,
                    "job": nullable(TEXT),
                    "step": nullable(TEXT),
                    "level": LEVEL,
                    "timestamp": TIMESTAMP,
                    "text": TEXT,
                    "match": {
                        "type": "array",
                        "items": {
                            "type": "array",
                            "items": COUNT,
                            "minItems": 2,
                            "maxItems": 2,
                        },
                        "description": "`[start, end)` character offsets of each match in `text`.",
                    },
                    "link": _LINK,
                }
            ),
        },
        "next_cursor": nullable(TEXT),
        "truncated": {
            "type": "boolean",
            "description": "The search stopped at its bound of lines read: `next_cursor` goes on.",
        },
    },
    "Matching log lines, newest first.",
)
_NUMBER_OR_NULL = nullable({"type": "number", "minimum": 0})
_FIGURES: dict[str, JsonSchema] = {
    "runs": COUNT,
    "failures": COUNT,
    "failure_rate": nullable({"type": "number", "minimum": 0, "maximum": 1}),
    "flaky": {**COUNT, "description": "Runs that failed and then passed when run again."},
    "p50_ms": _NUMBER_OR_NULL,
    "p95_ms": _NUMBER_OR_NULL,
}
_WINDOW = closed({"from": TIMESTAMP, "to": TIMESTAMP, "days": COUNT})
STEP_TRENDS = closed(
    {
        "window": _WINDOW,
        "previous_window": _WINDOW,
        "steps": {
            "type": "array",
            "items": closed(
                {
                    "project": TEXT,
                    "job": TEXT,
                    "step": TEXT,
                    **_FIGURES,
                    "previous": closed(_FIGURES, "The same figures in the window before."),
                    "regressed": {"type": "boolean", "description": "It got slower."},
                }
            ),
        },
        "truncated": {
            "type": "boolean",
            "description": "More deployments started in the windows than one answer reads.",
        },
    }
)

INGEST_ACCEPTED = closed(
    {
        "success": {"const": True},
        "accepted": {**COUNT, "minimum": 1, "description": "How many events (`len(ids)`)."},
        "ids": {"type": "array", "items": EVENT_ID, "minItems": 1},
        "duplicate": {
            "type": "boolean",
            "description": "Every event was a repeat: `ids` are the original ids, nothing changed.",
        },
    },
    "The events were stored (or all of them were repeats); ids in request order.",
)
IGNORED = closed(
    {
        "success": {"const": True},
        "accepted": {"const": 0},
        "ids": {"type": "array", "maxItems": 0},
        "ignored": {"type": "string", "description": "Why nothing was recorded."},
        "message": {"type": "string", "description": "What a `ping` is told."},
    },
    "A delivery acknowledged without recording anything: an event the route does not "
    "record (GitHub's `ping` is told so in `message`), a repository or project not "
    "configured (`HUB_GITHUB_REPOSITORIES`, `HUB_GITLAB_PROJECTS`), a job with no started "
    "step yet, or a Flux event that names no revision.",
    optional=("message",),
)

HEALTH = closed({"status": {"const": "ok"}, "version": {"type": "string"}})
READY = closed({"status": {"const": "ready"}, "store": {"const": "ok"}})


def page_of(
    key: str,
    item: JsonSchema,
    cursor: JsonSchema,
    description: str,
    optional: tuple[str, ...] = (),
    **more: JsonSchema,
) -> JsonSchema:
    """A listing: ``{key: [item, ...], "next_cursor": cursor or null}`` (and ``more``, all
    present but the ``optional`` ones)."""
    return closed(
        {
            key: {"type": "array", "items": item},
            "next_cursor": nullable(
                {**cursor, "description": "Give it back to read the next page; `null` on the last."}
            ),
            **more,
        },
        description,
        optional=optional,
    )


DEPLOYMENTS_PAGE = page_of(
    "deployments",
    {"$ref": "#/components/schemas/DeploymentRow"},
    TEXT,
    "Deployments newest first.",
)
LOGS_PAGE = page_of(
    "lines",
    {"$ref": "#/components/schemas/LogLine"},
    {"type": "string", "pattern": "^[0-9]+$"},
    "Log lines in the order they were accepted.",
    first_number={
        "type": "integer",
        "minimum": 1,
        "description": "With `before` only: the number of the first line in the log (of "
        "the job or step asked for), counting from 1; when no line is given, the number "
        "the next one has.",
    },
    optional=("first_number",),
)
EVENTS_PAGE = page_of(
    "events",
    {"$ref": "#/components/schemas/Event"},
    EVENT_ID,
    "The event log in the order it was stored.",
    recovered={
        "type": "boolean",
        "description": "`false`: the log could not continue from `since` (another epoch, or "
        "pruned since) and starts from its beginning; reload, as after the WebSocket's "
        "`subscribed` with `recovered: false`.",
    },
)
PROJECTS = closed(
    {"projects": {"type": "array", "items": {"$ref": "#/components/schemas/Project"}}},
    "Projects by name.",
)


def _hub_errors() -> list[type[HubError]]:
    found: list[type[HubError]] = [HubError]
    for cls in found:
        found += [sub for sub in cls.__subclasses__() if sub not in found]
    return found


#: ``error.code`` by HTTP status: every :class:`~app.errors.HubError` (the routes raise
#: them), plus what werkzeug's own errors become (``app/errors.py``: a 405 is
#: ``method_not_allowed``).
ERROR_CODES: dict[int, list[str]] = {}
for _error in _hub_errors():
    ERROR_CODES.setdefault(_error.status, [])
    if _error.code not in ERROR_CODES[_error.status]:
        ERROR_CODES[_error.status].append(_error.code)
ERROR_CODES.setdefault(405, ["method_not_allowed"])


def error_body(codes: list[str] | None = None) -> JsonSchema:
    """The one error body; ``codes`` narrows ``error.code`` to those of one status."""
    code: JsonSchema = {"type": "string", "description": "Match on this; messages are for people."}
    if codes:
        code = {**code, "enum": codes}
    return closed(
        {
            "success": {"const": False},
            "error": closed(
                {
                    "code": code,
                    "message": {"type": "string"},
                    "details": {
                        "type": "object",
                        "description": "What went wrong where: the field errors of a 422 "
                        "(`index` and `events` for a batch), the bad query parameter of a 400, "
                        "the limit of a 413 or 429.",
                    },
                }
            ),
        },
        "Every error, whatever the route or status (CONTRACT.md).",
    )
