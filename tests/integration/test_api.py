"""The read API of CONTRACT.md: filters, cursors, the job/step tree, strict query strings."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from flask.testing import FlaskClient

from ledger import version
from ledger.ids import make_event_id


def post(client: FlaskClient, payload: Any) -> Any:
    response = client.post(
        "/api/webhooks/deployment",
        data=json.dumps(payload),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def deployment(
    client: FlaskClient,
    deployment_id: str,
    project: str,
    minute: int,
    status: str | None = None,
    branch: str = "main",
) -> None:
    at = f"2025-08-12T11:{minute:02d}:00Z"
    post(
        client,
        {
            "type": "deployment_started",
            "project": project,
            "deployment_id": deployment_id,
            "timestamp": at,
            "branch": branch,
        },
    )
    if status:
        post(
            client,
            {
                "type": "deployment_completed",
                "project": project,
                "deployment_id": deployment_id,
                "status": status,
                "timestamp": f"2025-08-12T11:{minute:02d}:30Z",
            },
        )


@pytest.fixture
def seeded(client: FlaskClient) -> FlaskClient:
    deployment(client, "1", "web", 1, "success")
    deployment(client, "2", "web", 2, "failed", branch="dev")
    deployment(client, "3", "api", 3, "success")
    deployment(client, "4", "web", 4)
    return client


def ids(response: Any) -> list[str]:
    return [row["deployment_id"] for row in response.get_json()["deployments"]]


def test_deployments_are_newest_first(seeded: FlaskClient) -> None:
    assert ids(seeded.get("/api/deployments")) == ["4", "3", "2", "1"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("project=web", ["4", "2", "1"]),
        ("status=failure", ["2"]),
        ("status=running", ["4"]),
        ("branch=dev", ["2"]),
        ("project=web&status=success", ["1"]),
        ("project=nobody", []),
    ],
)
def test_deployments_filter(seeded: FlaskClient, query: str, expected: list[str]) -> None:
    assert ids(seeded.get(f"/api/deployments?{query}")) == expected


def test_cursor_pages_through_everything_once(seeded: FlaskClient) -> None:
    seen, cursor = [], None
    for _ in range(10):
        url = "/api/deployments?limit=1" + (f"&cursor={cursor}" if cursor else "")
        page = seeded.get(url).get_json()
        seen += [row["deployment_id"] for row in page["deployments"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ["4", "3", "2", "1"]


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("limit=0", "limit"),
        ("limit=abc", "limit"),
        ("limit=100000", "limit"),
        ("status=exploded", "status"),
        ("cursor=!!!", "cursor"),
        ("cursor=WzFd", "cursor"),
        ("project=" + "x" * 300, "project"),
    ],
)
def test_bad_query_strings_are_400_naming_the_parameter(
    seeded: FlaskClient, query: str, param: str
) -> None:
    response = seeded.get(f"/api/deployments?{query}")
    assert response.status_code == 400
    assert param in response.get_json()["error"]["details"]


def test_deployment_detail_has_the_tree_and_metrics(client: FlaskClient) -> None:
    deployment(client, "9", "web", 1)
    post(
        client,
        {
            "type": "step_started",
            "project": "web",
            "deployment_id": "9",
            "job": "build",
            "step": "compile",
            "timestamp": "2025-08-12T11:01:05Z",
        },
    )
    post(
        client,
        {
            "type": "step_completed",
            "project": "web",
            "deployment_id": "9",
            "job": "build",
            "step": "compile",
            "status": "success",
            "timestamp": "2025-08-12T11:01:35Z",
        },
    )
    post(
        client,
        {
            "type": "metrics_update",
            "project": "web",
            "deployment_id": "9",
            "metrics": {"cpu_percent": 50},
            "timestamp": "2025-08-12T11:01:10Z",
        },
    )
    post(
        client,
        {
            "type": "metrics_update",
            "project": "web",
            "deployment_id": "9",
            "metrics": {"cpu_percent": 10},
            "timestamp": "2025-08-12T11:01:00Z",
        },
    )
    view = client.get("/api/deployments/9").get_json()
    assert view["status"] == "running"
    step = view["jobs"][0]["steps"][0]
    assert (step["name"], step["status"], step["duration_ms"]) == ("compile", "success", 30000)
    assert view["metrics"]["cpu_percent"] == 50  # the newest by timestamp, not by arrival
    assert view["last_event_id"]


def test_unknown_deployment_is_404(client: FlaskClient) -> None:
    response = client.get("/api/deployments/nope")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"
    assert client.get("/api/deployments/nope/logs").status_code == 404


@pytest.mark.parametrize(
    "path", ["/api/deployments/%2F/logs", "/api//deployments", "/api/deployments//x"]
)
def test_a_doubled_slash_is_not_redirected_elsewhere(client: FlaskClient, path: str) -> None:
    """An id of "/" must not turn ".../%2F/logs" into a redirect to another resource."""
    response = client.get(path)
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"


def test_logs_page_with_a_cursor_and_filter_by_step(client: FlaskClient) -> None:
    events = [
        {
            "type": "log_entry",
            "project": "web",
            "deployment_id": "9",
            "step_name": f"build / {'a' if i % 2 else 'b'}",
            "message": f"{i}\n{i}+",
        }
        for i in range(4)
    ]
    post(client, {"events": events})
    first = client.get("/api/deployments/9/logs?limit=3").get_json()
    assert [line["message"] for line in first["lines"]] == ["0", "0+", "1"]
    rest = client.get(f"/api/deployments/9/logs?after={first['next_cursor']}").get_json()
    assert [line["message"] for line in rest["lines"]] == ["1+", "2", "2+", "3", "3+"]
    assert rest["next_cursor"] is None
    only_a = client.get("/api/deployments/9/logs?job=build&step=a").get_json()["lines"]
    assert {line["message"] for line in only_a} == {"1", "1+", "3", "3+"}
    assert client.get("/api/deployments/9/logs?after=x").status_code == 400


def test_projects_have_latest_deployment_and_counts(seeded: FlaskClient) -> None:
    projects = {p["project"]: p for p in seeded.get("/api/projects").get_json()["projects"]}
    assert set(projects) == {"web", "api"}
    web = projects["web"]
    assert web["latest_deployment"]["deployment_id"] == "4"
    assert web["counts"] == {"total": 3, "success": 1, "failure": 1, "running": 1, "cancelled": 0}


def test_event_log_polls_with_since(seeded: FlaskClient) -> None:
    everything = seeded.get("/api/events?limit=1000").get_json()["events"]
    assert len(everything) == 7
    assert [e["id"] for e in everything] == sorted(e["id"] for e in everything)
    since = everything[3]["id"]
    later = seeded.get(f"/api/events?since={since}").get_json()["events"]
    assert later == everything[4:]
    web = seeded.get("/api/events?project=api").get_json()["events"]
    assert {e["deployment_id"] for e in web} == {"3"}


def test_an_event_log_point_it_cannot_continue_from_is_said_and_garbage_refused(
    seeded: FlaskClient,
) -> None:
    """Another epoch's id starts over with ``recovered: false``; what is no id at all is a 400."""
    everything = seeded.get("/api/events?limit=1000").get_json()
    assert everything["recovered"] is True
    other_epoch = seeded.get(f"/api/events?since={make_event_id(1, 3)}").get_json()
    assert (other_epoch["recovered"], other_epoch["events"]) == (False, everything["events"])
    ahead = everything["events"][-1]["id"][:14] + "9" * 12
    assert seeded.get(f"/api/events?since={ahead}").get_json()["recovered"] is False
    for garbage in ("yesterday", "1-2", "²" * 26):
        refused = seeded.get(f"/api/events?since={garbage}")
        assert (refused.status_code, refused.get_json()["error"]["details"]) == (
            400,
            {"since": ["Not an event id."]},
        )


@pytest.mark.parametrize("after", ["1" * 30, "-1", "²", "1.5"])
def test_a_log_cursor_that_is_no_line_id_is_a_400(seeded: FlaskClient, after: str) -> None:
    answer = seeded.get(f"/api/deployments/3/logs?after={after}")
    assert (answer.status_code, list(answer.get_json()["error"]["details"])) == (400, ["after"])


def test_health_and_readiness(client: FlaskClient) -> None:
    assert client.get("/healthz").get_json() == {"status": "ok", "version": version()}
    assert client.get("/readyz").status_code == 200
    assert client.get("/project-dashboard/readyz").status_code == 200
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    assert b"hub_events_accepted_total" in metrics.data


def test_read_tokens_guard_the_read_api() -> None:
    from app.config import Settings
    from server.app import create_app

    app = create_app(Settings(store_url="memory://", read_tokens=("r1",)))
    client = app.test_client()
    refused = client.get("/api/deployments")
    assert refused.status_code == 401
    assert refused.get_json()["error"]["code"] == "unauthorized"
    assert client.get("/api/deployments?token=r1").status_code == 200
    assert client.get("/api/projects", headers={"Authorization": "Bearer r1"}).status_code == 200
    assert client.get("/api/projects?token=nope").status_code == 401
    assert client.get("/healthz").status_code == 200
    app.extensions["hub"].stop()


@pytest.mark.parametrize(
    ("settings", "refused", "allowed"),
    [
        ({}, [], [""]),
        ({"read_tokens": ("r1",)}, ["", "?token=nope"], ["?token=r1"]),
        ({"read_tokens": ("r1",), "metrics_tokens": ("m1",)}, ["", "?token=r1"], ["?token=m1"]),
        ({"metrics_tokens": ("m1",)}, [""], ["?token=m1"]),
    ],
    ids=["open", "read-tokens", "metrics-tokens-bind-elsewhere", "metrics-only"],
)
def test_metrics_are_as_guarded_as_the_read_api_or_by_their_own_tokens(
    settings: dict[str, Any], refused: list[str], allowed: list[str]
) -> None:
    from app.config import Settings
    from server.app import create_app

    app = create_app(Settings(store_url="memory://", **settings))
    client = app.test_client()
    for query in refused:
        answer = client.get(f"/metrics{query}")
        assert (answer.status_code, answer.get_json()["error"]["code"]) == (401, "unauthorized")
    for query in allowed:
        assert client.get(f"/metrics{query}").status_code == 200
        assert client.get(f"/project-dashboard/metrics{query}").status_code == 200
    app.extensions["hub"].stop()


def test_ids_with_slashes_are_readable(client: FlaskClient) -> None:
    """Deployment ids are the sender's; some senders put a slash in them."""
    post(
        client,
        {
            "type": "log_entry",
            "project": "web",
            "deployment_id": "owner/repo#12",
            "message": "hello",
        },
    )
    assert client.get("/api/deployments/owner/repo%2312").get_json()["log_lines"] == 1
    lines = client.get("/api/deployments/owner/repo%2312/logs").get_json()["lines"]
    assert [line["message"] for line in lines] == ["hello"]


def test_reads_during_a_store_outage_are_503(client: FlaskClient, app: Any) -> None:
    app.extensions["hub_context"].store.close()
    for url in ("/api/deployments", "/api/projects", "/api/events", "/api/deployments/1"):
        response = client.get(url)
        assert response.status_code == 503, url
        assert response.get_json()["error"]["code"] == "backend_unavailable"
        assert response.headers["Retry-After"]


def test_an_open_run_without_news_reads_as_stale_and_news_revives_it(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HUB_STALE_AFTER (one hour by default) after the last event received, of any type."""
    import types

    from app import api

    started = {"type": "deployment_started", "project": "p", "deployment_id": "quiet"}
    assert client.post("/api/webhooks/deployment", json=started).status_code == 200
    view = client.get("/api/deployments/quiet").get_json()
    assert (view["stale"], view["status"]) == (False, "running")
    assert view["last_news_at"] is not None
    later = types.SimpleNamespace(time=lambda: time.time() + 3601)
    monkeypatch.setattr(api, "time", later)
    view = client.get("/api/deployments/quiet").get_json()
    assert (view["stale"], view["status"]) == (True, "running")
    row = client.get("/api/deployments?project=p").get_json()["deployments"][0]
    assert row["stale"] is True
    assert client.get("/api/projects").get_json()["projects"][0]["latest_deployment"]["stale"]
    monkeypatch.undo()
    log = {"type": "log_entry", "project": "p", "deployment_id": "quiet", "message": "alive"}
    assert client.post("/api/webhooks/deployment", json=log).status_code == 200
    monkeypatch.setattr(api, "time", types.SimpleNamespace(time=lambda: time.time() + 3000))
    assert client.get("/api/deployments/quiet").get_json()["stale"] is False


def test_large_answers_are_compressed_for_clients_that_take_it(client: FlaskClient) -> None:
    events = [
        {"type": "log_entry", "project": "z", "deployment_id": "z1", "message": f"line {i}"}
        for i in range(50)
    ]
    assert client.post("/api/webhooks/deployment", json={"events": events}).status_code == 200
    plain = client.get("/api/events?project=z")
    assert "Content-Encoding" not in plain.headers
    for algorithm in ("gzip", "br"):
        packed = client.get("/api/events?project=z", headers={"Accept-Encoding": algorithm})
        assert packed.headers["Content-Encoding"] == algorithm
        assert len(packed.data) < len(plain.data) / 3
        assert packed.headers["Vary"] == "Accept-Encoding"
    small = client.get("/healthz", headers={"Accept-Encoding": "gzip"})
    assert "Content-Encoding" not in small.headers
    # q=0 refuses a coding (RFC 9110): such a client gets another it takes, or none.
    for accepted, coding in (
        ("gzip;q=0", None),
        ("br;q=0, gzip", "gzip"),
        ("gzip;q=0, br;q=0.5", "br"),
        ("br;q=0, gzip;q=0.0, identity", None),
        ("gzip;q=0.5, br;q=0.9", "br"),
    ):
        answer = client.get("/api/events?project=z", headers={"Accept-Encoding": accepted})
        assert answer.headers.get("Content-Encoding") == coding, accepted
        assert coding is not None or answer.data == plain.data


def test_a_steps_log_goes_to_the_log_never_into_the_view(client: FlaskClient) -> None:
    """A 300 KB step log is read from ``/logs``; the view keeps the sender's message only."""
    log = "\n".join(f"line {n}: " + "x" * 60 for n in range(4500))
    post(client, {"type": "deployment_started", "project": "web", "deployment_id": "big"})
    post(
        client,
        {
            "type": "step_completed",
            "project": "web",
            "deployment_id": "big",
            "step_name": "build / compile",
            "step_status": "failure",
            "logs": log,
            "error": "exit 2",
        },
    )
    response = client.get("/api/deployments/big")
    assert len(response.get_data()) < 4096
    [job] = response.get_json()["jobs"]
    [step] = job["steps"]
    assert (step["message"], step["error"]) == (None, "exit 2")
    lines: list[dict[str, Any]] = []
    after = ""
    while True:
        page = client.get(f"/api/deployments/big/logs?limit=1000{after}").get_json()
        lines += page["lines"]
        if page["next_cursor"] is None:
            break
        after = f"&after={page['next_cursor']}"
    assert [line["message"] for line in lines[:4500]] == log.splitlines()
    assert lines[-1]["message"] == "exit 2"
