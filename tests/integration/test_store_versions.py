"""A store a newer hub wrote is refused before anything of it is read or changed.

An older hub would misread the newer layout's rows and stamp the store with
its own layout, so that the newer hub would not upgrade it again.
"""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import pytest

from app.config import Settings
from app.ingest import load_one
from app.validation import settings_problems
from storage.redis_store import LAYOUT, RedisStore
from storage.sqlite_store import SqliteStore
from storage.sqlite_version import SCHEMA_VERSION
from storage.store import Batch, StoreTooNew, StoreUnavailable
from storage.url import StoreURL
from tests.redis_server import RedisServer

NEWER = SCHEMA_VERSION + 1


def one_event() -> Batch:
    body = {"type": "log_entry", "project": "web", "deployment_id": "1", "message": "hello"}
    return Batch([load_one(body, "deployment")])


def file_of_a_newer_hub(tmp_path: Path) -> Path:
    path = tmp_path / "hub.sqlite3"
    store = SqliteStore(str(path))
    store.append(one_event())
    store.close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (str(NEWER),))
    return path


def contents(path: Path) -> list[object]:
    with sqlite3.connect(path) as db:
        return [
            db.execute("SELECT key, value FROM meta ORDER BY key").fetchall(),
            db.execute("SELECT seq, body FROM events ORDER BY seq").fetchall(),
            db.execute("SELECT deployment_id, fold FROM deployments").fetchall(),
        ]


def test_an_sqlite_file_of_a_newer_schema_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    path = file_of_a_newer_hub(tmp_path)
    before = contents(path)
    with pytest.raises(StoreTooNew, match=f"has schema {NEWER}, written by a newer hub"):
        SqliteStore(str(path))
    assert contents(path) == before


def test_the_start_up_checks_name_a_newer_file_before_any_worker_opens_it(
    tmp_path: Path,
) -> None:
    path = file_of_a_newer_hub(tmp_path)
    before = contents(path)
    problems = settings_problems(Settings(store_url=f"sqlite:///{path}"))
    assert problems == [
        f"HUB_STORE_URL: {path} has schema {NEWER}, written by a newer hub; this one reads "
        f"schema {SCHEMA_VERSION} and older: run the newer hub (the file was not changed)"
    ]
    assert contents(path) == before


def test_a_file_of_this_schema_passes_the_start_up_checks(tmp_path: Path) -> None:
    path = tmp_path / "hub.sqlite3"
    SqliteStore(str(path)).close()
    assert settings_problems(Settings(store_url=f"sqlite:///{path}")) == []


#: A key layout after this code's, as a newer hub would stamp it.
NEWER_LAYOUT = str(int(LAYOUT) + 1).encode()


def redis_store(redis_server: RedisServer) -> tuple[StoreURL, RedisStore]:
    """A store of its own prefix, open, holding one event."""
    url = StoreURL.parse(redis_server.url(prefix=f"versions-{uuid.uuid4().hex}"))
    store = RedisStore(url)
    store.append(one_event())
    return url, store


@pytest.mark.redis
def test_a_redis_store_of_a_newer_layout_is_refused_and_left_as_it_was(
    redis_server: RedisServer,
) -> None:
    url, store = redis_store(redis_server)
    prefix = store.prefix
    store.close()
    client = redis_server.client()
    client.hset(prefix + "meta", "layout", NEWER_LAYOUT)
    keys = sorted(client.scan_iter(match=prefix + "*"))
    before = {key: client.dump(key) for key in keys}
    refused = f"has key layout {int(NEWER_LAYOUT)}, written by a newer hub"
    with pytest.raises(StoreTooNew, match=refused):
        RedisStore(url)
    assert sorted(client.scan_iter(match=prefix + "*")) == keys
    assert {key: client.dump(key) for key in keys} == before


def test_an_upgrade_that_finds_a_newer_schema_refuses_it(tmp_path: Path) -> None:
    """A newer hub may stamp the file between this one's check at open and its upgrade
    (a rolling deploy): the upgrade refuses it too, instead of stamping it back."""
    path = tmp_path / "hub.sqlite3"
    store = SqliteStore(str(path))
    try:
        with sqlite3.connect(path) as db:
            db.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (str(NEWER),))
        with pytest.raises(StoreTooNew):
            store._writer.run(store._upgrade)
    finally:
        store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() == (str(NEWER),)


def test_a_schema_stamp_that_is_not_a_number_is_a_damaged_file(tmp_path: Path) -> None:
    path = tmp_path / "hub.sqlite3"
    SqliteStore(str(path)).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = 'two' WHERE key = 'schema'")
    with pytest.raises(StoreUnavailable, match="its schema version 'two' is not a number"):
        SqliteStore(str(path))


@pytest.mark.redis
def test_a_layout_upgrade_that_finds_a_newer_layout_refuses_it(
    redis_server: RedisServer,
) -> None:
    """A newer hub may upgrade the layout while this one waits for the upgrade's lock."""
    _, store = redis_store(redis_server)
    client = redis_server.client()
    try:
        client.hset(store.prefix + "meta", "layout", NEWER_LAYOUT)
        with pytest.raises(StoreTooNew):
            store._upgrade_layout()
        assert client.hget(store.prefix + "meta", "layout") == NEWER_LAYOUT
    finally:
        store.close()
