"""``/metrics`` under gunicorn with several workers: every worker's samples, added up."""

from __future__ import annotations

import os
import signal
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.server import HubServer, checked
from tests.e2e.wsclient import connect_to_worker, metric, post, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[HubServer]:
    server = HubServer(tmp_path, workers=2).start()
    yield server
    server.stop()


def test_counters_add_up_over_workers_whichever_answers(two_workers: HubServer) -> None:
    for n in range(20):
        post(
            two_workers, {"type": "deployment_started", "project": "web", "deployment_id": f"d{n}"}
        )
    two_workers.post_json("/api/webhooks/deployment", {"type": "nope"})
    for _ in range(6):  # scrapes land on either worker
        assert metric(two_workers, 'hub_events_accepted_total{type="deployment_started"}') == 20
        assert metric(two_workers, 'hub_ingest_rejected_total{reason="validation_failed"}') == 1
        assert metric(two_workers, "hub_store_seconds_count") == 20
        assert metric(two_workers, "hub_ingest_seconds_count") == 20


def test_connection_gauge_counts_live_workers_only(two_workers: HubServer) -> None:
    """A worker killed with its connections open stops counting (child_exit marks it dead).

    The victim is a worker that holds some of the open connections (the welcome
    says which worker serves each), so the gauge must drop by exactly its share.
    """
    clients = [connect_to_worker(two_workers) for _ in range(6)]
    try:
        wait_for(lambda: metric(two_workers, "hub_ws_connections") == 6, "6 connections")
        for client, _ in clients[:2]:
            client.close()
        wait_for(lambda: metric(two_workers, "hub_ws_connections") == 4, "4 connections")
        held = Counter(pid for _, pid in clients[2:])
        victim, count = held.most_common(1)[0]
        os.kill(victim, signal.SIGKILL)
        wait_for(
            lambda: metric(two_workers, "hub_ws_connections") == 4 - count,
            f"the {count} connections of the dead worker to be dropped",
        )
    finally:
        for client, _ in clients:
            client.close()
    wait_for(lambda: metric(two_workers, "hub_ws_connections") == 0, "no connections")


def test_metrics_text_is_prometheus_exposition(two_workers: HubServer) -> None:
    with urllib.request.urlopen(two_workers.url + "/metrics", timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=")
        text = checked("GET", "/metrics", response, response.read()).decode()
    for name in (
        "hub_ingest_seconds",
        "hub_store_seconds",
        "hub_fanout_lag_seconds",
        "hub_ws_connections",
        "hub_redis_reconnects_total",
    ):
        assert f"# TYPE {name}" in text, name
