"""Log analysis on the real hub under gunicorn: the failing line, failures, search, hubctl.

Two gevent workers on one SQLite file, so a write through one worker (group
commit, FTS5 index, failure record in the same transaction) is answered by
the other; then the same through Redis.
"""

from __future__ import annotations

import contextlib
import io
import json
import sqlite3
import threading
import urllib.parse
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from hubctl.cli import main
from ledger.timestamps import format_timestamp
from tests.e2e.server import HubServer
from tests.e2e.wsclient import post
from tests.redis_server import RedisServer

pytestmark = pytest.mark.e2e

PYTHON_LOG = """Running migrations
Traceback (most recent call last):
  File "/srv/app/migrate.py", line 12, in <module>
    apply("0042_users")
psycopg.errors.DuplicateTable: relation "users" already exists
"""


def failing(deployment: str, project: str = "shop", minute: int = 0) -> list[dict[str, Any]]:
    """A deployment that failed ``60 - minute`` minutes ago, explained by PYTHON_LOG."""
    started = datetime.now(UTC) - timedelta(minutes=60 - minute)

    def at(second: int) -> str:
        return format_timestamp(started + timedelta(seconds=second))

    base = {"project": project, "deployment_id": deployment}
    step = "deploy / migrate"
    return [
        {**base, "type": "deployment_started", "timestamp": at(0), "commit": "abc1234"},
        {**base, "type": "step_started", "step_name": step, "timestamp": at(1)},
        {**base, "type": "log_entry", "step_name": step, "message": PYTHON_LOG, "timestamp": at(2)},
        {
            **base,
            "type": "step_completed",
            "step_name": step,
            "status": "failed",
            "error": "Process completed with exit code 1.",
            "timestamp": at(3),
        },
        {**base, "type": "deployment_completed", "status": "failed", "timestamp": at(4)},
    ]


def get(server: HubServer, path: str) -> tuple[int, Any]:
    return server.request("GET", path)


def hubctl(url: str, *args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(["--hub", url, "--retries", "1", *args], environ={}, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def check_the_hub(server: HubServer) -> None:
    """What every store behind the real hub must answer."""
    post(server, *failing("r1", minute=1))
    post(server, *failing("r2", minute=2))
    status, view = get(server, "/project-dashboard/api/deployments/r2")
    assert status == 200
    failure = view["failure"]
    assert (
        failure["line"]["text"] == 'psycopg.errors.DuplicateTable: relation "users" already exists'
    )
    assert failure["line"]["link"].startswith("#/deployments/r2?job=deploy&step=migrate&line=")
    assert failure["seen"]["count"] == 1
    assert failure["seen"]["deployments"] == ["r1"]

    status, found = get(server, "/api/failures?days=1")
    assert status == 200
    assert [(i["count"], i["deployments"]) for i in found["items"]] == [(2, ["r2", "r1"])]

    query = urllib.parse.quote('"already exists" duplicate*')
    status, found = get(server, f"/api/logs/search?q={query}&project=shop")
    assert status == 200
    assert [h["deployment_id"] for h in found["items"]] == ["r2", "r1"]
    assert found["items"][0]["link"] == failure["line"]["link"]

    status, refused = get(server, "/api/logs/search?q=%22open")
    assert status == 422
    assert refused["error"]["code"] == "invalid_query"

    code, out, err = hubctl(server.url, "logs", "search", "duplicatetable", "--color", "never")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split()[1:] == ["shop", "r2", "deploy", "/", "migrate"]
    assert lines[1] == '  psycopg.errors.DuplicateTable: relation "users" already exists'
    assert lines[2] == f"  {server.url}/{failure['line']['link']}"
    code, out, _ = hubctl(server.url, "logs", "search", "duplicatetable", "--json", "--limit", "1")
    assert [json.loads(line)["deployment_id"] for line in out.splitlines()] == ["r2"]
    code, _, err = hubctl(server.url, "logs", "search", "a*b")
    assert code == 1
    assert "only end a word" in err
    code, out, err = hubctl(server.url, "logs", "search", "nothing-matches-this")
    assert (code, out) == (0, "")
    assert "no log line matches" in err


@pytest.fixture
def sqlite_hub(tmp_path: Path) -> Iterator[HubServer]:
    server = HubServer(tmp_path / "hub", workers=2).start()
    yield server
    server.stop()


def test_log_analysis_on_sqlite_under_gunicorn(sqlite_hub: HubServer) -> None:
    check_the_hub(sqlite_hub)
    sqlite_hub.restart()  # records and index are durable
    status, found = get(sqlite_hub, "/api/logs/search?q=duplicatetable")
    assert status == 200
    assert len(found["items"]) == 2
    assert get(sqlite_hub, "/api/deployments/r1")[1]["failure"]["line"] is not None


def test_lines_sent_one_by_one_through_two_workers_are_each_found_once(
    sqlite_hub: HubServer,
) -> None:
    """Four senders post 150 one-line events each, concurrently, to two workers: the
    search index takes them in runs of 256 in whichever worker's write gets there, and a
    search pages through all 600, the waiting ones included, each once, newest first."""
    senders, each = 4, 150

    def send(sender: int) -> None:
        for n in range(each):
            line = {
                "type": "log_entry",
                "project": "runs",
                "deployment_id": f"runs-{sender}",
                "message": f"haystack needle{sender} {n}",
            }
            assert sqlite_hub.post_json("/api/webhooks/deployment", line)[0] == 200

    threads = [threading.Thread(target=send, args=(sender,)) for sender in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    found: list[dict[str, Any]] = []
    cursor = ""
    while True:
        status, page = get(sqlite_hub, f"/api/logs/search?q=haystack&limit=70{cursor}")
        assert status == 200
        found += page["items"]
        if page["next_cursor"] is None:
            break
        cursor = f"&cursor={urllib.parse.quote(page['next_cursor'])}"
    ids = [int(hit["id"]) for hit in found]
    assert ids == sorted(set(ids), reverse=True)
    assert len(ids) == senders * each
    for sender in range(senders):
        status, page = get(sqlite_hub, f"/api/logs/search?q=needle{sender}&limit=200")
        assert status == 200
        assert len(page["items"]) == each
        assert {hit["deployment_id"] for hit in page["items"]} == {f"runs-{sender}"}
    with contextlib.closing(sqlite3.connect(sqlite_hub.workdir / "hub.sqlite3")) as db:
        (upto,) = db.execute("SELECT value FROM meta WHERE key = 'log_search_upto'").fetchone()
        assert int(upto) >= 512  # at least two runs went in
        assert max(ids) - int(upto) < 256
        db.execute("INSERT INTO log_search (log_search) VALUES ('integrity-check')")


@pytest.mark.redis
def test_log_analysis_on_redis_under_gunicorn(tmp_path: Path) -> None:
    redis = RedisServer(tmp_path / "redis").start()
    try:
        url = redis.url(prefix=f"e2e-{uuid.uuid4().hex}")
        server = HubServer(tmp_path / "hub", env={"HUB_STORE_URL": url}, workers=2).start()
        try:
            check_the_hub(server)
        finally:
            server.stop()
    finally:
        redis.stop()
