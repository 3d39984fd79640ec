"""``GET /api/openapi.json``: the whole HTTP API as an OpenAPI 3.1 document.

The ingest request bodies are generated with apispec's marshmallow plugin from
the very schemas that validate them (``app/schemas.py``, ``app/legacy.py``),
so a field added there appears here.  What marshmallow alone cannot tell is
filled in from the same code:

* the custom fields of ``app/fields.py`` get the JSON Schema of what they
  really accept (:data:`WIRE_FIELDS`: numbers or numeric strings for
  durations, the status vocabulary as an enum, ``""`` and ``null`` as
  "unknown");
* the old key spellings of :data:`~app.schemas.ALIASES` appear as properties
  of their own;
* the rules the schemas check in ``validates_schema`` (a typed event needs a
  deployment id, a legacy body its project, a step its name, a log entry its
  message...) are read from the schema classes' attributes and become
  ``allOf`` clauses (:func:`body_schema`).

Response bodies are the JSON Schemas of ``app/responses.py``.  The document
is static: built once per process on first use, it describes every route
whatever ``HUB_ROLE`` serves, and it is readable without a token (it is
documentation, and says nothing about the data).
"""

from __future__ import annotations

import copy
import functools
import inspect
from typing import Any

import orjson
from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, Response
from marshmallow import fields

from app import responses
from app.analysis import MAX_SEARCH_LIMIT, MAX_WINDOW_DAYS
from app.fields import Count, Millis, Name, Seconds, Status, Text, Timestamp
from app.legacy import (
    LEGACY_DEPLOYMENT,
    PROJECT_STATUS,
    STEP_BODY,
    SUMMARY,
    ProjectStatusSchema,
)
from app.query import MAX_LIMIT, MAX_PARAM_LENGTH, MAX_SEQ
from app.responses import ERROR_CODES, EVENT_ID, JsonSchema, error_body
from app.schemas import (
    ALIASES,
    LEVEL_WORDS,
    SCHEMAS,
    EventSchema,
    LogEntrySchema,
    MetricsUpdateSchema,
    StepSchema,
)
from ledger import version
from ledger.events import EVENT_TYPES, LOG_LEVELS, MAX_NAME_LENGTH, STATUS_WORDS, STATUSES
from ledger.filters import TYPE_PATTERNS
from ledger.search import MAX_QUERY_LENGTH

openapi_routes = Blueprint("openapi", __name__)

OPENAPI_VERSION = "3.1.0"
#: The public prefix behind nginx (``server/app.py`` serves every route under it too).
PUBLIC_PREFIX = "/project-dashboard"

#: A string a JSON number or a numeric string may be: what ``float()`` takes, non-negative,
#: finite (exponents of at most two digits); blank text means "unknown".  The field's
#: ``maximum`` bounds numbers only: a numeric string above it is still a 422.
NUMERIC_TEXT = r"^\s*\+?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]{1,2})?\s*$|^\s*$"
#: A whole number written as text (``"3"``, ``"3.0"``); blank text means "unknown".
WHOLE_TEXT = r"^\s*\+?[0-9]+(\.0*)?\s*$|^\s*$"
#: The ISO-8601 spellings senders use: a date, or a date and time with seconds, any number of
#: fraction digits and ``Z`` or an offset (naive times are UTC); ``""`` means "not given".
ISO_TEXT = (
    r"^$|^\s*[0-9]{4}-[0-9]{2}-[0-9]{2}"
    r"(T[0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?(Z|[+-][0-9]{2}(:?[0-9]{2})?)?)?\s*$"
)
#: One line of text: no control characters (ANSI colour codes are for log text, not names).
ONE_LINE = "^[^\\u0000-\\u001f\\u007f]*$"
#: A value that is given: a number, or text with something but spaces in it.
GIVEN: JsonSchema = {"anyOf": [{"type": "number"}, {"type": "string", "pattern": "\\S"}]}


#: The JSON Schema of what each custom field of ``app/fields.py`` accepts, as components
#: named after the field, most derived class first (``Name`` is a ``Text``; ``Seconds``,
#: ``Millis`` and ``Count`` are each a ``Number``).
WIRE_FIELDS: tuple[tuple[type[fields.Field[Any]], JsonSchema], ...] = (
    (
        Name,
        {
            "type": ["string", "number", "null"],
            "maxLength": MAX_NAME_LENGTH,
            "pattern": ONE_LINE,
            "description": f"A name or id: one line, at most {MAX_NAME_LENGTH} characters, "
            'surrounding spaces trimmed; a number is taken as its digits; `""` and `null` '
            "mean unknown.",
        },
    ),
    (
        Text,
        {
            "type": ["string", "number", "null"],
            "description": "Any Unicode text (ANSI codes too); a number is taken as its "
            'decimal text; `""` and `null` mean unknown.',
        },
    ),
    (
        Seconds,
        {
            "type": ["number", "string", "null"],
            "minimum": 0,
            "maximum": Seconds.maximum,
            "pattern": NUMERIC_TEXT,
            "description": 'Seconds: a non-negative number or numeric string (`45`, `"45"`, '
            '`"1.5"`); `""` and `null` mean unknown. Stored as `duration_ms`.',
        },
    ),
    (
        Millis,
        {
            "type": ["number", "string", "null"],
            "minimum": 0,
            "maximum": Millis.maximum,
            "pattern": NUMERIC_TEXT,
            "description": "Milliseconds: a non-negative number or numeric string, rounded to "
            'a whole number; `""` and `null` mean unknown.',
        },
    ),
    (
        Count,
        {
            "type": ["integer", "string", "null"],
            "minimum": 0,
            "maximum": Count.maximum,
            "pattern": WHOLE_TEXT,
            "description": 'A whole non-negative number, or one written as text (`"3"`); '
            '`""` and `null` mean unknown.',
        },
    ),
    (
        Timestamp,
        {
            "type": ["string", "null"],
            "maxLength": 64,
            "pattern": ISO_TEXT,
            "description": "ISO-8601 (`2025-08-12T11:20:00.000Z`, with or without a fraction, "
            "up to GitHub's seven digits, `Z` or an offset; naive times are UTC), normalised to "
            'UTC with milliseconds; `""` and `null` mean not given.',
        },
    ),
    (
        Status,
        {
            "enum": [*STATUS_WORDS, "", None],
            "description": "A status word of any vocabulary of LEGACY.md, normalised to one of "
            f"{', '.join(STATUSES)} (`retrying` is `running` with `retry: true`); "
            '`""` and `null` mean not given. The hub also takes these words in any letter case '
            "and with surrounding spaces; any other word is a 422 that lists them.",
        },
    ),
)


def wire_property(field: fields.Field[Any]) -> JsonSchema:
    """A custom field's property: a reference to its component (with its own length bound);
    ``{}`` for marshmallow's own fields, which apispec knows."""
    for cls, _ in WIRE_FIELDS:
        if isinstance(field, cls):
            prop: JsonSchema = {"$ref": f"#/components/schemas/{cls.__name__}"}
            if type(field) is Text and field.max_length is not None:
                prop["maxLength"] = field.max_length
            if isinstance(field, Status) and field.empty is not None:
                prop["description"] = f'`""` and `null` mean `{field.empty}`.'
            return prop
    return {}


def _wire_attribute(converter: Any, field: fields.Field[Any], **kwargs: Any) -> JsonSchema:
    """apispec attribute function: runs after the built-in ones, which give custom fields
    no type (they derive from ``fields.Field``), so it adds the whole description."""
    return wire_property(field)


#: What each typed event says, where its schema class has no docstring of its own.
TYPE_NOTES = {
    "deployment_started": "A deployment started; `branch`, `commit`, `actor`, `environment`, "
    "`workflow_name` and `run_url` describe it.",
    "deployment_completed": "A deployment ended with `status`; `duration` (seconds) or "
    "`duration_ms`, and `error` when it failed.",
    "step_started": 'A step started: `job` and `step`, or `"job / step"` in `step_name`.',
    "step_completed": 'A step ended with `status`: `job` and `step`, or `"job / step"` in '
    "`step_name`.",
    "log_entry": "Log text (`message` or `logs`) at a `level`, of a job and step if named.",
    "metrics_update": "Metrics: the `metrics` object, and every top-level key whose value is "
    "a number.",
    "deployment_rollback": "A deployment was rolled back: `from_deployment_id`, `reason`.",
}


def _doc(cls: type) -> str:
    """The first paragraph of the class's own docstring (not an inherited one), on one line."""
    text = inspect.cleandoc(cls.__dict__.get("__doc__") or "")
    return " ".join(text.split("\n\n")[0].split()).replace("``", "`")


def _aliases(cls: type[EventSchema]) -> dict[str, str]:
    """The older keys the schema renames (old -> new): :data:`ALIASES` and its own."""
    return {**ALIASES, **cls.renames}


def _given(cls: type[EventSchema], *names: str) -> JsonSchema:
    """One of ``names`` is given and not empty, or an older spelling of it is (which counts
    only when the name itself is absent: :func:`~app.schemas.apply_aliases`)."""
    choices: list[JsonSchema] = []
    for name in names:
        choices.append({"required": [name], "properties": {name: GIVEN}})
        choices += [
            {"required": [old], "properties": {old: GIVEN}, "not": {"required": [name]}}
            for old, new in _aliases(cls).items()
            if new == name
        ]
    return {"anyOf": choices}


def _some_metric(schema: EventSchema) -> JsonSchema:
    """``metrics_update``: a non-empty ``metrics`` object, or a number under a key the schema
    does not declare (top-level numbers are metrics too)."""
    cls = type(schema)
    declared = set(schema.declared_fields)
    known = declared | {old for old, new in _aliases(cls).items() if new in declared}
    return {
        "anyOf": [
            {
                "required": ["metrics"],
                "properties": {"metrics": {"type": "object", "minProperties": 1}},
            },
            {
                "not": {
                    "properties": {key: {} for key in sorted(known)},
                    "additionalProperties": {"not": {"type": "number"}},
                }
            },
        ]
    }


def body_schema(schema: EventSchema, converter: Any, event_type: str | None) -> JsonSchema:
    """One body format as JSON Schema: the schema's fields, aliases and validation rules."""
    cls = type(schema)
    body: JsonSchema = converter.schema2jsonschema(schema)
    props: dict[str, JsonSchema] = body["properties"]
    for old, new in _aliases(cls).items():
        if new in props and old not in props:
            props[old] = {
                **{key: value for key, value in props[new].items() if key != "default"},
                "description": f"Older spelling of `{new}` (which wins when both are sent).",
            }
    if event_type is not None:
        props["type"] = {"const": event_type}
    if issubclass(cls, ProjectStatusSchema):  # its pre_load moves "status" to status_value
        props["status"] = {
            **props["status_value"],
            "description": "The project's status: free text, not the deployment vocabulary.",
        }
    if issubclass(cls, LogEntrySchema):
        props["level"] = {
            "enum": list(LEVEL_WORDS),
            "default": "info",
            "description": "Becomes one of debug, info, warning, error (any letter case is "
            "taken too).",
        }
    rules: list[JsonSchema] = []
    if cls.requires_project:
        rules.append(_given(cls, "project"))
    if cls.requires_deployment and cls.join_policy is EventSchema.join_policy:
        rules.append(_given(cls, "deployment_id"))
    if "status" in schema.declared_fields and cls.default_status is None:
        rules.append(_given(cls, "status"))
    if issubclass(cls, StepSchema):
        rules.append(_given(cls, "step_name", "step"))
    if issubclass(cls, LogEntrySchema):
        rules.append(_given(cls, "message", "logs"))
    if issubclass(cls, MetricsUpdateSchema):
        rules.append(_some_metric(schema))
    if rules:
        body["allOf"] = rules
    doc = _doc(cls)
    if event_type:
        doc = f"`{event_type}`: {doc or TYPE_NOTES[event_type]}"
    body["description"] = doc
    return body


def _ref(name: str) -> JsonSchema:
    return {"$ref": f"#/components/schemas/{name}"}


def batch_of(item: JsonSchema, description: str) -> JsonSchema:
    """``{"events": [item, ...]}``: stored whole or not at all."""
    return {
        "type": "object",
        "description": description,
        "required": ["events"],
        "not": {"required": ["type"]},
        "properties": {
            "events": {
                "type": "array",
                "minItems": 1,
                "items": item,
                "description": "At most `HUB_MAX_BATCH_EVENTS` (1000 by default); one invalid "
                "event rejects the batch with 422 naming its index.",
            }
        },
    }


def _component_name(event_type: str) -> str:
    return "".join(part.title() for part in event_type.split("_")) + "Event"


#: GitHub's delivery, as far as the hub reads it (``senders/github.py``); the rest is GitHub's.
GITHUB_DELIVERY: JsonSchema = {
    "type": "object",
    "description": "A GitHub webhook delivery. `workflow_run`, `workflow_job`, `deployment` "
    "and `deployment_status` deliveries (the `X-GitHub-Event` header) of a repository in "
    "`HUB_GITHUB_REPOSITORIES` become deployment and step events; a `ping` is answered; any "
    "other delivery is acknowledged and records nothing.",
    "properties": {
        "action": {"type": "string"},
        "repository": {
            "type": "object",
            "properties": {"full_name": {"type": "string", "minLength": 1}},
            "required": ["full_name"],
        },
        "workflow_run": {
            "type": "object",
            "properties": {"id": {"type": "integer"}},
            "required": ["id"],
        },
        "workflow_job": {
            "type": "object",
            "properties": {"id": {"type": "integer"}, "run_id": {"type": "integer"}},
            "required": ["id", "run_id"],
        },
        "deployment": {
            "type": "object",
            "properties": {"id": {"type": "integer"}, "environment": {"type": "string"}},
            "required": ["id"],
        },
        "deployment_status": {
            "type": "object",
            "properties": {"state": {"type": "string"}},
            "required": ["state"],
        },
    },
}

#: GitLab's delivery, as far as the hub reads it (``senders/gitlab.py``).
GITLAB_DELIVERY: JsonSchema = {
    "type": "object",
    "description": "A GitLab webhook delivery (`X-Gitlab-Event`): `Pipeline Hook`, `Job Hook` "
    "and `Deployment Hook` of a project in `HUB_GITLAB_PROJECTS` become deployment and step "
    "events; any other delivery is acknowledged and records nothing.",
    "properties": {
        "object_kind": {"enum": ["pipeline", "build", "deployment"]},
        "project": {
            "type": "object",
            "properties": {"path_with_namespace": {"type": "string", "minLength": 1}},
        },
    },
    "required": ["object_kind"],
}

#: Flux's notification-controller event, as far as the hub reads it (``senders/flux.py``).
FLUX_EVENT: JsonSchema = {
    "type": "object",
    "description": "A Flux notification-controller event: a Kustomization's or HelmRelease's "
    "reconciliation of a revision becomes a deployment named after the object and revision.",
    "properties": {
        "involvedObject": {
            "type": "object",
            "properties": {"kind": {"type": "string"}, "name": {"type": "string"}},
            "required": ["kind", "name"],
        },
        "severity": {"enum": ["info", "error"]},
        "reason": {"type": "string"},
        "message": {"type": "string"},
        "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
        "timestamp": {"type": "string"},
    },
    "required": ["involvedObject"],
}

_STATUS_NAMES = {
    304: "Not Modified",
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    408: "Request timeout",
    409: "Conflict",
    413: "Payload too large",
    415: "Unsupported media type",
    422: "Validation failed",
    426: "Upgrade required",
    429: "Rate limited",
    500: "Internal error",
    501: "Not implemented",
    503: "Unavailable",
}
#: A route a process does not serve because of its ``HUB_ROLE`` answers as unknown.
NOT_SERVED = "Not served by this process (`HUB_ROLE={role}`)."
_RETRY_AFTER: JsonSchema = {
    "description": "Seconds to wait before trying again.",
    "schema": {"type": "string", "pattern": "^[0-9]+$"},
}
_ERROR_WHEN = {
    400: "Malformed JSON (`invalid_json`), a malformed chunked body, or a bad query "
    "parameter or header, named in `details` (`bad_request`).",
    401: "A missing or wrong signature or token.",
    403: "The `Origin` is not in `HUB_ALLOWED_ORIGINS`.",
    404: "No such deployment.",
    408: "The body did not arrive within `HUB_BODY_TIMEOUT`.",
    409: "A delivery id (`Idempotency-Key`, `X-GitHub-Delivery`, `webhook-id`) the sender "
    "already used for another body; nothing was stored.",
    413: "The body is over `HUB_MAX_BODY_BYTES`.",
    415: "The `Content-Type` is not `application/json` or `+json`.",
    422: "Valid JSON that is not a valid body: `details` maps fields to messages (for a batch, "
    "`index` and `events`).",
    426: "`Sec-WebSocket-Version` is not 13.",
    429: "Over a rate limit (`rate_limited`), or `HUB_MAX_CONNECTIONS_PER_ADDRESS` requests "
    "from this address are in flight (`too_many_connections_from_address`, any route); "
    "loopback clients are exempt by default (docs/OPERATIONS.md).",
    500: "An unexpected failure; it has been logged.",
    501: "A `Transfer-Encoding` other than `chunked`.",
    503: "The store cannot be reached (`backend_unavailable`), or the worker is at its "
    "connection limit or shutting down (`too_many_connections`).",
}


def _error_response(status: int, when: str | None = None) -> JsonSchema:
    """The error response of ``status``; ``when`` tells when it happens, if not as usual."""
    response: JsonSchema = {
        "description": f"{_STATUS_NAMES[status]}: {when or _ERROR_WHEN[status]}",
        "content": {"application/json": {"schema": _ref(f"Error{status}")}},
    }
    if status in (429, 503):
        response["headers"] = {"Retry-After": _RETRY_AFTER}
    return response


def _responses(
    ok: JsonSchema, *errors: int, others: dict[str, JsonSchema] | None = None
) -> JsonSchema:
    """An operation's responses: ``ok`` for 200, the shared error responses, and ``others``.

    Every route may answer 429 (too many requests in flight from one address) and 500.
    """
    answers: JsonSchema = {"200": ok, **(others or {})}
    for status in sorted({*errors, 429, 500}):
        answers[str(status)] = {"$ref": f"#/components/responses/Error{status}"}
    return answers


def _json(schema: JsonSchema, description: str) -> JsonSchema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _query(name: str, schema: JsonSchema, description: str) -> JsonSchema:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


def _header(name: str, description: str) -> JsonSchema:
    return {
        "name": name,
        "in": "header",
        "required": False,
        "schema": {"type": "string"},
        "description": description,
    }


def _path(name: str, description: str, schema: JsonSchema | None = None) -> JsonSchema:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": schema or {"type": "string"},
        "description": description,
    }


_NAME_PARAM: JsonSchema = {"type": "string", "maxLength": MAX_PARAM_LENGTH}
TOKEN = _query(
    "token",
    {"type": "string"},
    "The read token when `HUB_READ_TOKENS` is set (or `Authorization: Bearer`).",
)


def _limit(default: int) -> JsonSchema:
    return _query(
        "limit",
        {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": default},
        "Rows per page.",
    )


READ_SECURITY: list[JsonSchema] = [{}, {"readToken": []}, {"readTokenQuery": []}]
INGEST_SECURITY: list[JsonSchema] = [
    {},
    {"ingestToken": []},
    {"githubSignature": []},
    {"standardWebhooks": []},
]
_INGEST_HEADERS = [
    _header(
        "Idempotency-Key",
        "Names the delivery of an unsigned request (the first of `X-GitHub-Delivery`, "
        "`Idempotency-Key`, `webhook-id` sent): a repeat answers `duplicate: true` and changes "
        "nothing; the same id with another body is a 409. Ids belong to the sender's "
        "credential and the events' projects (EVENTS.md).",
    ),
    _header("X-GitHub-Delivery", "As `Idempotency-Key`."),
    _header(
        "webhook-id",
        "Standard Webhooks: signed with the body, so the only delivery id of such a request.",
    ),
    _header("webhook-timestamp", "Standard Webhooks: within 5 minutes of the hub's clock."),
]

#: The ingest routes: path, route name of ``app/ingest.py``, summary, the single body.
_INGEST_ROUTES = (
    (
        "/api/webhooks/deployment",
        "Typed events, the flat legacy body, or a batch of them",
        "Typed events of CONTRACT.md (`type` names the schema) and the flat body of "
        '`notify-dashboard.sh` (no `type`, LEGACY.md §2), one object or `{"events": [...]}`. '
        "A flat body that is not valid JSON but fits the script's ten-key template is recovered "
        "(`payload.repaired: true`). A deployment's first event must name its project: an "
        'event for a deployment the hub has not seen yet whose `project` is missing, `""` or '
        "`unknown` is a 422 (a rule of what is stored, which the schema cannot express).",
        {"anyOf": [_ref("TypedEvent"), _ref("LegacyDeploymentBody")]},
    ),
    (
        "/api/webhook/deployment",
        "A deployment's summary with `step_details` (LEGACY.md §3)",
        "Closes the project's open deployment or records a finished one.",
        _ref("SummaryBody"),
    ),
    (
        "/api/webhook/step",
        "One step of an unidentified deployment (LEGACY.md §4)",
        "Joins the project's most recent open deployment, or starts one.",
        _ref("StepReportBody"),
    ),
    (
        "/api/webhook/project-status",
        "A project-level note (LEGACY.md §5)",
        "Recorded and broadcast to the project's subscribers, never a deployment.",
        _ref("ProjectStatusBody"),
    ),
)


def _ingest_operation(summary: str, description: str, body: JsonSchema) -> JsonSchema:
    media = {"schema": body}
    operation: JsonSchema = {
        "tags": ["ingest"],
        "summary": summary,
        "description": description
        + " Checks run in this order: the address's rate limit, media type, size, encoding, "
        "authentication, the credential's rate limit, JSON, validation; a rejected request "
        "stores and broadcasts nothing.",
        "security": INGEST_SECURITY,
        "parameters": _INGEST_HEADERS,
        "requestBody": {
            "required": True,
            "content": {"application/json": media, "application/*+json": media},
        },
        "responses": _responses(
            _json(_ref("IngestAccepted"), "Stored (or every event was a repeat)."),
            400,
            401,
            408,
            409,
            413,
            415,
            422,
            429,
            501,
            503,
        ),
    }
    operation["responses"]["404"] = _error_response(404, NOT_SERVED.format(role="stream"))
    return operation


def _add_ingest(spec: APISpec, converter: Any) -> None:
    typed = []
    for event_type, schema in SCHEMAS.items():
        name = _component_name(event_type)
        spec.components.schema(name, component=body_schema(schema, converter, event_type))
        typed.append(_ref(name))
    spec.components.schema(
        "TypedEvent",
        component={
            "description": "A typed event: its `type` picks the schema.",
            "oneOf": typed,
        },
    )
    for name, schema in (
        ("LegacyDeploymentBody", LEGACY_DEPLOYMENT),
        ("SummaryBody", SUMMARY),
        ("StepReportBody", STEP_BODY),
        ("ProjectStatusBody", PROJECT_STATUS),
    ):
        body = body_schema(schema, converter, None)
        if schema is LEGACY_DEPLOYMENT:  # a body with a "type" is a typed event
            body["not"] = {"required": ["type"]}
        spec.components.schema(name, component=body)
    for path, summary, description, one in _INGEST_ROUTES:
        body = {"anyOf": [one, batch_of(one, "A batch, stored whole or not at all.")]}
        spec.path(path=path, operations={"post": _ingest_operation(summary, description, body)})
    github = _ingest_operation(
        "A GitHub webhook delivery",
        "`workflow_run`, `workflow_job`, `deployment` and `deployment_status` deliveries for "
        "`HUB_GITHUB_REPOSITORIES` "
        "(docs/SENDERS.md); every other delivery is acknowledged with 200 and records nothing.",
        _ref("GitHubDelivery"),
    )
    github["parameters"] = [
        *_INGEST_HEADERS,
        _header(
            "X-GitHub-Event",
            "`workflow_run`, `workflow_job`, `deployment`, `deployment_status` are recorded.",
        ),
    ]
    gitlab = _ingest_operation(
        "A GitLab webhook delivery",
        "`Pipeline Hook`, `Job Hook` and `Deployment Hook` deliveries for "
        "`HUB_GITLAB_PROJECTS` (docs/SENDERS.md); every other delivery is acknowledged with "
        "200 and records nothing. GitLab's retries repeat its `Idempotency-Key`.",
        _ref("GitLabDelivery"),
    )
    gitlab["security"] = [*INGEST_SECURITY, {"gitlabToken": []}]
    gitlab["parameters"] = [
        *_INGEST_HEADERS,
        _header("X-Gitlab-Event", "`Pipeline Hook`, `Job Hook`, `Deployment Hook`."),
    ]
    flux = _ingest_operation(
        "A Flux notification (Kustomization or HelmRelease reconciliation)",
        "Posted by a Flux `Provider` of type `generic-hmac` (or `generic`) (docs/SENDERS.md); "
        "an event that names no revision is acknowledged with 200 and records nothing.",
        _ref("FluxEvent"),
    )
    flux["security"] = [*INGEST_SECURITY, {"fluxSignature": []}]
    for route, operation in (("github", github), ("gitlab", gitlab), ("flux", flux)):
        operation["responses"]["200"] = _json(
            {"oneOf": [_ref("IngestAccepted"), _ref("Ignored")]},
            "Stored, or acknowledged without recording anything.",
        )
        spec.path(path=f"/api/webhooks/{route}", operations={"post": operation})
    spec.components.schema("GitHubDelivery", component=GITHUB_DELIVERY)
    spec.components.schema("GitLabDelivery", component=GITLAB_DELIVERY)
    spec.components.schema("FluxEvent", component=FLUX_EVENT)


def _read(
    summary: str,
    ok: JsonSchema,
    *errors: int,
    parameters: list[JsonSchema] | None = None,
    description: str | None = None,
    tag: str = "read",
    others: dict[str, JsonSchema] | None = None,
) -> JsonSchema:
    operation: JsonSchema = {
        "tags": [tag],
        "summary": summary,
        "security": READ_SECURITY,
        "parameters": [*(parameters or []), TOKEN],
        "responses": _responses(ok, 401, 503, *errors, others=others),
    }
    if description:
        operation["description"] = description
    return operation


def _add_reads(spec: APISpec) -> None:
    deployment_id = _path(
        "deployment_id", "The deployment's id (an id no deployment has is a 404)."
    )
    spec.path(
        path="/api/deployments",
        operations={
            "get": _read(
                "Deployments, newest first",
                _json(_ref("DeploymentsPage"), "One page."),
                400,
                parameters=[
                    _query("project", _NAME_PARAM, "Only this project's."),
                    _query("status", {"enum": list(STATUSES)}, "Only those with this status."),
                    _query("branch", _NAME_PARAM, "Only those of this branch."),
                    _query(
                        "environment",
                        _NAME_PARAM,
                        "Only those to this environment. Read from the listing, at most "
                        "`MAX_ENVIRONMENT_SCAN` rows per answer: a page may hold fewer than "
                        "`limit` rows with a `next_cursor` to go on.",
                    ),
                    _limit(50),
                    _query("cursor", {"type": "string"}, "`next_cursor` of the page before."),
                ],
            )
        },
    )
    spec.path(
        path="/api/deployments/{deployment_id}",
        operations={
            "get": _read(
                "One deployment with its jobs and steps",
                _json(_ref("Deployment"), "The deployment view."),
                404,
                parameters=[deployment_id],
            )
        },
    )
    spec.path(
        path="/api/deployments/{deployment_id}/logs",
        operations={
            "get": _read(
                "A deployment's log lines",
                _json(_ref("LogsPage"), "One page of lines, in order."),
                400,
                404,
                parameters=[
                    deployment_id,
                    _query("job", _NAME_PARAM, "Only this job's lines."),
                    _query("step", _NAME_PARAM, "Only this step's lines."),
                    _query(
                        "after",
                        {"type": "integer", "minimum": 0, "maximum": MAX_SEQ},
                        "Lines after this id (`next_cursor` of the page before).",
                    ),
                    _query(
                        "before",
                        {"type": "integer", "minimum": 1, "maximum": MAX_SEQ},
                        "Instead of `after`: the last `limit` lines with ids below this one, "
                        "with `first_number`, the number of the first in the log (the hub "
                        "counts the lines before it). `next_cursor` goes on after them.",
                    ),
                    _limit(500),
                ],
            )
        },
    )
    spec.path(
        path="/api/deployments/{deployment_id}/logs.txt",
        operations={
            "get": _read(
                "A deployment's whole log as plain text, to save",
                {
                    "description": "One line per log line, in order: `<timestamp> <LEVEL> "
                    "[<job> / <step>] <text>`, escape codes taken out. Streamed (read from "
                    "the store a page at a time) with `Content-Disposition: attachment; "
                    'filename="<deployment>[-<job>][-<step>].log"`.',
                    "headers": {
                        "Content-Disposition": {
                            "description": "`attachment` with the file name.",
                            "schema": {"type": "string"},
                        }
                    },
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
                400,
                404,
                parameters=[
                    deployment_id,
                    _query("job", _NAME_PARAM, "Only this job's lines."),
                    _query("step", _NAME_PARAM, "Only this step's lines."),
                ],
            )
        },
    )
    spec.path(
        path="/api/projects",
        operations={
            "get": _read(
                "Each project with its latest deployment and counts",
                _json(_ref("Projects"), "Projects by name."),
            )
        },
    )
    spec.path(
        path="/api/events",
        operations={
            "get": _read(
                "The event log, for clients that poll",
                _json(_ref("EventsPage"), "One page of events in the order they were stored."),
                400,
                parameters=[
                    _query("project", _NAME_PARAM, "Only this project's."),
                    _query("deployment_id", _NAME_PARAM, "Only this deployment's."),
                    _query(
                        "since",
                        EVENT_ID,
                        "Events after this id (`next_cursor` of the page before). An id of "
                        "another epoch, or one older than the history kept, gives the log from "
                        "its start with `recovered: false`; text that is no event id is a 400.",
                    ),
                    _limit(100),
                ],
            )
        },
    )
    spec.path(
        path="/api/stream",
        operations={
            "get": _read(
                "The live events as Server-Sent Events",
                {
                    "description": "`retry: 2000`, then one `data:` line per frame: "
                    "`subscribed`, the replayed `event` frames (with `id:`), "
                    "`replay_complete`, live `event` frames; `: keep-alive` comments while "
                    "idle. Each `data:` is a frame of `docs/frames.schema.json` "
                    "(`#/$defs/sseFrame`); docs/WEBSOCKET.md tells the rules.",
                    "content": {"text/event-stream": {"schema": {"type": "string"}}},
                },
                400,
                parameters=[
                    _query(
                        "project",
                        _NAME_PARAM,
                        "Exactly one of `project`, `deployment_id` and `all=true`.",
                    ),
                    _query("deployment_id", _NAME_PARAM, "See `project`."),
                    _query("all", {"const": "true"}, "Every project's events. See `project`."),
                    _query(
                        "types",
                        {"type": "string"},
                        f"Comma-separated event types, of: {', '.join(EVENT_TYPES)}; or "
                        f"patterns: {', '.join(TYPE_PATTERNS)}.",
                    ),
                    _query(
                        "last_event_id",
                        {"type": "string", "maxLength": 64},
                        "Resume after this event id.",
                    ),
                    {
                        **_header("Last-Event-ID", "As `last_event_id`, and wins over it."),
                        "schema": {"type": "string", "maxLength": 64},
                    },
                ],
                tag="live",
                others={"404": _error_response(404, NOT_SERVED.format(role="ingest"))},
            )
        },
    )
    spec.path(
        path="/api/delivery-metrics",
        operations={
            "get": _read(
                "Deployment frequency, change failure rate, time to restore, durations",
                _json(_ref("DeliveryMetrics"), "The figures overall and per project."),
                400,
                parameters=[
                    _query(
                        "days",
                        {"type": "integer", "minimum": 1, "maximum": 365, "default": 30},
                        "The window: deployments started in the last this many days.",
                    ),
                    _query("project", _NAME_PARAM, "Only this project's."),
                    _query(
                        "environment",
                        _NAME_PARAM,
                        "Only deployments to this environment; default: `production` when the "
                        "window has deployments to it, else every deployment.",
                    ),
                    _query(
                        "tz",
                        _NAME_PARAM,
                        "The IANA time zone `daily` counts days in (`Europe/Berlin`); default "
                        "UTC. Not together with `utc_offset`; an unknown name is a 400.",
                    ),
                    _query(
                        "utc_offset",
                        {"type": "integer", "minimum": -720, "maximum": 840},
                        "The zone `daily` counts days in, as minutes east of UTC (`120`, "
                        "`-300`). Not together with `tz`.",
                    ),
                ],
            )
        },
    )
    spec.path(
        path="/api/environments",
        operations={
            "get": _read(
                "What each project runs in each environment",
                _json(_ref("Environments"), "Per project and environment."),
                400,
                parameters=[_query("project", _NAME_PARAM, "Only this project's.")],
            )
        },
    )
    days = _query(
        "days",
        {"type": "integer", "minimum": 1, "maximum": MAX_WINDOW_DAYS, "default": 30},
        "The window: the last this many days.",
    )
    spec.path(
        path="/api/failures",
        operations={
            "get": _read(
                "Failed deployments grouped by signature, most frequent first",
                _json(_ref("FailuresPage"), "One page of groups."),
                400,
                parameters=[
                    days,
                    _query("project", _NAME_PARAM, "Only this project's."),
                    {
                        **_limit(50),
                        "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50},
                    },
                    _query("cursor", {"type": "string"}, "`next_cursor` of the page before."),
                ],
            )
        },
    )
    spec.path(
        path="/api/logs/search",
        operations={
            "get": _read(
                "Log lines matching words, phrases or prefixes, newest first",
                _json(_ref("SearchPage"), "One page of matching lines."),
                400,
                422,
                parameters=[
                    _query(
                        "q",
                        {"type": "string", "minLength": 1, "maxLength": MAX_QUERY_LENGTH},
                        'Words (all must match), `"quoted phrases"`, `prefix*`; a 422 '
                        "(`invalid_query`) names what cannot be searched for.",
                    ),
                    _query("project", _NAME_PARAM, "Only this project's lines."),
                    _query("deployment_id", _NAME_PARAM, "Only this deployment's lines."),
                    _query("job", _NAME_PARAM, "Only this job's lines."),
                    _query("step", _NAME_PARAM, "Only this step's lines."),
                    _query("level", {"enum": list(LOG_LEVELS)}, "Only lines of this level."),
                    _query("since", {"type": "string"}, "Lines at or after this ISO-8601 time."),
                    _query("until", {"type": "string"}, "Lines before this ISO-8601 time."),
                    {
                        **_limit(50),
                        "schema": {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": MAX_SEARCH_LIMIT,
                            "default": 50,
                        },
                    },
                    _query("cursor", {"type": "string"}, "`next_cursor` of the page before."),
                ],
            )
        },
    )
    spec.path(
        path="/api/steps",
        operations={
            "get": _read(
                "Each step's runs, failures, flaky runs and durations against the window before",
                _json(_ref("StepTrends"), "Steps of the window, by project."),
                400,
                parameters=[days, _query("project", _NAME_PARAM, "Only this project's.")],
            )
        },
    )
    spec.path(
        path="/api/projects/{project}/badge.svg",
        operations={
            "get": _read(
                "A status badge of the project's latest deployment",
                {
                    "description": "A shields.io-style SVG; `ETag` and `Cache-Control: "
                    "max-age=30`.",
                    "content": {"image/svg+xml": {"schema": {"type": "string"}}},
                },
                400,
                parameters=[
                    _path("project", "The project.", _NAME_PARAM),
                    _query("label", {"type": "string"}, "The left text (default: the project)."),
                ],
                others={"304": {"description": "Not modified (`If-None-Match`)."}},
            )
        },
    )


def _add_live_and_pages(spec: APISpec) -> None:
    websocket = {
        "tags": ["live"],
        "summary": "The WebSocket (docs/WEBSOCKET.md)",
        "description": "Text frames of JSON, described by `docs/frames.schema.json`. Whatever "
        "can refuse a client is decided before the upgrade and answered as plain HTTP with "
        "the error body.",
        "security": READ_SECURITY,
        "parameters": [
            TOKEN,
            _header("Sec-WebSocket-Key", "Required."),
            _header("Sec-WebSocket-Version", "Must be `13`."),
            _header("Origin", "Checked against `HUB_ALLOWED_ORIGINS` when it is set."),
        ],
        "responses": {
            "101": {"description": "Switching protocols: the WebSocket is open."},
            **{
                str(status): {"$ref": f"#/components/responses/Error{status}"}
                for status in (400, 401, 403, 426, 429, 500, 503)
            },
            "404": _error_response(404, NOT_SERVED.format(role="ingest")),
        },
    }
    for path in ("/ws", "/ws/"):
        spec.path(path=path, operations={"get": copy.deepcopy(websocket)})
    health = {
        "/healthz": (
            "The process answers (liveness); says nothing about the store",
            _json(_ref("Health"), "Alive."),
            (),
        ),
        "/readyz": (
            "The store answers (readiness)",
            _json(_ref("Ready"), "Ready."),
            (503,),
        ),
    }
    for path, (summary, ok, errors) in health.items():
        spec.path(
            path=path,
            operations={
                "get": {
                    "tags": ["operations"],
                    "summary": summary,
                    "security": [{}],
                    "responses": _responses(ok, *errors),
                }
            },
        )
    spec.path(
        path="/metrics",
        operations={
            "get": {
                "tags": ["operations"],
                "summary": "Prometheus metrics of every worker (docs/OPERATIONS.md)",
                "description": "Needs a token of `HUB_METRICS_TOKENS` when that is set, else a "
                "read token when `HUB_READ_TOKENS` is.",
                "security": READ_SECURITY,
                "parameters": [TOKEN],
                "responses": _responses(
                    {
                        "description": "The Prometheus text exposition format.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    401,
                    others={
                        "404": _error_response(
                            404, "Not served on the public site: nginx/hub.conf refuses it."
                        )
                    },
                ),
            }
        },
    )
    spec.path(
        path="/api/openapi.json",
        operations={
            "get": {
                "tags": ["operations"],
                "summary": "This document",
                "description": "Readable without a token: it describes the API, not its data.",
                "security": [{}],
                "responses": _responses(
                    _json({"type": "object"}, "The OpenAPI document, built once per process.")
                ),
            }
        },
    )
    not_modified = {"304": {"description": "Not modified (`If-None-Match`)."}}
    spec.path(
        path="/",
        operations={
            "get": {
                "tags": ["dashboard"],
                "summary": "The live dashboard page (docs/DASHBOARD.md)",
                "security": [{}],
                "responses": _responses(
                    {
                        "description": "The page.",
                        "content": {"text/html": {"schema": {"type": "string"}}},
                    },
                    others=not_modified,
                ),
            }
        },
    )
    spec.path(
        path="/static/{filename}",
        operations={
            "get": {
                "tags": ["dashboard"],
                "summary": "The page's scripts, styles and images",
                "description": "Under `static/<version>/...` they may be cached for good.",
                "security": [{}],
                "parameters": [
                    {
                        "name": "filename",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    }
                ],
                "responses": _responses(
                    {"description": "The file.", "content": {"*/*": {"schema": {}}}},
                    404,
                    others=not_modified,
                ),
            }
        },
    )


_COMPONENT_SCHEMAS: dict[str, JsonSchema] = {
    "Event": responses.EVENT,
    "Deployment": responses.DEPLOYMENT,
    "DeploymentRow": responses.DEPLOYMENT_ROW,
    "Job": responses.JOB,
    "Step": responses.STEP,
    "LogLine": responses.LOG_LINE,
    "Project": responses.PROJECT,
    "DeploymentsPage": responses.DEPLOYMENTS_PAGE,
    "LogsPage": responses.LOGS_PAGE,
    "EventsPage": responses.EVENTS_PAGE,
    "Projects": responses.PROJECTS,
    "DeliveryMetrics": responses.DELIVERY_METRICS,
    "IngestAccepted": responses.INGEST_ACCEPTED,
    "Ignored": responses.IGNORED,
    "Environments": responses.ENVIRONMENTS,
    "Failure": responses.FAILURE,
    "Eta": responses.ETA,
    "FailuresPage": responses.FAILURES_PAGE,
    "SearchPage": responses.SEARCH_PAGE,
    "StepTrends": responses.STEP_TRENDS,
    "Health": responses.HEALTH,
    "Ready": responses.READY,
    "Error": error_body(),
}

DESCRIPTION = """\
CI pipelines post deployment events; the hub normalises every sender format into one event
shape, keeps an event log and a deployment view, and serves them over this read API, a
WebSocket and Server-Sent Events. The wire contract is docs/CONTRACT.md; the frames of the
WebSocket and the SSE stream are described by docs/frames.schema.json.

Every path is served under both servers: `/project-dashboard` (the public prefix behind nginx)
and `/`. Ingest authentication and read tokens apply only when configured
(`HUB_WEBHOOK_SECRETS`, `HUB_WEBHOOK_TOKENS`, `HUB_READ_TOKENS`), hence the empty
alternative in each `security`. Response objects list every key the hub sends; clients should
still ignore keys they do not know, since later versions may add some (CONTRACT.md). JSON and
static answers over 500 bytes are compressed (brotli or gzip) for clients that accept it."""


def build_document() -> dict[str, Any]:
    """Generate the document (each call builds it anew; :func:`document` keeps one)."""
    plugin = MarshmallowPlugin()
    spec = APISpec(
        title="Deployment dashboard hub",
        version=version(),
        openapi_version=OPENAPI_VERSION,
        plugins=[plugin],
        info={"description": DESCRIPTION, "license": {"name": "MIT", "identifier": "MIT"}},
        servers=[
            {"url": PUBLIC_PREFIX, "description": "The public prefix behind nginx."},
            {"url": "/", "description": "The same routes, reached directly."},
        ],
        tags=[
            {"name": "ingest", "description": "Senders post events (docs/EVENTS.md)."},
            {"name": "read", "description": "The read API (CONTRACT.md)."},
            {"name": "live", "description": "WebSocket and SSE (docs/WEBSOCKET.md)."},
            {"name": "operations", "description": "Health, readiness, metrics, this document."},
            {"name": "dashboard", "description": "The web page."},
        ],
    )
    converter = plugin.converter
    assert converter is not None  # noqa: S101 - set by APISpec's init_spec
    converter.add_attribute_function(_wire_attribute)  # type: ignore[no-untyped-call]
    for name, component in _COMPONENT_SCHEMAS.items():
        spec.components.schema(name, component=copy.deepcopy(component))
    for cls, component in WIRE_FIELDS:
        spec.components.schema(cls.__name__, component=copy.deepcopy(component))
    for status, codes in sorted(ERROR_CODES.items()):
        if status in _STATUS_NAMES:
            spec.components.schema(f"Error{status}", component=error_body(codes))
            spec.components.response(f"Error{status}", component=_error_response(status))
    spec.components.security_scheme(
        "ingestToken",
        {"type": "http", "scheme": "bearer", "description": "A token of HUB_WEBHOOK_TOKENS."},
    )
    spec.components.security_scheme(
        "githubSignature",
        {
            "type": "apiKey",
            "in": "header",
            "name": "X-Hub-Signature-256",
            "description": "`sha256=<hex HMAC-SHA256 of the raw body>` with a secret of "
            "HUB_WEBHOOK_SECRETS (GitHub's scheme).",
        },
    )
    spec.components.security_scheme(
        "standardWebhooks",
        {
            "type": "apiKey",
            "in": "header",
            "name": "webhook-signature",
            "description": "Standard Webhooks (`webhook-id`, `webhook-timestamp`, "
            "`webhook-signature`) with a secret of HUB_WEBHOOK_SECRETS.",
        },
    )
    spec.components.security_scheme(
        "gitlabToken",
        {
            "type": "apiKey",
            "in": "header",
            "name": "X-Gitlab-Token",
            "description": "The webhook's secret token, one of HUB_GITLAB_TOKENS.",
        },
    )
    spec.components.security_scheme(
        "fluxSignature",
        {
            "type": "apiKey",
            "in": "header",
            "name": "X-Signature",
            "description": "`<hash>=<hex HMAC of the raw body>` with a key of HUB_FLUX_SECRETS "
            "(Flux's generic-hmac provider).",
        },
    )
    spec.components.security_scheme(
        "readToken",
        {"type": "http", "scheme": "bearer", "description": "A token of HUB_READ_TOKENS."},
    )
    spec.components.security_scheme(
        "readTokenQuery",
        {
            "type": "apiKey",
            "in": "query",
            "name": "token",
            "description": "A token of HUB_READ_TOKENS, for browsers (WebSocket, EventSource).",
        },
    )
    _add_ingest(spec, converter)
    _add_reads(spec)
    _add_live_and_pages(spec)
    return spec.to_dict()


@functools.cache
def document() -> dict[str, Any]:
    """The document, built once per process (treat it as read-only)."""
    return build_document()


@functools.cache
def _document_bytes() -> bytes:
    return orjson.dumps(document())


@openapi_routes.get("/api/openapi.json")
def openapi_json() -> Response:
    """This API as OpenAPI 3.1; open to everyone, like the docs it comes from."""
    return Response(_document_bytes(), mimetype="application/json")
