"""Hostile clients against the real hub, with well-behaved ones watching.

Every test here runs the hub under real gunicorn (one gevent worker, as the
adversarial pass did) and, while the hostile client does its worst, a
well-behaved sender posts events and a well-behaved subscriber follows them:
:class:`Bystanders` then requires every one of the sender's posts to have
been accepted and the subscriber to have received exactly those events, in
order.  One hostile request must never fail another's.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websocket

from tests.e2e.server import HubServer
from tests.e2e.wsclient import WAIT, connect, log_event, receive, subscribe, wait_for
from tests.redis_server import RedisServer

ROUTE = "/api/webhooks/deployment"
#: Where the well-behaved sender posts from: a loopback address of its own, so that
#: limits per address (when a test turns them on for loopback) never count it with the attacker.
BYSTANDER_ADDRESS = "127.0.0.2"


class Bystanders:
    """A sender posting one event every few milliseconds and a subscriber following them."""

    def __init__(
        self,
        server: HubServer,
        project: str = "bystander",
        headers: dict[str, str] | None = None,
        read_token: str | None = None,
    ) -> None:
        self.server = server
        self.project = project
        self.headers = headers or {}
        self.path = f"/ws?token={read_token}" if read_token else "/ws"
        self.statuses: list[int] = []
        self.ids: list[str] = []
        self.received: list[str] = []
        self._stop = threading.Event()
        self._sender = threading.Thread(target=self._send, daemon=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._ws: websocket.WebSocket | None = None

    def __enter__(self) -> Bystanders:
        self._ws = connect(self.server, self.path)
        subscribe(self._ws, {"type": "subscribe_project", "project": self.project})
        self._reader.start()
        self._sender.start()
        wait_for(lambda: len(self.ids) >= 3, "the well-behaved sender's first events")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._sender.join(WAIT)
        if self.ids:
            wait_for(lambda: self.received[-1:] == self.ids[-1:], "the subscriber to catch up")
        assert self._ws is not None
        self._ws.close()
        self._reader.join(WAIT)
        if exc[0] is None:
            self.check()

    def check(self) -> None:
        """Everything the sender posted was accepted, and arrived once, in order."""
        assert set(self.statuses) == {200}, self.statuses
        assert self.received == self.ids

    def _send(self) -> None:
        index = 0
        while not self._stop.is_set():
            status, answer = post_from(
                self.server,
                BYSTANDER_ADDRESS,
                log_event(self.project, "b-1", f"line {index}"),
                self.headers,
            )
            self.statuses.append(status)
            if status == 200:
                self.ids += answer["ids"]
            index += 1
            time.sleep(0.02)

    def _read(self) -> None:
        assert self._ws is not None
        try:
            while True:
                frame = receive(self._ws)
                if frame.get("type") == "event":
                    self.received.append(frame["event"]["id"])
        except (websocket.WebSocketException, OSError, ValueError):  # closed at the end
            return


def post_from(
    server: HubServer, address: str, payload: Any, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    """POST JSON from a chosen local address (the hub sees it as the client's address)."""
    body = json.dumps(payload).encode()
    head = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    raw = (
        f"POST {ROUTE} HTTP/1.1\r\nHost: hub\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n{head}\r\n"
    ).encode() + body
    return exchange(server, raw, source=address)


def exchange(
    server: HubServer, raw: bytes, *, source: str = "127.0.0.1", timeout: float = WAIT
) -> tuple[int, Any]:
    """Send raw bytes, read the answer to the end: ``(status, JSON body)``."""
    with socket.create_connection(("127.0.0.1", server.port), timeout, (source, 0)) as sock:
        sock.sendall(raw)
        data = read_all(sock)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head, "the hub closed the connection without answering"
    try:
        return int(head.split()[1]), json.loads(body)
    except ValueError as exc:
        raise AssertionError(f"not the contract's JSON: {data[:500]!r}") from exc


def read_all(sock: socket.socket) -> bytes:
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def stored_events(server: HubServer, project: str) -> list[dict[str, Any]]:
    status, answer = server.request("GET", f"/api/events?project={project}&limit=1000")
    assert status == 200
    events: list[dict[str, Any]] = answer["events"]
    return events


def assert_refused(status: int, answer: Any, expected: int, code: str) -> None:
    """A refusal in the contract's shape."""
    assert (status, answer["success"], answer["error"]["code"]) == (expected, False, code), answer
    assert set(answer["error"]) == {"code", "message", "details"}


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def hub(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[HubServer]:
    """The hub on each store, one gevent worker, limits that the tests can reach quickly."""
    env = {"HUB_BODY_TIMEOUT": "1", "HUB_LOG_LEVEL": "WARNING"}
    if request.param == "redis":
        redis_server = request.getfixturevalue("redis")
        env["HUB_STORE_URL"] = redis_server.url(prefix=f"adv-{tmp_path.name}")
    server = HubServer(tmp_path / "hub", env=env).start()
    yield server
    server.stop()
