"""GitLab deliveries to the real hub, with GitLab's headers: secret token or signing token."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.e2e.server import HubServer

pytestmark = pytest.mark.e2e

TOKEN = "gitlab-secret-token"
SIGNING = "whsec_" + base64.b64encode(b"k" * 32).decode()
FIXTURES = ROOT / "tests" / "fixtures" / "gitlab"
ROUTES = ["/api/webhooks/gitlab", "/project-dashboard/api/webhooks/gitlab"]


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubServer]:
    server = HubServer(
        tmp_path_factory.mktemp("gitlab-webhook"),
        env={
            "HUB_WEBHOOK_SECRETS": SIGNING,
            "HUB_GITLAB_TOKENS": f"old-token,{TOKEN}",
            "HUB_GITLAB_PROJECTS": "gitlab-org/gitlab-test=shop,root/test-deployment-webhooks",
        },
    ).start()
    yield server
    server.stop()


def fixture(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return loaded


def deliver(
    hub: HubServer,
    hook: str,
    payload: Any,
    *,
    token: str | None = TOKEN,
    route: str = ROUTES[1],
    uuid: str = "",
) -> tuple[int, Any]:
    body = json.dumps(payload).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "GitLab/18.2.0",
        "X-Gitlab-Event": hook,
        "X-Gitlab-Event-UUID": uuid,
        "Idempotency-Key": uuid,
    }
    if token is not None:
        headers["X-Gitlab-Token"] = token
    return hub.request("POST", route, body, headers)


def test_a_pipeline_hook_becomes_a_deployment_with_its_jobs(hub: HubServer) -> None:
    status, answer = deliver(hub, "Pipeline Hook", fixture("pipeline-hook.json"), uuid="p-1")
    assert (status, answer["success"], answer["accepted"]) == (200, True, 8)
    status, view = hub.request("GET", "/api/deployments/gl-1-31")
    assert status == 200
    assert (view["project"], view["status"], view["branch"]) == ("shop", "success", "master")
    assert [job["name"] for job in view["jobs"]] == ["build", "test"]
    status, again = deliver(hub, "Pipeline Hook", fixture("pipeline-hook.json"), uuid="p-1")
    assert (status, again["duplicate"], again["ids"]) == (200, True, answer["ids"])


def test_a_job_hook_moves_its_step_live(hub: HubServer) -> None:
    payload = fixture("job-hook.json")
    payload["project"]["path_with_namespace"] = "gitlab-org/gitlab-test"
    payload.update(build_status="running", build_started_at_iso="2021-02-23T02:41:40Z")
    status, answer = deliver(hub, "Job Hook", payload, route=ROUTES[0], uuid="j-1")
    assert (status, answer["accepted"]) == (200, 1)
    status, view = hub.request("GET", "/api/deployments/gl-380-2366")
    assert status == 200
    assert view["jobs"][0]["steps"][0]["status"] == "running"


def test_a_deployment_hook_signed_with_the_signing_token(hub: HubServer) -> None:
    body = json.dumps(fixture("deployment-hook.json")).encode()
    delivery, stamp = "d-1", str(int(time.time()))
    key = base64.b64decode(SIGNING.removeprefix("whsec_"))
    mac = hmac.new(key, f"{delivery}.{stamp}.".encode() + body, hashlib.sha256).digest()
    status, answer = hub.request(
        "POST",
        ROUTES[1],
        body,
        {
            "Content-Type": "application/json",
            "X-Gitlab-Event": "Deployment Hook",
            "webhook-id": delivery,
            "webhook-timestamp": stamp,
            "webhook-signature": "v1," + base64.b64encode(mac).decode(),
        },
    )
    assert (status, answer["accepted"]) == (200, 2)
    status, view = hub.request("GET", "/api/deployments/gl-30-deployment-15")
    assert (view["environment"], view["environment_url"], view["status"]) == (
        "staging",
        "https://staging.example.com",
        "success",
    )


@pytest.mark.parametrize(
    ("token", "message"),
    [("wrong", "X-Gitlab-Token is not valid"), (None, "missing signature or token")],
)
def test_bad_or_missing_tokens_are_refused(hub: HubServer, token: str | None, message: str) -> None:
    status, answer = deliver(hub, "Pipeline Hook", fixture("pipeline-hook.json"), token=token)
    assert (status, answer["error"]["code"]) == (401, "unauthorized")
    assert message in answer["error"]["message"]


def test_a_bad_signature_is_refused_even_with_a_good_token(hub: HubServer) -> None:
    body = json.dumps(fixture("deployment-hook.json")).encode()
    status, answer = hub.request(
        "POST",
        ROUTES[0],
        body,
        {
            "Content-Type": "application/json",
            "X-Gitlab-Event": "Deployment Hook",
            "X-Gitlab-Token": TOKEN,
            "webhook-id": "d-2",
            "webhook-timestamp": str(int(time.time())),
            "webhook-signature": "v1," + base64.b64encode(b"x" * 32).decode(),
        },
    )
    assert (status, answer["error"]["code"]) == (401, "unauthorized")


@pytest.mark.parametrize(
    ("hook", "why"),
    [("Push Hook", "'Push Hook' is not recorded"), ("Pipeline Hook", "not in HUB_GITLAB_PROJECTS")],
)
def test_other_hooks_and_projects_are_acknowledged_and_dropped(
    hub: HubServer, hook: str, why: str
) -> None:
    payload = fixture("pipeline-hook.json")
    payload["project"]["path_with_namespace"] = "someone/else"
    status, answer = deliver(hub, hook, payload, uuid=f"ignored-{hook}")
    assert status == 200
    assert (answer["success"], answer["accepted"], answer["ids"]) == (True, 0, [])
    assert why in answer["ignored"]
