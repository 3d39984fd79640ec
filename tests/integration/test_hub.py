"""The in-process fan-out: replay joins live with no gap and no duplicate."""

from __future__ import annotations

from typing import Any

import gevent

from app.ingest import load_one
from broadcaster.backend import Batch, Store
from broadcaster.filters import Filter
from broadcaster.hub import Envelope, Hub, Subscriber


def publish(store: Store, hub: Hub, message: str, deployment_id: str = "1") -> str:
    event = load_one(
        {"type": "log_entry", "project": "web", "deployment_id": deployment_id, "message": message},
        "deployment",
    )
    ids = store.append(Batch([event])).ids
    hub.notify()
    return ids[0]


def drain(subscriber: Subscriber) -> list[str]:
    ids = []
    while (item := subscriber.get(timeout=0.2)) is not None:
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
    hub = Hub(store)
    slow: list[Subscriber] = []
    subscriber = Subscriber(maxsize=2, on_overflow=slow.append)
    fast = Subscriber(maxsize=100)
    hub.add_filter(subscriber, Filter(project="web"), None, 10)
    hub.add_filter(fast, Filter(project="web"), None, 10)
    ids = [publish(store, hub, str(i)) for i in range(5)]
    hub.pump()
    assert slow == [subscriber]
    assert subscriber.overflowed
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
