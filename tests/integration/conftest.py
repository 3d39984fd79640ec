"""Fixtures for the Store contract suite: one fixture, every implementation."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ledger.retention import Retention
from storage.factory import create_store
from storage.sqlite_analysis import INDEX_BATCH
from storage.sqlite_store import SqliteStore
from storage.store import Store
from storage.url import StoreURL
from tests.redis_server import RedisServer

StoreFactory = Callable[..., Store]


def open_store(
    url: str,
    *,
    retention_days: float = 0.0,
    retention_max_events: int = 0,
    group_commit: bool | None = None,
    index_batch: int = INDEX_BATCH,
) -> Store:
    """The store ``url`` names, as the app opens it; SQLite may be told to group commits,
    or to index each write's log lines at once (``index_batch=1``)."""
    retention = Retention(retention_days, retention_max_events)
    parsed = StoreURL.parse(url)
    if group_commit is not None or index_batch != INDEX_BATCH:
        assert parsed.kind != "redis"
        return SqliteStore(
            parsed.path, retention=retention, group_commit=group_commit, index_batch=index_batch
        )
    return create_store(parsed, retention=retention)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server for the session; each test keeps to its own key prefix."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture(
    params=[
        "memory",
        "sqlite",
        "sqlite-grouped",
        pytest.param("redis", marks=pytest.mark.redis),
    ]
)
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """Make stores of one kind; calling it again with the same args reopens the same data.

    ``sqlite-grouped`` is SQLite writing through its group-commit writer greenlet,
    as under gunicorn's gevent worker, its search index taking log lines in runs as
    the app's does (so the few lines of a test wait above the index's mark); plain
    ``sqlite`` indexes each write's lines at once, so that searches go through the index.
    """
    opened: list[Store] = []
    sqlite_url = f"sqlite:///{tmp_path / 'hub.db'}"
    urls = {"memory": "memory://", "sqlite": sqlite_url, "sqlite-grouped": sqlite_url}
    if request.param == "redis":
        redis = request.getfixturevalue("redis_server")
        urls["redis"] = redis.url(prefix=f"test-{uuid.uuid4().hex}")

    def make(**options: Any) -> Store:
        url = urls[request.param]
        if request.param == "sqlite-grouped":
            options = {"group_commit": True, **options}
        elif request.param == "sqlite":
            options = {"index_batch": 1, **options}
        store = open_store(url, **options)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def store(store_factory: StoreFactory) -> Store:
    return store_factory()
