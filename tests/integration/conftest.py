"""Fixtures for the Store contract suite: one fixture, every implementation."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from storage.factory import create_store
from storage.store import Store
from tests.redis_server import RedisServer

StoreFactory = Callable[..., Store]


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
    as under gunicorn's gevent worker.
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
        store = create_store(url, **options)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def store(store_factory: StoreFactory) -> Store:
    return store_factory()
