"""Events kept compactly read back exactly, and stores of the layout before are upgraded."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from ledger.events import Event, compact_payload
from ledger.filters import Filter
from ledger.fold import Fold
from ledger.ids import make_event_id
from ledger.search import LogSearch, parse_query
from storage import sqlite_store, sqlite_version
from storage.bodies import event_of, unpack
from storage.redis_life import unpack_life
from storage.redis_store import LAYOUT, RedisStore
from storage.sqlite_store import SqliteStore
from storage.store import Batch, Store
from storage.url import StoreURL
from tests.integration.conftest import StoreFactory
from tests.integration.test_log_analysis_contract import ev, failed_run, store_all
from tests.redis_server import RedisServer

#: Texts whose lines join back into them, and texts whose lines do not (the body keeps those).
MESSAGES = (
    "one line",
    "two\nlines",
    "crlf\r\nline",
    "ends in a newline\n",
    "\n\nblank lines first",
    "a line\u2028separator",
    "tab\tand \x1b[31mcolour\x1b[0m",
)


def logged(deployment: str = "d1") -> list[Any]:
    events = [ev(deployment, "deployment_started", "01T10:00:00.000")]
    events += [
        ev(deployment, "log_entry", f"01T10:00:{i + 1:02d}.000", message=text, job="build")
        for i, text in enumerate(MESSAGES)
    ]
    events.append(ev(deployment, "log_entry", "01T10:00:30.000", logs="from logs\nkey"))
    failed = {"step_name": "b / c", "status": "failed", "error": "boom\nat 3"}
    events.append(ev(deployment, "step_completed", "01T10:00:31.000", **failed))
    return events


def test_every_event_reads_back_as_it_was_stored(store: Store) -> None:
    sent = logged()
    ids = store.append(Batch(sent)).ids
    expected = [e.with_(id=i).to_dict() for e, i in zip(sent, ids, strict=True)]
    assert [e.to_dict() for _, e in store.read_after(0, 100)] == expected
    page = store.events(project="web", deployment_id=None, since=None, limit=100)
    assert page.items == expected
    history = store.history(Filter(deployment_id="d1"), None, store.last_seq(), 100)
    assert [e.to_dict() for e in history.events] == expected
    lines = store.logs("d1", job=None, step=None, after=None, limit=100).items
    assert [line["message"] for line in lines][:2] == ["one line", "two"]


def test_pruned_lines_leave_the_search(store_factory: StoreFactory) -> None:
    store = store_factory(retention_max_events=7)
    store_all(store, failed_run("old", 1, "Error: needle in old"))
    store_all(store, failed_run("new", 2, "Error: needle in new"))
    store.append(Batch([ev("new", "log_entry", "02T11:00", message="needle again")]))
    assert store.prune() > 0
    found = store.search_logs(LogSearch(parse_query("needle")), limit=10, cursor=None)
    assert {hit["deployment_id"] for hit in found.items} == {"new"}


def to_schema_1(path: str, events: list[dict[str, Any]]) -> None:
    """Rewrite a file as schema 1 kept it: each body the wire shape without its id, and the
    search index holding its text."""
    db = sqlite3.connect(path)
    with db:
        for event in events:
            seq = int(event.pop("id").rsplit("-", 1)[1])
            db.execute("UPDATE events SET body = ? WHERE seq = ?", (orjson.dumps(event), seq))
        db.execute("DROP TABLE log_search")
        db.execute(
            "CREATE VIRTUAL TABLE log_search USING fts5("
            "words, tokenize='unicode61 remove_diacritics 0', columnsize=0)"
        )
        db.execute("INSERT INTO log_search (rowid, words) SELECT line, message FROM log_lines")
        db.execute("DELETE FROM meta WHERE key = 'schema'")
    db.close()


def test_a_schema_1_file_is_upgraded_in_place(tmp_path: Path) -> None:
    path = str(tmp_path / "hub.db")
    store = SqliteStore(path)
    store.append(Batch(logged("d1")))
    store_all(store, failed_run("d2", 2, "Error: needle"))
    before = [e.to_dict() for _, e in store.read_after(0, 100)]
    store.close()
    to_schema_1(path, [dict(e) for e in before])

    upgraded = SqliteStore(path)
    assert [e.to_dict() for _, e in upgraded.read_after(0, 100)] == before
    found = upgraded.search_logs(LogSearch(parse_query("needle")), limit=10, cursor=None)
    assert [hit["deployment_id"] for hit in found.items] == ["d2"]
    failure = upgraded.failure("d2")
    assert failure is not None
    assert failure["line"]["text"] == "Error: needle"  # type: ignore[index]
    upgraded.close()

    db = sqlite3.connect(path)
    assert db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() == (
        str(sqlite_version.SCHEMA_VERSION),
    )
    bodies = [orjson.loads(body) for (body,) in db.execute("SELECT body FROM events")]
    assert all(set(body) <= {"t", "q", "a", "l"} for body in bodies)
    assert sum("l" in body for body in bodies) == 6  # the messages lines join back into
    assert (
        "content=''"
        in db.execute("SELECT sql FROM sqlite_schema WHERE name = 'log_search'").fetchone()[0]
    )
    db.close()
    again = SqliteStore(path)  # upgraded once: nothing is indexed twice
    found = again.search_logs(LogSearch(parse_query("needle")), limit=10, cursor=None)
    assert len(found.items) == 1
    assert [e.to_dict() for _, e in again.read_after(0, 100)] == before
    again.close()


def test_an_upgrade_that_fails_half_way_leaves_the_file_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(tmp_path / "hub.db")
    store = SqliteStore(path)
    store.append(Batch(logged("d1")))
    before = [e.to_dict() for _, e in store.read_after(0, 100)]
    store.close()
    to_schema_1(path, [dict(e) for e in before])
    packed = 0

    def failing(*args: Any) -> bytes:
        nonlocal packed
        packed += 1
        if packed > 3:
            raise sqlite3.OperationalError("disk I/O error")
        return sqlite_store.pack(*args)

    with monkeypatch.context() as patch:
        patch.setattr(sqlite_store, "pack", failing)
        with pytest.raises(sqlite_store.StoreUnavailable):
            SqliteStore(path)
    db = sqlite3.connect(path)
    assert db.execute("SELECT count(*) FROM meta WHERE key = 'schema'").fetchone() == (0,)
    assert "type" in orjson.loads(db.execute("SELECT body FROM events").fetchone()[0])
    db.close()
    upgraded = SqliteStore(path)
    assert [e.to_dict() for _, e in upgraded.read_after(0, 100)] == before
    upgraded.close()


def old_body(event: Event) -> bytes:
    return orjson.dumps({"timestamp": event.timestamp, "payload": compact_payload(event.payload)})


def to_layout_1(client: redis.Redis, prefix: str) -> None:
    """Rewrite a Redis store as the layout before lists kept it: bodies under long keys,
    log entries with their whole id, replay entries whole, each deployment's replay and
    log lines in streams of its own, its lifecycle with ids, its fold in its hash, and a
    set of deployments by last seq."""
    log = f"{prefix}log"
    entries = client.xrange(log)
    client.delete(log)
    for entry_id, fields in entries:
        event = event_of(
            unpack(fields[b"b"]),
            event_type=fields[b"t"].decode(),
            project="",
            deployment_id=None,
            event_id="",
        )
        fields[b"b"] = old_body(event)
        fields[b"i"] = make_event_id(int(fields.pop(b"e")), int(entry_id.split(b"-")[0])).encode()
        client.xadd(log, fields, id=entry_id)
        if b"d" in fields:
            client.xadd(f"{prefix}ds:{fields[b'd'].decode()}", fields, id=entry_id)
    for key in client.keys(f"{prefix}de:*") + client.keys(f"{prefix}ln:*"):
        deployment = key.decode().split(":", 2)[2]
        if key.decode().startswith(f"{prefix}ln:"):
            for raw in client.lrange(key, 0, -1):
                line, event_id, *rest = orjson.loads(raw)
                fields = {"l": orjson.dumps(rest), "e": event_id}
                client.xadd(f"{prefix}logs:{deployment}", fields, id=f"{line}-0")
        client.delete(key)
    for key in client.keys(f"{prefix}life:*"):
        entries = []
        for raw in client.lrange(key, 0, -1):
            seq, kind, project, body = unpack_life(raw)
            event = event_of(body, event_type=kind, project="", deployment_id=None, event_id="")
            event_id = make_event_id(int(client.hget(f"{prefix}meta", "epoch")), seq)
            entries.append(orjson.dumps([event_id, kind, project, orjson.loads(old_body(event))]))
        client.delete(key)
        client.rpush(key, *entries)
    for key in client.keys(f"{prefix}fold:*"):
        deployment = key.decode().split(":", 2)[2]
        client.hset(f"{prefix}dep:{deployment}", "fold", client.get(key))
        client.zadd(
            f"{prefix}lastseq",
            {deployment: int(client.hget(f"{prefix}dep:{deployment}", "last_seq"))},
        )
        client.delete(key)
    client.hdel(f"{prefix}meta", "layout")


@pytest.mark.redis
def test_a_redis_store_of_the_layout_before_lists_is_moved_into_them(
    redis_server: RedisServer,
) -> None:
    url = StoreURL.parse(redis_server.url(prefix=f"layout-{uuid.uuid4().hex}"))
    store = RedisStore(url)
    store.append(Batch(logged("d1")))
    store_all(store, failed_run("d2", 2, "Error: needle"))

    def everything(store: Store) -> list[Any]:
        return [
            [e.to_dict() for _, e in store.read_after(0, 100)],
            store.events(project=None, deployment_id="d1", since=None, limit=100).items,
            store.events(project="web", deployment_id=None, since=None, limit=100).items,
            store.history(Filter(deployment_id="d2"), None, store.last_seq(), 100).events,
            store.logs("d1", job=None, step=None, after="2", limit=3),
            store.logs("d2", job=None, step=None, after=None, limit=100),
            store.get_deployment("d1"),
            store.failure("d2"),
        ]

    before = everything(store)
    store.close()
    client = redis_server.client()
    to_layout_1(client, url.prefix + ":")
    assert client.type(f"{url.prefix}:logs:d1") == b"stream"
    assert client.hget(f"{url.prefix}:dep:d1", "fold")

    upgraded = RedisStore(url)
    assert everything(upgraded) == before
    refolded = upgraded._stored_from_lifecycle("d1")  # from lifecycle entries written before
    assert refolded is not None
    assert refolded.fold == Fold.loads(client.hget(f"{url.prefix}:dep:d1", "fold"))
    found = upgraded.search_logs(LogSearch(parse_query("needle")), limit=10, cursor=None)
    assert [hit["deployment_id"] for hit in found.items] == ["d2"]
    assert not client.keys(f"{url.prefix}:ds:*")
    assert not client.keys(f"{url.prefix}:logs:*")
    assert client.hget(f"{url.prefix}:meta", "layout") == LAYOUT
    assert not client.exists(f"{url.prefix}:lastseq")
    upgraded.append(Batch([ev("d1", "log_entry", "03T10:00", message="after the move")]))
    lines = upgraded.logs("d1", job=None, step=None, after=None, limit=100).items
    assert lines[-1]["message"] == "after the move"
    upgraded.close()


@pytest.mark.redis
def test_lifecycle_entries_deflated_or_as_written_before_fold_the_same(
    redis_server: RedisServer,
) -> None:
    """Lifecycle entries are kept deflated, a fraction of their JSON; entries written
    before as JSON fold into the same deployment."""
    url = StoreURL.parse(redis_server.url(prefix=f"life-{uuid.uuid4().hex}"))
    store = RedisStore(url)
    try:
        store_all(store, failed_run("d2", 2, "Error: needle"))
        client = redis_server.client()
        key = f"{store.prefix}life:d2"
        kept = client.lrange(key, 0, -1)
        plain = [orjson.dumps(list(unpack_life(raw))) for raw in kept]
        assert kept
        assert all(raw[:1].isdigit() for raw in kept)
        assert sum(map(len, kept)) < sum(map(len, plain)) * 0.6
        folded = store._stored_from_lifecycle("d2")
        assert folded is not None
        client.delete(key)
        client.rpush(key, *plain)
        assert store._stored_from_lifecycle("d2") == folded
    finally:
        store.close()


def test_a_message_of_many_lines_is_stored_whole(store: Store) -> None:
    text = "\n".join(f"line {i}" for i in range(20000))
    store.append(Batch([ev("d1", "log_entry", "01T10:00", message=text)]))
    assert store.get_deployment("d1")["log_lines"] == 20000  # type: ignore[index]
    last = store.logs("d1", job=None, step=None, after="19998", limit=5).items
    assert [line["message"] for line in last] == ["line 19998", "line 19999"]
    [(_, stored)] = store.read_after(0, 10)
    assert stored.payload["message"] == text
