"""The log analysis routes: failures, search, step trends, and a deployment's failure and ETA."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient

from app.config import Settings
from ledger.timestamps import format_timestamp
from server.app import create_app


def post(client: FlaskClient, *events: dict[str, Any]) -> None:
    response = client.post(
        "/api/webhooks/deployment",
        data=json.dumps({"events": list(events)}),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.get_data(as_text=True)


def at(minutes_ago: float) -> str:
    return format_timestamp(datetime.now(UTC) - timedelta(minutes=minutes_ago))


def ev(kind: str, deployment: str, minutes_ago: float, **body: Any) -> dict[str, Any]:
    return {
        "type": kind,
        "project": body.pop("project", "web"),
        "deployment_id": deployment,
        "timestamp": at(minutes_ago),
        **body,
    }


def failed(
    client: FlaskClient, deployment: str, minutes_ago: float, line: str, **body: Any
) -> None:
    step = "build / compile"
    post(
        client,
        ev("deployment_started", deployment, minutes_ago, **body),
        ev("step_started", deployment, minutes_ago - 0.1, step_name=step, **body),
        ev("log_entry", deployment, minutes_ago - 0.2, step_name=step, message=line, **body),
        ev(
            "step_completed",
            deployment,
            minutes_ago - 0.3,
            step_name=step,
            status="failed",
            error="Process completed with exit code 1.",
            **body,
        ),
        ev("deployment_completed", deployment, minutes_ago - 0.4, status="failed", **body),
    )


def passed(client: FlaskClient, deployment: str, minutes_ago: float, seconds: int) -> None:
    step = "build / compile"
    post(
        client,
        ev("deployment_started", deployment, minutes_ago),
        ev("step_started", deployment, minutes_ago, step_name=step),
        ev(
            "step_completed",
            deployment,
            minutes_ago - seconds / 60,
            step_name=step,
            status="success",
            started_at=at(minutes_ago),
        ),
        ev("deployment_completed", deployment, minutes_ago - seconds / 60, status="success"),
    )


def get(client: FlaskClient, path: str) -> tuple[int, Any]:
    response = client.get(path)
    return response.status_code, response.get_json()


# -- a deployment's failure and ETA -----------------------------------------------------------


def test_a_failed_deployment_says_why_with_a_link_to_the_line(client: FlaskClient) -> None:
    failed(client, "d1", 30, "Error: connect ECONNREFUSED 10.0.0.1:5432")
    failed(client, "d2", 20, "Error: connect ECONNREFUSED 10.0.0.2:5432")
    status, view = get(client, "/api/deployments/d2")
    assert status == 200
    failure = view["failure"]
    assert (failure["job"], failure["step"]) == ("build", "compile")
    line = failure["line"]
    assert line["text"] == "Error: connect ECONNREFUSED 10.0.0.2:5432"
    assert line["link"] == f"#/deployments/d2?job=build&step=compile&line={line['id']}"
    assert failure["message"] == "Process completed with exit code 1."
    assert failure["seen"]["count"] == 1
    assert failure["seen"]["deployments"] == ["d1"]
    assert failure["steps"][0]["line"]["link"] == line["link"]
    assert view["eta"] is None
    _, logs = get(client, "/api/deployments/d2/logs")
    assert line["id"] in [row["id"] for row in logs["lines"]]


def test_a_deployment_that_did_not_fail_has_no_failure(client: FlaskClient) -> None:
    passed(client, "ok", 10, 30)
    _, view = get(client, "/api/deployments/ok")
    assert view["failure"] is None
    assert view["eta"] is None


def test_a_running_deployment_has_an_eta_from_its_projects_history(client: FlaskClient) -> None:
    post(client, ev("deployment_started", "now", 0.5))
    _, view = get(client, "/api/deployments/now")
    assert view["eta"] is None  # no history yet
    for i in range(3):
        passed(client, f"h{i}", 60 + i, 120)
    _, view = get(client, "/api/deployments/now")
    eta = view["eta"]
    assert eta["basis"] == 3
    assert eta["remaining_ms"] == 120000
    assert eta["finish_at"] > view["started_at"]
    assert eta["progress"] == 0.0


# -- failures across deployments ------------------------------------------------------------


def test_failures_grouped_most_frequent_first(client: FlaskClient) -> None:
    failed(client, "a1", 50, "Error: disk quota exceeded")
    failed(client, "b1", 40, "panic: nil map")
    failed(client, "a2", 30, "Error: disk quota exceeded", project="api")
    failed(client, "old", 60 * 24 * 40, "Error: disk quota exceeded")  # 40 days ago
    status, body = get(client, "/api/failures")
    assert status == 200
    assert [(i["count"], i["deployments"]) for i in body["items"]] == [
        (2, ["a2", "a1"]),
        (1, ["b1"]),
    ]
    assert body["next_cursor"] is None
    first = body["items"][0]
    assert set(first) >= {
        "signature",
        "sample",
        "count",
        "first_seen",
        "last_seen",
        "projects",
        "steps",
        "deployments",
    }
    assert first["projects"] == ["api", "web"]
    assert first["steps"] == [{"job": "build", "step": "compile", "count": 2}]
    _, longer = get(client, "/api/failures?days=60")
    assert longer["items"][0]["count"] == 3
    _, web = get(client, "/api/failures?project=web&limit=1")
    assert len(web["items"]) == 1
    _, rest = get(client, f"/api/failures?project=web&limit=1&cursor={web['next_cursor']}")
    assert {i["deployments"][0] for i in web["items"] + rest["items"]} == {"a1", "b1"}


@pytest.mark.parametrize(
    "query", ["days=0", "days=366", "days=x", "limit=0", "limit=501", "cursor=nope"]
)
def test_bad_failures_parameters_are_400s(client: FlaskClient, query: str) -> None:
    status, body = get(client, f"/api/failures?{query}")
    assert status == 400
    assert body["error"]["code"] == "bad_request"


# -- search ---------------------------------------------------------------------------------


def test_search_answers_hits_with_links(client: FlaskClient) -> None:
    failed(client, "d1", 30, "\x1b[31mError:\x1b[0m connect ECONNREFUSED 10.0.0.1:5432")
    failed(client, "d2", 20, "错误：部署失败", project="api")
    status, body = get(client, "/api/logs/search?q=econnrefused+connect")
    assert status == 200
    [found] = body["items"]
    assert found["text"] == "Error: connect ECONNREFUSED 10.0.0.1:5432"
    assert found["match"] == [[7, 14], [15, 27]]
    assert found["link"] == f"#/deployments/d1?job=build&step=compile&line={found['id']}"
    assert (found["deployment_id"], found["project"]) == ("d1", "web")
    assert body["next_cursor"] is None
    assert body["truncated"] is False
    _, chinese = get(client, "/api/logs/search?q=%E5%A4%B1%E8%B4%A5")  # 失败
    assert [h["deployment_id"] for h in chinese["items"]] == ["d2"]
    _, filtered = get(client, '/api/logs/search?q="exit+code"&project=api&level=error')
    assert {h["deployment_id"] for h in filtered["items"]} == {"d2"}
    _, public = get(client, "/project-dashboard/api/logs/search?q=econnrefused")
    assert len(public["items"]) == 1


def test_search_pages(client: FlaskClient) -> None:
    post(client, *[ev("log_entry", "d1", 10 - i / 100, message=f"needle {i}") for i in range(7)])
    _, first = get(client, "/api/logs/search?q=needle&limit=4")
    assert [h["text"] for h in first["items"]] == [f"needle {i}" for i in (6, 5, 4, 3)]
    _, second = get(client, f"/api/logs/search?q=needle&limit=4&cursor={first['next_cursor']}")
    assert [h["text"] for h in second["items"]] == [f"needle {i}" for i in (2, 1, 0)]
    assert second["next_cursor"] is None


def test_search_by_time(client: FlaskClient) -> None:
    post(client, ev("log_entry", "d1", 120, message="early bird"))
    post(client, ev("log_entry", "d1", 10, message="late bird"))
    since = at(60).replace(":", "%3A")
    _, body = get(client, f"/api/logs/search?q=bird&since={since}")
    assert [h["text"] for h in body["items"]] == ["late bird"]
    _, body = get(client, f"/api/logs/search?q=bird&until={since}")
    assert [h["text"] for h in body["items"]] == ["early bird"]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("", "give a query"),
        ("q=", "give a query"),
        ("q=+++", "give a query"),
        ('q="unclosed', "not closed"),
        ("q=*", "no letters or digits"),
        ("q=a*b", "only end a word"),
        ("q=x*", "at least 2"),
        (f"q={'x' * 501}", "longer than 500"),
    ],
)
def test_a_bad_query_is_a_422_that_says_what_to_change(
    client: FlaskClient, query: str, message: str
) -> None:
    status, body = get(client, f"/api/logs/search?{query}")
    assert status == 422
    assert body["error"]["code"] == "invalid_query"
    assert message in body["error"]["message"]
    assert body["error"]["details"]["q"]


@pytest.mark.parametrize(
    "query",
    [
        "q=x&level=fatal",
        "q=x&since=yesterday",
        "q=x&until=2025-13-01",
        "q=x&limit=201",
        "q=x&limit=-1",
        "q=x&cursor=abc",
        f"q=x&project={'p' * 201}",
    ],
)
def test_bad_search_parameters_are_400s(client: FlaskClient, query: str) -> None:
    status, body = get(client, f"/api/logs/search?{query}")
    assert status == 400, body
    assert body["error"]["code"] == "bad_request"


# -- step trends ----------------------------------------------------------------------------


def test_steps_figures_per_step(client: FlaskClient) -> None:
    for i, seconds in enumerate((60, 80, 100)):
        passed(client, f"p{i}", 100 + i, seconds)
    failed(client, "f1", 50, "Error: x")
    status, body = get(client, "/api/steps?project=web&days=7")
    assert status == 200
    [step] = body["steps"]
    assert (step["project"], step["job"], step["step"]) == ("web", "build", "compile")
    assert (step["runs"], step["failures"], step["failure_rate"]) == (4, 1, 0.25)
    assert step["previous"]["runs"] == 0
    assert step["regressed"] is False
    assert body["window"]["days"] == 7
    assert body["truncated"] is False
    status, body = get(client, "/api/steps?days=0")
    assert status == 400


# -- access -----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/failures", "/api/logs/search?q=x", "/api/steps"])
def test_analysis_routes_need_the_read_token(path: str) -> None:
    app = create_app(Settings(store_url="memory://", read_tokens=("sesame",)))
    try:
        client = app.test_client()
        assert client.get(path).status_code == 401
        assert client.get(path, headers={"Authorization": "Bearer sesame"}).status_code == 200
    finally:
        app.extensions["hub"].stop()
        app.extensions["hub_context"].store.close()


def test_a_deployments_own_line_links_without_a_step(client: FlaskClient) -> None:
    """The step ended with a bare exit code; the deployment's own error says more, and its
    line belongs to no step."""
    post(
        client,
        ev("step_completed", "d1", 5, step_name="deploy / smoke", status="failed", error="exit 1"),
        ev("deployment_completed", "d1", 4, status="failed", error="smoke test failed: HTTP 502"),
    )
    _, view = get(client, "/api/deployments/d1")
    failure = view["failure"]
    assert (failure["job"], failure["step"]) == ("deploy", "smoke")
    line = failure["line"]
    assert (line["text"], line["job"], line["step"]) == ("smoke test failed: HTTP 502", None, None)
    assert line["link"] == f"#/deployments/d1?line={line['id']}"
