"""``GET /api/environments``, ``environment=`` on the history and on the delivery figures."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient

from app import environments
from app.config import Settings
from ledger.timestamps import format_timestamp
from storage import paging
from storage.sqlite_store import SqliteStore
from tests.redis_server import RedisServer

PREFIXES = ("", "/project-dashboard")


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def settings(request: pytest.FixtureRequest) -> Settings:
    """Both stores that keep aggregates answer these routes from them, the same way."""
    if request.param == "memory":
        return Settings(store_url="memory://")
    server: RedisServer = request.getfixturevalue("redis_server")
    return Settings(store_url=server.url(prefix=f"env-{uuid.uuid4().hex}"))


def deploy(
    client: FlaskClient,
    project: str,
    deployment_id: str,
    environment: str | None,
    status: str | None,
    started: datetime,
    **start: Any,
) -> None:
    events: list[dict[str, Any]] = [
        {
            "type": "deployment_started",
            "project": project,
            "deployment_id": deployment_id,
            "timestamp": format_timestamp(started),
            "environment": environment,
            **start,
        }
    ]
    if status is not None:
        events.append(
            {
                "type": "deployment_completed",
                "project": project,
                "deployment_id": deployment_id,
                "status": status,
                "timestamp": format_timestamp(started + timedelta(minutes=3)),
            }
        )
    answer = client.post("/api/webhooks/deployment", json={"events": events})
    assert answer.status_code == 200, answer.json


NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def seeded(client: FlaskClient) -> FlaskClient:
    hour = timedelta(hours=1)
    deploy(
        client, "shop", "s-1", "production", "success", NOW - 5 * hour, commit="aaa", version="1.0"
    )
    deploy(client, "shop", "s-2", "staging", "success", NOW - 4 * hour, commit="bbb")
    deploy(
        client,
        "shop",
        "s-3",
        "production",
        "success",
        NOW - 3 * hour,
        commit="bbb",
        branch="main",
        actor="alice",
        version="1.1",
        environment_url="https://shop.example.com",
    )
    deploy(client, "shop", "s-4", "production", "failure", NOW - 2 * hour, commit="ccc")
    deploy(client, "shop", "s-5", "production", None, NOW - hour, commit="ddd")
    deploy(client, "shop", "s-6", None, "success", NOW - hour)
    deploy(client, "blog", "b-1", "production", "failure", NOW - 6 * hour)
    return client


def test_environments_lists_current_in_progress_and_latest(seeded: FlaskClient) -> None:
    for prefix in PREFIXES:
        answer = seeded.get(f"{prefix}/api/environments")
        assert answer.status_code == 200
        body = answer.json
        assert body is not None
        assert (body["projects"], body["environment_names"]) == (
            ["blog", "shop"],
            ["staging", "production"],
        )
        assert (body["scanned"], body["truncated"]) == (7, False)
        states = {(s["project"], s["environment"]): s for s in body["environments"]}
        production = states["shop", "production"]
        assert production["current"]["deployment_id"] == "s-3"
        assert (production["current"]["commit"], production["current"]["version"]) == ("bbb", "1.1")
        assert production["current"]["actor"] == "alice"
        assert production["current"]["branch"] == "main"
        assert production["current"]["environment_url"] == "https://shop.example.com"
        assert production["since"] == format_timestamp(NOW - timedelta(hours=3, minutes=-3))
        assert production["in_progress"]["deployment_id"] == "s-5"
        assert production["latest"]["deployment_id"] == "s-5"
        assert states["blog", "production"]["current"] is None
    only = seeded.get("/api/environments?project=blog").json
    assert only is not None
    assert [s["project"] for s in only["environments"]] == ["blog"]


def test_environments_say_when_they_last_heard_of_a_deployment_and_when_it_is_stale(
    seeded: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time
    import types

    def production() -> dict[str, Any]:
        body = seeded.get("/api/environments?project=shop").json
        assert body is not None
        return next(s for s in body["environments"] if s["environment"] == "production")

    state = production()
    assert state["in_progress"]["last_news_at"] is not None
    assert (state["in_progress"]["stale"], state["current"]["stale"]) == (False, False)
    later = types.SimpleNamespace(time=lambda: time.time() + 3601)
    monkeypatch.setattr(environments, "time", later)
    state = production()
    assert state["in_progress"]["stale"] is True
    assert state["latest"]["stale"] is True
    assert state["current"]["stale"] is False  # a finished deployment is never stale


def test_environments_read_a_bounded_number_of_rows_where_rows_are_read(
    seeded: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store that reads rows stops at its bound and says so; the embedded store picks
    each environment's deployments through its indexes and counts all of them."""
    monkeypatch.setattr(paging, "MAX_WINDOW_DEPLOYMENTS", 3)
    monkeypatch.setattr(paging, "PAGE_SIZE", 2)
    body = seeded.get("/api/environments").json
    assert body is not None
    assert (body["scanned"], body["truncated"]) == (7, False)
    store = seeded.application.extensions["hub_context"].store
    rows, truncated = paging.newest_deployments(store, None)
    assert (len(rows), truncated) == (3, True)


def test_environments_need_the_read_token() -> None:
    from app.config import Settings
    from server.app import create_app

    guarded = create_app(Settings(store_url="memory://", read_tokens=("reader",)))
    try:
        client = guarded.test_client()
        assert client.get("/api/environments").status_code == 401
        assert client.get("/api/environments?token=reader").status_code == 200
    finally:
        guarded.extensions["hub"].stop()
        guarded.extensions["hub_context"].store.close()


def ids(body: Any) -> list[str]:
    return [row["deployment_id"] for row in body["deployments"]]


def test_history_filters_by_environment(seeded: FlaskClient) -> None:
    body = seeded.get("/api/deployments?environment=production").json
    assert ids(body) == ["s-5", "s-4", "s-3", "s-1", "b-1"]
    assert body["next_cursor"] is None
    body = seeded.get("/api/deployments?environment=production&project=shop&status=success").json
    assert ids(body) == ["s-3", "s-1"]
    assert ids(seeded.get("/api/deployments?environment=nowhere").json) == []


@pytest.mark.parametrize("size", [1, 2, 3, 200])
def test_environment_pages_continue_where_they_stopped(
    seeded: FlaskClient, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    """Through the store's index (the route) and filtered row by row (a store without one,
    reading ``size`` rows at a time): the same pages."""
    monkeypatch.setattr(paging, "ENVIRONMENT_SCAN_PAGE", size)
    store = seeded.application.extensions["hub_context"].store
    for filtered in (False, True):
        seen: list[str] = []
        cursor = None
        for _ in range(10):
            if filtered:
                page = paging.in_environment(
                    store, "production", project=None, status=None, branch=None, limit=2,
                    cursor=cursor,
                )  # fmt: skip
                rows, cursor = [row["deployment_id"] for row in page.items], page.next_cursor
            else:
                query = "/api/deployments?environment=production&limit=2"
                body = seeded.get(query + (f"&cursor={cursor}" if cursor else "")).json
                assert body is not None
                rows, cursor = ids(body), body["next_cursor"]
            assert len(rows) <= 2
            seen += rows
            if cursor is None:
                break
        assert seen == ["s-5", "s-4", "s-3", "s-1", "b-1"]


def test_a_long_search_stops_at_its_bound_and_says_where_to_go_on(
    seeded: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(paging, "ENVIRONMENT_SCAN_PAGE", 2)
    monkeypatch.setattr(paging, "MAX_ENVIRONMENT_SCAN", 2)
    store = seeded.application.extensions["hub_context"].store

    def page(cursor: str | None) -> tuple[list[str], str | None]:
        found = paging.in_environment(
            store, "staging", project=None, status=None, branch=None, limit=5, cursor=cursor
        )
        return [row["deployment_id"] for row in found.items], found.next_cursor

    rows, cursor = page(None)
    assert rows == []  # s-6 and s-5 were read: neither went to staging
    assert cursor is not None
    rows, cursor = page(cursor)
    assert rows == []  # s-4 and s-3
    assert page(cursor)[0] == ["s-2"]
    if isinstance(store, SqliteStore):  # Redis lists an environment by that bounded scan
        body = seeded.get("/api/deployments?environment=staging&limit=5").json
        assert body is not None
        assert ids(body) == ["s-2"]  # the embedded store's index holds no other


def test_delivery_figures_default_to_production_and_may_name_another(seeded: FlaskClient) -> None:
    body = seeded.get("/api/delivery-metrics?days=1").json
    assert body is not None
    assert (body["environment"], body["environments"]) == ("production", ["staging", "production"])
    assert body["overall"]["deployments"] == 5
    staging = seeded.get("/api/delivery-metrics?days=1&environment=staging").json
    assert staging is not None
    assert (staging["environment"], staging["overall"]["deployments"]) == ("staging", 1)
    every = seeded.get("/api/delivery-metrics?days=1&environment=*").json
    assert every is not None
    assert (every["environment"], every["overall"]["deployments"]) == (None, 7)


def test_delivery_figures_without_environments_count_everything(client: FlaskClient) -> None:
    deploy(client, "shop", "x-1", None, "success", NOW - timedelta(hours=1))
    body = client.get("/api/delivery-metrics?days=1").json
    assert body is not None
    assert (body["environment"], body["environments"], body["overall"]["deployments"]) == (
        None,
        [],
        1,
    )
