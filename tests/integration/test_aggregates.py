"""Aggregates kept as events are stored equal the aggregates recomputed from the views.

Whatever the order events arrive in, however they are split into writes,
repeated or pruned: the counters a store keeps (``ledger/aggregates.py``) are
:func:`ledger.aggregates.tally` over its current views, and the delivery
window it counts from them is the one :func:`ledger.delivery.window_of_rows`
counts from its rows, in any time zone.
"""

from __future__ import annotations

import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.ingest import load_one
from ledger.aggregates import Facts, join, row_facts, split, tally
from ledger.delivery import delivery_of_rows, outage_days, summarise_window
from ledger.environments import environments
from ledger.events import Event
from ledger.retention import Retention
from ledger.timestamps import format_timestamp
from storage import paging
from storage.redis_aggregates import AGGREGATES_VERSION, FAMILIES, decode_facts
from storage.redis_store import RedisStore
from storage.sqlite_store import SqliteStore
from storage.store import Batch
from storage.url import StoreURL
from tests.integration.arrivals import kept_events, store_checking, write_sizes
from tests.redis_server import RedisServer

BASE = datetime(2025, 3, 29, 20, 10, tzinfo=UTC)  # Berlin moves its clocks the next night
ZONES: list[tuple[tzinfo, str]] = [
    (UTC, "UTC"),
    (timezone(timedelta(hours=5, minutes=30)), "UTC+05:30"),
    (timezone(timedelta(hours=-3)), "UTC-03:00"),
    (ZoneInfo("Europe/Berlin"), "Europe/Berlin"),
]

deployment = st.fixed_dictionaries(
    {
        "project": st.sampled_from(["web", "api"]),
        "environment": st.sampled_from([None, "staging", "production"]),
        "start": st.integers(min_value=0, max_value=72 * 60),  # minutes after BASE
        "minutes": st.sampled_from([-20, 0, 3, 45, 200, 1500, 2900]),
        "only_completion": st.booleans(),  # no start known
        "outcome": st.sampled_from(["success", "failure", "cancelled", None]),
        "late": st.sampled_from([None, "success", "failure"]),  # a completion that arrives last
    }
)


def events_of(number: int, spec: dict[str, Any]) -> list[Event]:
    started = BASE + timedelta(minutes=spec["start"])
    done = started + timedelta(minutes=spec["minutes"])
    base = {"project": spec["project"], "deployment_id": f"d{number}"}
    bodies: list[dict[str, Any]] = []
    if not spec["only_completion"]:
        bodies += [
            {
                "type": "deployment_started",
                "timestamp": format_timestamp(started),
                **({"environment": spec["environment"]} if spec["environment"] else {}),
            },
            {
                "type": "step_completed",
                "step_name": "build / compile",
                "step_status": "success",
                "duration": 30,
                "timestamp": format_timestamp(started + timedelta(seconds=30)),
            },
        ]
    if spec["outcome"] or spec["only_completion"]:
        bodies.append(
            {
                "type": "deployment_completed",
                "status": spec["outcome"] or "failure",
                "timestamp": format_timestamp(done),
            }
        )
    if spec["late"]:
        bodies.append(
            {
                "type": "deployment_completed",
                "status": spec["late"],
                "timestamp": format_timestamp(done + timedelta(minutes=7)),
            }
        )
    return [load_one({**base, **body}, "deployment") for body in bodies]


Kept = SqliteStore | RedisStore


def rows(store: Kept) -> list[Any]:
    return list(paging.deployments(store, most=10_000))


def recomputed(store: Kept) -> dict[Any, int]:
    return tally(row_facts(row) for row in rows(store))


def kept_as_recomputed(store: Kept) -> None:
    assert store.aggregate_cells() == recomputed(store)
    assert store.outage_days() == outage_days(row_facts(row) for row in rows(store))


@pytest.fixture
def memory_store() -> Iterator[SqliteStore]:
    store = SqliteStore(":memory:")
    yield store
    store.close()


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def open_kept(request: pytest.FixtureRequest) -> Callable[[Retention], Kept]:
    """Open an empty store of one kind that keeps aggregates (Redis: a prefix of its own)."""
    if request.param == "sqlite":
        return lambda retention: SqliteStore(":memory:", retention=retention)
    server: RedisServer = request.getfixturevalue("redis_server")

    def make(retention: Retention) -> Kept:
        url = StoreURL.parse(server.url(prefix=f"agg-{uuid.uuid4().hex}"))
        return RedisStore(url, retention=retention)

    return make


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    specs=st.lists(deployment, min_size=1, max_size=8),
    data=st.data(),
    sizes=write_sizes,
    keep=kept_events,
)
def test_kept_aggregates_equal_the_recomputed_ones(
    open_kept: Callable[[Retention], Kept],
    specs: list[dict[str, Any]],
    data: st.DataObject,
    sizes: list[int],
    keep: int,
) -> None:
    """Any arrival order, repeats, writes of any size, then pruning by count."""
    events = [event for number, spec in enumerate(specs) for event in events_of(number, spec)]
    store_checking(open_kept(Retention(max_events=keep)), events, data, sizes, kept_as_recomputed)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    specs=st.lists(deployment, min_size=1, max_size=10),
    since_minutes=st.integers(min_value=-60, max_value=72 * 60),
    zone=st.sampled_from(ZONES),
    project=st.sampled_from([None, "web"]),
    asked=st.sampled_from([None, "*", "staging", "production"]),
)
def test_the_window_from_aggregates_is_the_window_of_the_rows(
    open_kept: Callable[[Retention], Kept],
    specs: list[dict[str, Any]],
    since_minutes: int,
    zone: tuple[tzinfo, str],
    project: str | None,
    asked: str | None,
) -> None:
    """Summed counters, the first day's deployments and the split hours read singly give
    the figures the rows give, whatever the window's start and the zone; the states of
    environments picked through indexes, and the listing of one environment, are the ones
    the rows give."""
    store = open_kept(Retention())
    try:
        for number, spec in enumerate(specs):
            store.append(Batch(events_of(number, spec)))
        start = BASE + timedelta(minutes=since_minutes, seconds=17)
        since = format_timestamp(start)
        end = BASE + timedelta(days=4)
        answer = store.delivery_window(project=project, since=since, zone=zone[0], asked=asked)
        window_rows = [
            row
            for row in paging.deployments(store, project=project, most=10_000)
            if (row.get("started_at") or "") >= since
        ]
        expected = delivery_of_rows(window_rows, asked, truncated=False)
        assert (answer.environment, answer.environments) == (
            expected.environment,
            expected.environments,
        )

        def figures(window: Any) -> dict[str, Any]:
            return summarise_window(window, start=start, end=end, zone=zone[0], zone_name=zone[1])

        assert figures(answer.window) == figures(expected.window)
        every = list(paging.deployments(store, project=project, most=10_000))
        assert store.environment_states(project=project) == (
            environments(every),
            len(every),
            False,
        )
        for name in ("staging", "production"):
            listed, cursor = [], None
            for _ in range(len(every) + 1):
                page = store.list_deployments(
                    project=project, status=None, branch=None, environment=name, limit=3,
                    cursor=cursor,
                )  # fmt: skip
                listed += page.items
                if (cursor := page.next_cursor) is None:
                    break
            assert listed == [row for row in every if row.get("environment") == name]
    finally:
        store.close()


#: What the stores of an earlier layout hold when reopened: six deployments an hour apart.
SIX_IN_PRODUCTION = [
    {"project": "web", "environment": "production", "start": 60 * n, "minutes": 5,
     "outcome": "failure" if n % 3 == 0 else "success", "late": None,
     "only_completion": False}
    for n in range(6)
]  # fmt: skip


def test_a_file_from_before_the_aggregates_is_counted_when_opened(tmp_path: Path) -> None:
    """A file without the tables, or with tables of another layout, gets them counted from
    its deployment rows once, when opened."""
    path = str(tmp_path / "hub.db")
    store = SqliteStore(path)
    for number, spec in enumerate(SIX_IN_PRODUCTION):
        store.append(Batch(events_of(number, spec)))
    store.close()
    with sqlite3.connect(path) as db:
        for table in ("deployment_facts", "aggregates", "outage_days"):
            db.execute(f"DROP TABLE {table}")
        db.execute("CREATE TABLE deployment_facts (deployment_id TEXT PRIMARY KEY, cells BLOB)")
        db.execute("UPDATE meta SET key = 'aggregates_built', value = '1' WHERE key = 'aggregates'")
    reopened = SqliteStore(path)
    try:
        kept_as_recomputed(reopened)
        assert reopened.outage_days() != {}
        listed = reopened.list_deployments(
            project=None, status=None, branch=None, environment="production", limit=10, cursor=None
        )
        assert len(listed.items) == 6
    finally:
        reopened.close()


@pytest.mark.redis
def test_a_redis_store_from_before_the_aggregates_is_counted_when_opened(
    redis_server: RedisServer,
) -> None:
    """A Redis store without the aggregates' keys, or with keys of another layout, gets
    them counted from its stored folds once, when opened."""
    url = StoreURL.parse(redis_server.url(prefix=f"agg-{uuid.uuid4().hex}"))
    store = RedisStore(url)
    for number, spec in enumerate(SIX_IN_PRODUCTION):
        store.append(Batch(events_of(number, spec)))
    client = redis_server.client()
    prefix = store.prefix
    store.close()
    doomed = [key for family in FAMILIES for key in client.scan_iter(match=prefix + family + "*")]
    assert len(doomed) > 10
    client.delete(*doomed)
    client.hset(prefix + "agg:projects", "web\x1fsuccess", 99)  # of another layout
    client.hset(prefix + "meta", "aggregates", "0")
    reopened = RedisStore(url)
    try:
        kept_as_recomputed(reopened)
        assert reopened.outage_days() != {}
        assert client.hget(prefix + "meta", "aggregates") == AGGREGATES_VERSION
        assert reopened.environment_states(project=None)[0][0]["deployments"] == 6
    finally:
        reopened.close()


def to_second_layout(client: Any, prefix: str) -> None:
    """Rewrite a store's aggregates as the second layout kept them: each deployment's facts
    as JSON in a key of its own, start sets per project too, members with whole timestamps."""
    for key in client.scan_iter(match=prefix + "dep:*"):
        deployment_id = key.decode()[len(prefix + "dep:") :]
        item = decode_facts(*client.hmget(key, "facts", "times"))
        client.hdel(key, "facts", "times")
        if item is not None:
            client.set(f"{prefix}facts:{deployment_id}", orjson.dumps(list(item)))
    for family in ("starts", "across", "backward"):
        for member, score in client.zrange(prefix + family, 0, -1, withscores=True):
            deployment_id, *_ = split(member.decode())
            facts = store_facts(client, prefix, deployment_id)
            whole = orjson.dumps([deployment_id, *facts])
            client.zrem(prefix + family, member)
            client.zadd(prefix + family, {whole: score})
            if family == "starts":
                client.zadd(f"{prefix}pstarts:{facts.project}", {whole: score})
    for key in client.scan_iter(match=prefix + "ends:*"):
        for member, score in client.zrange(key, 0, -1, withscores=True):
            deployment_id = split(member.decode())[-1]
            facts = store_facts(client, prefix, deployment_id)
            old = join(
                facts.completed_at or "",
                facts.status,
                facts.started_at or "",
                facts.environment or "",
                deployment_id,
            )
            client.zrem(key, member)
            client.zadd(key, {old: score})
    client.hset(prefix + "meta", "aggregates", "2")


def store_facts(client: Any, prefix: str, deployment_id: str) -> Facts:
    return Facts(*orjson.loads(client.get(f"{prefix}facts:{deployment_id}")))


@pytest.mark.redis
def test_a_redis_store_of_the_second_layout_reads_the_same_once_upgraded(
    redis_server: RedisServer,
) -> None:
    """A store whose aggregates have the second layout (facts in keys of their own, start
    sets per project) answers the same once opened, and then holds the current layout."""
    url = StoreURL.parse(redis_server.url(prefix=f"agg-{uuid.uuid4().hex}"))
    store = RedisStore(url)
    specs = [
        {"project": ("web", "api")[n % 2], "environment": (None, "staging", "production")[n % 3],
         "start": 47 * n, "minutes": (3, 45, 1500, -20)[n % 4],
         "outcome": ("failure", "success", "cancelled")[n % 3], "late": None,
         "only_completion": n == 5}
        for n in range(12)
    ]  # fmt: skip
    for number, spec in enumerate(specs):
        store.append(Batch(events_of(number, spec)))
    since = format_timestamp(BASE + timedelta(minutes=30))

    def answers(opened: RedisStore) -> list[Any]:
        return [
            opened.projects(),
            opened.environment_states(project=None),
            opened.environment_states(project="web"),
            *(
                opened.delivery_window(project=project, since=since, zone=zone, asked=None)
                for project in (None, "web")
                for zone, _ in ZONES
            ),
            opened.aggregate_cells(),
            opened.outage_days(),
        ]

    before = answers(store)
    client = redis_server.client()
    prefix = store.prefix
    store.close()
    to_second_layout(client, prefix)
    assert client.exists(f"{prefix}pstarts:web", f"{prefix}facts:d1") == 2
    reopened = RedisStore(url)
    try:
        assert answers(reopened) == before
        kept_as_recomputed(reopened)
        assert client.hget(prefix + "meta", "aggregates") == AGGREGATES_VERSION
        for family in ("facts:", "pstarts:"):
            assert list(client.scan_iter(match=prefix + family + "*")) == []
        for number in range(len(specs)):
            assert client.hexists(f"{prefix}dep:d{number}", "facts")
        assert not any(
            member.startswith(b"[") for member in client.zrange(prefix + "starts", 0, -1)
        )
    finally:
        reopened.close()


@pytest.mark.redis
def test_counts_moved_meanwhile_by_another_process_are_decided_again(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fold written from facts read before another process moved them is refused by the
    script, and its change decided again from the facts stored now."""
    url = StoreURL.parse(redis_server.url(prefix=f"agg-{uuid.uuid4().hex}"))
    store = RedisStore(url)
    spec = {"project": "web", "environment": "production", "start": 0, "minutes": 5,
            "outcome": "success", "late": "failure", "only_completion": False}  # fmt: skip
    first, *rest = events_of(0, spec)
    store.append(Batch([first]))
    counted = store._aggregates.counted
    reads: list[str] = []

    def read_before_the_other(deployment_id: str) -> Facts | None:
        reads.append(deployment_id)
        return None if len(reads) == 1 else counted(deployment_id)

    monkeypatch.setattr(store._aggregates, "counted", read_before_the_other)
    try:
        store.append(Batch(rest))
        assert reads == ["d0", "d0"]
        kept_as_recomputed(store)
    finally:
        store.close()


@pytest.mark.redis
def test_a_day_summed_up_before_a_write_changed_it_is_not_kept(redis_server: RedisServer) -> None:
    """A reader keeps the outage day summaries it summed up only if no write changed the
    project's days since it read them."""
    url = StoreURL.parse(redis_server.url(prefix=f"agg-{uuid.uuid4().hex}"))
    store = RedisStore(url)
    spec = {"project": "web", "environment": None, "start": 0, "minutes": 5,
            "outcome": "failure", "late": None, "only_completion": False}  # fmt: skip
    try:
        store.append(Batch(events_of(0, spec)))
        kept_as_recomputed(store)  # sums the day up and keeps it
        client = redis_server.client()
        key = f"{store.prefix}outday:web\x1f"
        before = client.hget(key, "#v")
        store.append(Batch(events_of(1, {**spec, "outcome": "success", "minutes": 9})))
        (day,) = [d for d in client.hkeys(key) if d != b"#v"]
        assert client.hget(key, day) == b""  # to be summed up again
        late = ["outday:web\x1f", before, day, "[null,null,[],null]"]
        assert store._aggregates._set_outage_days(args=[store.prefix, *late]) == 0
        assert client.hget(key, day) == b""
        kept_as_recomputed(store)
        assert client.hget(key, day) not in (b"", b"[null,null,[],null]")
    finally:
        store.close()


@pytest.mark.redis
def test_processes_writing_the_same_deployments_at_once_keep_the_counts_whole(
    redis_server: RedisServer,
) -> None:
    """Two stores on one Redis (as two hub processes) append the same deployments' events
    in opposite orders at once: their folds and counts still end up those of the views."""
    url = StoreURL.parse(redis_server.url(prefix=f"agg-{uuid.uuid4().hex}"))
    stores = [RedisStore(url), RedisStore(url)]
    specs = [
        {"project": "web", "environment": "production", "start": 7 * n, "minutes": 3 + n,
         "outcome": "failure" if n % 2 else "success", "late": "success" if n % 3 else None,
         "only_completion": False}
        for n in range(6)
    ]  # fmt: skip
    events = [event for number, spec in enumerate(specs) for event in events_of(number, spec)]
    orders = [events, list(reversed(events))]
    failed: list[BaseException] = []

    def write(store: RedisStore, order: list[Event]) -> None:
        try:
            for event in order:
                store.append(Batch([event]))
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            failed.append(exc)

    threads = [
        threading.Thread(target=write, args=(store, order))
        for store, order in zip(stores, orders, strict=True)
    ]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not failed
        stores[0].repair_views()
        kept_as_recomputed(stores[0])
        assert len(rows(stores[0])) == len(specs)
    finally:
        for store in stores:
            store.close()
