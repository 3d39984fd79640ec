"""Flux notification-controller events to the real hub, signed as generic-hmac signs them."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.e2e.server import HubServer

pytestmark = pytest.mark.e2e

KEY = "flux-provider-token"
FIXTURES = ROOT / "tests" / "fixtures" / "flux"
ROUTES = ["/api/webhooks/flux", "/project-dashboard/api/webhooks/flux"]


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubServer]:
    server = HubServer(
        tmp_path_factory.mktemp("flux-webhook"),
        env={"HUB_FLUX_SECRETS": f"old-key,{KEY}", "HUB_WEBHOOK_TOKENS": "ingest-token"},
    ).start()
    yield server
    server.stop()


def fixture(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return loaded


def post(
    hub: HubServer,
    payload: Any,
    *,
    key: str | None = KEY,
    hash_name: str = "sha256",
    **headers: str,
) -> tuple[int, Any]:
    body = json.dumps(payload).encode()
    sent = {"Content-Type": "application/json", "Gotk-Component": "kustomize-controller", **headers}
    if key is not None:
        digest = hmac.new(key.encode(), body, getattr(hashlib, hash_name)).hexdigest()
        sent["X-Signature"] = f"{hash_name}={digest}"
    return hub.request("POST", ROUTES[1], body, sent)


def test_a_reconciliation_to_a_new_revision_is_a_deployment(hub: HubServer) -> None:
    status, answer = post(hub, fixture("reconstructed-kustomization-progressing.json"))
    assert (status, answer["accepted"]) == (200, 1)
    status, answer = post(
        hub, fixture("reconstructed-kustomization-succeeded.json"), hash_name="sha512"
    )
    assert (status, answer["accepted"]) == (200, 2)
    status, page = hub.request("GET", "/api/deployments?project=webapp")
    assert status == 200
    (row,) = page["deployments"]
    assert (row["status"], row["environment"], row["duration_ms"]) == (
        "success",
        "production",
        39000,
    )
    status, again = post(hub, fixture("reconstructed-kustomization-succeeded.json"))
    assert (status, again["accepted"]) == (200, 2)
    status, page = hub.request("GET", "/api/events?project=webapp")
    assert len(page["events"]) == 3  # the redelivery stored nothing


def test_a_failed_upgrade_keeps_the_controllers_message(hub: HubServer) -> None:
    status, _ = post(hub, fixture("reconstructed-helmrelease-upgrade-failed.json"))
    assert status == 200
    status, page = hub.request("GET", "/api/deployments?project=podinfo")
    (row,) = page["deployments"]
    assert (row["status"], row["version"]) == ("failure", "6.7.0")
    assert row["error"].endswith("context deadline exceeded")


@pytest.mark.parametrize(
    ("key", "headers", "message"),
    [
        ("wrong-key", {}, "X-Signature does not match the body"),
        (None, {}, "missing signature or token"),
        (None, {"X-Signature": "md5=abc"}, "X-Signature must be"),
    ],
)
def test_bad_and_missing_signatures_are_refused(
    hub: HubServer, key: str | None, headers: dict[str, str], message: str
) -> None:
    status, answer = post(
        hub, fixture("reconstructed-kustomization-progressing.json"), key=key, **headers
    )
    assert (status, answer["error"]["code"]) == (401, "unauthorized")
    assert message in answer["error"]["message"]


def test_a_generic_provider_may_send_a_bearer_token_instead(hub: HubServer) -> None:
    status, answer = post(
        hub,
        fixture("providers-doc-generic.json"),
        key=None,
        Authorization="Bearer ingest-token",
    )
    assert (status, answer["accepted"]) == (200, 2)


def test_events_of_other_objects_are_acknowledged_and_dropped(hub: HubServer) -> None:
    status, answer = post(hub, fixture("reconstructed-gitrepository-artifact.json"))
    assert status == 200
    assert (answer["accepted"], answer["ids"]) == (0, [])
    assert "'GitRepository' events are not recorded" in answer["ignored"]
