"""A client that cannot keep up is closed; the others, and ingest, carry on untouched."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path
from typing import Any

import pytest
import websocket
from websocket import ABNF

from tests.e2e.server import HubServer
from tests.e2e.wsclient import (
    WAIT,
    Crowd,
    connect,
    decode,
    log_event,
    metric,
    post,
    receive,
    subscribe,
)

pytestmark = pytest.mark.e2e

#: A client that reads nothing fills this little kernel buffer at once.
TINY_BUFFER = [(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)]
#: Events big enough that the kernel's buffers (the hub's grows to a few MB) fill quickly.
BULK = "x" * 60_000
MAX_POSTS = 1000


def post_until(
    hub: HubServer, counter: str, posted: list[str], project: str, deployment_id: str
) -> None:
    """Post bulky events, one per request as senders do, until ``counter`` moves."""
    for i in range(MAX_POSTS):
        posted.extend(post(hub, log_event(project, deployment_id, f"{i} {BULK}")))
        if i % 5 == 4 and metric(hub, counter) >= 1:
            return
    raise AssertionError(f"{counter} never moved")


def read_frames(ws: websocket.WebSocket) -> tuple[list[str], int | None]:
    """Event ids up to the close frame, and its code (``None``: the stream just ended)."""
    ids: list[str] = []
    try:
        while True:
            try:
                frame = ws.recv_frame()
            except (websocket.WebSocketConnectionClosedException, ConnectionError):
                return ids, None
            if frame.opcode == ABNF.OPCODE_CLOSE:
                return ids, int.from_bytes(frame.data[:2], "big")
            if frame.opcode == ABNF.OPCODE_TEXT:
                ids.append(decode(frame.data)["event"]["id"])
    finally:
        ws.shutdown()


def test_a_slow_client_is_closed_with_1013_and_50_others_get_everything(tmp_path: Path) -> None:
    """The slow client also follows a bulky deployment; the 50 others share its project feed."""
    hub = HubServer(
        tmp_path, env={"HUB_WS_SEND_QUEUE": "64", "HUB_WS_SEND_TIMEOUT": str(WAIT * 4)}
    ).start()
    crowd = Crowd(hub, 50)
    try:
        slow = connect(hub, sockopt=TINY_BUFFER)
        subscribe(slow, ["subscribe_project", "feed"])
        subscribe(slow, ["subscribe_deployment", "bulk-1"])
        crowd.send_all(["subscribe_project", "feed"])
        crowd.wait(
            lambda frames: bool(frames) and frames[-1]["type"] == "replay_complete",
            "replay_complete",
        )

        def ended(frames: list[dict[str, Any]]) -> bool:
            last = frames[-1] if frames else {}
            return bool(
                last.get("type") == "event" and last["event"]["payload"]["message"] == "END"
            )

        reader = threading.Thread(target=crowd.wait, args=(ended, "END", WAIT * 4))
        reader.start()
        feed: list[str] = []
        bulk: list[str] = []
        for n in range(MAX_POSTS):
            feed.extend(post(hub, log_event("feed", "feed-1", f"feed {n}")))
            bulk.extend(post(hub, log_event("bulk", "bulk-1", f"{n} {BULK}")))
            if n % 5 == 4 and metric(hub, "hub_slow_client_disconnects_total") >= 1:
                break
        feed.extend(post(hub, log_event("feed", "feed-1", f"after {n}"))[0] for n in range(20))
        post(hub, log_event("feed", "feed-1", "END"))
        reader.join()
        for frames in crowd.frames:
            events = [f["event"]["id"] for f in frames if f["type"] == "event"]
            assert events[:-1] == feed, "every other client got every event, in order"
        assert crowd.close_codes == [None] * 50
        got, code = read_frames(slow)  # it reads at last: what was in flight, then the close
        assert code == 1013
        assert [i for i in got if i in feed] == feed[: len([i for i in got if i in feed])]
        assert [i for i in got if i in bulk] == bulk[: len([i for i in got if i in bulk])]
        assert len(got) < len(feed) + len(bulk)
        assert metric(hub, "hub_slow_client_disconnects_total") == 1
    finally:
        crowd.close()
        hub.stop()


def test_a_client_that_stops_reading_is_dropped_after_the_send_timeout(tmp_path: Path) -> None:
    hub = HubServer(
        tmp_path, env={"HUB_WS_SEND_QUEUE": "100000", "HUB_WS_SEND_TIMEOUT": "0.5"}
    ).start()
    try:
        stuck = connect(hub, sockopt=TINY_BUFFER)
        subscribe(stuck, ["subscribe_project", "flood"])
        healthy = connect(hub)
        subscribe(healthy, ["subscribe_deployment", "other"])
        posted: list[str] = []
        post_until(
            hub, 'hub_stream_disconnects_total{reason="send_timeout"}', posted, "flood", "f-1"
        )
        [other] = post(hub, log_event("flood", "other"))
        assert receive(healthy)["event"]["id"] == other
        healthy.close()
        got, code = read_frames(stuck)
        assert code is None, "a frame cut short by the timeout cannot be followed by a close"
        assert got == posted[: len(got)]
    finally:
        hub.stop()


def test_a_client_that_floods_frames_without_reading_is_closed_with_1008(tmp_path: Path) -> None:
    """Its replay fills the send queue, so the hub stops taking its frames; it keeps sending."""
    hub = HubServer(
        tmp_path, env={"HUB_WS_SEND_QUEUE": "8", "HUB_WS_SEND_TIMEOUT": str(WAIT * 4)}
    ).start()
    try:
        posted = [post(hub, log_event("fat", "fat-1", f"{n} {BULK * 2}"))[0] for n in range(60)]
        flooder = connect(hub, sockopt=TINY_BUFFER)
        flooder.send(json.dumps(["subscribe_deployment", "fat-1"]))
        for _ in range(1500):
            flooder.send('{"type": "ping"}')
        frames: list[dict[str, Any]] = []
        while True:
            frame = flooder.recv_frame()
            if frame.opcode == ABNF.OPCODE_CLOSE:
                break
            frames.append(decode(frame.data))
        assert int.from_bytes(frame.data[:2], "big") == 1008
        assert frames[0]["type"] == "subscribed"
        replayed = [f["event"]["id"] for f in frames if f["type"] == "event"]
        assert replayed == posted[: len(replayed)]
        flooder.shutdown()
        assert metric(hub, 'hub_stream_disconnects_total{reason="flood"}') == 1
    finally:
        hub.stop()
