"""Argo CD's notifications, as docs/SENDERS.md configures them, posted to the hub.

The fixtures are what the documented templates render for a sample
application; the first test renders the templates read from the document and
compares, so the document, the fixtures and what the hub accepts stay one.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask.testing import FlaskClient

from app.config import Settings
from tests.argocd_templates import (
    FIXTURES,
    TEMPLATES,
    documented_bodies,
    documented_configmap,
    render,
    rendered_name,
    sample,
)

TOKEN = "argocd-hub-token"


@pytest.fixture
def settings() -> Settings:
    return Settings(store_url="memory://", webhook_tokens=(TOKEN,))


def test_the_documented_templates_render_the_fixtures_byte_for_byte() -> None:
    bodies = documented_bodies()
    assert set(bodies) == set(TEMPLATES)
    for name, state in TEMPLATES.items():
        expected = (FIXTURES / rendered_name(name)).read_text()
        assert render(bodies[name], sample(state)) == expected, name
        json.loads(expected)


def test_the_documented_service_and_triggers_fit_the_templates() -> None:
    configmap = documented_configmap()
    assert "service.webhook.dashboard-hub: |" in configmap
    assert "/project-dashboard/api/webhooks/deployment" in configmap
    assert "value: Bearer $dashboard-hub-token" in configmap
    for name in TEMPLATES:
        assert f"  trigger.{name}: |" in configmap
        assert f"send: [{name}]" in configmap


def test_a_missing_field_prints_as_go_prints_it() -> None:
    assert render("{{.app.nope}}|{{.app.nope | toJson}}", {"app": {}}) == "<no value>|null"
    assert render("{{with .app.nope}}{{.}}{{end}}", {"app": {}}) == ""
    assert render("{{.app.x | toJson}}", {"app": {"x": "<a & b>"}}) == '"\\u003ca \\u0026 b\\u003e"'
    with pytest.raises(ValueError, match="does not know"):
        render('{{index .app.labels "env"}}', {"app": {}})


def post(client: FlaskClient, name: str) -> Any:
    body = (FIXTURES / name).read_bytes()
    return client.post(
        "/project-dashboard/api/webhooks/deployment",
        data=body,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"},
    )


def view(client: FlaskClient, deployment_id: str) -> dict[str, Any]:
    answer = client.get(f"/api/deployments/{deployment_id}")
    assert answer.status_code == 200
    loaded: dict[str, Any] = answer.get_json()
    return loaded


def test_a_sync_that_runs_then_succeeds(client: FlaskClient) -> None:
    assert post(client, "sync-running.json").status_code == 200
    running = view(client, "argocd-guestbook-2024-05-14T09:12:45Z")
    assert (running["project"], running["status"], running["environment"]) == (
        "guestbook",
        "running",
        "production",
    )
    assert (running["commit"], running["actor"], running["branch"]) == (
        "53e28ff20cc530b9ada2173fbbd64d48338583ba",
        "alice",
        "HEAD",
    )
    assert running["run_url"] == "https://argocd.example.com/applications/guestbook"
    assert post(client, "sync-succeeded.json").status_code == 200
    done = view(client, "argocd-guestbook-2024-05-14T09:12:45Z")
    assert (done["status"], done["duration_ms"], done["message"]) == (
        "success",
        46000,
        "successfully synced (all tasks run)",
    )
    again = post(client, "sync-succeeded.json").get_json()
    assert again["duplicate"] is True


def test_a_failed_sync_keeps_argo_cds_message(client: FlaskClient) -> None:
    assert post(client, "sync-failed.json").status_code == 200
    failed = view(client, "argocd-guestbook-2024-05-15T10:02:11Z")
    assert failed["status"] == "failure"
    assert failed["error"].startswith("one or more objects failed to apply")


def test_a_degraded_application_fails_its_last_sync(client: FlaskClient) -> None:
    for name in ("sync-running.json", "sync-succeeded.json", "health-degraded.json"):
        assert post(client, name).status_code == 200
    degraded = view(client, "argocd-guestbook-2024-05-14T09:12:45Z")
    assert (degraded["status"], degraded["error"]) == ("failure", "Argo CD health: Degraded")


def test_without_the_token_nothing_is_stored(client: FlaskClient) -> None:
    answer = client.post(
        "/api/webhooks/deployment",
        data=(FIXTURES / "sync-running.json").read_bytes(),
        headers={"Content-Type": "application/json"},
    )
    assert answer.status_code == 401
