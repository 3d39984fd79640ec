"""GitHub `workflow_run`/`workflow_job` deliveries to the real hub, signed as GitHub signs."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.e2e.server import HubServer
from tests.fake_github import FakeRun, build_run

pytestmark = pytest.mark.e2e

SECRET = "github-hook-secret"
FIXTURES = ROOT / "tests" / "fixtures" / "github"
ROUTES = ["/api/webhooks/github", "/project-dashboard/api/webhooks/github"]


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubServer]:
    server = HubServer(
        tmp_path_factory.mktemp("github-webhook"),
        env={
            "HUB_WEBHOOK_SECRETS": f"old-secret,{SECRET}",
            "HUB_GITHUB_REPOSITORIES": "MoseLu/axi-star-cloud=star-cloud,MoseLu/axi-docs",
        },
    ).start()
    yield server
    server.stop()


def deliver(
    hub: HubServer,
    event: str,
    payload: Any,
    delivery: str,
    *,
    secret: str | None = SECRET,
    route: str = ROUTES[1],
) -> tuple[int, Any]:
    body = json.dumps(payload).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/abc123",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery,
    }
    if secret is not None:
        digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        headers["X-Hub-Signature-256"] = f"sha256={digest}"
    return hub.request("POST", route, body, headers)


def event_count(hub: HubServer) -> int:
    status, page = hub.request("GET", "/api/events?limit=1000")
    assert status == 200
    return len(page["events"])


def deliver_whole_run(hub: HubServer, run: FakeRun, prefix: str) -> None:
    """What GitHub sends for a run: requested, a job's progress, completions."""
    run.fetches = 1
    assert deliver(hub, "workflow_run", run.webhook_run("requested"), f"{prefix}-1")[0] == 200
    for job in run.jobs:
        status, answer = deliver(
            hub,
            "workflow_job",
            run.webhook_job(job, "in_progress"),
            f"{prefix}-{job.id}-progress",
            route=ROUTES[0],
        )
        assert status == 200, answer
        status, answer = deliver(
            hub, "workflow_job", run.webhook_job(job, "completed"), f"{prefix}-{job.id}-done"
        )
        assert status == 200, answer
    run.fetches = run.stages
    assert deliver(hub, "workflow_run", run.webhook_run("completed"), f"{prefix}-2")[0] == 200


def test_a_run_delivered_by_webhooks_shows_its_jobs_and_steps(hub: HubServer) -> None:
    run = build_run(
        7001,
        [
            ("build", [("Checkout", "success", 2), ("Compile", "success", 4)]),
            ("deploy", [("Upload", "failure", 3), ("Restart", "skipped", 0)]),
        ],
        conclusion="failure",
    )
    deliver_whole_run(hub, run, "whole")
    status, view = hub.request("GET", "/api/deployments/7001")
    assert status == 200
    assert (view["project"], view["status"], view["workflow_name"]) == (
        "star-cloud",
        "failure",
        "Deploy Project",
    )
    assert view["repository"] == "MoseLu/axi-star-cloud"
    expected = [
        (
            job.name,
            [
                (s.name, s.conclusion, int((s.completed - s.started).total_seconds() * 1000))
                for s in job.steps
            ],
        )
        for job in run.jobs
    ]
    got = [
        (job["name"], [(s["name"], s["status"], s["duration_ms"]) for s in job["steps"]])
        for job in view["jobs"]
    ]
    assert got == expected


def test_a_redelivery_is_answered_as_a_duplicate_and_stored_once(hub: HubServer) -> None:
    run = build_run(7002, [("build", [("Compile", "success", 2)])], conclusion="success")
    run.fetches = run.stages
    payload = run.webhook_job(run.jobs[0], "completed")
    status, first = deliver(hub, "workflow_job", payload, "redelivered-1")
    assert (status, first["duplicate"]) == (200, False)
    before = event_count(hub)
    status, again = deliver(hub, "workflow_job", payload, "redelivered-1")
    assert (status, again["duplicate"], again["ids"]) == (200, True, first["ids"])
    assert event_count(hub) == before


def test_the_same_steps_in_a_new_delivery_are_not_stored_again(hub: HubServer) -> None:
    """GitHub sends a job's finished steps again in its next delivery: event ids dedup them."""
    run = build_run(
        7003, [("build", [("Compile", "success", 2), ("Test", "success", 2)])], conclusion="success"
    )
    run.fetches = 2
    status, progress = deliver(
        hub, "workflow_job", run.webhook_job(run.jobs[0], "in_progress"), "progress-7003"
    )
    assert status == 200
    before = event_count(hub)
    status, done = deliver(
        hub, "workflow_job", run.webhook_job(run.jobs[0], "completed"), "done-7003"
    )
    assert status == 200
    assert done["ids"][: len(progress["ids"])] == progress["ids"]
    assert event_count(hub) == before + len(done["ids"]) - len(progress["ids"])


@pytest.mark.parametrize(
    ("secret", "code"),
    [("wrong-secret", "unauthorized"), (None, "unauthorized")],
    ids=["bad-signature", "no-signature"],
)
def test_unsigned_or_badly_signed_deliveries_are_refused(
    hub: HubServer, secret: str | None, code: str
) -> None:
    run = build_run(7004, [("build", [("Compile", "success", 2)])], conclusion="success")
    before = event_count(hub)
    status, answer = deliver(
        hub, "workflow_run", run.webhook_run("requested"), "bad-sig", secret=secret
    )
    assert (status, answer["success"], answer["error"]["code"]) == (401, False, code)
    assert event_count(hub) == before
    status, _ = hub.request("GET", "/api/deployments/7004")
    assert status == 404


def test_a_rotated_secret_still_verifies(hub: HubServer) -> None:
    run = build_run(7005, [("build", [("Compile", "success", 2)])], conclusion="success")
    status, answer = deliver(
        hub, "workflow_run", run.webhook_run("requested"), "old-secret", secret="old-secret"
    )
    assert (status, answer["accepted"]) == (200, 1)


@pytest.mark.parametrize(
    ("event", "payload", "why"),
    [
        ("ping", {"zen": "Keep it logically awesome.", "hook_id": 1}, "'ping' records nothing"),
        (
            "push",
            {"ref": "refs/heads/main", "repository": {"full_name": "MoseLu/axi-star-cloud"}},
            "'push' is not recorded",
        ),
        ("workflow_run", None, "is not in HUB_GITHUB_REPOSITORIES"),
    ],
    ids=["ping", "push", "unlisted-repository"],
)
def test_other_events_and_unlisted_repositories_are_acknowledged_and_dropped(
    hub: HubServer, event: str, payload: Any, why: str
) -> None:
    if payload is None:
        run = build_run(7006, [("build", [("Compile", "success", 2)])], conclusion="success")
        run.repo = "someone/else"
        payload = run.webhook_run("requested")
    before = event_count(hub)
    status, answer = deliver(hub, event, payload, f"ignored-{event}")
    assert status == 200
    assert (answer["success"], answer["accepted"], answer["ids"]) == (True, 0, [])
    assert why in answer["ignored"]
    assert event_count(hub) == before


def test_an_ignored_event_still_needs_a_valid_signature(hub: HubServer) -> None:
    status, answer = deliver(hub, "ping", {"zen": "x"}, "ping-unsigned", secret=None)
    assert (status, answer["error"]["code"]) == (401, "unauthorized")


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{not json", 400, "invalid_json"),
        (b'{"repository": {"full_name": "MoseLu/axi-docs"}}', 422, "validation_failed"),
        (
            b'{"repository": {"full_name": "MoseLu/axi-docs"}, "workflow_run": {"id": "x"}}',
            422,
            "validation_failed",
        ),
    ],
    ids=["bad-json", "no-run", "bad-run-id"],
)
def test_malformed_deliveries_get_structured_errors(
    hub: HubServer, body: bytes, status: int, code: str
) -> None:
    digest = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    got, answer = hub.request(
        "POST",
        ROUTES[0],
        body,
        {
            "Content-Type": "application/json",
            "X-GitHub-Event": "workflow_run",
            "X-GitHub-Delivery": f"malformed-{status}-{len(body)}",
            "X-Hub-Signature-256": f"sha256={digest}",
        },
    )
    assert (got, answer["success"], answer["error"]["code"]) == (status, False, code)


def test_a_form_encoded_delivery_is_refused_with_415(hub: HubServer) -> None:
    """GitHub can be set to send form-encoded payloads; the hub asks for JSON instead."""
    body = b"payload=%7B%7D"
    digest = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    status, answer = hub.request(
        "POST",
        ROUTES[0],
        body,
        {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-GitHub-Event": "ping",
            "X-Hub-Signature-256": f"sha256={digest}",
        },
    )
    assert (status, answer["error"]["code"]) == (415, "unsupported_media_type")


def test_a_ping_says_the_hook_works(hub: HubServer) -> None:
    payload = json.loads((FIXTURES / "ping.1.json").read_text())
    payload["repository"]["full_name"] = "MoseLu/axi-star-cloud"
    before = event_count(hub)
    status, answer = deliver(hub, "ping", payload, "ping-works")
    assert (status, answer["accepted"]) == (200, 0)
    assert answer["message"] == (
        "hook 109948940 works: its signature was accepted; repository "
        "'MoseLu/axi-star-cloud' is recorded as project 'star-cloud'"
    )
    assert event_count(hub) == before


def test_a_deployment_and_its_statuses_in_any_order(hub: HubServer) -> None:
    """GitHub's published examples, the status first: one deployment, moved by its statuses."""
    deployment = json.loads((FIXTURES / "deployment.created.1.json").read_text())
    status = json.loads((FIXTURES / "deployment_status.created.1.json").read_text())
    for payload in (deployment, status):
        payload["repository"]["full_name"] = "MoseLu/axi-docs"
        payload["deployment"]["id"] = 7_400_001
    status["deployment_status"]["environment_url"] = "https://docs.example.com"
    got, answer = deliver(hub, "deployment_status", status, "deployment-status-1")
    assert (got, answer["accepted"]) == (200, 2)
    got, answer = deliver(hub, "deployment", deployment, "deployment-1")
    assert (got, answer["accepted"], answer["duplicate"]) == (200, 1, True)
    got, view = hub.request("GET", "/api/deployments/gh-deploy-7400001")
    assert got == 200
    assert (view["project"], view["status"], view["environment"]) == (
        "axi-docs",
        "success",
        "production",
    )
    assert view["environment_url"] == "https://docs.example.com"
    assert (view["branch"], view["commit"], view["actor"]) == (
        "master",
        "f95f852bd8fca8fcc58a9a2d6c842781e32a215e",
        "Codertocat",
    )
