"""``GET /api/environments`` and the environment filters, against the real hub under gunicorn."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.server import HubServer

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubServer]:
    server = HubServer(tmp_path_factory.mktemp("environments")).start()
    yield server
    server.stop()


def deploy(hub: HubServer, deployment_id: str, environment: str, minute: int, status: str) -> None:
    events: list[dict[str, Any]] = [
        {
            "type": "deployment_started",
            "project": "shop",
            "deployment_id": deployment_id,
            "timestamp": f"2025-08-12T10:{minute:02d}:00Z",
            "environment": environment,
            "version": f"1.{minute}.0",
        }
    ]
    if status != "running":
        events.append(
            {
                "type": "deployment_completed",
                "project": "shop",
                "deployment_id": deployment_id,
                "status": status,
                "timestamp": f"2025-08-12T10:{minute + 1:02d}:00Z",
            }
        )
    status_code, body = hub.post_json("/api/webhooks/deployment", {"events": events})
    assert status_code == 200, body


def test_environments_and_filters_over_http(hub: HubServer) -> None:
    deploy(hub, "e-1", "production", 1, "success")
    deploy(hub, "e-2", "staging", 2, "success")
    deploy(hub, "e-3", "production", 3, "failure")
    deploy(hub, "e-4", "production", 4, "running")
    for prefix in ("", "/project-dashboard"):
        status, body = hub.request("GET", f"{prefix}/api/environments?project=shop")
        assert status == 200
        assert body["environment_names"] == ["staging", "production"]
        production = body["environments"][1]
        assert production["current"]["version"] == "1.1.0"
        assert production["in_progress"]["deployment_id"] == "e-4"
        assert production["latest"]["deployment_id"] == "e-4"
    status, page = hub.request("GET", "/api/deployments?environment=production&limit=2")
    assert [row["deployment_id"] for row in page["deployments"]] == ["e-4", "e-3"]
    status, rest = hub.request(
        "GET", f"/api/deployments?environment=production&limit=2&cursor={page['next_cursor']}"
    )
    assert [row["deployment_id"] for row in rest["deployments"]] == ["e-1"]
    assert rest["next_cursor"] is None
