"""The Store contract, run against every implementation (see conftest ``store_factory``)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.ingest import load_one
from ledger.events import Event
from ledger.filters import Filter
from ledger.ids import make_event_id, parse_event_id
from ledger.view import build_view
from storage.store import Batch, DeliveryConflict, Store, StoreUnavailable
from tests.integration.conftest import StoreFactory
from tests.unit.test_fold import STORY
from tests.unit.test_recorder import Book


def event(**body: Any) -> Event:
    return load_one(
        {"project": "web", "deployment_id": "1", "type": "log_entry", "message": "m", **body},
        "deployment",
    )


def append(store: Store, *events: Event, key: str | None = None) -> list[str]:
    return store.append(Batch(list(events), key)).ids


def test_ids_increase_and_encode_the_epoch(store: Store) -> None:
    ids = append(store, event(), event(), event())
    assert ids == sorted(ids)
    assert {parse_event_id(i)[0] for i in ids} == {store.epoch}  # type: ignore[index]
    assert store.last_seq() == 3


def test_read_after_returns_events_in_order(store: Store) -> None:
    ids = append(store, *[event(message=str(i)) for i in range(5)])
    rows = store.read_after(2, 10)
    assert [seq for seq, _ in rows] == [3, 4, 5]
    assert [e.id for _, e in rows] == ids[2:]
    assert [e.payload["message"] for _, e in rows] == ["2", "3", "4"]


def test_a_delivery_key_is_stored_once(store: Store) -> None:
    first = store.append(Batch([event()], "Idempotency-Key:a"))
    again = store.append(Batch([event(), event()], "Idempotency-Key:a"))
    assert (again.ids, again.duplicate, again.stored) == (first.ids, True, [])
    assert store.last_seq() == 1


@pytest.mark.parametrize("logs_after", [0, 1, 2])
def test_a_deployments_last_event_is_the_newest_of_its_batch(store: Store, logs_after: int) -> None:
    """Log lines before or after a lifecycle event of the same batch: the newest id wins."""
    story = [event(type="deployment_started"), event(message="a log line")]
    story.insert(1 + logs_after % 2, event(type="step_started", step_name="build / compile"))
    story += [event(message="more")] * (logs_after // 2)
    ids = append(store, *story)
    view = store.get_deployment("1")
    assert view is not None
    assert view["last_event_id"] == ids[-1]


def test_history_of_a_deployment_and_a_project(store: Store) -> None:
    append(store, event(), event(deployment_id="2"), event(project="api", deployment_id="3"))
    by_deployment = store.history(Filter(deployment_id="1"), None, store.last_seq(), 100)
    assert [e.deployment_id for e in by_deployment.events] == ["1"]
    by_project = store.history(Filter(project="web"), None, store.last_seq(), 100)
    assert [e.deployment_id for e in by_project.events] == ["1", "2"]
    assert by_project.recovered


def test_history_without_since_is_the_latest_events(store: Store) -> None:
    ids = append(store, *[event(message=str(i)) for i in range(10)])
    history = store.history(Filter(project="web"), None, store.last_seq(), 3)
    assert [e.id for e in history.events] == ids[-3:]


def test_history_since_returns_exactly_what_was_missed(store: Store) -> None:
    ids = append(store, *[event(message=str(i)) for i in range(6)])
    history = store.history(Filter(project="web"), ids[2], store.last_seq(), 100)
    assert [e.id for e in history.events] == ids[3:]
    assert history.recovered


def test_history_stops_at_upto(store: Store) -> None:
    ids = append(store, *[event() for _ in range(4)])
    history = store.history(Filter(project="web"), ids[0], 3, 100)
    assert [e.id for e in history.events] == ids[1:3]


@pytest.mark.parametrize(
    "since",
    ["garbage", make_event_id(1, 1), "ahead"],
    ids=["unparseable", "other-epoch", "ahead-of-newest"],
)
def test_history_from_an_unknown_point_is_not_recovered(store: Store, since: str) -> None:
    ids = append(store, event(), event())
    if since == "ahead":
        since = make_event_id(store.epoch, 99)
    history = store.history(Filter(project="web"), since, store.last_seq(), 100)
    assert not history.recovered
    assert [e.id for e in history.events] == ids


def test_history_too_long_for_the_limit_is_not_recovered(store: Store) -> None:
    ids = append(store, *[event() for _ in range(10)])
    history = store.history(Filter(project="web"), ids[0], store.last_seq(), 4)
    assert not history.recovered
    assert [e.id for e in history.events] == ids[-4:]


def test_history_filters_by_type(store: Store) -> None:
    append(store, event(), event(type="deployment_started"))
    history = store.history(
        Filter(project="web", types=frozenset({"deployment_started"})), None, store.last_seq(), 10
    )
    assert [e.type for e in history.events] == ["deployment_started"]


def test_pruning_by_count_drops_whole_deployments_and_breaks_recovery(
    store_factory: StoreFactory,
) -> None:
    store = store_factory(retention_max_events=3)
    old = append(store, event(deployment_id="old"), event(deployment_id="old"))
    new = append(store, *[event(deployment_id="new") for _ in range(3)])
    assert store.prune() == 2
    assert store.get_deployment("old") is None
    assert store.get_deployment("new") is not None
    since_old = store.history(Filter(project="web"), old[0], store.last_seq(), 100)
    assert not since_old.recovered
    assert [e.id for e in since_old.events] == new
    since_new = store.history(Filter(project="web"), new[0], store.last_seq(), 100)
    assert since_new.recovered
    later = append(store, event(deployment_id="new"))
    assert later[0] > new[-1]


def test_pruning_by_age_drops_idle_deployments(store_factory: StoreFactory) -> None:
    store = store_factory(retention_days=1e-9)
    append(store, event())
    assert store.prune() == 1
    assert (
        store.list_deployments(project=None, status=None, branch=None, limit=10, cursor=None).items
        == []
    )


def test_nothing_to_prune_is_a_no_op(store: Store) -> None:
    append(store, event())
    assert store.prune() == 0


def test_projects_events_and_logs_read_back(store: Store) -> None:
    append(store, event(type="deployment_started"), event(message="a\nb"))
    assert [p["project"] for p in store.projects()] == ["web"]
    assert len(store.events(project="web", deployment_id=None, since=None, limit=10).items) == 2
    lines = store.logs("1", job=None, step=None, after=None, limit=10).items
    assert [line["message"] for line in lines] == ["a", "b"]


def test_project_only_events_make_no_deployment(store: Store) -> None:
    append(
        store,
        load_one({"type": "test"}, "deployment"),
        load_one({"project": "web", "status_type": "x"}, "project_status"),
    )
    assert store.projects() == []
    assert store.last_seq() == 2


def test_ping_answers_only_while_the_store_can_be_read(store: Store) -> None:
    """/readyz relies on ping: it must reach the store, not merely return."""
    store.ping()
    append(store, event())
    store.close()
    with pytest.raises(StoreUnavailable):
        store.ping()


def test_sqlite_store_survives_reopening(
    store_factory: StoreFactory, request: pytest.FixtureRequest
) -> None:
    """Ids keep increasing in the same epoch after a restart."""
    if "memory" in request.node.callspec.id:
        pytest.skip("memory:// is not durable by design")
    first = store_factory()
    ids = append(first, event(), event(type="deployment_started"))
    first.close()
    second = store_factory()
    assert second.epoch == first.epoch
    more = append(second, event())
    assert more[0] > ids[-1]
    assert second.get_deployment("1") is not None
    history = second.history(Filter(project="web"), ids[0], second.last_seq(), 10)
    assert history.recovered
    assert [e.id for e in history.events] == [ids[1], more[0]]


def test_stored_view_matches_a_fresh_fold_in_any_arrival_order(
    store_factory: StoreFactory,
) -> None:
    """The store resumes its fold for in-order events and re-folds for late ones."""
    import random

    from ledger.view import build_view
    from tests.unit.test_fold import STORY

    expected = build_view("7", STORY)
    for seed in range(15):
        store = store_factory()
        ordering = STORY + STORY[:3]
        random.Random(seed).shuffle(ordering)
        for item in ordering:
            store.append(Batch([item.with_(deployment_id=f"7-{seed}")]))
        view = store.get_deployment(f"7-{seed}")
        assert view is not None
        for extra in ("last_event_id", "log_lines", "metrics", "last_news_at"):
            view.pop(extra)
        assert view == {**expected, "deployment_id": f"7-{seed}"}


def test_events_stamped_in_the_same_instant_fold_alike_in_any_order(
    store_factory: StoreFactory,
) -> None:
    """Bursts of steps sharing a timestamp, late ones among them, fold as a fresh fold does."""
    import random

    from ledger.view import build_view

    burst = [
        load_one(
            {
                "type": "step_completed",
                "project": "web",
                "deployment_id": "b",
                "step_name": f"build / step {i}",
                "step_status": "failure" if i == 7 else "success",
                "timestamp": f"2025-08-12T11:20:0{i // 4}.000Z",
            },
            "deployment",
        )
        for i in range(16)
    ]
    for seed in range(10):
        store = store_factory()
        ordering = burst + burst[5:7]
        shuffled = random.Random(seed)
        ordering.sort(key=lambda item: (item.timestamp, shuffled.random()))
        if seed % 2:  # and some arrive after the ones stamped later
            ordering.insert(len(ordering), ordering.pop(3))
        deployment = f"b-{seed}"
        for item in ordering:
            store.append(Batch([item.with_(deployment_id=deployment)]))
        view = store.get_deployment(deployment)
        assert view is not None
        for extra in ("last_event_id", "log_lines", "metrics", "last_news_at"):
            view.pop(extra)
        assert view == {**build_view(deployment, burst), "deployment_id": deployment}


# -- the ledger's properties, held by every store ------------------------------------------


def split(events: list[Event], sizes: list[int]) -> list[list[Event]]:
    """``events`` cut into consecutive writes of the given sizes (cycled)."""
    writes, at = [], 0
    while at < len(events):
        size = sizes[len(writes) % len(sizes)]
        writes.append(events[at : at + size])
        at += size
    return writes


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    ordering=st.permutations(STORY),
    repeats=st.lists(st.sampled_from(STORY), max_size=3),
    sizes=st.lists(st.integers(min_value=1, max_value=4), min_size=1, max_size=6),
)
def test_every_store_folds_any_order_and_split_as_a_fresh_fold(
    store: Store, ordering: list[Event], repeats: list[Event], sizes: list[int]
) -> None:
    """The recorder's order-independence, through each store's own persistence."""
    deployment = f"p-{uuid.uuid4().hex[:8]}"
    for write in split([e.with_(deployment_id=deployment) for e in ordering + repeats], sizes):
        store.append(Batch(write))
    view = store.get_deployment(deployment)
    assert view is not None
    for extra in ("last_event_id", "log_lines", "metrics", "last_news_at"):
        view.pop(extra)
    assert view == {**build_view("7", STORY), "deployment_id": deployment}


LEGACY_STATUSES = ("running", "success", "failed")


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    statuses=st.lists(st.sampled_from(LEGACY_STATUSES), min_size=1, max_size=8),
    sizes=st.lists(st.integers(min_value=1, max_value=3), min_size=1, max_size=4),
)
def test_every_store_joins_legacy_bodies_as_the_ledger_decides(
    store: Store, statuses: list[str], sizes: list[int]
) -> None:
    """Which legacy bodies share a deployment is the same on every store as in the ledger."""
    project = f"legacy-{uuid.uuid4().hex[:8]}"
    bodies = [
        load_one(
            {
                "project": project,
                "status": status,
                "runId": "",
                "timestamp": f"2025-08-12T11:{index:02d}:00Z",
            },
            "deployment",
        )
        for index, status in enumerate(statuses)
    ]
    book = Book()
    writes = split(bodies, sizes)
    expected = [entry.event.deployment_id for write in writes for entry in book.write(write)]
    got = [event.deployment_id for write in writes for event in store.append(Batch(write)).stored]
    assert partition(got) == partition(expected)


def partition(labels: list[str | None]) -> list[int]:
    """Which items share a label, as the index of each label's first item."""
    first: dict[str | None, int] = {}
    return [first.setdefault(label, index) for index, label in enumerate(labels)]


def test_the_event_log_says_when_it_cannot_continue_from_since(store: Store) -> None:
    ids = append(store, event(), event(), event())
    assert store.events(project=None, deployment_id=None, since=ids[0], limit=10).recovered
    for since in (make_event_id(1, 1), make_event_id(store.epoch, 10**6)):
        page = store.events(project=None, deployment_id=None, since=since, limit=10)
        assert not page.recovered
        assert [e["id"] for e in page.items] == ids  # from the start, not nothing


def test_a_delivery_key_with_another_digest_is_a_conflict_that_stores_nothing(
    store: Store,
) -> None:
    first = store.append(Batch([event()], "key-1", "digest-a"))
    assert store.append(Batch([event()], "key-1", "digest-a")).ids == first.ids
    before = store.last_seq()
    with pytest.raises(DeliveryConflict):
        store.append(Batch([event(message="other")], "key-1", "digest-b"))
    assert store.last_seq() == before


def test_history_of_every_project_holds_them_all_in_order(store: Store) -> None:
    ids = append(store, event(project="a"), event(project="b", deployment_id="2"), event())
    history = store.history(Filter(), None, store.last_seq(), 10)
    assert ([e.id for e in history.events], history.recovered) == (ids, True)
    resumed = store.history(Filter(), ids[0], store.last_seq(), 10)
    assert ([e.id for e in resumed.events], resumed.recovered) == (ids[1:], True)
    only = store.history(Filter(types=frozenset({"log_entry"})), None, store.last_seq(), 1)
    assert ([e.id for e in only.events], only.recovered) == (ids[-1:], True)
