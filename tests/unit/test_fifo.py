"""The per-connection queue behaves exactly like a deque, through compactions and clears.

And a :class:`Subscriber` built on it keeps its bound on live events only,
however pushes, offers and bulk takes interleave.
"""

from __future__ import annotations

import gc
import weakref
from collections import deque

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.ingest import load_one
from broadcaster.hub import Envelope, Fifo, Subscriber

OPS = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.integers(1, 3000)),
        st.tuples(st.just("extend"), st.integers(0, 3000)),
        st.tuples(st.just("popleft"), st.integers(1, 3000)),
        st.tuples(st.just("take"), st.integers(0, 3000)),
        st.tuples(st.just("clear"), st.just(0)),
    ),
    max_size=30,
)


@given(OPS)
def test_fifo_matches_a_deque(ops: list[tuple[str, int]]) -> None:
    """Runs of thousands of appends, extends, pops and takes cross the compaction threshold."""
    fifo: Fifo[int] = Fifo()
    model: deque[int] = deque()
    counter = 0
    for op, n in ops:
        if op == "append":
            for _ in range(n):
                fifo.append(counter)
                model.append(counter)
                counter += 1
        elif op == "extend":
            items = list(range(counter, counter + n))
            fifo.extend(iter(items))  # any iterable, not only a list
            model.extend(items)
            counter += n
        elif op == "popleft":
            for _ in range(min(n, len(model))):
                assert fifo.first() == model[0]
                assert fifo.popleft() == model.popleft()
        elif op == "take":
            expected = [model.popleft() for _ in range(min(n, len(model)))]
            assert fifo.take(n) == expected
        else:
            fifo.clear()
            model.clear()
        assert len(fifo) == len(model)
        if model:
            assert fifo.first() == model[0]
    assert fifo.take(len(fifo) + 1) == list(model)
    assert len(fifo) == 0


def test_an_empty_fifo_raises_index_error() -> None:
    fifo: Fifo[str] = Fifo()
    fifo.append("a")
    assert fifo.popleft() == "a"
    try:
        fifo.popleft()
    except IndexError:
        return
    raise AssertionError("popleft on an empty Fifo must raise IndexError")


def test_take_from_an_empty_fifo_is_an_empty_list() -> None:
    fifo: Fifo[str] = Fifo()
    assert fifo.take(5) == []
    fifo.extend(["a", "b"])
    assert fifo.take(0) == []
    assert fifo.take(5) == ["a", "b"]
    assert fifo.take(5) == []
    with pytest.raises(IndexError):
        fifo.first()


class Item:
    """Something a weak reference can follow."""


def test_take_lets_the_taken_items_go() -> None:
    """Taken items are not kept alive by the queue until its next compaction."""
    fifo: Fifo[Item] = Fifo()
    items = [Item() for _ in range(4)]
    refs = [weakref.ref(item) for item in items]
    fifo.extend(items)
    del items
    assert len(fifo.take(3)) == 3
    gc.collect()
    assert [ref() is None for ref in refs] == [True, True, True, False]
    assert fifo.first() is refs[3]()


def test_take_across_the_compaction_threshold_keeps_order() -> None:
    fifo: Fifo[int] = Fifo()
    fifo.extend(range(5000))
    taken: list[int] = []
    while chunk := fifo.take(700):
        taken += chunk
        fifo.extend([])  # extending by nothing changes nothing
    assert taken == list(range(5000))


ENVELOPE = Envelope(1, load_one({"type": "test"}, "deployment"))

SUBSCRIBER_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("push"), st.integers(1, 6)),
        st.tuples(st.just("offer"), st.integers(0, 6)),
        st.tuples(st.just("take"), st.integers(0, 8)),
        st.tuples(st.just("get_nowait"), st.just(1)),
    ),
    max_size=40,
)


@given(st.integers(1, 6), SUBSCRIBER_OPS)
def test_only_live_items_count_against_maxsize_however_ops_interleave(
    maxsize: int, ops: list[tuple[str, int]]
) -> None:
    """A model queue: pushed items never count, offered ones do until taken, in any way."""
    overflows: list[Subscriber] = []
    subscriber = Subscriber(maxsize, on_overflow=overflows.append)
    model: deque[tuple[str, int]] = deque()  # (kind, serial) in queue order
    live = 0
    overflowed = False
    serial = 0
    for op, n in ops:
        if op == "push":
            for _ in range(n):
                subscriber.push(f"control {serial}")
                model.append(("pushed", serial))
                serial += 1
        elif op == "offer":
            batch = [Envelope(serial + i, ENVELOPE.event) for i in range(n)]
            subscriber.offer(batch)
            if not overflowed and batch:
                fits = max(0, min(n, maxsize - live))
                model.extend(("live", serial + i) for i in range(fits))
                live += fits
                overflowed = n > fits
            serial += n
        else:
            taken = subscriber.take(n) if op == "take" else [subscriber.get_nowait()]
            if op == "get_nowait" and not model:
                assert taken == [None]
                continue
            expected = [model.popleft() for _ in range(min(n, len(model)))]
            live -= sum(kind == "live" for kind, _ in expected)
            assert [describe(item) for item in taken] == expected
        assert subscriber.live_pending == live
        assert len(subscriber) == len(model)
        assert subscriber.overflowed == overflowed
        assert overflows == ([subscriber] if overflowed else [])


def describe(item: Envelope | str | None) -> tuple[str, int]:
    """What a queued item is, as the model above names it."""
    if isinstance(item, Envelope):
        return "live", item.seq
    assert isinstance(item, str)
    return "pushed", int(item.removeprefix("control "))


def test_take_counts_pushed_and_live_items_it_takes_right() -> None:
    """One take spanning a replay and live events frees exactly the live room it took."""
    subscriber = Subscriber(maxsize=3)
    subscriber.push("replayed 0")
    subscriber.push("replayed 1")
    subscriber.offer([ENVELOPE, ENVELOPE])
    subscriber.push("control")  # queued after the live ones, still not counted
    subscriber.offer([ENVELOPE])
    assert (len(subscriber), subscriber.live_pending) == (6, 3)
    taken = subscriber.take(3)
    assert taken == ["replayed 0", "replayed 1", ENVELOPE]
    assert (len(subscriber), subscriber.live_pending) == (3, 2)
    subscriber.offer([ENVELOPE])
    assert not subscriber.overflowed
    assert subscriber.take(10) == [ENVELOPE, "control", ENVELOPE, ENVELOPE]
    assert (len(subscriber), subscriber.live_pending) == (0, 0)
    assert subscriber.take(10) == []
    subscriber.offer([ENVELOPE, ENVELOPE, ENVELOPE])
    assert (subscriber.live_pending, subscriber.overflowed) == (3, False)


def test_an_offer_that_only_partly_fits_queues_that_part_and_overflows_once() -> None:
    slow: list[Subscriber] = []
    subscriber = Subscriber(maxsize=3, on_overflow=slow.append)
    subscriber.push("control")
    first = [Envelope(seq, ENVELOPE.event) for seq in (1, 2)]
    subscriber.offer(first)
    assert not subscriber.overflowed
    subscriber.offer([Envelope(seq, ENVELOPE.event) for seq in (3, 4, 5)])
    assert slow == [subscriber]
    assert subscriber.overflowed
    subscriber.offer([Envelope(6, ENVELOPE.event)])  # an overflowed client gets no more
    subscriber.take(1)
    subscriber.offer([Envelope(7, ENVELOPE.event)])  # not even once there is room again
    assert slow == [subscriber]
    queued = subscriber.take(10)
    assert [item.seq for item in queued if isinstance(item, Envelope)] == [1, 2, 3]


def test_an_offer_to_a_full_queue_queues_nothing_and_overflows() -> None:
    slow: list[Subscriber] = []
    subscriber = Subscriber(maxsize=1, on_overflow=slow.append)
    subscriber.offer([Envelope(1, ENVELOPE.event)])
    subscriber.offer([Envelope(2, ENVELOPE.event)])
    assert slow == [subscriber]
    assert [item.seq for item in subscriber.take(5) if isinstance(item, Envelope)] == [1]


def test_an_empty_offer_neither_queues_nor_wakes_nor_overflows() -> None:
    woken: list[None] = []
    subscriber = Subscriber(maxsize=1, on_put=lambda: woken.append(None))
    subscriber.offer([ENVELOPE])
    subscriber.offer([])
    assert (woken, subscriber.overflowed, len(subscriber)) == ([None], False, 1)


def test_one_offer_wakes_the_consumer_once() -> None:
    """A run is queued in one operation: one wake-up for its connection, not one per event."""
    woken: list[None] = []
    subscriber = Subscriber(maxsize=10, on_put=lambda: woken.append(None))
    subscriber.offer([ENVELOPE] * 4)
    assert len(woken) == 1
    assert len(subscriber) == 4
