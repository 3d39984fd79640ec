"""How each store keeps what log analysis reads: migrations, bounds, repair, the Redis filter."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest

from ledger.search import LogSearch, SearchHit, parse_query
from storage import redis_analysis, sqlite_analysis
from storage.redis_store import RedisStore
from storage.sqlite_store import SqliteStore
from storage.store import Batch, Store
from storage.url import StoreURL
from tests.integration.test_log_analysis_contract import ev, failed_run, store_all
from tests.redis_server import RedisServer


def every_page(store: Store, query: str, limit: int = 5) -> tuple[list[SearchHit], int]:
    """Every hit, page by page, and how many pages said ``truncated``."""
    hits: list[SearchHit] = []
    truncated = 0
    cursor = None
    while True:
        page = store.search_logs(LogSearch(parse_query(query)), limit=limit, cursor=cursor)
        hits += page.items
        truncated += page.truncated
        cursor = page.next_cursor
        if cursor is None:
            return hits, truncated


def many_lines(store: Store, deployments: int = 6, lines: int = 40) -> None:
    for d in range(deployments):
        store.append(
            Batch(
                [
                    ev(
                        f"d{d}",
                        "log_entry",
                        f"0{1 + d % 9}T10:{i // 60:02d}:{i % 60:02d}.000",
                        message=f"line {i} {'needle' if i % 7 == 0 else 'hay'} of d{d}",
                    )
                    for i in range(lines)
                ]
            )
        )


# -- SQLite -----------------------------------------------------------------------------------


def test_a_file_from_before_log_analysis_gets_its_index_and_failures(tmp_path: Path) -> None:
    path = str(tmp_path / "old.db")
    store = SqliteStore(path)
    store_all(store, failed_run("d1", 1, "Error: left behind"))
    store.close()
    db = sqlite3.connect(path)  # as the file was before these tables existed
    db.executescript(
        "DROP TABLE failures; DROP TABLE log_search;"
        "DELETE FROM meta WHERE key IN ('log_search_scoped', 'failures_built');"
    )
    db.close()
    reopened = SqliteStore(path)
    failure = reopened.failure("d1")
    assert failure is not None
    assert failure["line"]["text"] == "Error: left behind"  # type: ignore[index]
    found = reopened.search_logs(LogSearch(parse_query("behind")), limit=5, cursor=None)
    assert [h["deployment_id"] for h in found.items] == ["d1"]
    reopened.close()
    again = SqliteStore(path)  # filled once: nothing is indexed twice
    assert len(again.search_logs(LogSearch(parse_query("behind")), limit=5, cursor=None).items) == 1
    again.close()


def test_sqlite_search_stops_at_its_bound_and_goes_on_from_there(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = SqliteStore(":memory:")
    many_lines(store)
    expected, _ = every_page(store, "needle")
    monkeypatch.setattr(sqlite_analysis, "SEARCH_CHUNK", 4)
    monkeypatch.setattr(sqlite_analysis, "MAX_SEARCH_CANDIDATES", 8)
    # "line" is in every line; only every seventh is a needle: the candidates run out first
    hits: list[SearchHit] = []
    truncated = 0
    cursor = None
    while True:
        page = store.search_logs(LogSearch(parse_query("line needle")), limit=50, cursor=cursor)
        hits += page.items
        truncated += page.truncated
        cursor = page.next_cursor
        if cursor is None:
            break
    assert truncated > 0
    assert [h["id"] for h in hits] == [h["id"] for h in expected]


# -- Redis --------------------------------------------------------------------------------------


@pytest.fixture
def redis_store(redis_server: RedisServer) -> Any:
    store = RedisStore(StoreURL.parse(redis_server.url(prefix=f"t-{uuid.uuid4().hex}")))
    yield store
    store.close()


@pytest.mark.redis
def test_redis_search_scans_only_deployments_whose_filter_may_match(
    redis_store: RedisStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    many_lines(redis_store)
    redis_store.append(Batch([ev("rare", "log_entry", "09T10:00:00.000", message="unicorn here")]))
    scanned: list[list[str]] = []
    merge = redis_analysis.RedisLogAnalysis._merge

    def spy(self: Any, search: Any, scan: list[str], *args: Any) -> Any:
        scanned.append(sorted(scan))
        return merge(self, search, scan, *args)

    monkeypatch.setattr(redis_analysis.RedisLogAnalysis, "_merge", spy)
    first = redis_store.search_logs(LogSearch(parse_query("unicorn")), limit=5, cursor=None)
    assert [h["deployment_id"] for h in first.items] == ["rare"]
    assert scanned[-1] == ["rare"]
    assert redis_store.search_logs(LogSearch(parse_query("uni*")), limit=5, cursor=None).items
    assert scanned[-1] == ["rare"]
    redis_store.append(Batch([ev("d3", "log_entry", "09T11:00:00.000", message="a unicorn too")]))
    again = redis_store.search_logs(LogSearch(parse_query("unicorn")), limit=5, cursor=None)
    assert [h["deployment_id"] for h in again.items] == ["d3", "rare"]
    assert scanned[-1] == ["d3", "rare"]


@pytest.mark.redis
def test_redis_search_stops_at_its_bounds_and_goes_on_from_there(
    redis_store: RedisStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    many_lines(redis_store)
    expected, none_truncated = every_page(redis_store, "needle")
    assert none_truncated == 0
    assert len(expected) == 6 * 6
    monkeypatch.setattr(redis_analysis, "CHUNK", 10)
    monkeypatch.setattr(redis_analysis, "MAX_SCAN_LINES", 25)
    hits, truncated = every_page(redis_store, "needle", limit=50)
    assert truncated > 0
    assert [h["id"] for h in hits] == [h["id"] for h in expected]


@pytest.mark.redis
def test_redis_search_bounds_building_filters_too(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = RedisStore(StoreURL.parse(redis_server.url(prefix=f"t-{uuid.uuid4().hex}")))
    many_lines(store)
    monkeypatch.setattr(redis_analysis, "MAX_INDEX_LINES", 50)  # two deployments' worth
    hits, _ = every_page(store, "needle", limit=100)
    assert len(hits) == 36  # the rest were scanned instead
    store.close()


@pytest.mark.redis
def test_redis_reconcile_repairs_missing_and_stale_failure_records(
    redis_store: RedisStore, redis_server: RedisServer
) -> None:
    store_all(
        redis_store,
        failed_run("lost", 1, "Error: record lost"),
        failed_run("kept", 2, "Error: record kept"),
    )
    client = redis_server.client()
    prefix = redis_store.prefix
    client.delete(f"{prefix}fail:lost")
    client.zrem(f"{prefix}failures", "lost")
    client.hset(f"{prefix}fail:ghost", mapping={"signature": "x", "record": "{}", "row": "[]"})
    client.zadd(f"{prefix}failures", {"ghost": 1})
    assert redis_store.failure("lost") is None
    redis_store.prune()
    failure = redis_store.failure("lost")
    assert failure is not None
    assert failure["line"]["text"] == "Error: record lost"  # type: ignore[index]
    assert client.exists(f"{prefix}fail:ghost") == 0
    groups = redis_store.failures(project=None, since="", limit=10, cursor=None).items
    assert sorted(d for g in groups for d in g["deployments"]) == ["kept", "lost"]


@pytest.mark.redis
def test_redis_pruning_drops_the_word_filter(redis_server: RedisServer) -> None:
    from ledger.retention import Retention

    url = StoreURL.parse(redis_server.url(prefix=f"t-{uuid.uuid4().hex}"))
    store = RedisStore(url, retention=Retention(days=1e-9))
    store_all(store, failed_run("old", 1, "Error: soon gone"))
    assert store.search_logs(LogSearch(parse_query("gone")), limit=5, cursor=None).items
    client = redis_server.client()
    assert client.exists(f"{store.prefix}sxb:old") == 1
    store.prune()
    assert client.exists(f"{store.prefix}sxb:old") == 0
    assert client.hget(f"{store.prefix}sxu", "old") is None
    assert client.exists(f"{store.prefix}fail:old") == 0
    store.close()


@pytest.mark.redis
def test_redis_prune_builds_word_filters_ahead_of_searches(
    redis_store: RedisStore, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    many_lines(redis_store, deployments=3)
    client = redis_server.client()
    assert client.hlen(f"{redis_store.prefix}sxu") == 0
    redis_store.prune()
    assert client.hlen(f"{redis_store.prefix}sxu") == 3
    redis_store.append(Batch([ev("d1", "log_entry", "09T10:00:00.000", message="griffin")]))
    indexed: list[int] = []

    def counting(self: Any, behind: list[str], *args: Any, **kwargs: Any) -> set[str]:
        indexed.append(len(behind))
        return catch_up(self, behind, *args, **kwargs)

    catch_up = redis_analysis.RedisLogAnalysis._catch_up
    monkeypatch.setattr(redis_analysis.RedisLogAnalysis, "_catch_up", counting)
    found = redis_store.search_logs(LogSearch(parse_query("griffin")), limit=5, cursor=None)
    assert [h["text"] for h in found.items] == ["griffin"]
    assert indexed == [1]  # only d1 logged since the filters were built
