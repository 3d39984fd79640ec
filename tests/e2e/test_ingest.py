"""Ingest against the real app under gunicorn with a gevent worker, over real sockets."""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FIXTURES, TIMEOUT_FACTOR, companions_expected, load_manifest
from tests.e2e.server import HubServer, checked

pytestmark = pytest.mark.e2e

ROUTE = "/project-dashboard/api/webhooks/deployment"


def all_events(server: HubServer) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    since = ""
    while True:
        status, page = server.request("GET", f"/api/events?limit=1000{since}")
        assert status == 200
        events += page["events"]
        if page["next_cursor"] is None:
            return events
        since = f"&since={page['next_cursor']}"


def test_every_captured_body_over_http(hub_server: HubServer) -> None:
    """The captured run's events say project "unknown": its start, named, comes first."""
    status, answer = hub_server.post_json(
        ROUTE,
        {
            "type": "deployment_started",
            "project": "axi-deploy",
            "deployment_id": "16899001122",
            "timestamp": "2025-08-12T11:20:00Z",
        },
    )
    assert status == 200
    stored = answer["accepted"]
    for entry in load_manifest():
        body = (FIXTURES / entry["file"]).read_bytes()
        status, answer = hub_server.request("POST", entry["path"], body, entry["headers"])
        if entry["file"] in {"log_entry-2.invalid.txt", "metrics_update-1.json"}:
            assert status in (400, 422)
            assert answer["success"] is False
        else:
            assert status == 200, answer
            # the body's events, and the log_entry events its log text became
            stored += answer["accepted"] + companions_expected(json.loads(body))
    assert len(all_events(hub_server)) == stored
    status, view = hub_server.request("GET", "/api/deployments/16899001122")
    assert status == 200
    assert view["status"] == "failure"


@pytest.mark.parametrize("how", ["graceful", "kill-9"])
def test_accepted_events_survive_a_restart(hub_server: HubServer, how: str) -> None:
    ids = []
    for i in range(50):
        status, answer = hub_server.post_json(
            ROUTE,
            {"type": "log_entry", "project": "web", "deployment_id": "1", "message": f"line {i}"},
        )
        assert status == 200
        ids += answer["ids"]
    hub_server.post_json(
        ROUTE,
        {
            "type": "deployment_completed",
            "project": "web",
            "deployment_id": "1",
            "status": "success",
        },
    )
    if how == "graceful":
        hub_server.restart()
    else:
        hub_server.kill()
        hub_server.start()
    stored = [e["id"] for e in all_events(hub_server)]
    assert stored[:50] == ids
    status, view = hub_server.request("GET", "/api/deployments/1")
    assert (status, view["status"], view["log_lines"]) == (200, "success", 50)
    status, answer = hub_server.post_json(ROUTE, {"type": "test"})
    assert answer["ids"][0] > stored[-1]


def test_concurrent_senders_lose_and_duplicate_nothing(hub_server: HubServer) -> None:
    """8 senders x 500 events on keep-alive connections: exactly 4,000 stored."""

    def sender(index: int) -> list[str]:
        connection = http.client.HTTPConnection("127.0.0.1", hub_server.port, timeout=30)
        ids = []
        for i in range(500):
            body = json.dumps(
                {
                    "type": "log_entry",
                    "project": "load",
                    "deployment_id": f"d{index}",
                    "message": f"{index}:{i}",
                }
            )
            connection.request("POST", ROUTE, body, {"Content-Type": "application/json"})
            response = connection.getresponse()
            answer = json.loads(checked("POST", ROUTE, response, response.read()))
            assert response.status == 200, answer
            ids += answer["ids"]
        connection.close()
        return ids

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        sent = [i for ids in pool.map(sender, range(8)) for i in ids]
    stored = all_events(hub_server)
    assert len(sent) == len(set(sent)) == 4000
    assert sorted(sent) == [e["id"] for e in stored]
    for index in range(8):
        mine = [e["payload"]["message"] for e in stored if e["deployment_id"] == f"d{index}"]
        assert mine == [f"{index}:{i}" for i in range(500)]


def test_concurrent_retries_of_one_delivery_are_stored_once(hub_server: HubServer) -> None:
    """16 senders post the same Idempotency-Key at once, 5 rounds: one store each round."""
    barrier = threading.Barrier(16)

    def sender(key: str) -> tuple[int, Any]:
        barrier.wait(timeout=30 * TIMEOUT_FACTOR)
        return hub_server.post_json(
            ROUTE,
            {"type": "log_entry", "project": "retry", "deployment_id": "r", "message": key},
            {"Idempotency-Key": key},
        )

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        for round_ in range(5):
            answers = list(pool.map(sender, [f"delivery-{round_}"] * 16))
            assert {status for status, _ in answers} == {200}
            assert len({tuple(answer["ids"]) for _, answer in answers}) == 1
            assert sorted(answer["duplicate"] for _, answer in answers) == [False] + [True] * 15
    stored = [e for e in all_events(hub_server) if e["project"] == "retry"]
    assert [e["payload"]["message"] for e in stored] == [f"delivery-{i}" for i in range(5)]


def test_a_bad_setting_stops_start_up_naming_the_variable(tmp_path: Path) -> None:
    server = HubServer(tmp_path, {"HUB_WORKERS": "many"})
    with pytest.raises(RuntimeError, match="HUB_WORKERS='many' is not valid"):
        server.start()
    server.stop()
