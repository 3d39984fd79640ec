"""Fixtures for the Store contract suite: one fixture, every implementation."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from broadcaster.backend import Store, create_store

StoreFactory = Callable[..., Store]


@pytest.fixture(params=["memory", "sqlite"])
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """Make stores of one kind; calling it again with the same args reopens the same data."""
    opened: list[Store] = []

    def make(**options: Any) -> Store:
        url = "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'hub.db'}"
        store = create_store(url, **options)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def store(store_factory: StoreFactory) -> Store:
    return store_factory()
