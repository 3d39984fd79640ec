"""Thousands of idle WebSockets on one gevent worker: all admitted, all kept, all reached."""

from __future__ import annotations

import resource
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.server import HubServer
from tests.e2e.wsclient import WAIT, Crowd, log_event, metric, post

pytestmark = pytest.mark.e2e

COUNT = 5000


@pytest.fixture
def file_limit() -> Iterator[None]:
    """Room for both ends of every connection; the hub inherits the raised limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = 2 * COUNT + 1000
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"needs {needed} open files, the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, needed), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_5000_idle_connections_stay_open_and_all_get_a_broadcast(
    tmp_path: Path, file_limit: None
) -> None:
    hub = HubServer(
        tmp_path,
        env={"HUB_WORKER_CONNECTIONS": str(COUNT + 100), "HUB_WS_MAX_CONNECTIONS": str(COUNT + 50)},
    ).start()
    crowd: Crowd | None = None
    try:
        crowd = Crowd(hub, COUNT)
        assert len(crowd) == COUNT

        def saw(kind: str) -> Any:
            return lambda frames: any(frame["type"] == kind for frame in frames)

        crowd.wait(saw("welcome"), "the welcome frame", timeout=WAIT * 4)
        crowd.send_all(["subscribe_project", "scale"])
        crowd.wait(saw("replay_complete"), "their subscription", timeout=WAIT * 4)
        assert metric(hub, "hub_ws_connections") == COUNT
        [event_id] = post(hub, log_event("scale", "s-1", "to everyone"))
        crowd.wait(
            lambda frames: frames[-1].get("event", {}).get("id") == event_id,
            "the broadcast",
            timeout=WAIT * 4,
        )
        assert crowd.close_codes == [None] * COUNT
        assert metric(hub, "hub_ws_connections") == COUNT
    finally:
        if crowd is not None:
            crowd.close()
        hub.stop()
