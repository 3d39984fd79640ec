"""``GET /api/openapi.json``: a valid OpenAPI 3.1 document that the hub really keeps to.

Every response of the Flask test client is checked against the document by
``tests/contract.py`` (the ``client`` of every integration test); here the
document itself is checked, and the request side: what the document says the
ingest routes take is what the hub accepts, for every captured sender body and
for a corpus of made-up ones.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from jsonschema import Draft202012Validator
from marshmallow import ValidationError
from openapi_core import OpenAPI
from openapi_core.exceptions import OpenAPIError
from openapi_core.testing import MockRequest
from openapi_spec_validator import validate

from app import openapi
from app.config import Settings
from app.fields import Count, Millis, Name, Seconds, Status, Text, Timestamp
from server.app import PUBLIC_PREFIX, create_app
from tests.conftest import FIXTURES, load_manifest
from tests.contract import HOST, check_response

MANIFEST = load_manifest()
PREFIXES = ["", PUBLIC_PREFIX]


@pytest.fixture(scope="module")
def served() -> dict[str, Any]:
    """The document as a client gets it, with read tokens set (it needs none)."""
    app = create_app(Settings(store_url="memory://", read_tokens=("s3cret",)))
    response = app.test_client().get("/api/openapi.json")
    app.extensions["hub"].stop()
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    document: dict[str, Any] = response.get_json()
    return document


@pytest.fixture(scope="module")
def spec(served: dict[str, Any]) -> OpenAPI:
    return OpenAPI.from_dict(served)


def test_the_document_is_valid_openapi_3_1(served: dict[str, Any]) -> None:
    assert served["openapi"] == "3.1.0"
    validate(served)


@pytest.mark.parametrize("prefix", PREFIXES)
def test_it_is_served_under_both_prefixes_without_a_token(prefix: str) -> None:
    app = create_app(Settings(store_url="memory://", read_tokens=("s3cret",)))
    client = app.test_client()
    assert client.get("/api/deployments").status_code == 401  # reads do need the token
    response = client.get(f"{prefix}/api/openapi.json")
    app.extensions["hub"].stop()
    assert response.status_code == 200
    assert response.get_json() == openapi.document()


def test_it_is_built_once_per_process() -> None:
    assert openapi.document() is openapi.document()
    assert openapi.build_document() == openapi.document()


def _documented_path(rule: str) -> str:
    """A Flask rule as an OpenAPI path: no public prefix, ``<conv:name>`` as ``{name}``."""
    path = rule.removeprefix(PUBLIC_PREFIX) or "/"
    return re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", path)


def test_every_route_of_the_app_is_documented_and_nothing_else(
    app: Flask, served: dict[str, Any]
) -> None:
    routes = {
        (_documented_path(rule.rule), method.lower())
        for rule in app.url_map.iter_rules()
        for method in rule.methods or ()
        if method not in ("HEAD", "OPTIONS")
    }
    documented = {
        (path, method)
        for path, operations in served["paths"].items()
        for method in operations
        if method in ("get", "post", "put", "patch", "delete")
    }
    assert routes == documented


def _accepted_by_document(spec: OpenAPI, path: str, body: bytes, headers: dict[str, str]) -> bool:
    request = MockRequest(
        HOST, "post", path, headers=headers, data=body, content_type=headers["Content-Type"]
    )
    try:
        spec.validate_request(request)
    except OpenAPIError:
        return False
    return True


def known(client: FlaskClient, *deployment_ids: Any) -> None:
    """Start these deployments with a project, as a pipeline's first event does: a later
    event may then leave its project out (or say ``unknown``), which the hub decides by what
    it has stored, and a document cannot."""
    for deployment_id in deployment_ids:
        start = {"type": "deployment_started", "project": "p", "deployment_id": deployment_id}
        assert client.post("/api/webhooks/deployment", json=start).status_code == 200


@pytest.mark.parametrize("entry", MANIFEST, ids=[e["file"] for e in MANIFEST])
def test_every_captured_body_is_accepted_by_the_hub_exactly_when_the_document_says_so(
    client: FlaskClient, spec: OpenAPI, entry: dict[str, Any]
) -> None:
    """An accepted real body matches its route's request schema; the refused ones do not.

    The run the ``"project": "unknown"`` bodies belong to is started first, as it was
    in the pipelines they come from.
    """
    known(client, "16899001122")
    body = (FIXTURES / entry["file"]).read_bytes()
    answer = client.post(entry["path"], data=body, headers=entry["headers"])
    accepted = answer.status_code == 200
    assert accepted is (entry["file"] not in {"log_entry-2.invalid.txt", "metrics_update-1.json"})
    assert _accepted_by_document(spec, entry["path"], body, entry["headers"]) is accepted


STEP = {"type": "step_started", "project": "p", "deployment_id": "1", "step_name": "a / b"}
DONE = {"type": "deployment_completed", "project": "p", "deployment_id": "1", "status": "failed"}
LEGACY = {"project": "p", "status": "success", "duration": "45", "runId": ""}
SUMMARY = {"project": "p", "status": "success", "step_details": {"deploy_project": ""}}
STEP_REPORT = {"project": "p", "step_name": "deploy", "step_status": "failed"}
#: Bodies beside the captured ones, each with its route: the hub accepts each exactly when
#: the document says it may (the test finds out which by posting it).
BODIES: list[tuple[str, Any]] = [
    ("/api/webhooks/deployment", STEP),
    ("/api/webhooks/deployment", {**STEP, "step_name": None, "step": "b", "job": "a"}),
    ("/api/webhooks/deployment", {**STEP, "step_name": ""}),
    ("/api/webhooks/deployment", {**STEP, "deployment_id": None, "runId": 16898765432}),
    (
        "/api/webhooks/deployment",
        {**{k: v for k, v in STEP.items() if k != "deployment_id"}, "runId": 7},
    ),
    ("/api/webhooks/deployment", {**STEP, "deployment_id": "  "}),
    ("/api/webhooks/deployment", {**STEP, "duration": "abc"}),
    ("/api/webhooks/deployment", {**STEP, "duration": -1}),
    ("/api/webhooks/deployment", {**STEP, "duration": True}),
    ("/api/webhooks/deployment", {**STEP, "step_number": "3"}),
    ("/api/webhooks/deployment", {**STEP, "step_number": 2.5}),
    ("/api/webhooks/deployment", {**STEP, "timestamp": "yesterday"}),
    ("/api/webhooks/deployment", {**STEP, "timestamp": "2025-08-12T11:21:02.1234567Z"}),
    ("/api/webhooks/deployment", {**STEP, "project": ["p"]}),
    ("/api/webhooks/deployment", {**STEP, "project": "two\nlines"}),
    ("/api/webhooks/deployment", {**STEP, "project": "p" * 201}),
    ("/api/webhooks/deployment", {**STEP, "whatever": {"kept": True}}),
    ("/api/webhooks/deployment", {**STEP, "type": "step_completed"}),
    ("/api/webhooks/deployment", {**STEP, "type": "step_completed", "step_status": "success"}),
    ("/api/webhooks/deployment", {**STEP, "type": "step_manual", "status": "retrying"}),
    ("/api/webhooks/deployment", {**STEP, "type": "step_manual"}),
    ("/api/webhooks/deployment", {**STEP, "type": "mystery"}),
    ("/api/webhooks/deployment", DONE),
    ("/api/webhooks/deployment", {**DONE, "status": "exploded"}),
    ("/api/webhooks/deployment", {**DONE, "status": ""}),
    ("/api/webhooks/deployment", {**DONE, "errorMessage": "boom", "duration_ms": "1500"}),
    ("/api/webhooks/deployment", {**DONE, "deployment_id": ""}),
    ("/api/webhooks/deployment", {"type": "log_entry", "deployment_id": "1", "message": "hi"}),
    ("/api/webhooks/deployment", {"type": "log_entry", "deployment_id": "1", "logs": 42}),
    ("/api/webhooks/deployment", {"type": "log_entry", "deployment_id": "1"}),
    (
        "/api/webhooks/deployment",
        {"type": "log_entry", "deployment_id": "1", "message": "x", "level": "loud"},
    ),
    (
        "/api/webhooks/deployment",
        {"type": "log_entry", "deployment_id": "1", "message": "x", "level": "warn"},
    ),
    ("/api/webhooks/deployment", {"type": "metrics_update", "deployment_id": "1", "metrics": {}}),
    ("/api/webhooks/deployment", {"type": "metrics_update", "deployment_id": "1", "cpu": 5}),
    ("/api/webhooks/deployment", {"type": "metrics_update", "deployment_id": "1", "cpu": "5"}),
    ("/api/webhooks/deployment", {"type": "metrics_update", "deployment_id": "1", "logs": 5}),
    ("/api/webhooks/deployment", {"type": "metrics_update", "deployment_id": "1", "error": 5}),
    (
        "/api/webhooks/deployment",
        {"type": "metrics_update", "deployment_id": "1", "metrics": {"cpu": 5}},
    ),
    ("/api/webhooks/deployment", {"type": "deployment_rollback", "deployment_id": "2"}),
    ("/api/webhooks/deployment", {"type": "deployment_started", "deployment_id": "3"}),
    ("/api/webhooks/deployment", {"type": "test"}),
    ("/api/webhooks/deployment", {"type": 7}),
    ("/api/webhooks/deployment", LEGACY),
    ("/api/webhooks/deployment", {**LEGACY, "project": ""}),
    ("/api/webhooks/deployment", {**LEGACY, "status": None}),
    ("/api/webhooks/deployment", {"events": [STEP, LEGACY, {"type": "test"}]}),
    ("/api/webhooks/deployment", {"events": [STEP, {**STEP, "type": "mystery"}]}),
    ("/api/webhooks/deployment", {"events": []}),
    ("/api/webhooks/deployment", {"events": "not a list", "project": "p", "status": "success"}),
    ("/api/webhooks/deployment", [STEP]),
    ("/api/webhooks/deployment", "just a string"),
    ("/api/webhook/deployment", SUMMARY),
    ("/api/webhook/deployment", {**SUMMARY, "step_details": {"deploy_project": "exploded"}}),
    ("/api/webhook/deployment", {**SUMMARY, "project": None}),
    ("/api/webhook/deployment", {"events": [SUMMARY, SUMMARY]}),
    ("/api/webhook/step", STEP_REPORT),
    ("/api/webhook/step", {**STEP_REPORT, "step_status": None, "status": "running"}),
    ("/api/webhook/step", {**STEP_REPORT, "step_status": None}),
    ("/api/webhook/step", {**STEP_REPORT, "step_order": "2", "step_duration": "0"}),
    ("/api/webhook/step", {**STEP_REPORT, "step_name": None}),
    ("/api/webhook/project-status", {"project": "p", "status_type": "health", "status": "ok"}),
    ("/api/webhook/project-status", {"project": "p", "status": "ok"}),
    ("/api/webhook/project-status", {"status_type": "health"}),
]


@pytest.mark.parametrize(("path", "body"), BODIES, ids=[str(i) for i in range(len(BODIES))])
def test_made_up_bodies_are_accepted_exactly_when_the_document_says_so(
    client: FlaskClient, spec: OpenAPI, path: str, body: Any
) -> None:
    known(client, "1", "2", "3", "7", "16898765432")
    raw = json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    answer = client.post(path, data=raw, headers=headers)
    assert answer.status_code in (200, 422), answer.get_json()
    assert _accepted_by_document(spec, path, raw, headers) is (answer.status_code == 200), (
        answer.get_json()
    )


def test_a_new_deployment_needs_its_project_which_the_document_can_only_say_in_words(
    client: FlaskClient, spec: OpenAPI, served: dict[str, Any]
) -> None:
    """Whether a deployment is new depends on what the hub stored: the schema cannot check
    it, so the route's description says it."""
    raw = json.dumps(
        {"type": "log_entry", "deployment_id": "new", "project": "unknown", "message": "hi"}
    )
    headers = {"Content-Type": "application/json"}
    assert _accepted_by_document(spec, "/api/webhooks/deployment", raw.encode(), headers)
    answer = client.post("/api/webhooks/deployment", data=raw, headers=headers)
    assert answer.status_code == 422
    assert "project" in answer.get_json()["error"]["details"]
    operation = served["paths"]["/api/webhooks/deployment"]["post"]
    assert "first event" in operation["description"]


#: Values each custom field is tried with: the field loads a value exactly when its
#: component in the document accepts it.
FIELD_VALUES: dict[str, list[Any]] = {
    "text": ["hi", "", None, 5, 2.5, "\x1b[31mred\x1b[0m", True, [], {}],
    "number": [45, 0, "45", " 1.5 ", ".5", "1e3", "", "  ", None, -1, "-1", "abc", "nan", True],
    "seconds": [45, "45", 315360000, 315360001, 1e12],
    "millis": [45, "45", 315360000000, 315360000001, 1e15],
    "count": [3, 0, "3", "3.0", "", None, 2.5, "2.5", -1, "x", False, 1000000, 1000001],
    "timestamp": [
        "2025-08-12T11:20:00.000Z",
        "2025-08-12T11:20:00Z",
        "2025-08-12T11:20:00+08:00",
        "2025-08-12T11:20:00.1234567Z",
        "2025-08-12T11:20:00",
        "2025-08-12",
        "",
        None,
        "yesterday",
        "12:00",
        17,
        "2025-08-12T11:20:00.000Z" + " " * 60,
    ],
    "status": ["success", "failed", "in_progress", "retrying", "", None, "exploded", 1],
    "name": ["web", "", None, 16898765432, "p" * 200, "p" * 201, "two\nlines", "tab\there"],
}
FIELDS: list[tuple[str, Any, str]] = [
    ("Text", Text(), "text"),
    ("Name", Name(), "name"),
    ("Seconds", Seconds(), "number"),
    ("Seconds", Seconds(), "seconds"),
    ("Millis", Millis(), "number"),
    ("Millis", Millis(), "millis"),
    ("Count", Count(), "count"),
    ("Timestamp", Timestamp(), "timestamp"),
    ("Status", Status(), "status"),
]


@pytest.mark.parametrize(
    ("component", "field", "value"),
    [(c, f, v) for c, f, kind in FIELDS for v in FIELD_VALUES[kind]],
    ids=[f"{c}-{i}" for c, _, kind in FIELDS for i in range(len(FIELD_VALUES[kind]))],
)
def test_each_custom_field_is_described_by_what_it_accepts(
    served: dict[str, Any], component: str, field: Any, value: Any
) -> None:
    validator = Draft202012Validator(served["components"]["schemas"][component])
    try:
        field.deserialize(value)
    except ValidationError:
        loads = False
    else:
        loads = True
    assert validator.is_valid(value) is loads


def test_every_custom_field_of_the_schemas_is_mapped(served: dict[str, Any]) -> None:
    """No property of an ingest body is left without a type (apispec's ``{}``)."""
    bodies = [
        schema
        for name, schema in served["components"]["schemas"].items()
        if name.endswith(("Event", "Body"))
    ]
    assert bodies
    for body in bodies:
        for name, prop in body.get("properties", {}).items():
            assert {"type", "$ref", "enum", "const", "anyOf"} & set(prop), (name, prop)


@pytest.mark.parametrize(
    ("target", "status", "body", "fails"),
    [
        ("/healthz", 200, {"status": "ok", "version": "1.0.0"}, False),
        ("/healthz", 200, {"status": "ok", "version": "1.0.0", "extra": 1}, True),
        ("/healthz", 200, {"status": "ok"}, True),
        ("/healthz", 418, {"status": "ok", "version": "1.0.0"}, True),
        ("/api/deployments/x", 404, {"success": False}, True),
        ("/nowhere", 404, {"success": False, "error": {"code": "not_found"}}, True),
        (
            "/nowhere",
            404,
            {"success": False, "error": {"code": "not_found", "message": "no", "details": {}}},
            False,
        ),
    ],
)
def test_the_response_check_fails_on_what_the_document_does_not_describe(
    target: str, status: int, body: Any, fails: bool
) -> None:
    """The checker the other tests rely on does catch a mismatch."""
    headers = {"Content-Type": "application/json"}
    raw = json.dumps(body).encode()
    if fails:
        with pytest.raises(AssertionError):
            check_response("GET", target, status, headers, raw)
    else:
        check_response("GET", target, status, headers, raw)
