"""Two hubs (gunicorn, two gevent workers each) on one Redis, clients on both, over sockets.

What scale-out has to keep: a client may be served by any worker of any
instance and still gets every event of its subscription once, in order; a
delivery is stored once whichever instance it reaches; a worker killed with
``kill -9`` or a Redis restart costs the clients a reconnect at most, never
an event.  Instance B polls its log only every 30 s, so what reaches B's
clients sooner came through the Redis listener.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import http.client
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websocket

from tests.conftest import ROOT, TIMEOUT_FACTOR
from tests.e2e.server import HubServer
from tests.e2e.wsclient import WAIT, close_code, connect, receive, subscribe, wait_for
from tests.redis_server import RedisServer

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

ROUTE = "/project-dashboard/api/webhooks/deployment"
#: No rate limits in these tests: they are about delivery, and every sender is 127.0.0.1.
UNLIMITED = {"HUB_INGEST_RATE": "0", "HUB_INGEST_ADDRESS_RATE": "0", "HUB_WS_CONNECT_RATE": "0"}


def start_pair(redis: RedisServer, workdir: Path, prefix: str) -> tuple[HubServer, HubServer]:
    url = redis.url(prefix=prefix)
    a = HubServer(workdir / "a", env={"HUB_STORE_URL": url, **UNLIMITED}, workers=2)
    b = HubServer(
        workdir / "b",
        env={"HUB_STORE_URL": url, "HUB_TAIL_INTERVAL": "30", **UNLIMITED},
        workers=2,
    )
    return a.start(), b.start()


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def pair(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[HubServer, HubServer]]:
    a, b = start_pair(redis_server, tmp_path_factory.mktemp("pair"), f"pair-{uuid.uuid4().hex}")
    yield a, b
    a.stop()
    b.stop()


def log_event(project: str, index: int, deployment: str = "d") -> dict[str, Any]:
    return {
        "type": "log_entry",
        "project": project,
        "deployment_id": deployment,
        "message": f"{project} {index}",
    }


def stored_ids(server: HubServer, project: str) -> list[str]:
    ids: list[str] = []
    since = ""
    while True:
        status, page = server.request("GET", f"/api/events?project={project}&limit=1000{since}")
        assert status == 200, page
        ids += [e["id"] for e in page["events"]]
        if page["next_cursor"] is None:
            return ids
        since = f"&since={page['next_cursor']}"


class Follower(threading.Thread):
    """A WebSocket client of one project that, when cut off, reconnects with ``since``.

    It takes the servers in turn, so a client cut off from one instance
    resumes on the other; it stops once it has seen ``until`` (when set).
    """

    def __init__(self, servers: list[HubServer], project: str) -> None:
        super().__init__(daemon=True)
        self.servers = servers
        self.project = project
        self.ids: list[str] = []
        self.recovered: list[bool] = []
        self.connections = 0
        self.subscribed = threading.Event()
        self.ws: websocket.WebSocket | None = None
        self.until: str | None = None
        self.stop = threading.Event()

    def done(self) -> bool:
        return self.until is not None and bool(self.ids) and self.ids[-1] >= self.until

    def run(self) -> None:
        while not (self.stop.is_set() or self.done()):
            server = self.servers[self.connections % len(self.servers)]
            self.connections += 1
            with contextlib.suppress(websocket.WebSocketException, OSError):
                self._follow(server)
            time.sleep(0.1)

    def _follow(self, server: HubServer) -> None:
        ws = self.ws = connect(server)
        try:
            frame: dict[str, Any] = {"type": "subscribe_project", "project": self.project}
            if self.ids:
                frame["since"] = self.ids[-1]
            subscribed, events, _ = subscribe(ws, frame)
            if self.ids:
                self.recovered.append(subscribed["recovered"])
            self.ids += [e["id"] for e in events]
            self.subscribed.set()
            ws.settimeout(0.5)
            while not (self.stop.is_set() or self.done()):
                try:
                    item = receive(ws)
                except websocket.WebSocketTimeoutException:
                    continue
                if item["type"] == "event":
                    self.ids.append(item["event"]["id"])
        finally:
            with contextlib.suppress(websocket.WebSocketException, OSError):
                ws.close(timeout=1)


@contextlib.contextmanager
def following(servers: list[HubServer], project: str, count: int) -> Iterator[list[Follower]]:
    """``count`` followers of ``project``, spread over ``servers``, all subscribed."""
    followers = [
        Follower(servers[i % len(servers) :] + servers[: i % len(servers)], project)
        for i in range(count)
    ]
    for follower in followers:
        follower.start()
    try:
        for follower in followers:
            assert follower.subscribed.wait(WAIT), "a follower could not subscribe"
        yield followers
    finally:
        for follower in followers:
            follower.stop.set()
        for follower in followers:
            follower.join(WAIT)


def finish(followers: list[Follower], last_id: str) -> None:
    for follower in followers:
        follower.until = last_id
    wait_for(
        lambda: all(f.done() for f in followers),
        "every follower to see the last event",
        timeout=60 * TIMEOUT_FACTOR,
    )


def deliver(servers: list[HubServer], body: Any, key: str) -> list[str]:
    """Post until accepted, as a careful sender does: a cut connection is retried, same key."""
    for attempt in range(10):
        server = servers[attempt % len(servers)]
        try:
            status, answer = server.post_json(ROUTE, body, {"Idempotency-Key": key})
        except (ConnectionError, OSError, http.client.HTTPException):  # its worker was killed
            continue  # mid-request, before or while it answered
        assert status == 200, answer
        ids: list[str] = answer["ids"]
        return ids
    raise AssertionError(f"delivery {key} was never accepted")


def post_all(servers: list[HubServer], project: str, count: int, senders: int = 4) -> list[str]:
    """Post ``count`` events from ``senders`` threads, alternating between the servers."""

    def send(sender: int) -> list[str]:
        ids = []
        for index in range(sender, count, senders):
            first = index % len(servers)
            ids += deliver(
                servers[first:] + servers[:first], log_event(project, index), f"{project}-{index}"
            )
        return ids

    with concurrent.futures.ThreadPoolExecutor(senders) as pool:
        return sorted(itertools.chain.from_iterable(pool.map(send, range(senders))))


def test_events_posted_to_either_instance_reach_every_client_once_in_order(
    pair: tuple[HubServer, HubServer],
) -> None:
    """Clients on both instances (four workers) see all 400 events once, in id order."""
    a, b = pair
    with following([b, a], "cross", 8) as followers:
        sent = post_all([a, b], "cross", 400)
        finish(followers, sent[-1])
    for follower in followers:
        assert follower.ids == sent
    assert stored_ids(b, "cross") == sent == stored_ids(a, "cross")
    status, view = b.request("GET", "/api/deployments/d")
    assert (status, view["log_lines"]) == (200, 400)


def test_one_delivery_posted_to_both_instances_at_once_is_stored_once(
    pair: tuple[HubServer, HubServer],
) -> None:
    a, b = pair
    barrier = threading.Barrier(8)

    def deliver(attempt: int, key: str) -> tuple[int, Any]:
        barrier.wait()
        server = (a, b)[attempt % 2]
        body = {"events": [log_event("once", 0), log_event("once", 1)]}
        return server.post_json(ROUTE, body, {"Idempotency-Key": key})

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        for round_ in range(5):
            key = f"delivery-{round_}"
            answers = list(pool.map(lambda i, k=key: deliver(i, k), range(8)))
            assert {status for status, _ in answers} == {200}
            assert len({tuple(answer["ids"]) for _, answer in answers}) == 1
            assert sorted(answer["duplicate"] for _, answer in answers) == [False] + [True] * 7
    assert len(stored_ids(a, "once")) == 10


def worker_pids(server: HubServer) -> list[int]:
    assert server.process is not None
    master = server.process.pid
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == master:
                pids.append(int(stat.parent.name))
    return pids


def serving_worker(server: HubServer, ws: websocket.WebSocket) -> int:
    """The pid of the worker holding the server side of ``ws``'s TCP connection."""
    client_port = ws.sock.getsockname()[1]
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = (int(address.split(":")[1], 16) for address in fields[1:3])
        if (local, remote) == (server.port, client_port):
            inode = fields[9]
    assert inode is not None, "the server side of the connection is not in /proc/net/tcp"
    for pid in worker_pids(server):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                if os.readlink(fd) == f"socket:[{inode}]":
                    return pid
    raise AssertionError("no worker holds the connection")


def test_clients_of_a_worker_killed_mid_stream_resume_elsewhere_without_a_gap(
    pair: tuple[HubServer, HubServer],
) -> None:
    a, b = pair
    with (
        following([a, b], "killed", 6) as followers,
        concurrent.futures.ThreadPoolExecutor(1) as pool,
    ):
        assert followers[0].ws is not None  # the first follower starts on A
        victim = serving_worker(a, followers[0].ws)
        sender = pool.submit(post_all, [a, b], "killed", 300, 2)
        wait_for(lambda: all(len(f.ids) >= 20 for f in followers), "the stream to be flowing")
        os.kill(victim, signal.SIGKILL)
        sent = sender.result(timeout=120 * TIMEOUT_FACTOR)
        finish(followers, sent[-1])
    assert followers[0].connections > 1, "the killed worker's client never reconnected"
    for follower in followers:
        assert follower.ids == sent
        assert all(follower.recovered)
    wait_for(
        lambda: len(worker_pids(a)) == 2 and victim not in worker_pids(a),
        "gunicorn to replace the worker",
    )


@pytest.fixture
def aof_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis", appendonly=True).start()
    yield server
    server.stop()


def reconnects(server: HubServer) -> float:
    """``hub_redis_reconnects_total`` as ``/metrics`` reports it, all workers added up."""
    status, text = server.request("GET", "/metrics")
    assert status == 200
    lines = [line for line in text.splitlines() if line.startswith("hub_redis_reconnects_total")]
    return sum(float(line.split()[-1]) for line in lines)


def test_redis_restarted_mid_stream_loses_nothing_and_refuses_while_away(
    aof_redis: RedisServer, tmp_path: Path
) -> None:
    """While Redis is away ingest answers 503; afterwards clients have every stored event."""
    a, b = start_pair(aof_redis, tmp_path, "restart")
    accepted: list[list[str]] = []
    refused: list[int] = []
    stop = threading.Event()

    def send() -> None:
        for index in itertools.count():
            if stop.is_set():
                return
            body = {"events": [log_event("restart", index * 3 + k) for k in range(3)]}
            status, answer = (a, b)[index % 2].post_json(ROUTE, body)
            if status == 200:
                accepted.append(answer["ids"])
            else:
                assert status == 503, answer
                assert answer["error"]["code"] == "backend_unavailable"
                refused.append(index)
            time.sleep(0.01)

    try:
        with following([b, a], "restart", 4) as followers:
            sender = threading.Thread(target=send, daemon=True)
            sender.start()
            wait_for(lambda: len(accepted) >= 20, "events before the outage")
            aof_redis.stop()
            wait_for(lambda: len(refused) >= 3, "ingest to refuse while Redis is away")
            assert a.request("GET", "/readyz")[0] == 503
            assert b.request("GET", "/readyz")[0] == 503
            aof_redis.start()
            wait_for(lambda: a.request("GET", "/readyz")[0] == 200, "the hub to be ready again")
            count = len(accepted)
            wait_for(lambda: len(accepted) >= count + 20, "events after the outage")
            stop.set()
            sender.join(WAIT)
            stored = stored_ids(a, "restart")
            finish(followers, stored[-1])
        assert len(stored) % 3 == 0, "a batch was half-written"
        assert set(itertools.chain.from_iterable(accepted)) <= set(stored)
        for follower in followers:
            assert follower.ids == stored
        wait_for(lambda: reconnects(a) >= 1, "the listener's reconnect to be counted")
    finally:
        stop.set()
        a.stop()
        b.stop()


def test_a_subscription_the_store_cannot_answer_closes_so_the_client_resubscribes(
    aof_redis: RedisServer, tmp_path: Path
) -> None:
    """A client left connected without its subscription would wait forever: it gets 1013."""
    a, b = start_pair(aof_redis, tmp_path, "refused")
    try:
        client = connect(a)
        aof_redis.stop()
        client.send(json.dumps({"type": "subscribe_project", "project": "refused"}))
        assert close_code(client) == 1013
        client.close()
        assert "subscription failed, store unavailable" in a.log()
    finally:
        aof_redis.start()
        a.stop()
        b.stop()


def test_an_ingest_instance_and_a_stream_instance_split_the_work(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    url = redis_server.url(prefix=f"roles-{uuid.uuid4().hex}")
    ingest = HubServer(
        tmp_path / "ingest", env={"HUB_STORE_URL": url, "HUB_ROLE": "ingest", **UNLIMITED}
    ).start()
    stream = HubServer(
        tmp_path / "stream", env={"HUB_STORE_URL": url, "HUB_ROLE": "stream", **UNLIMITED}
    ).start()
    try:
        assert stream.post_json(ROUTE, log_event("roles", 0))[0] == 404
        with pytest.raises(websocket.WebSocketBadStatusException):
            connect(ingest)
        with following([stream], "roles", 2) as followers:
            sent = post_all([ingest], "roles", 50, senders=2)
            finish(followers, sent[-1])
        for follower in followers:
            assert follower.ids == sent
        assert stored_ids(stream, "roles") == sent
    finally:
        ingest.stop()
        stream.stop()


def test_the_procfile_starts_an_ingest_and_a_stream_process(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """Each Procfile line, run as a process manager would (``sh -c`` with ``PORT`` set)."""
    lines = dict(line.split(": ", 1) for line in (ROOT / "Procfile").read_text().splitlines())
    url = redis_server.url(prefix=f"procfile-{uuid.uuid4().hex}")
    servers = {}
    try:
        for kind in ("ingest", "stream"):
            server = servers[kind] = HubServer(tmp_path / kind)
            env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
            env.update(PORT=str(server.port), HUB_STORE_URL=url, PYTHONPATH=str(ROOT), **UNLIMITED)
            env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
            with server.log_path.open("ab") as log:
                server.process = subprocess.Popen(
                    ["sh", "-c", lines[kind]],
                    cwd=ROOT,
                    env=env,
                    start_new_session=True,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            server.wait_ready()
        assert servers["stream"].post_json(ROUTE, {"type": "test"})[0] == 404
        assert servers["ingest"].post_json(ROUTE, {"type": "test"})[0] == 200
        with pytest.raises(websocket.WebSocketBadStatusException):
            connect(servers["ingest"])
        connect(servers["stream"]).close()
    finally:
        for server in servers.values():
            server.stop()
