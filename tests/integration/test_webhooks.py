"""Ingest over the Flask test client: every captured body, every error, no partial writes."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.config import Settings
from server.app import create_app
from storage.store import Store
from tests.conftest import FIXTURES, companions_expected, load_manifest

ROUTE = "/api/webhooks/deployment"
MANIFEST = load_manifest()
#: Captured bodies that must be refused, with why (the rest are answered 200).
REFUSED = {
    "log_entry-2.invalid.txt": (400, "invalid_json"),  # not JSON, and not the notify template
    "metrics_update-1.json": (422, "validation_failed"),  # no project and no deployment id
    # project "unknown" for a run the hub has never seen: the hub makes up no project
    "step_started-3.json": (422, "validation_failed"),
    "step_completed-1.json": (422, "validation_failed"),
    "step_completed-2.json": (422, "validation_failed"),
    "deployment_completed-3.json": (422, "validation_failed"),
}
#: The run those bodies belong to, started by an event that names its project.
NAMED_START = {
    "type": "deployment_started",
    "project": "axi-deploy",
    "deployment_id": "16899001122",
    "timestamp": "2025-08-12T11:20:00Z",
}


def store_of(app: Flask) -> Store:
    store: Store = app.extensions["hub_context"].store
    return store


def snapshot(app: Flask) -> tuple[int, list[dict[str, Any]]]:
    """Everything a rejected request must leave unchanged."""
    store = store_of(app)
    page = store.list_deployments(project=None, status=None, branch=None, limit=1000, cursor=None)
    return store.last_seq(), page.items


def post(client: FlaskClient, payload: Any, path: str = ROUTE, **headers: str) -> Any:
    return client.post(
        path, data=json.dumps(payload), headers={"Content-Type": "application/json", **headers}
    )


@pytest.mark.parametrize("entry", MANIFEST, ids=[e["file"] for e in MANIFEST])
def test_every_captured_body_gets_the_expected_answer(
    client: FlaskClient, app: Flask, entry: dict[str, Any]
) -> None:
    """The real bodies of existing pipelines, on their real routes and headers."""
    body = (FIXTURES / entry["file"]).read_bytes()
    before = snapshot(app)
    response = client.post(entry["path"], data=body, headers=entry["headers"])
    status, code = REFUSED.get(entry["file"], (200, None))
    assert response.status_code == status, response.get_data(as_text=True)
    data = response.get_json()
    if code is None:
        assert data["success"] is True
        assert data["accepted"] == 1
        stored = [event for _, event in store_of(app).read_after(before[0], 10)]
        # The body's own event, then the log_entry events its log text became.
        assert stored[0].id == data["ids"][0]
        assert not stored[0].payload["logs"]
        assert all(event.type == "log_entry" for event in stored[1:])
        assert {event.deployment_id for event in stored} == {stored[0].deployment_id}
        assert len(stored) == 1 + companions_expected(json.loads(body))
    else:
        assert data["error"]["code"] == code
        assert snapshot(app) == before


def test_all_captured_bodies_build_the_expected_deployments(
    client: FlaskClient, app: Flask
) -> None:
    """Once the run is named, its events that say project "unknown" join it."""
    assert post(client, NAMED_START).status_code == 200
    for entry in MANIFEST:
        client.post(
            entry["path"], data=(FIXTURES / entry["file"]).read_bytes(), headers=entry["headers"]
        )
    store = store_of(app)
    run = store.get_deployment("16899001122")
    assert run is not None
    assert (run["status"], run["project"]) == ("failure", "axi-deploy")
    jobs = {job["name"]: job for job in run["jobs"]}
    assert jobs["deploy-project"]["steps"][0]["status"] == "failure"
    assert jobs["deploy-project"]["steps"][0]["duration_ms"] == 82000
    assert jobs["validate-artifact"]["steps"][0]["status"] == "success"
    failed = store.get_deployment("16898770011")
    assert failed is not None
    assert failed["error"] == "部署失败，请查看 GitHub Actions 日志"
    summaries = store.list_deployments(
        project="axi-docs", status=None, branch=None, limit=50, cursor=None
    ).items
    assert any(row["steps"]["total"] == 8 for row in summaries)


def test_public_prefix_serves_the_same_routes(client: FlaskClient) -> None:
    body = {"type": "deployment_started", "project": "p", "deployment_id": "1"}
    assert post(client, body, "/project-dashboard/api/webhooks/deployment").status_code == 200
    assert client.get("/project-dashboard/api/deployments/1").get_json()["status"] == "running"


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        (b'{"type": ', "application/json", 400, "invalid_json"),
        (b"\xff\xfe{}", "application/json", 400, "invalid_json"),
        (b'{"type": "test"}', "text/plain", 415, "unsupported_media_type"),
        (b"type=test", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
        (b'{"type": "test"}', "", 415, "unsupported_media_type"),
        (b"[" * 50 + b"]" * 50, "application/json", 422, "validation_failed"),
        (b"[" * 100000, "application/json", 400, "invalid_json"),
        (b"[1, 2]", "application/json", 422, "validation_failed"),
        (b'"just a string"', "application/json", 422, "validation_failed"),
        (b"null", "application/json", 422, "validation_failed"),
        (
            b'{"type": "deployment_started", "project": "p", "deployment_id": "1", "x": NaN}',
            "application/json",
            400,
            "invalid_json",
        ),
        (
            b'{"type": "deployment_started", "project": ["p"], "deployment_id": "1"}',
            "application/json",
            422,
            "validation_failed",
        ),
        (
            b'{"type": "mystery", "project": "p", "deployment_id": "1"}',
            "application/json",
            422,
            "validation_failed",
        ),
        (b'{"events": []}', "application/json", 422, "validation_failed"),
        (b"", "application/json", 400, "invalid_json"),
    ],
    ids=[
        "malformed",
        "invalid-utf8",
        "text-plain",
        "form",
        "no-content-type",
        "nested-50",
        "nested-100000",
        "array",
        "string",
        "null",
        "nan",
        "wrong-type",
        "unknown-type",
        "empty-batch",
        "empty-body",
    ],
)
def test_bad_bodies_get_structured_errors_and_write_nothing(
    client: FlaskClient, app: Flask, body: bytes, content_type: str, status: int, code: str
) -> None:
    before = snapshot(app)
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post(ROUTE, data=body, headers=headers)
    assert response.status_code == status
    error = response.get_json()
    assert error["success"] is False
    assert error["error"]["code"] == code
    assert error["error"]["message"]
    assert isinstance(error["error"]["details"], dict)
    assert snapshot(app) == before


def test_body_over_the_cap_is_413(client: FlaskClient, app: Flask) -> None:
    before = snapshot(app)
    big = {"type": "log_entry", "project": "p", "deployment_id": "1", "message": "x" * 2**21}
    response = post(client, big)
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "payload_too_large"
    assert snapshot(app) == before


def test_validation_errors_name_the_fields(client: FlaskClient) -> None:
    response = post(client, {"type": "step_completed", "project": "p", "deployment_id": "1"})
    assert response.status_code == 422
    details = response.get_json()["error"]["details"]
    assert set(details) == {"status", "step_name"}


def test_a_batch_is_stored_whole(client: FlaskClient, app: Flask) -> None:
    events = [
        {"type": "log_entry", "project": "p", "deployment_id": "1", "message": f"line {i}"}
        for i in range(5)
    ]
    response = post(client, {"events": events})
    assert response.get_json()["accepted"] == 5
    lines = store_of(app).logs("1", job=None, step=None, after=None, limit=10).items
    assert [line["message"] for line in lines] == [f"line {i}" for i in range(5)]


def test_one_bad_event_rejects_the_batch_naming_its_index(client: FlaskClient, app: Flask) -> None:
    events: list[dict[str, Any]] = [
        {"type": "log_entry", "project": "p", "deployment_id": "1", "message": "fine"},
        {"type": "log_entry", "project": "p", "deployment_id": "1", "message": "fine"},
        {
            "type": "log_entry",
            "project": "p",
            "deployment_id": "1",
            "level": "shouting",
            "message": "bad",
        },
    ]
    before = snapshot(app)
    response = post(client, {"events": events})
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert "event 2" in error["message"]
    assert error["details"]["index"] == 2
    assert "level" in error["details"]["events"]["2"]
    assert snapshot(app) == before


def test_batches_over_the_limit_are_refused() -> None:
    app = create_app(Settings(store_url="memory://", max_batch_events=3))
    events = [{"type": "test"}] * 4
    response = post(app.test_client(), {"events": events})
    assert response.status_code == 422
    app.extensions["hub"].stop()


@pytest.mark.parametrize("header", ["Idempotency-Key", "X-GitHub-Delivery", "webhook-id"])
def test_a_redelivery_changes_nothing(client: FlaskClient, app: Flask, header: str) -> None:
    body = {"type": "deployment_started", "project": "p", "deployment_id": "1"}
    first = post(client, body, **{header: "delivery-1"}).get_json()
    seq = store_of(app).last_seq()
    again = post(client, body, **{header: "delivery-1"}).get_json()
    assert again == {**first, "duplicate": True}
    assert store_of(app).last_seq() == seq


def test_event_ids_deduplicate_single_events_inside_batches(
    client: FlaskClient, app: Flask
) -> None:
    one = {
        "type": "log_entry",
        "project": "p",
        "deployment_id": "1",
        "message": "a",
        "event_id": "e1",
    }
    two = {**one, "event_id": "e2", "message": "b"}
    first = post(client, one).get_json()
    batch = post(client, {"events": [one, two]}).get_json()
    assert batch["ids"][0] == first["ids"][0]
    assert batch["duplicate"] is False
    assert post(client, {"events": [one, two]}).get_json()["duplicate"] is True
    lines = store_of(app).logs("1", job=None, step=None, after=None, limit=10).items
    assert [line["message"] for line in lines] == ["a", "b"]


def test_legacy_running_then_completion_without_run_id_join_up(
    client: FlaskClient, app: Flask
) -> None:
    running = {
        "project": "site",
        "status": "running",
        "runId": "",
        "timestamp": "2025-08-12T11:40:00Z",
    }
    done = {**running, "status": "success", "duration": "30", "timestamp": "2025-08-12T11:40:30Z"}
    started = post(client, running).get_json()["ids"][0]
    post(client, done)
    rows = (
        store_of(app)
        .list_deployments(project="site", status=None, branch=None, limit=10, cursor=None)
        .items
    )
    assert len(rows) == 1
    assert rows[0]["status"] == "success"
    assert rows[0]["duration_ms"] == 30000
    assert rows[0]["deployment_id"].startswith("site-auto-")
    assert started.endswith(rows[0]["deployment_id"].rsplit("-", 1)[1].zfill(12))


def test_completion_without_run_id_and_nothing_running_creates_one(
    client: FlaskClient, app: Flask
) -> None:
    post(client, {"project": "solo", "status": "failed", "errorMessage": "boom"})
    rows = (
        store_of(app)
        .list_deployments(project="solo", status=None, branch=None, limit=10, cursor=None)
        .items
    )
    assert [(r["status"], r["error"]) for r in rows] == [("failure", "boom")]


@pytest.mark.parametrize("project", [None, "", "unknown"], ids=["absent", "empty", "unknown"])
def test_a_deployment_the_hub_never_saw_must_name_its_project(
    client: FlaskClient, app: Flask, project: str | None
) -> None:
    """No ghost projects: the hub never makes up one called "unknown"."""
    event: dict[str, Any] = {"type": "deployment_started", "deployment_id": "orphan-1"}
    if project is not None:
        event["project"] = project
    before = snapshot(app)
    answer = post(client, event)
    assert answer.status_code == 422
    error = answer.get_json()["error"]
    assert "new to the hub" in error["message"]
    assert list(error["details"]) == ["project"]
    assert snapshot(app) == before
    batch = post(client, {"events": [{**NAMED_START, "deployment_id": "named"}, event]})
    assert batch.status_code == 422
    assert batch.get_json()["error"]["details"]["index"] == 1
    assert snapshot(app) == before


def test_unknown_project_attaches_to_the_deployments_project(
    client: FlaskClient, app: Flask
) -> None:
    post(client, {"type": "deployment_started", "project": "real", "deployment_id": "5"})
    response = post(
        client,
        {"type": "step_started", "project": "unknown", "deployment_id": "5", "step_name": "s"},
    ).get_json()
    events = store_of(app).events(project="real", deployment_id=None, since=None, limit=10).items
    assert [e["id"] for e in events][-1] == response["ids"][0]


def test_a_store_failure_answers_503_and_stores_nothing(client: FlaskClient, app: Flask) -> None:
    store_of(app).close()
    response = post(client, {"type": "deployment_started", "project": "p", "deployment_id": "1"})
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "backend_unavailable"
    assert response.headers["Retry-After"]
    assert client.get("/readyz").status_code == 503


SECRET = "s3cret"


@pytest.fixture
def signed_client() -> FlaskClient:
    app = create_app(
        Settings(store_url="memory://", webhook_secrets=("old", SECRET), webhook_tokens=("tok",))
    )
    return app.test_client()


def signed(body: bytes, secret: str = SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "X-Hub-Signature-256": f"sha256={digest}"}


def test_signed_posts_are_accepted(signed_client: FlaskClient) -> None:
    body = b'{"type": "test"}'
    assert signed_client.post(ROUTE, data=body, headers=signed(body)).status_code == 200
    assert signed_client.post(ROUTE, data=body, headers=signed(body, "old")).status_code == 200
    token = {"Content-Type": "application/json", "Authorization": "Bearer tok"}
    assert signed_client.post(ROUTE, data=body, headers=token).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {"Content-Type": "application/json"},
        {"Content-Type": "application/json", "X-Hub-Signature-256": "sha256=00"},
        {"Content-Type": "application/json", "Authorization": "Bearer wrong"},
        {
            "Content-Type": "application/json",
            "webhook-id": "1",
            "webhook-timestamp": "1",
            "webhook-signature": "v1,AAAA",
        },
    ],
    ids=["missing", "bad-hmac", "bad-token", "stale-standard"],
)
def test_unsigned_or_forged_posts_are_401_and_write_nothing(
    signed_client: FlaskClient, headers: dict[str, str]
) -> None:
    body = b'{"type": "deployment_started", "project": "p", "deployment_id": "1"}'
    response = signed_client.post(ROUTE, data=body, headers=headers)
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "unauthorized"
    assert signed_client.get("/api/deployments").get_json()["deployments"] == []


def test_signature_is_over_the_raw_bytes(signed_client: FlaskClient) -> None:
    """Re-serialising the JSON would change the bytes; the hub must not."""
    body = b'{ "type" : "test" ,  "x": "\\u00e9" }'
    assert signed_client.post(ROUTE, data=body, headers=signed(body)).status_code == 200


@pytest.mark.parametrize(
    "path", ["/api/webhook/deployment", "/api/webhook/step", "/api/webhook/project-status"]
)
def test_legacy_routes_refuse_bad_bodies_too(client: FlaskClient, app: Flask, path: str) -> None:
    before = snapshot(app)
    response = post(client, {"unrelated": True}, path)
    assert response.status_code == 422
    assert response.get_json()["error"]["details"]
    assert snapshot(app) == before


def test_unknown_routes_and_methods_get_json_errors(client: FlaskClient) -> None:
    missing = client.get("/api/nope")
    assert missing.status_code == 404
    assert missing.get_json()["error"]["code"] == "not_found"
    wrong = client.get(ROUTE)
    assert wrong.status_code == 405
    assert wrong.get_json()["success"] is False


# -- idempotency that cannot be borrowed ------------------------------------------------------


def standard_signed(body: bytes, message_id: str) -> dict[str, str]:
    """Standard Webhooks headers for ``body`` under ``SECRET``: the id is signed with it."""
    from standardwebhooks.webhooks import Webhook

    moment = datetime.now(UTC)
    signature = Webhook(SECRET.encode()).sign(message_id, moment, body.decode())
    return {
        "Content-Type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(int(moment.timestamp())),
        "webhook-signature": signature,
    }


def stored_count(client: FlaskClient) -> int:
    return len(client.get("/api/events?limit=1000").get_json()["events"])


@pytest.mark.parametrize("unsigned", ["Idempotency-Key", "X-GitHub-Delivery"])
def test_a_replayed_signed_delivery_with_an_unsigned_key_added_is_still_a_repeat(
    signed_client: FlaskClient, unsigned: str
) -> None:
    """Only the signed webhook-id identifies a Standard Webhooks delivery."""
    body = b'{"type": "deployment_started", "project": "p", "deployment_id": "1"}'
    headers = standard_signed(body, "msg_42")
    first = signed_client.post(ROUTE, data=body, headers=headers).get_json()
    replay = signed_client.post(
        ROUTE, data=body, headers={**headers, unsigned: "fresh-key"}
    ).get_json()
    assert replay == {**first, "duplicate": True}
    assert stored_count(signed_client) == 1


def test_another_senders_keys_cannot_swallow_this_senders_events() -> None:
    """Sender B posting first with A's Idempotency-Key and event_id takes nothing of A's."""
    app = create_app(Settings(store_url="memory://", webhook_tokens=("token-a", "token-b")))
    client = app.test_client()
    event = {"type": "deployment_started", "project": "p", "deployment_id": "9", "event_id": "e1"}

    def as_(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}", "Idempotency-Key": "k1"}

    assert post(client, event, **as_("token-b")).get_json()["duplicate"] is False
    real = post(client, event, **as_("token-a")).get_json()
    assert real["duplicate"] is False
    assert stored_count(client) == 2
    assert post(client, event, **as_("token-a")).get_json() == {**real, "duplicate": True}
    app.extensions["hub"].stop()


def test_a_delivery_id_reused_for_another_body_is_a_409_that_stores_nothing(
    client: FlaskClient,
) -> None:
    first = {"type": "deployment_started", "project": "p", "deployment_id": "7"}
    assert post(client, first, **{"Idempotency-Key": "k"}).status_code == 200
    other = {**first, "deployment_id": "8"}
    answer = post(client, other, **{"Idempotency-Key": "k"})
    assert answer.status_code == 409
    assert answer.get_json()["error"]["code"] == "idempotency_conflict"
    assert stored_count(client) == 1
    assert client.get("/api/deployments/8").status_code == 404


def test_an_hmac_signed_request_ignores_delivery_headers_and_uses_event_ids(
    signed_client: FlaskClient,
) -> None:
    """GitHub's HMAC signs the body only: a header could be swapped, the body's ids cannot."""
    body = b'{"type": "deployment_started", "project": "p", "deployment_id": "1", "event_id": "e"}'
    first = signed_client.post(
        ROUTE, data=body, headers={**signed(body), "X-GitHub-Delivery": "d1"}
    ).get_json()
    again = signed_client.post(
        ROUTE, data=body, headers={**signed(body), "X-GitHub-Delivery": "d2"}
    ).get_json()
    assert again == {**first, "duplicate": True}
    assert stored_count(signed_client) == 1
