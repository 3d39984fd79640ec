"""Resuming with ``since``: exactly what was missed, or ``recovered: false`` and what is left."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ledger.ids import make_event_id, parse_event_id
from tests.e2e.server import HubServer
from tests.e2e.wsclient import (
    connect,
    log_event,
    post,
    receive,
    subscribe,
    wait_for,
)

pytestmark = pytest.mark.e2e

PROJECT_LIMIT = 5


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubServer]:
    hub = HubServer(
        tmp_path_factory.mktemp("ws-resume"), env={"HUB_REPLAY_PROJECT_LIMIT": str(PROJECT_LIMIT)}
    ).start()
    yield hub
    hub.stop()


def ids_of(events: list[dict[str, Any]]) -> list[str]:
    return [event["id"] for event in events]


def resume(server: HubServer, frame: dict[str, Any]) -> tuple[bool, list[str]]:
    """Subscribe on a fresh connection: ``(recovered, replayed ids)``."""
    ws = connect(server)
    subscribed, events, done = subscribe(ws, frame)
    ws.close()
    assert done["last_event_id"] == (events[-1]["id"] if events else None)
    return subscribed["recovered"], ids_of(events)


@pytest.mark.parametrize("target", ["project", "deployment_id"])
def test_since_inside_history_replays_exactly_what_was_missed(
    server: HubServer, target: str
) -> None:
    ids = post(server, *[log_event(f"inside-{target}", f"in-{target}", str(i)) for i in range(8)])
    kind = "project" if target == "project" else "deployment"
    frame = {
        "type": f"subscribe_{kind}",
        target: f"in-{target}" if kind == "deployment" else f"inside-{target}",
    }
    assert resume(server, {**frame, "since": ids[1]}) == (True, ids[2:])
    assert resume(server, {**frame, "since": ids[-1]}) == (True, [])


def test_without_since_a_project_replays_its_latest_and_a_deployment_all(server: HubServer) -> None:
    ids = post(server, *[log_event("latest", "latest-1", str(i)) for i in range(PROJECT_LIMIT + 3)])
    assert resume(server, {"type": "subscribe_project", "project": "latest"}) == (
        True,
        ids[-PROJECT_LIMIT:],
    )
    assert resume(server, {"type": "subscribe_deployment", "deployment_id": "latest-1"}) == (
        True,
        ids,
    )


def test_since_ahead_of_the_newest_id_is_not_recovered(server: HubServer) -> None:
    ids = post(server, *[log_event("ahead", "ahead-1", str(i)) for i in range(3)])
    position = parse_event_id(ids[-1])
    assert position is not None
    future = make_event_id(position[0], position[1] + 1000)
    assert resume(server, {"type": "subscribe_project", "project": "ahead", "since": future}) == (
        False,
        ids,
    )


@pytest.mark.parametrize("since", [make_event_id(1, 1), "not-an-id"], ids=["lost-epoch", "garbage"])
def test_since_from_another_epoch_is_not_recovered(server: HubServer, since: str) -> None:
    ids = post(server, *[log_event(f"epoch-{since}", "epoch-1", str(i)) for i in range(3)])
    assert resume(
        server, {"type": "subscribe:project", "project": f"epoch-{since}", "since": since}
    ) == (False, ids)


def test_empty_history_replays_nothing(server: HubServer) -> None:
    [elsewhere] = post(server, log_event("not-empty", "ne-1"))
    assert resume(server, {"type": "subscribe_project", "project": "empty"}) == (True, [])
    assert resume(
        server, {"type": "subscribe_project", "project": "empty", "since": elsewhere}
    ) == (True, [])
    assert resume(server, {"type": "subscribe_deployment", "deployment_id": "no-such"}) == (
        True,
        [],
    )


def test_a_fresh_store_knows_no_since(tmp_path: Path) -> None:
    hub = HubServer(tmp_path).start()
    try:
        assert resume(
            hub, {"type": "subscribe_project", "project": "p", "since": make_event_id(1, 1)}
        ) == (False, [])
        assert resume(hub, {"type": "subscribe_project", "project": "p"}) == (True, [])
    finally:
        hub.stop()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["graceful", "kill-9"])
def test_since_from_before_a_restart_resumes_exactly(tmp_path: Path, sig: int) -> None:
    hub = HubServer(tmp_path).start()
    try:
        ids = post(hub, *[log_event("restart", "r-1", str(i)) for i in range(4)])
        hub.restart(sig)
        ws = connect(hub)
        subscribed, events, _ = subscribe(
            ws, {"type": "subscribe_deployment", "deployment_id": "r-1", "since": ids[1]}
        )
        assert subscribed["recovered"] is True
        assert ids_of(events) == ids[2:]
        [later] = post(hub, log_event("restart", "r-1", "after the restart"))
        assert later > ids[-1]
        assert receive(ws)["event"]["id"] == later
        ws.close()
    finally:
        hub.stop()


def test_since_older_than_retained_history_is_not_recovered(tmp_path: Path) -> None:
    """Retention drops whole deployments; the hub prunes when it starts."""
    hub = HubServer(tmp_path, env={"HUB_RETENTION_MAX_EVENTS": "3"}).start()
    try:
        ids = [
            event_id
            for n in range(4)
            for event_id in post(hub, *[log_event("old", f"old-{n}", str(i)) for i in range(2)])
        ]
        hub.restart()

        def retained() -> list[str]:
            status, body = hub.request("GET", "/api/events?project=old&limit=100")
            assert status == 200
            return ids_of(body["events"])

        wait_for(lambda: retained() != ids, "the start-up prune")
        kept = retained()
        assert kept
        assert kept == ids[len(ids) - len(kept) :], "pruning keeps the newest events"
        newest_pruned = ids[len(ids) - len(kept) - 1]
        frame = {"type": "subscribe_project", "project": "old"}
        assert resume(hub, {**frame, "since": ids[0]}) == (False, kept)
        assert resume(hub, {**frame, "since": newest_pruned}) == (True, kept)
        assert resume(hub, {**frame, "since": kept[0]}) == (True, kept[1:])
    finally:
        hub.stop()


def test_replay_joins_live_without_gap_or_duplicate(server: HubServer) -> None:
    """Clients subscribe, with and without since, while events are being posted."""
    total = 150
    posted: list[str] = []

    def poster() -> None:
        for i in range(total):
            posted.extend(post(server, log_event("join", "join-1", str(i))))

    thread = threading.Thread(target=poster)
    thread.start()
    clients: list[tuple[Any, str | None, list[str]]] = []
    try:
        for k in range(6):
            deadline = time.monotonic() + 30
            while len(posted) < k * 20 and time.monotonic() < deadline:
                time.sleep(0.01)
            ws = connect(server)
            frame: dict[str, Any] = {"type": "subscribe_deployment", "deployment_id": "join-1"}
            since = posted[len(posted) // 2] if k in (1, 3) and posted else None
            if k == 5:
                frame = {"type": "subscribe_project", "project": "join"}
            elif since is not None:
                frame["since"] = since
            _, events, _ = subscribe(ws, frame)
            clients.append((ws, since, ids_of(events)))
    finally:
        thread.join()
    deadline = time.monotonic() + 30
    for ws, since, got in clients:
        while not got or got[-1] != posted[-1]:
            assert time.monotonic() < deadline
            got.append(receive(ws)["event"]["id"])
        ws.close()
        if since is not None:
            assert got == posted[posted.index(since) + 1 :]
        elif len(got) < total:
            assert got == posted[posted.index(got[0]) :]
        else:
            assert got == posted
    assert clients[0][2] == posted
    assert len(clients[5][2]) < total
