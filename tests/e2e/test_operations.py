"""The operator commands beside a real hub under gunicorn, as an operator runs them.

``flask --app server.operations hub backup`` while senders post over HTTP,
``restore`` into a fresh store, a new hub started on it: every event the hub
acknowledged before the backup started is served again.  ``check`` and
``prune`` run against the serving hub's store without disturbing it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

from ledger.ids import parse_event_id
from tests.conftest import ROOT, TIMEOUT_FACTOR
from tests.e2e.server import HubServer


def flask_hub(store_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("HUB_")}
    env.update(PYTHONPATH=str(ROOT), HUB_STORE_URL=store_url)
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "server.operations", "hub", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120 * TIMEOUT_FACTOR,
        check=False,
    )


class Sender(threading.Thread):
    """Posts one deployment after another until told to stop; remembers what was acknowledged."""

    def __init__(self, hub: HubServer, most: int = 400) -> None:
        super().__init__()
        self.hub, self.most = hub, most
        self.acked: list[str] = []
        self.failures: list[object] = []
        self.stop = threading.Event()

    def run(self) -> None:
        for n in range(self.most):
            if self.stop.is_set():
                return
            status, body = self.hub.post_json(
                "/api/webhooks/deployment",
                {
                    "events": [
                        {"type": "deployment_started", "project": "web", "deployment_id": f"r{n}"},
                        {
                            "type": "log_entry",
                            "project": "web",
                            "deployment_id": f"r{n}",
                            "message": f"line {n}",
                        },
                        {
                            "type": "deployment_completed",
                            "project": "web",
                            "deployment_id": f"r{n}",
                            "status": "success",
                        },
                    ]
                },
            )
            if status == 200:
                self.acked += body["ids"]
            else:
                self.failures.append(body)


def every_event(hub: HubServer) -> list[dict[str, object]]:
    events: list[dict[str, object]] = []
    since = ""
    while True:
        status, page = hub.request("GET", f"/api/events?limit=1000{since}")
        assert status == 200, page
        events += page["events"]
        if page["next_cursor"] is None:
            return events
        since = f"&since={page['next_cursor']}"


def seq(event_id: str) -> int:
    parsed = parse_event_id(event_id)
    assert parsed is not None
    return parsed[1]


def test_backup_while_ingest_runs_then_restore_serves_every_acknowledged_event(
    tmp_path: Path,
) -> None:
    live = HubServer(tmp_path / "live").start()
    store_url = live.env["HUB_STORE_URL"]
    sender = Sender(live)
    sender.start()
    try:
        while len(sender.acked) < 60 and sender.is_alive():  # ingest is under way
            sender.join(0.05)
        acked_before = list(sender.acked)
        backup = flask_hub(store_url, "backup", str(tmp_path / "backup.db"))
        checked = flask_hub(store_url, "check")
    finally:
        sender.stop.set()
        sender.join()
    assert backup.returncode == 0, backup.stderr
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert sender.failures == []  # the hub served on while both ran
    status, _ = live.request("GET", "/healthz")
    assert status == 200
    live.stop()

    fresh = tmp_path / "fresh"
    restored = flask_hub(
        f"sqlite:///{fresh / 'hub.sqlite3'}", "restore", str(tmp_path / "backup.db")
    )
    assert restored.returncode == 0, restored.stderr
    again = HubServer(fresh).start()
    try:
        served = every_event(again)
        assert {seq(i) for i in acked_before} <= {seq(str(e["id"])) for e in served}
        assert len(served) >= len(acked_before)
        # the restored hub is a new epoch: ids of the old history resume from the start
        status, page = again.request("GET", f"/api/events?since={acked_before[-1]}&limit=1")
        assert status == 200
        assert page["recovered"] is False
        status, view = again.request("GET", "/api/deployments/r0")
        assert status == 200
        assert view["status"] == "success"
    finally:
        again.stop()


def test_check_and_prune_run_beside_a_serving_hub(tmp_path: Path) -> None:
    hub = HubServer(tmp_path / "hub").start()
    try:
        sender = Sender(hub, most=30)
        sender.run()  # in this thread: 30 deployments, then the commands
        assert len(sender.acked) == 90
        store_url = hub.env["HUB_STORE_URL"]
        checked = flask_hub(store_url, "check")
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert "ok: 90 events, 30 deployments checked" in checked.stdout
        pruned = flask_hub(store_url, "prune", "--max-events", "30")
        assert pruned.returncode == 0, pruned.stderr
        status, page = hub.request("GET", "/api/deployments?limit=100")
        assert status == 200
        left = {row["deployment_id"] for row in page["deployments"]}
        assert left == {f"r{n}" for n in range(30 - len(left), 30)}  # the newest, whole
        assert len(left) <= 10
        status, _ = hub.request("GET", "/api/deployments/r0")
        assert status == 404
    finally:
        hub.stop()
