"""In-process fan-out: the durable event log, tailed, pushed to per-client queues.

Every worker process runs one :class:`Hub`.  A single greenlet follows the
store's event log by sequence number (woken at once by a local publish, and
polling every ``tail_interval`` for events other workers stored) and offers
each event to the subscribers whose filter matches.  Each subscriber owns a
bounded queue: ``put_nowait`` never blocks, and a full queue marks the client
as too slow instead of slowing ingest or the other clients (websockets'
"per-client queues").  The frame text of an event is built once per event, not
once per client.

Replay and live join without a gap: :meth:`Hub.subscribe` catches the hub up to
the log's end, reads history up to that position and registers the subscriber
at it, all without yielding to another greenlet, so every event is either in
the replay or in the queue, never both and never neither.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import groupby
from typing import Any, Generic, NamedTuple, TypeVar

import gevent
import gevent.event
import gevent.lock
import orjson

from ledger.events import Event
from ledger.filters import ALL, Filter
from ledger.ids import parse_event_id
from storage.store import History, Store, StoreUnavailable

log = logging.getLogger(__name__)

_READ_BATCH = 1000
#: Events a worker's own writes hand to its tailer (``Hub.notify``) at most.
_RECENT_MAX = 10000

T = TypeVar("T")


@dataclass(slots=True)
class Envelope:
    """One stored event with its ``{"type": "event"}`` frame (UTF-8 JSON), built at most once."""

    seq: int
    event: Event
    _frame: bytes | None = field(default=None, repr=False)

    @property
    def frame(self) -> bytes:
        if self._frame is None:
            self._frame = orjson.dumps({"type": "event", "event": self.event.to_dict()})
        return self._frame


class _Pumped(NamedTuple):
    """What one pump did: the events it dispatched, and how many it queued to clients."""

    events: int
    delivered: int


class Fifo(Generic[T]):
    """A first-in first-out list that costs a tenth of an empty deque.

    Thousands of idle connections each hold a few queues that are empty most of
    the time; taking from the head moves an index, and the list is compacted
    once the taken part is both large and most of it.
    """

    __slots__ = ("_head", "_items")

    def __init__(self) -> None:
        self._items: list[T | None] = []
        self._head = 0

    def __len__(self) -> int:
        return len(self._items) - self._head

    def append(self, item: T) -> None:
        self._items.append(item)

    def extend(self, items: Iterable[T]) -> None:
        self._items.extend(items)

    def first(self) -> T:
        """The oldest item, left in place; raises ``IndexError`` when empty."""
        if self._head >= len(self._items):
            raise IndexError("empty")
        return self._items[self._head]  # type: ignore[return-value]  # taken slots only

    def popleft(self) -> T:
        item = self.first()
        self._items[self._head] = None  # let it go now, not at the next compaction
        self._advance(1)
        return item

    def take(self, limit: int) -> list[T]:
        """Up to ``limit`` oldest items, removed; an empty list when there are none."""
        head = self._head
        taken = self._items[head : head + limit]
        if taken:
            self._items[head : head + len(taken)] = [None] * len(taken)  # let them go now
            self._advance(len(taken))
        return taken  # type: ignore[return-value]  # only live slots were taken

    def _advance(self, count: int) -> None:
        self._head += count
        if self._head == len(self._items):
            self._items.clear()
            self._head = 0
        elif self._head > 1024 and self._head * 2 > len(self._items):
            del self._items[: self._head]
            self._head = 0

    def clear(self) -> None:
        self._items.clear()
        self._head = 0


class Subscriber:
    """One client's outgoing queue: live envelopes (bounded) and control frames.

    Live events count against ``maxsize``; replays and control frames are
    pushed past it (they are bounded by the replay limit), so that a replay is
    always queued, whole, ahead of the live events that follow it, and a long
    replay never makes a healthy client look slow.  To keep that count right,
    consumers take items only through :meth:`get`, :meth:`get_nowait` and :meth:`take`.

    ``on_put`` is called after items are queued, from whichever greenlet
    queued it: a WebSocket connection's one greenlet waits on more than this
    queue, so it is woken rather than blocked in :meth:`get`.  The queue is a
    :class:`Fifo` (gevent's ``Queue`` costs far more per connection; docs/BENCHMARKS.md).

    ``send_now``, when given, is offered live events while nothing is queued
    and they would fit the queue: it writes them at once and says so, or
    declines (they are queued then).
    Waking a connection's greenlet to take one event off a queue costs as much
    as the write itself, and an idle connection is the common case.
    """

    __slots__ = (
        "__weakref__",
        "_gets",
        "_items",
        "_on_overflow",
        "_on_put",
        "_pushed",
        "_puts",
        "_ready",
        "_send_now",
        "filters",
        "maxsize",
        "overflowed",
    )

    def __init__(
        self,
        maxsize: int,
        on_overflow: Callable[[Subscriber], None] | None = None,
        on_put: Callable[[], None] | None = None,
        send_now: Callable[[list[Envelope]], bool] | None = None,
    ) -> None:
        self.maxsize = maxsize
        self.filters: list[Filter] = []
        self.overflowed = False
        self._items: Fifo[Envelope | str] = Fifo()
        self._on_overflow = on_overflow
        self._on_put = on_put
        self._send_now = send_now
        self._ready: gevent.event.Event | None = None  # made by the first blocking get
        self._puts = 0  # items ever queued
        self._gets = 0  # items ever taken
        self._pushed: Fifo[int] = Fifo()  # queue positions of pushed items not yet taken

    def __len__(self) -> int:
        return len(self._items)

    def wants(self, event: Event) -> bool:
        """Whether to send ``event``; subclasses (the alerts' watcher) decide otherwise."""
        return any(match.matches(event) for match in self.filters)

    def select(self, run: list[Envelope]) -> list[Envelope]:
        """The envelopes of ``run`` (events of one project and one deployment) it wants.

        When only its filters decide and none names event types, the answer is
        the same for the whole run, so one test decides it; otherwise each event
        is asked about.  One filter, the usual case, is tested without the
        generators (this runs once per delivery).
        """
        if type(self).wants is Subscriber.wants:
            filters = self.filters
            if len(filters) == 1:
                if filters[0].types is None:
                    return run if filters[0].matches(run[0].event) else []
            elif all(m.types is None for m in filters):
                return run if self.wants(run[0].event) else []
        return [envelope for envelope in run if self.wants(envelope.event)]

    @property
    def live_pending(self) -> int:
        """Live events queued and not yet taken: what ``maxsize`` bounds."""
        return len(self._items) - len(self._pushed)

    def offer(self, envelopes: list[Envelope]) -> None:
        """Queue live events, or as many as fit and mark the client too slow; never blocks."""
        if self.overflowed or not envelopes:
            return
        if (
            not self._items
            and self._send_now is not None
            and len(envelopes) <= self.maxsize  # a longer run overflows, as when queued
            and self._send_now(envelopes)
        ):
            self._puts += len(envelopes)  # queued and taken at once, as far as positions go
            self._gets += len(envelopes)
            return
        room = self.maxsize - self.live_pending
        if room > 0:
            self._put(envelopes if len(envelopes) <= room else envelopes[:room])
        if len(envelopes) > room:
            self.overflowed = True
            if self._on_overflow is not None:
                self._on_overflow(self)

    def push(self, item: Envelope | str) -> None:
        """Queue a replayed event or a control frame, ahead of later live events."""
        self._pushed.append(self._puts)
        self._put([item])

    def clear(self) -> None:
        """Forget everything queued: the connection is closing and will send none of it."""
        self._gets += len(self._items)
        self._items.clear()
        self._pushed.clear()

    def _put(self, items: Sequence[Envelope | str]) -> None:
        self._puts += len(items)
        self._items.extend(items)
        if self._ready is not None:
            self._ready.set()
        if self._on_put is not None:
            self._on_put()

    def get(self, timeout: float | None = None) -> Envelope | str | None:
        """The next item to send, or ``None`` after ``timeout`` seconds."""
        if not self._items and timeout != 0:
            if self._ready is None:
                self._ready = gevent.event.Event()
            self._ready.clear()
            self._ready.wait(timeout)
        return self.get_nowait()

    def get_nowait(self) -> Envelope | str | None:
        """The next item if one is queued, else ``None``; never blocks."""
        items = self.take(1)
        return items[0] if items else None

    def take(self, limit: int) -> list[Envelope | str]:
        """Up to ``limit`` queued items, oldest first; never blocks."""
        items = self._items.take(limit)
        self._gets += len(items)
        while self._pushed and self._pushed.first() < self._gets:
            self._pushed.popleft()
        return items


class Hub:
    """Tails the store and fans out to subscribers; one per worker process."""

    def __init__(
        self,
        store: Store,
        *,
        tail_interval: float = 0.05,
        fanout_delay: float = 0.0,
        on_stored: Callable[[list[int]], Any] | None = None,
        on_dispatch: Callable[[list[Envelope], int], Any] | None = None,
    ) -> None:
        """``on_stored`` gets the seqs of each local write, ``on_dispatch`` each run
        dispatched and how many frames it queued: what times the fan-out.
        ``fanout_delay``: see :meth:`_run`."""
        self.store = store
        self.tail_interval = tail_interval
        self.fanout_delay = fanout_delay
        self.position = store.last_seq()
        self.subscribers: set[Subscriber] = set()
        # Who may want an event, by Filter.topic, so one event is offered only to the
        # clients of its project and deployment, not tested against every client.
        self._by_topic: dict[str, set[Subscriber]] = {}
        self._everything: set[Subscriber] = set()
        self._wake = gevent.event.Event()
        self._recent: dict[int, Event] = {}  # by seq: events this worker just stored
        # One reader of the log at a time: with a store whose calls yield to other
        # greenlets (Redis), the tailer and a joining subscriber could otherwise
        # both read past the same position and deliver events twice, or the
        # tailer could dispatch between a subscriber's replay and its registration.
        self._reading = gevent.lock.Semaphore()
        self._greenlet: gevent.Greenlet | None = None
        self._on_stored = on_stored
        self._on_dispatch = on_dispatch

    def start(self) -> None:
        if self._greenlet is None:
            self._greenlet = gevent.spawn(self._run)

    def stop(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill()
            self._greenlet = None

    def notify(self, stored: Iterable[Event] = ()) -> None:
        """Called after a local write: wake the tailer instead of waiting for its poll.

        ``stored`` are the events the write stored, with their ids: the tailer
        takes them from here instead of reading and decoding them back from the
        store, as long as they continue the log exactly where it stands (seqs
        are dense among committed events; anything else is read from the store).
        """
        seqs = []
        # With nobody to tell, nothing is kept nor woken: the first subscriber's catch-up
        # (add_filter) moves the position to the log's end anyway.
        telling = bool(self.subscribers)
        for event in stored:
            parsed = parse_event_id(event.id)
            if parsed is not None:
                seqs.append(parsed[1])
                if telling and parsed[1] > self.position:
                    self._recent[parsed[1]] = event
        if seqs and self._on_stored is not None:
            self._on_stored(seqs)
        if not telling:
            return
        while len(self._recent) > _RECENT_MAX:  # the tailer is far behind: it reads instead
            del self._recent[next(iter(self._recent))]
        self._wake.set()

    def _run(self) -> None:
        """Dispatch what is stored, as soon as it is stored or seen in the log.

        With a ``fanout_delay``, after each pump that delivered events to a
        client the tailer waits that long before the next: what is stored
        meanwhile goes out together,
        as one run per client and one write each, instead of one write per
        event and client.  Those writes are most of what a delivery
        costs (docs/BENCHMARKS.md).  An event stored after a quiet spell is
        still dispatched at once, as with Nagle's algorithm; only the events
        that follow it closely wait, for at most the delay.  Events no client
        wanted (another project's, while its page is closed) hold nothing back.
        """
        while True:
            self._wake.wait(timeout=self.tail_interval)
            self._wake.clear()
            try:
                with self._reading:
                    delivered = self._pump().delivered
                if delivered and self.fanout_delay:
                    gevent.sleep(self.fanout_delay)
            except StoreUnavailable as exc:  # an outage: say so once a second, no traceback
                log.warning("fan-out paused, store unavailable: %s", exc)
                gevent.sleep(1.0)
            except Exception:  # the tailer must outlive a bad read; the next poll retries
                log.exception("fan-out tail failed")
                gevent.sleep(min(1.0, self.tail_interval * 20))

    def pump(self) -> int:
        """Dispatch every stored event past :attr:`position`; return how many."""
        with self._reading:
            return self._pump().events

    def _pump(self) -> _Pumped:
        if not self.subscribers:  # nobody to tell: skip reading and decoding the events
            self.position = self.store.last_seq()
            self._recent.clear()
            return _Pumped(0, 0)
        count = delivered = 0
        while True:
            handed: list[Envelope] = []
            while (event := self._recent.pop(self.position + 1, None)) is not None:
                self.position += 1
                handed.append(Envelope(self.position, event))
            delivered += self._dispatch(handed)
            rows = self.store.read_after(self.position, _READ_BATCH)
            for seq, _ in rows:
                self._recent.pop(seq, None)
            delivered += self._dispatch([Envelope(seq, event) for seq, event in rows])
            if rows:
                self.position = rows[-1][0]
            count += len(handed) + len(rows)
            if len(rows) < _READ_BATCH:
                return _Pumped(count, delivered)

    def _dispatch(self, envelopes: list[Envelope]) -> int:
        """Offer each run of events of one project and deployment to who may want it;
        return how many events were queued to clients in all.

        A batch is mostly one deployment's events: its subscribers are looked up
        and tested once for the run, and each gets the run in one queue operation.
        """
        total = 0
        for (project, deployment_id), grouped in groupby(
            envelopes, key=lambda envelope: (envelope.event.project, envelope.event.deployment_id)
        ):
            run = list(grouped)
            delivered = 0
            for subscriber in self._everything.union(
                self._by_topic.get(f"project:{project}", ()),
                self._by_topic.get(f"deployment:{deployment_id}", ()),
                self._by_topic.get(ALL, ()),
            ):
                wanted = subscriber.select(run)
                subscriber.offer(wanted)
                delivered += len(wanted)
            if self._on_dispatch is not None:
                self._on_dispatch(run, delivered)
            total += delivered
        return total

    def add_filter(
        self, subscriber: Subscriber, match: Filter, since: str | None, limit: int
    ) -> History:
        """Add ``match`` to ``subscriber``; return its replay, gapless with what follows live.

        No other read of the log runs in between (``_reading``), even when store
        calls yield to other greenlets, which is what makes the hand-over from
        replay to live exact.
        """
        with self._reading:
            self._pump()
            history = self.store.history(match, since, self.position, limit)
            subscriber.filters.append(match)
            self.subscribers.add(subscriber)
            self._by_topic.setdefault(match.topic, set()).add(subscriber)
        return history

    def watch_everything(self, subscriber: Subscriber) -> None:
        """Offer every event to ``subscriber``, whose own ``wants`` decides (e.g. alerts)."""
        self.subscribers.add(subscriber)
        self._everything.add(subscriber)

    def remove_filter(self, subscriber: Subscriber, match: Filter) -> bool:
        if match not in subscriber.filters:
            return False
        subscriber.filters.remove(match)
        if not any(f.topic == match.topic for f in subscriber.filters):
            self._unindex(subscriber, match.topic)
        if not subscriber.filters and subscriber not in self._everything:
            self.subscribers.discard(subscriber)
        return True

    def drop(self, subscriber: Subscriber) -> None:
        for match in subscriber.filters:
            self._unindex(subscriber, match.topic)
        subscriber.filters.clear()
        self._everything.discard(subscriber)
        self.subscribers.discard(subscriber)

    def _unindex(self, subscriber: Subscriber, topic: str) -> None:
        members = self._by_topic.get(topic)
        if members is not None:
            members.discard(subscriber)
            if not members:
                del self._by_topic[topic]
