"""The operator's view of a real gunicorn hub: start-up refusals and the log it writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, TIMEOUT_FACTOR
from tests.e2e.server import HubServer
from tests.e2e.wsclient import connect

pytestmark = pytest.mark.e2e

TOKEN = "read-token-4242"


def test_gunicorn_refuses_to_start_listing_every_problem(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env.update(
        {
            "PYTHONPATH": str(ROOT),
            "HUB_PORT": "eighty",
            "HUB_HOST": "0.0.0.0",  # noqa: S104 - never bound: start-up stops first
            "HUB_STORE_URL": "mysql://db/hub",
        }
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            "python:server.gunicorn_conf",
            "server.app:create_app()",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60 * TIMEOUT_FACTOR,
        check=False,
    )
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.startswith("hub configuration")]
    assert len(lines) == 3, done.stderr
    assert "HUB_PORT" in lines[0]
    assert "HUB_HOST" in lines[1]
    assert "HUB_STORE_URL" in lines[2]
    assert "Traceback" not in done.stderr


def test_json_log_lines_carry_request_ids_and_no_tokens(tmp_path: Path) -> None:
    server = HubServer(
        tmp_path,
        env={
            "HUB_LOG_FORMAT": "JSON",
            "HUB_READ_TOKENS": TOKEN,
            "HUB_WEBHOOK_TOKENS": "ingest-token-777",
        },
    ).start()
    try:
        status, _ = server.request(
            "GET", f"/api/projects?token={TOKEN}", headers={"X-Request-ID": "probe-1"}
        )
        assert status == 200
        status, _ = server.post_json(
            "/api/webhooks/deployment",
            {"type": "deployment_started", "project": "p", "deployment_id": "d"},
            {"Authorization": "Bearer ingest-token-777", "X-Request-ID": "probe-2"},
        )
        assert status == 200
        connect(server, f"/ws?token={TOKEN}").close()
    finally:
        server.stop()
    log = server.log()
    assert TOKEN not in log
    assert "ingest-token-777" not in log
    records = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    by_id = {}
    for record in records:
        by_id.setdefault(record["request_id"], []).append(record)
    assert [r["status"] for r in by_id["probe-1"]] == [200]
    assert by_id["probe-1"][0]["path"] == "/api/projects?token=[redacted]"
    assert {r["logger"] for r in by_id["probe-2"]} == {"app.webhooks", "app.access"}
    websocket = [r for r in records if r.get("path", "").startswith("/ws")]
    assert websocket[0]["status"] == 101
    opened = [r for r in records if r["message"] == "websocket open"]
    assert opened[0]["request_id"] == websocket[0]["request_id"]
