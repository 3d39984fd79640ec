"""Alerts from the real hub under gunicorn, received by a local HTTP server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ledger.timestamps import format_timestamp
from tests.alerts_receiver import AlertReceiver
from tests.e2e.server import HubServer
from tests.e2e.wsclient import post

pytestmark = pytest.mark.e2e

PATHS = {"webhook": "/generic", "slack": "/slack", "feishu": "/feishu", "dingtalk": "/dingtalk"}


def hours_ago(hours: float) -> str:
    return format_timestamp(datetime.now(UTC) - timedelta(hours=hours))


def test_each_cause_is_alerted_once_to_every_target_across_workers_and_restarts(
    tmp_path: Path,
) -> None:
    """Two workers elect one sender; a restart re-reads the state and sends nothing twice."""
    with AlertReceiver() as receiver:
        env = {
            "HUB_ALERTS": "true",
            "HUB_ALERT_STATE_PATH": str(tmp_path / "alerts.sqlite3"),
            "HUB_ALERT_CHECK_INTERVAL": "0.2",
            "HUB_ALERT_LONG_RUNNING_SECONDS": "3600",
            "HUB_ALERT_STALLED_STEP_SECONDS": "1",
            **{
                f"HUB_ALERT_{kind.upper()}_URLS": receiver.url + path
                for kind, path in PATHS.items()
            },
        }
        server = HubServer(tmp_path / "hub", env=env, workers=2).start()
        try:
            post(
                server,
                {
                    "type": "deployment_completed",
                    "project": "web",
                    "deployment_id": "d-fail",
                    "status": "failure",
                    "error": "exit 2",
                },
            )
            for kind, path in PATHS.items():
                body = receiver.wait_for(path, 1)[0]
                text = {
                    "webhook": lambda b: b["text"],
                    "slack": lambda b: b["text"],
                    "feishu": lambda b: b["content"]["text"],
                    "dingtalk": lambda b: b["text"]["content"],
                }[kind](body)
                assert "Deployment failed: web d-fail" in text
                assert "error: exit 2" in text
            post(
                server,
                {
                    "type": "deployment_started",
                    "project": "web",
                    "deployment_id": "d-long",
                    "timestamp": hours_ago(2),
                },
            )
            post(
                server,
                {
                    "type": "step_started",
                    "project": "api",
                    "deployment_id": "d-stall",
                    "step_name": "deploy / upload",
                },
            )
            bodies = receiver.wait_for("/generic", 3)
            causes = sorted((b["cause"], b["deployment_id"]) for b in bodies)
            assert causes == [
                ("failed", "d-fail"),
                ("long_running", "d-long"),
                ("stalled", "d-stall"),
            ]
            server.restart()
            post(
                server,
                {
                    "type": "deployment_completed",
                    "project": "web",
                    "deployment_id": "d-fail",
                    "status": "failure",
                    "error": "again",
                },
            )
            post(
                server,
                {
                    "type": "deployment_completed",
                    "project": "web",
                    "deployment_id": "d-fail-2",
                    "status": "failure",
                },
            )
            receiver.wait_for("/generic", 4)
            # Nothing else may arrive. A deployment only the periodic check alerts on is
            # posted, then another once its alert is in: the second's alert comes from a
            # later check than the first's, so by then a whole check has run since the
            # restart (re-raising anything the state forgot) and what it raised went out
            # at least a check interval before.
            for count, marker in enumerate(("d-marker-1", "d-marker-2"), start=5):
                post(
                    server,
                    {
                        "type": "deployment_started",
                        "project": "web",
                        "deployment_id": marker,
                        "timestamp": hours_ago(2),
                    },
                )
                receiver.wait_for("/generic", count)
            bodies = receiver.bodies("/generic")
            assert sorted((b["cause"], b["deployment_id"]) for b in bodies) == [
                ("failed", "d-fail"),
                ("failed", "d-fail-2"),
                ("long_running", "d-long"),
                ("long_running", "d-marker-1"),
                ("long_running", "d-marker-2"),
                ("stalled", "d-stall"),
            ]
            assert len(receiver.bodies("/slack")) == 6
        finally:
            server.stop()
    assert "Traceback" not in server.log()


def test_a_target_that_fails_at_first_gets_the_alert_after_retries(tmp_path: Path) -> None:
    with AlertReceiver() as receiver:
        receiver.script["/slack"] = [(503, b"busy"), (500, b"oops")]
        server = HubServer(
            tmp_path / "hub",
            env={
                "HUB_ALERTS": "true",
                "HUB_ALERT_STATE_PATH": str(tmp_path / "alerts.sqlite3"),
                "HUB_ALERT_SLACK_URLS": receiver.url + "/slack",
            },
        ).start()
        try:
            post(
                server,
                {
                    "type": "deployment_completed",
                    "project": "web",
                    "deployment_id": "d-1",
                    "status": "failure",
                },
            )
            bodies = receiver.wait_for("/slack", 3)
            assert bodies[0] == bodies[2]
            assert bodies[2]["text"].startswith("Deployment failed: web d-1")
        finally:
            server.stop()
