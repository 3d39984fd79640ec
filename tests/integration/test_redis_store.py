"""What only the Redis store has to prove: many writers, lost data, lost replies, outages.

The contract suite (``test_store_contract.py``) already runs against Redis;
these tests add what a shared store adds: several store instances (as
several workers or hosts would hold) writing at once, Redis losing data,
Redis going away, a reply lost after Redis executed a write, and an exact
comparison with the embedded SQLite store over every captured sender body.
"""

from __future__ import annotations

import random
import re
import selectors
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from app.config import ConfigError, Settings
from app.ingest import decode_events, load_one
from ledger.errors import EventError
from ledger.events import Event
from ledger.filters import Filter
from ledger.ids import parse_event_id
from ledger.view import build_view
from server.app import create_app
from storage.redis_store import RedisStore
from storage.store import Batch, Store, StoreUnavailable
from tests.conftest import FIXTURES, load_manifest
from tests.integration.conftest import open_store
from tests.redis_server import RedisServer
from tests.unit.test_fold import STORY

pytestmark = pytest.mark.redis

RedisFactory = Callable[..., RedisStore]


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url(prefix=f"test-{uuid.uuid4().hex}")


@pytest.fixture
def make(redis_url: str) -> Iterator[RedisFactory]:
    """Store instances on one prefix, as separate workers or hosts would hold them."""
    opened: list[RedisStore] = []

    def factory(url: str = redis_url, **options: Any) -> RedisStore:
        store = open_store(url, **options)
        assert isinstance(store, RedisStore)
        opened.append(store)
        return store

    yield factory
    for store in opened:
        store.close()


def event(**body: Any) -> Event:
    return load_one(
        {"project": "web", "deployment_id": "1", "type": "log_entry", "message": "m", **body},
        "deployment",
    )


def forget(server: RedisServer, store: RedisStore) -> None:
    """Delete every key of the store, as FLUSHALL or a restart without persistence would."""
    client = server.client()
    for key in client.scan_iter(match=f"{store.prefix}*"):
        client.delete(key)


# -- the same answers as SQLite -------------------------------------------------------

ROUTES = {
    "webhooks/deployment": "deployment",
    "webhook/deployment": "summary",
    "webhook/step": "step",
    "webhook/project-status": "project_status",
}
LEGACY = {"status": "running", "runId": "", "sourceRepo": "o/site", "deployType": "static"}


def scenario() -> list[Batch]:
    """Every captured body, then the cases where the two stores could drift apart."""
    batches = []
    for entry in load_manifest():
        route = ROUTES[entry["path"].split("/api/", 1)[1]]
        try:
            events = decode_events(
                (FIXTURES / entry["file"]).read_bytes(), route, max_depth=32, max_batch=1000
            )
        except EventError:  # the bodies the hub rejects are stored by neither store
            continue
        batches.append(Batch(events, entry["headers"].get("X-GitHub-Delivery")))
    typed = [
        dict(
            type="deployment_started",
            deployment_id="d1",
            branch="main",
            commit="c1",
            timestamp="2025-08-12T11:20:00Z",
        ),
        dict(
            type="step_started",
            deployment_id="d1",
            step_name="build / compile",
            timestamp="2025-08-12T11:20:01Z",
        ),
        dict(
            type="log_entry",
            deployment_id="d1",
            job="build",
            step="compile",
            message="一\n二\n\x1b[31mthree\x1b[0m",
            timestamp="2025-08-12T11:20:02Z",
        ),
        dict(
            type="metrics_update",
            deployment_id="d1",
            metrics={"cpu_percent": 50},
            timestamp="2025-08-12T11:20:05Z",
        ),
        dict(
            type="metrics_update",
            deployment_id="d1",
            metrics={"cpu_percent": 10},
            timestamp="2025-08-12T11:20:03Z",
        ),
        dict(
            type="step_completed",
            deployment_id="d1",
            step_name="build / compile",
            step_status="failure",
            errorMessage="boom",
            timestamp="2025-08-12T11:20:09Z",
        ),
        dict(
            type="step_started",
            project="unknown",
            deployment_id="d1",
            step_name="late",
            timestamp="2025-08-12T11:19:59Z",
        ),
        dict(
            type="deployment_completed",
            deployment_id="d1",
            status="failed",
            timestamp="2025-08-12T11:20:10Z",
        ),
        dict(
            type="deployment_rollback",
            deployment_id="d2",
            from_deployment_id="d1",
            reason="red",
            timestamp="2025-08-12T11:21:00Z",
        ),
        dict(type="log_entry", project="", deployment_id="d3", message="orphan"),
        dict(type="deployment_started", project="api", deployment_id="d3", branch="dev"),
    ]
    for body in typed:
        batches.append(Batch([load_one({"project": "web", **body}, "deployment")]))
    batches.append(Batch([load_one({"type": "test", "anything": 1}, "deployment")]))
    batches.append(Batch([load_one({"project": "web", "status_type": "freeze"}, "project_status")]))
    repeat = load_one(
        {
            "project": "web",
            "deployment_id": "d1",
            "type": "log_entry",
            "message": "once",
            "event_id": "e-1",
        },
        "deployment",
    )
    batches += [Batch([repeat]), Batch([repeat, event(deployment_id="d1", message="twice")])]
    batches += [Batch([event(message="k")], "Idempotency-Key:k")] * 2
    legacy = lambda **b: load_one({"project": "site", **LEGACY, **b}, "deployment")  # noqa: E731
    batches.append(Batch([legacy(timestamp="2025-08-12T12:00:00Z")]))
    batches.append(Batch([legacy(status="success", duration="30")]))
    batches.append(
        Batch(
            [
                legacy(project="site2"),
                legacy(project="site2", status="failed"),
                legacy(project="site2", status="success"),
            ]
        )
    )
    batches.append(Batch([legacy(project="solo", status="failed", errorMessage="x")]))
    step = {"project": "site3", "step_name": "deploy", "status": "running"}
    batches.append(Batch([load_one(step, "step"), load_one({**step, "status": "success"}, "step")]))
    return batches


_ID = re.compile(r"\d{13}-(\d{12})")


def normalised(value: Any) -> Any:
    """Event ids carry each store's own epoch; compare them by seq."""
    if isinstance(value, str):
        return _ID.sub(lambda m: f"seq-{int(m[1])}", value)
    if isinstance(value, dict):  # receipt times differ between stores by nature
        return {k: "received" if k == "last_news_at" else normalised(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [normalised(v) for v in value]
    if isinstance(value, Event):
        return normalised(value.to_dict())
    return value


def everything(store: Store) -> dict[str, Any]:
    """Every answer the read API and the hub can get out of a store."""
    out: dict[str, Any] = {"projects": store.projects(), "last_seq": store.last_seq()}
    projects = [p["project"] for p in out["projects"]] + [None]
    for project in projects:
        for status in (None, "running", "success", "failure"):
            for branch in (None, "main", "dev"):
                pages, cursor = [], None
                for _ in range(50):
                    page = store.list_deployments(
                        project=project, status=status, branch=branch, limit=2, cursor=cursor
                    )
                    pages.append((page.items, page.next_cursor))
                    if (cursor := page.next_cursor) is None:
                        break
                out[f"list {project} {status} {branch}"] = pages
    ids = {
        e.get("deployment_id")
        for e in store.events(project=None, deployment_id=None, since=None, limit=1000).items
    }
    for deployment_id in sorted(i for i in ids if i):
        out[f"get {deployment_id}"] = store.get_deployment(deployment_id)
        for job in (None, "build"):
            out[f"logs {deployment_id} {job}"] = store.logs(
                deployment_id, job=job, step=None, after=None, limit=2
            ).items
        out[f"events {deployment_id}"] = store.events(
            project=None, deployment_id=deployment_id, since=None, limit=1000
        ).items
        out[f"history {deployment_id}"] = store.history(
            Filter(deployment_id=deployment_id), None, store.last_seq(), 1000
        ).events
    for project in projects[:-1]:
        out[f"history {project}"] = store.history(
            Filter(project=project), None, store.last_seq(), 1000
        ).events
        out[f"events {project}"] = store.events(
            project=project, deployment_id=None, since=None, limit=5
        ).items
    out["events"] = store.events(project=None, deployment_id=None, since=None, limit=1000).items
    out["read_after"] = store.read_after(0, 1000)
    return normalised(out)


def answer(store: Store, batch: Batch) -> Any:
    """What the store answers a batch: its ids, or the refusal's words."""
    try:
        accepted = store.append(batch)
    except EventError as refused:
        return (type(refused).__name__, refused.message, refused.details)
    return accepted.ids, accepted.duplicate


def test_every_read_answers_as_the_embedded_store_does(make: RedisFactory) -> None:
    """Captured bodies, legacy joins, repeats, unknown projects: Redis answers as SQLite."""
    embedded, shared = open_store("memory://"), make()
    try:
        for batch in scenario():
            one, two = answer(embedded, batch), answer(shared, batch)
            assert normalised(two) == normalised(one)
        assert everything(shared) == everything(embedded)
    finally:
        embedded.close()


# -- many writers ------------------------------------------------------------------------


def run_together(jobs: list[Callable[[], Any]]) -> list[Any]:
    """Run the jobs in threads released at the same instant; re-raise the first error."""
    start, results, errors = threading.Barrier(len(jobs)), [None] * len(jobs), []

    def run(index: int) -> None:
        start.wait()
        try:
            results[index] = jobs[index]()
        except Exception as exc:  # noqa: BLE001 - handed to the test thread below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    if errors:
        raise errors[0]
    return results


def test_workers_writing_one_deployment_at_once_converge_on_one_view(
    make: RedisFactory,
) -> None:
    """Six workers append a deployment's events concurrently, in shuffled order."""
    workers = [make() for _ in range(6)]
    events = [e.with_(deployment_id="c") for e in STORY]
    random.Random(7).shuffle(events)

    def worker(index: int) -> Callable[[], Any]:
        return lambda: [workers[index].append(Batch([e])) for e in events[index::6]]

    run_together([worker(i) for i in range(6)])
    view = workers[0].get_deployment("c")
    assert view is not None
    for extra in ("last_event_id", "log_lines", "metrics", "last_news_at"):
        view.pop(extra)
    assert view == {**build_view("c", STORY), "deployment_id": "c"}
    rows = (
        workers[1]
        .list_deployments(
            project="web", status=view["status"], branch="main", limit=10, cursor=None
        )
        .items
    )
    assert [r["deployment_id"] for r in rows] == ["c"]


def test_one_delivery_posted_to_many_workers_at_once_is_stored_once(make: RedisFactory) -> None:
    workers = [make() for _ in range(8)]
    batch = Batch([event(message="a"), event(message="b")], "Idempotency-Key:same")
    answers = run_together([lambda w=w: w.append(batch) for w in workers])
    assert len({tuple(a.ids) for a in answers}) == 1
    assert sorted(a.duplicate for a in answers) == [False] + [True] * 7
    assert workers[0].last_seq() == 2


# -- lost replies ------------------------------------------------------------------------


class ReplyDroppingProxy:
    """A TCP proxy to Redis that, once armed, loses the reply to the next script call.

    Redis has executed the call by then; the client only sees its connection
    drop, as after a network fault, and retries.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.armed = threading.Event()
        self.dropped = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._pipe, args=(client,), daemon=True).start()

    def _pipe(self, client: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.target_port))
        selector = selectors.DefaultSelector()
        selector.register(client, selectors.EVENT_READ, upstream)
        selector.register(upstream, selectors.EVENT_READ, client)
        drop_reply = False
        try:
            while True:
                for key, _ in selector.select(timeout=30):
                    data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                    if not data:
                        return
                    if key.fileobj is client and self.armed.is_set() and b"EVALSHA" in data:
                        self.armed.clear()
                        drop_reply = True
                    elif key.fileobj is upstream and drop_reply:
                        self.dropped += 1
                        return
                    key.data.sendall(data)
        except OSError:
            return
        finally:
            client.close()
            upstream.close()

    def close(self) -> None:
        self.server.close()


def test_a_write_whose_reply_was_lost_is_not_stored_twice(
    redis_server: RedisServer, make: RedisFactory
) -> None:
    proxy = ReplyDroppingProxy(redis_server.port)
    try:
        store = make(f"redis://127.0.0.1:{proxy.port}/0?prefix=lost-{uuid.uuid4().hex}")
        store.append(Batch([event(message="warm-up")]))
        proxy.armed.set()
        accepted = store.append(Batch([event(message="once")]))
        assert proxy.dropped == 1
        assert store.last_seq() == 2
        rows = store.read_after(0, 10)
        assert [e.payload["message"] for _, e in rows] == ["warm-up", "once"]
        assert accepted.ids == [rows[1][1].id]
    finally:
        proxy.close()


# -- lost data ---------------------------------------------------------------------------


@pytest.mark.parametrize("loss", ["everything", "the-log"])
def test_lost_data_starts_a_newer_epoch_that_clients_can_tell(
    redis_server: RedisServer, make: RedisFactory, loss: str
) -> None:
    """After FLUSHALL (or the log stream deleted) ids still increase; old ids are not ours."""
    writer, tailer = make(), make()
    old = writer.append(Batch([event(), event()])).ids
    position = tailer.last_seq()
    if loss == "everything":
        forget(redis_server, writer)
    else:
        redis_server.client().delete(f"{writer.prefix}log")
    new = make().append(Batch([event(message="after")])).ids
    assert new[0] > old[-1]
    assert parse_event_id(new[0])[0] > parse_event_id(old[0])[0]  # type: ignore[index]
    history = writer.history(Filter(project="web"), old[-1], writer.last_seq(), 100)
    assert not history.recovered
    assert new[0] in [e.id for e in history.events]
    followed = tailer.read_after(position, 100)
    assert [e.id for _, e in followed] == new
    assert writer.append(Batch([event()])).ids[0] > new[0]


def test_a_redis_that_lost_its_last_writes_starts_a_newer_epoch(
    redis_server: RedisServer, make: RedisFactory
) -> None:
    """As after a crash with ``appendfsync everysec``: the counter and the log went back."""
    store = make()
    ids = store.append(Batch([event(message=str(i)) for i in range(5)])).ids
    client = redis_server.client()
    client.set(f"{store.prefix}seq", 3)
    client.xdel(f"{store.prefix}log", "4-0", "5-0")
    again = store.append(Batch([event(message="after")])).ids
    assert parse_event_id(again[0])[0] > parse_event_id(ids[0])[0]  # type: ignore[index]
    assert again[0] > ids[-1]
    history = store.history(Filter(project="web"), ids[-1], store.last_seq(), 100)
    assert not history.recovered


def test_a_view_left_behind_by_an_outage_is_refolded_by_the_next_prune(
    redis_server: RedisServer, make: RedisFactory
) -> None:
    """Events stored, then Redis went away before the view was written: prune repairs it."""
    store = make()
    store.append(Batch([event(type="deployment_started")]))
    store.append(Batch([event(type="deployment_completed", status="success")]))
    expected = store.get_deployment("1")
    client = redis_server.client()
    client.hset(f"{store.prefix}dep:1", "view_seq", 1)  # as folded before the completion
    client.sadd(f"{store.prefix}dirty", "1")
    client.hset(f"{store.prefix}dep:1", "view", b'{"stale": true}')
    store.prune()
    assert store.get_deployment("1") == expected
    assert client.smembers(f"{store.prefix}dirty") == set()


def test_a_trimmed_replay_stream_is_not_recovered(make: RedisFactory) -> None:
    """A project stream capped by MAXLEN ~ cannot replay from before its first entry."""
    store = make(retention_max_events=10)
    ids: list[str] = []
    for start in range(0, 300, 100):
        ids += store.append(Batch([event(message=str(i)) for i in range(start, start + 100)])).ids
    since_first = store.history(Filter(project="web"), ids[0], store.last_seq(), 1000)
    assert not since_first.recovered
    recent = store.history(Filter(project="web"), ids[-3], store.last_seq(), 1000)
    assert recent.recovered
    assert [e.id for e in recent.events] == ids[-2:]


def test_prefixes_keep_stores_apart(redis_server: RedisServer, make: RedisFactory) -> None:
    one = make(redis_server.url(prefix=f"a-{uuid.uuid4().hex}"))
    two = make(redis_server.url(prefix=f"b-{uuid.uuid4().hex}"))
    one.append(Batch([event()]))
    assert (one.last_seq(), two.last_seq()) == (1, 0)
    assert two.projects() == []


# -- Redis away ----------------------------------------------------------------------------


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own, with AOF, that the test may stop and restart."""
    server = RedisServer(tmp_path / "redis", appendonly=True).start()
    yield server
    server.stop()


def test_redis_away_refuses_writes_then_resumes_where_it_was(
    own_redis: RedisServer, make: RedisFactory
) -> None:
    store = make(own_redis.url(prefix="away"))
    before = store.append(Batch([event(type="deployment_started")])).ids
    own_redis.stop()
    with pytest.raises(StoreUnavailable):
        store.append(Batch([event(message="lost")]))
    with pytest.raises(StoreUnavailable):
        store.ping()
    with pytest.raises(StoreUnavailable):
        store.read_after(0, 10)
    own_redis.start()
    store.ping()
    after = store.append(Batch([event(message="kept")])).ids
    assert after[0] > before[0]
    assert parse_event_id(after[0])[0] == store.epoch == parse_event_id(before[0])[0]  # type: ignore[index]
    assert [e.payload["message"] for _, e in store.read_after(0, 10)][1:] == ["kept"]
    history = store.history(Filter(project="web"), before[0], store.last_seq(), 10)
    assert history.recovered


def test_out_of_memory_refuses_the_whole_batch(own_redis: RedisServer, make: RedisFactory) -> None:
    """Redis refuses the script before its first write: nothing of the batch is stored."""
    store = make(own_redis.url(prefix="oom"))
    store.append(Batch([event()]))
    client = own_redis.client()
    keys = sorted(client.keys("oom:*"))
    client.config_set("maxmemory", "1")
    try:
        with pytest.raises(StoreUnavailable, match="OutOfMemory"):
            store.append(Batch([event(deployment_id=str(i)) for i in range(50)]))
    finally:
        client.config_set("maxmemory", "0")
    assert sorted(client.keys("oom:*")) == keys
    assert store.last_seq() == 1


# -- bad configuration ---------------------------------------------------------------------


def test_an_unreachable_redis_fails_start_up_clearly() -> None:
    port = socket.socket()
    port.bind(("127.0.0.1", 0))
    with port, pytest.raises(StoreUnavailable, match="Redis unreachable"):
        open_store(f"redis://127.0.0.1:{port.getsockname()[1]}/0")


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:notaport/0",
        "redis://127.0.0.1:6379/0?socket_timeout=soon",
        "redis://127.0.0.1:6379/0?no_such_option=1",
    ],
)
def test_a_malformed_redis_url_is_refused_naming_it(url: str) -> None:
    with pytest.raises(ValueError, match=r"Redis URL|port"):
        open_store(url)


def test_an_unknown_role_is_refused_naming_the_variable() -> None:
    with pytest.raises(ConfigError, match="HUB_ROLE"):
        Settings.from_env({"HUB_ROLE": "both"})


@pytest.mark.parametrize(
    ("role", "ingests", "streams"),
    [("ingest", True, False), ("stream", False, True), ("all", True, True)],
)
def test_a_role_serves_only_its_routes(
    redis_url: str, role: str, ingests: bool, streams: bool
) -> None:
    """Ingest processes take webhooks only, stream processes WebSocket/SSE only; both read."""
    app = create_app(Settings.from_env({"HUB_STORE_URL": redis_url, "HUB_ROLE": role}))
    hub = app.extensions["hub"]
    try:
        client = app.test_client()
        for prefix in ("", "/project-dashboard"):
            posted = client.post(f"{prefix}/api/webhooks/deployment", json={"type": "test"})
            assert posted.status_code == (200 if ingests else 404)
            # Without a subscription in the query the stream answers 400; absent, 404.
            assert client.get(f"{prefix}/api/stream").status_code == (400 if streams else 404)
            assert (client.get(f"{prefix}/ws").status_code == 404) is not streams
            assert client.get(f"{prefix}/api/projects").status_code == 200
        assert client.get("/readyz").status_code == 200
        assert (hub._greenlet is not None) is streams  # the tailer runs only to stream
    finally:
        hub.stop()
        app.extensions["hub_context"].store.close()
