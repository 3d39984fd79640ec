"""The in-process fan-out: replay joins live with no gap and no duplicate."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gevent
import pytest

from alerts.runner import _Watcher
from app.ingest import load_one
from broadcaster.hub import Envelope, Hub, Subscriber
from ledger.events import Event
from ledger.filters import Filter
from storage.sqlite_store import SqliteStore
from storage.store import Batch, Store


def publish(store: Store, hub: Hub, message: str, deployment_id: str = "1") -> str:
    event = load_one(
        {"type": "log_entry", "project": "web", "deployment_id": deployment_id, "message": message},
        "deployment",
    )
    ids = store.append(Batch([event])).ids
    hub.notify()
    return ids[0]


def drain(subscriber: Subscriber) -> list[str]:
    """The ids of the events queued for ``subscriber``, taken without waiting.

    Call it after :meth:`Hub.pump`, which dispatches every stored event before it
    returns: whatever was due is queued by then, so no pause is needed to see
    that nothing else comes.
    """
    ids = []
    while (item := subscriber.get_nowait()) is not None:
        assert isinstance(item, Envelope)
        ids.append(item.event.id)
    return ids


def test_replay_then_live_has_no_gap_while_publishing(store: Store) -> None:
    """A publisher greenlet runs while subscribers join at random points."""
    hub = Hub(store, tail_interval=0.01)
    hub.start()
    published: list[str] = []

    def publisher() -> None:
        for i in range(200):
            published.append(publish(store, hub, str(i)))
            gevent.sleep(0)

    runner = gevent.spawn(publisher)
    received: list[list[str]] = []
    subscribers = []
    for _ in range(5):
        gevent.sleep(0.001)
        subscriber = Subscriber(maxsize=10_000)
        history = hub.add_filter(subscriber, Filter(project="web"), None, 10_000)
        received.append([e.id for e in history.events])
        subscribers.append(subscriber)
    runner.join()
    hub.pump()  # after the tailer's pump in progress, if any: everything published is queued
    for replayed, subscriber in zip(received, subscribers, strict=True):
        replayed += drain(subscriber)
        assert replayed == published
    hub.stop()


def test_filters_route_events(store: Store) -> None:
    hub = Hub(store, tail_interval=0.01)
    mine, theirs = Subscriber(100), Subscriber(100)
    hub.add_filter(mine, Filter(deployment_id="1"), None, 10)
    hub.add_filter(theirs, Filter(deployment_id="2"), None, 10)
    wanted = publish(store, hub, "x", "1")
    publish(store, hub, "y", "2")
    hub.pump()
    assert drain(mine) == [wanted]
    assert hub.remove_filter(theirs, Filter(deployment_id="2"))
    assert not hub.remove_filter(theirs, Filter(deployment_id="2"))
    assert theirs not in hub.subscribers


def test_a_full_queue_marks_the_client_slow_without_blocking(store: Store) -> None:
    """The five events go out as one run: the slow client keeps what fitted and is told once."""
    hub = Hub(store)
    slow: list[Subscriber] = []
    subscriber = Subscriber(maxsize=2, on_overflow=slow.append)
    fast = Subscriber(maxsize=100)
    hub.add_filter(subscriber, Filter(project="web"), None, 10)
    hub.add_filter(fast, Filter(deployment_id="1"), None, 10)
    ids = [publish(store, hub, str(i)) for i in range(5)]
    hub.pump()
    assert slow == [subscriber]
    assert subscriber.overflowed
    assert drain(subscriber) == ids[:2]
    assert drain(fast) == ids


def test_control_frames_are_not_counted_against_the_queue(store: Store) -> None:
    subscriber = Subscriber(maxsize=1)
    for i in range(5):
        subscriber.push(f"frame {i}")
    assert not subscriber.overflowed
    assert subscriber.get(0) == "frame 0"


def test_a_long_replay_does_not_make_a_client_look_slow() -> None:
    """Only live events count against the queue bound, however much replay is queued."""
    subscriber = Subscriber(maxsize=2)
    for i in range(5):
        subscriber.push(f"replayed {i}")
    live = Envelope(1, load_one({"type": "test"}, "deployment"))
    subscriber.offer([live])
    subscriber.offer([live])
    assert not subscriber.overflowed
    assert subscriber.live_pending == 2
    taken = [subscriber.get_nowait() for _ in range(7)]
    assert taken[:5] == [f"replayed {i}" for i in range(5)]
    assert subscriber.get_nowait() is None
    assert subscriber.live_pending == 0
    subscriber.offer([live, live, live])
    assert subscriber.overflowed
    assert subscriber.live_pending == 2  # what fitted is still sent before the close


def test_live_events_go_straight_out_only_while_nothing_is_queued() -> None:
    """``send_now`` is offered live events while the queue is empty; what is queued goes
    first, and what it declines is queued."""
    sent: list[list[int]] = []
    accepting = [True]

    def send_now(envelopes: list[Envelope]) -> bool:
        if accepting[0]:
            sent.append([envelope.seq for envelope in envelopes])
        return accepting[0]

    subscriber = Subscriber(maxsize=10, send_now=send_now)
    event = load_one({"type": "test"}, "deployment")
    subscriber.offer([Envelope(1, event), Envelope(2, event)])
    assert sent == [[1, 2]]
    assert len(subscriber) == 0
    subscriber.push("control")
    subscriber.offer([Envelope(3, event)])  # behind the control frame: queued after it
    assert sent == [[1, 2]]
    assert subscriber.take(10) == ["control", Envelope(3, event)]
    accepting[0] = False
    subscriber.offer([Envelope(4, event)])
    assert subscriber.live_pending == 1
    assert subscriber.take(10) == [Envelope(4, event)]
    assert subscriber.live_pending == 0


def test_events_handed_over_by_a_local_write_are_dispatched_in_log_order(store: Store) -> None:
    """A write's own events skip the store read, but never overtake what others stored first."""
    hub = Hub(store)
    subscriber = Subscriber(100)
    hub.add_filter(subscriber, Filter(project="web"), None, 10)

    def stored(message: str) -> list[Any]:
        event = load_one(
            {"type": "log_entry", "project": "web", "deployment_id": "1", "message": message},
            "deployment",
        )
        return store.append(Batch([event])).stored

    other_worker = stored("written elsewhere")  # in the store, never handed over
    mine = stored("written here")
    hub.notify(mine)
    hub.pump()
    assert drain(subscriber) == [other_worker[0].id, mine[0].id]
    later = stored("next")
    hub.notify(later)
    hub.notify(mine)  # a stale hand-over (already dispatched) is ignored
    hub.pump()
    assert drain(subscriber) == [later[0].id]


def test_a_handed_over_event_is_the_event_the_store_reads_back(store: Store) -> None:
    """What the tailer takes from memory must frame exactly like what it would read."""
    event = load_one(
        {
            "type": "step_completed",
            "project": "web",
            "deployment_id": "1",
            "step_name": "build / 编译",
            "step_status": "success",
            "log": "\x1b[32mok\x1b[0m",
            "duration": "3",
        },
        "deployment",
    )
    [saved] = store.append(Batch([event])).stored
    [(seq, read)] = store.read_after(0, 10)
    assert Envelope(seq, saved).frame == Envelope(seq, read).frame


def typed(kind: str, deployment_id: str, project: str = "web") -> Event:
    """An event of ``kind`` for one deployment, with what its type requires."""
    body: dict[str, Any] = {"type": kind, "project": project, "deployment_id": deployment_id}
    if kind == "log_entry":
        body["message"] = f"line of {deployment_id}"
    elif kind.startswith("step_"):
        body.update(step_name="build / compile", step_status="success")
    elif kind == "metrics_update":
        body["metrics"] = {"p95": 3}
    elif kind == "deployment_completed":
        body["status"] = "success"
    return load_one(body, "deployment")


#: Two deployments of ``web`` interleaved (A, A, B, A, B, B, ...), several types,
#: an event of another project between them and a project-level one.
MIXED = [
    ("log_entry", "1"),
    ("step_started", "1"),
    ("log_entry", "2"),
    ("log_entry", "1"),
    ("step_started", "2"),
    ("log_entry", "2"),
    ("log_entry", "2"),
    ("step_completed", "1"),
    ("log_entry", "9"),  # project api
    ("log_entry", "1"),
    ("project_status", ""),
    ("metrics_update", "2"),
    ("step_completed", "2"),
    ("log_entry", "1"),
    ("log_entry", "1"),
    ("deployment_completed", "2"),
]
#: The runs of one project and deployment in MIXED, by index.
MIXED_RUNS = [[0, 1], [2], [3], [4, 5, 6], [7], [8], [9], [10], [11, 12], [13, 14], [15]]


def mixed_batch() -> list[Event]:
    events = []
    for kind, deployment_id in MIXED:
        if kind == "project_status":
            events.append(load_one({"project": "web", "status_type": "maintenance"}, kind))
        elif deployment_id == "9":
            events.append(typed(kind, deployment_id, project="api"))
        else:
            events.append(typed(kind, deployment_id))
    return events


def taken(subscriber: Subscriber) -> list[int]:
    """The seqs queued for ``subscriber``, in the order it would send them."""
    items = subscriber.take(1000)
    assert all(isinstance(item, Envelope) for item in items)
    return [item.seq for item in items if isinstance(item, Envelope)]


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[SqliteStore]:
    opened = SqliteStore(str(tmp_path / "hub.db"))
    yield opened
    opened.close()


@pytest.mark.parametrize("handed_over", [True, False], ids=["handed-over", "read-back"])
def test_each_subscriber_gets_exactly_what_it_wants_from_interleaved_deployments(
    sqlite_store: SqliteStore, handed_over: bool
) -> None:
    """Runs of one deployment are offered whole or event by event: same result as one by one."""
    dispatched: list[tuple[list[int], int]] = []
    hub = Hub(sqlite_store, on_dispatch=lambda run, n: dispatched.append(([e.seq for e in run], n)))
    steps = frozenset({"step_started", "step_completed"})
    filters = {
        "by project": [Filter(project="web")],
        "by deployment": [Filter(deployment_id="1")],
        "by deployment and types": [Filter(deployment_id="2", types=steps)],
        "by project and types": [Filter(project="web", types=frozenset({"log_entry"}))],
        "overlapping": [Filter(project="api"), Filter(deployment_id="1", types=steps)],
        "twice the same stream": [Filter(project="web"), Filter(deployment_id="2")],
        "by another project": [Filter(project="api")],
    }
    subscribers = {name: Subscriber(1000) for name in filters}
    for name, matches in filters.items():
        for match in matches:
            assert hub.add_filter(subscribers[name], match, None, 10).events == []
    watcher = _Watcher(1000)
    hub.watch_everything(watcher)

    accepted = sqlite_store.append(Batch(mixed_batch()))
    if handed_over:
        hub.notify(accepted.stored)
    assert hub.pump() == len(MIXED)

    seqs = {event.id: seq for seq, event in sqlite_store.read_after(0, 100)}
    stored = [(seqs[event.id], event) for event in accepted.stored]
    for name, matches in filters.items():
        wanted = [seq for seq, event in stored if any(m.matches(event) for m in matches)]
        assert taken(subscribers[name]) == wanted, name
    assert taken(watcher) == [seq for seq, event in stored if event.deployment_id is not None]

    first = stored[0][0]
    assert [seq for seq, _ in stored] == list(range(first, first + len(MIXED)))
    assert [seqs for seqs, _ in dispatched] == [
        [first + index for index in run] for run in MIXED_RUNS
    ]
    everyone = [*subscribers.values(), watcher]
    by_seq = dict(stored)
    for run, delivered in dispatched:
        assert delivered == sum(
            subscriber.wants(by_seq[seq]) for subscriber in everyone for seq in run
        )


def test_a_run_is_offered_in_one_operation_to_each_subscriber(sqlite_store: SqliteStore) -> None:
    """A run of one deployment wakes each of its subscribers once, not once per event."""
    hub = Hub(sqlite_store)
    woken: list[str] = []
    whole = Subscriber(100, on_put=lambda: woken.append("whole"))
    logs = Subscriber(100, on_put=lambda: woken.append("logs"))
    hub.add_filter(whole, Filter(deployment_id="1"), None, 10)
    hub.add_filter(logs, Filter(deployment_id="1", types=frozenset({"log_entry"})), None, 10)
    kinds = ["log_entry", "step_started", "log_entry", "log_entry", "step_completed"]
    accepted = sqlite_store.append(Batch([typed(kind, "1") for kind in kinds]))
    hub.notify(accepted.stored)
    hub.pump()
    assert sorted(woken) == ["logs", "whole"]
    assert len(taken(whole)) == 5
    assert len(taken(logs)) == 3


@pytest.fixture
def tests_of_filters(monkeypatch: pytest.MonkeyPatch) -> list[Event]:
    """Every event a Filter is tested against, in order."""
    tested: list[Event] = []
    matches = Filter.matches

    def counting(self: Filter, event: Event) -> bool:
        tested.append(event)
        return matches(self, event)

    monkeypatch.setattr(Filter, "matches", counting)
    return tested


def test_without_types_one_test_decides_the_whole_run(tests_of_filters: list[Event]) -> None:
    run = [Envelope(seq, typed(kind, "1")) for seq, kind in enumerate(["log_entry"] * 3, 1)]
    run.append(Envelope(4, typed("step_started", "1")))
    subscriber = Subscriber(10)
    subscriber.filters.append(Filter(deployment_id="1"))
    assert subscriber.select(run) == run
    assert len(tests_of_filters) == 1
    other = Subscriber(10)
    other.filters.append(Filter(project="api"))
    assert other.select(run) == []
    assert len(tests_of_filters) == 2


def test_with_types_each_event_of_the_run_is_tested(tests_of_filters: list[Event]) -> None:
    kinds = ["log_entry", "step_started", "log_entry", "step_completed"]
    run = [Envelope(seq, typed(kind, "1")) for seq, kind in enumerate(kinds, 1)]
    subscriber = Subscriber(10)
    subscriber.filters += [
        Filter(project="web", types=frozenset({"step_started"})),
        Filter(deployment_id="1", types=frozenset({"step_completed"})),
    ]
    assert [envelope.seq for envelope in subscriber.select(run)] == [2, 4]
    assert {id(event) for event in tests_of_filters} == {id(e.event) for e in run}
    untyped_too = Subscriber(10)
    untyped_too.filters += [
        Filter(project="api"),
        Filter(deployment_id="1", types=frozenset({"log_entry"})),
    ]
    assert [envelope.seq for envelope in untyped_too.select(run)] == [1, 3]
    one_typed = Subscriber(10)
    one_typed.filters.append(Filter(deployment_id="1", types=frozenset({"step_completed"})))
    assert [envelope.seq for envelope in one_typed.select(run)] == [4]


class TypeWatcher(Subscriber):
    """A subscriber whose own ``wants`` looks at the event type, with no filters."""

    def wants(self, event: Event) -> bool:
        return event.type == "step_completed"


def test_a_subscriber_with_its_own_wants_is_asked_about_each_event() -> None:
    kinds = ["log_entry", "step_completed", "log_entry"]
    run = [Envelope(seq, typed(kind, "1")) for seq, kind in enumerate(kinds, 1)]
    assert [envelope.seq for envelope in TypeWatcher(10).select(run)] == [2]


def test_writes_nobody_listens_to_are_not_kept_and_a_late_subscriber_starts_at_the_end(
    store: Store,
) -> None:
    """No subscriber: nothing is held for the tailer; a later one replays them, then gets live."""
    hub = Hub(store)
    before = [publish_batch(store, hub, str(i)) for i in range(3)]
    assert hub._recent == {}
    subscriber = Subscriber(100)
    history = hub.add_filter(subscriber, Filter(project="web"), None, 10)
    assert [event.id for event in history.events] == before
    after = publish_batch(store, hub, "live")
    hub.pump()
    assert drain(subscriber) == [after]


def publish_batch(store: Store, hub: Hub, message: str) -> str:
    """Store one event and hand it to the hub as a local write does."""
    body = {"type": "log_entry", "project": "web", "deployment_id": "1", "message": message}
    accepted = store.append(Batch([load_one(body, "deployment")]))
    hub.notify(accepted.stored)
    return accepted.ids[0]


def dispatched_runs(store: Store, fanout_delay: float) -> tuple[Hub, list[list[int]]]:
    """A started hub with one subscriber of ``web``, and the seqs of each run it dispatches."""
    runs: list[list[int]] = []
    hub = Hub(
        store,
        tail_interval=60.0,  # nothing but a local write's notify wakes the tailer
        fanout_delay=fanout_delay,
        on_dispatch=lambda run, _: runs.append([envelope.seq for envelope in run]),
    )
    hub.add_filter(Subscriber(100), Filter(project="web"), None, 0)
    hub.start()
    return hub, runs


def published(store: Store, hub: Hub, count: int, project: str = "web") -> None:
    """``count`` events stored one by one, the tailer told of each as the web app does."""
    for i in range(count):
        event = load_one(
            {"type": "log_entry", "project": project, "deployment_id": "1", "message": str(i)},
            "deployment",
        )
        hub.notify(store.append(Batch([event])).stored)


def dispatches(runs: list[list[int]], count: int) -> None:
    """Wait (5 s at most) until ``count`` runs were dispatched, only ever yielding."""
    with gevent.Timeout(5.0):
        while len(runs) < count:
            gevent.sleep(0)


def test_events_stored_during_the_fanout_delay_go_out_as_one_run(store: Store) -> None:
    """The first event after a quiet spell goes out at once; those that follow it
    within the delay wait for it to pass and then go out together (one write per
    client), in order, none lost and none twice."""
    hub, runs = dispatched_runs(store, fanout_delay=1.0)
    first = store.last_seq() + 1
    published(store, hub, 1)
    dispatches(runs, 1)
    published(store, hub, 4)
    gevent.sleep(0.05)
    assert runs == [[first]]  # held while the delay runs
    dispatches(runs, 2)
    assert runs == [[first], [first + 1, first + 2, first + 3, first + 4]]
    hub.stop()


def recorded_sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every ``gevent.sleep`` of more than nothing from now on (the tailer's waits)."""
    waits: list[float] = []
    real_sleep = gevent.sleep

    def sleep(seconds: float = 0, *args: Any) -> None:
        if seconds:
            waits.append(seconds)
        real_sleep(seconds, *args)

    monkeypatch.setattr(gevent, "sleep", sleep)
    return waits


def test_events_no_client_wanted_hold_nothing_back(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another project's events, which the one subscriber does not want, are dispatched
    to nobody: the tailer does not wait after them, so the next event of the subscriber's
    project goes out at once (a delay after them would hold it for 10 s, past the 5 s
    ``dispatches`` waits), and the tailer waits after that one only."""
    waits = recorded_sleeps(monkeypatch)
    hub, runs = dispatched_runs(store, fanout_delay=10.0)
    first = store.last_seq() + 1
    published(store, hub, 1, project="other")
    dispatches(runs, 1)
    published(store, hub, 1)
    dispatches(runs, 2)
    assert runs == [[first], [first + 1]]
    with gevent.Timeout(5.0):
        while not waits:
            gevent.sleep(0)
    assert waits == [10.0]
    hub.stop()


def test_without_a_fanout_delay_each_event_goes_out_as_it_is_stored(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tailer never waits between dispatches (only ``dispatches`` yields here)."""
    waits = recorded_sleeps(monkeypatch)
    hub, runs = dispatched_runs(store, fanout_delay=0.0)
    first = store.last_seq() + 1
    for count in range(1, 4):
        published(store, hub, 1)
        dispatches(runs, count)
    assert runs == [[first], [first + 1], [first + 2]]
    assert waits == []
    hub.stop()
