"""The shared store for running many hub processes on many hosts: Redis.

SQLite serves one host; when one process is not enough, every process (any
worker of any instance, ingest or stream role) writes and reads one Redis, so
a client may be served by any of them and nothing needs sticky sessions.  It
is the same :class:`~storage.store.Store` as the embedded default and
runs the same contract tests.

* Each request is one atomic Lua script (``storage/redis_scripts.py``):
  repeat checks, the next seqs, the event log stream (entry id ``<seq>-0``,
  which the hub tails with XRANGE, the one copy of each event's body), a
  per-project replay stream and a per-deployment replay list of seqs, log
  lines, metrics and a ``PUBLISH`` that wakes the other processes.  A
  retried call carries the same token and gets the first answer back, so a
  connection lost after Redis executed it stores nothing twice.
* Every decision is the ledger's (``ledger/recorder.py``), taken in Python
  from a snapshot read before the script, and passed to it as arguments; the
  script keeps only what must be atomic on the server: seqs, repeat checks,
  appends, the newest metrics report, and the wake-up.
* Each deployment keeps the ledger's fold, written after the append by a
  compare-and-set that keeps the fold of the most lifecycle events: the
  snapshot's fold when no other process appended to that deployment in
  between, else one folded again from its stored lifecycle.  Workers writing
  one deployment at once converge on the same fold.  Views are rendered from
  the fold on read, as in SQLite.
* An epoch per store, created when missing: a Redis that lost its data gets a
  newer epoch, so ids keep increasing and old ids are told apart
  (``recovered: false``), never silently mapped onto new events.
* One listener greenlet per process turns the ``PUBLISH`` into
  :meth:`Hub.notify <broadcaster.hub.Hub.notify>`; what was published is read
  from the log, so order and exactly-once come from the log, not pub/sub.
"""

from __future__ import annotations

import contextlib
import logging
import math
import uuid
from collections.abc import Callable, Iterator
from datetime import tzinfo
from typing import Any, cast

import gevent
import gevent.monkey
import orjson
import redis
from redis.backoff import ExponentialBackoff, ExponentialWithJitterBackoff
from redis.retry import Retry

from ledger.aggregates import Cell, facts
from ledger.cursors import decode_cursor, encode_cursor
from ledger.delivery import DeliveryWindow, OutageKey, Outages
from ledger.environments import EnvironmentState, picked_states
from ledger.events import (
    LIFECYCLE_TYPES,
    OPEN_STATUSES,
    PROJECT_ONLY_TYPES,
    Event,
    Join,
)
from ledger.failures import FailureGroup, FailureView
from ledger.filters import Filter
from ledger.fold import Fold
from ledger.ids import make_event_id, parse_event_id
from ledger.logs import LogRow, log_row
from ledger.metrics import metrics_key as metrics_key_of
from ledger.metrics import metrics_value
from ledger.recorder import Entry, Recorder, Stored, record_in_batch
from ledger.resume import Resume, resume_from
from ledger.retention import Retention
from ledger.search import LogSearch, SearchPage
from ledger.staleness import news_at
from ledger.trends import StepRuns, step_runs
from ledger.view import DeploymentView, ListRow, ProjectSummary, list_row, project_summary, render
from storage import paging, redis_scripts
from storage.bodies import event_of, pack, unpack
from storage.redis_aggregates import RedisAggregates
from storage.redis_analysis import RedisLogAnalysis
from storage.redis_keys import glob, release
from storage.redis_life import pack_life, unpack_life
from storage.store import (
    Accepted,
    Batch,
    DeliveryConflict,
    History,
    Page,
    StoreHooks,
    StoreTooNew,
    StoreUnavailable,
)
from storage.url import StoreURL

log = logging.getLogger(__name__)

#: A retried append within this many seconds gets its first answer back.
TOKEN_TTL_SECONDS = 60
#: Redis calls wait at most this long; an unreachable Redis is a 503, not a hang.
SOCKET_TIMEOUT = 5.0
CONNECT_TIMEOUT = 2.0
#: Connections per process; a greenlet waits for a free one at most POOL_TIMEOUT.
POOL_SIZE = 64
POOL_TIMEOUT = 5.0
#: The listener reconnects after 1, 2, 4 ... 60 s, and starts over at 1 s once it is back.
LISTEN_BACKOFF = ExponentialBackoff(cap=60.0, base=1.0)
#: Seconds the listener waits for a message before checking its connection.
LISTEN_POLL = 15.0
#: Entries read per round trip when a filter must skip some.
SCAN_CHUNK = 500
#: Deployments whose hash one script call reads: long enough to spare redis-py packing a
#: command each, short enough not to hold Redis for long (the call runs alone there).
ROWS_PER_CALL = 500
#: The hash fields :meth:`RedisStore._stored` reads a deployment's state from.
STORED_FIELDS = ("project", "fold", "view_seq", "metrics_key", "ts0", "life_seq")
#: Seconds one batch may wait for another batch joining legacy bodies of its project.
JOIN_LOCK_SECONDS = 10.0
#: The key layout this code writes (``storage/redis_scripts.py``), as ``meta`` names it.
LAYOUT = b"3"
#: Seconds a process opening the store waits for another one upgrading its layout.
LAYOUT_LOCK_SECONDS = 600.0

#: A stream entry as redis-py returns it (bytes, since responses are not decoded).
StreamEntry = tuple[bytes, dict[bytes, bytes]]
#: Redis errors that mean "not available now", as opposed to a bug.
_UNAVAILABLE_REPLIES = ("MISCONF", "MASTERDOWN", "NOREPLICAS")


@contextlib.contextmanager
def _available(closed: bool = False) -> Iterator[None]:
    """Turn Redis being away (or refusing writes) into :class:`StoreUnavailable`."""
    if closed:
        raise StoreUnavailable("the store is closed")
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise StoreUnavailable(f"Redis unreachable: {exc}") from exc
    except (redis.exceptions.OutOfMemoryError, redis.exceptions.ReadOnlyError) as exc:
        raise StoreUnavailable(f"Redis refused: {type(exc).__name__}: {exc}") from exc
    except redis.ResponseError as exc:
        if str(exc).startswith(_UNAVAILABLE_REPLIES):
            raise StoreUnavailable(f"Redis refused: {exc}") from exc
        raise


def _part(value: str | None) -> str:
    """One filter of a listing key, as the Lua ``part`` spells it."""
    return "*" if value is None else f"{len(value.encode())}:{value}"


def _seq(entry_id: bytes) -> int:
    return int(entry_id.split(b"-", 1)[0])


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class _Snapshot:
    """The ledger's :class:`~ledger.recorder.Source` for one write: Redis as it was read
    just before, plus what the write's own lookups fetch on the way."""

    def __init__(self, store: RedisStore) -> None:
        self.store = store
        self.deployments: dict[str, Stored | None] = {}
        self.open: dict[str, list[tuple[str, str]]] = {}
        self.seen: set[str] = set()  # dedup keys already stored
        self.repeated_delivery: list[str] | None = None
        self.conflicting_delivery = False

    @classmethod
    def read(cls, store: RedisStore, batch: Batch, projects: list[str]) -> _Snapshot:
        """One round trip: the repeat records, the named deployments, the open ones."""
        snapshot = cls(store)
        named = sorted(
            {
                e.deployment_id
                for e in batch.events
                if e.deployment_id is not None and e.type not in PROJECT_ONLY_TYPES
            }
        )
        keys = sorted({f"event_id:{e.dedup_key}" for e in batch.events if e.dedup_key})
        with store._redis.pipeline(transaction=False) as pipe:
            pipe.get(store._key("dedup:", batch.delivery_key or ""))
            for key in keys:
                pipe.exists(store._key("dedup:", key))
            for deployment_id in named:
                store._pipe_deployment(pipe, deployment_id)
            for project in projects:
                for status in sorted(OPEN_STATUSES):
                    pipe.zrevrangebylex(
                        store._list_key(project, status, None), "+", "-", 0, len(batch.events) + 1
                    )
            replies = pipe.execute()
        delivery, replies = replies[0], replies[1:]
        if batch.delivery_key and delivery is not None:
            was, sep, ids = delivery.partition(b"|")
            if not sep:  # remembered before bodies were told apart
                was, ids = b"", delivery
            if was and batch.digest and was.decode() != batch.digest:
                snapshot.conflicting_delivery = True
            snapshot.repeated_delivery = list(orjson.loads(ids))
        snapshot.seen = {key for key, found in zip(keys, replies, strict=False) if found}
        replies = replies[len(keys) :]
        for deployment_id, row in zip(named, replies, strict=False):
            snapshot.deployments[deployment_id] = store._stored(deployment_id, row)
        replies = replies[len(named) :]
        for index, project in enumerate(projects):
            members = [
                _text(member).split("\0", 1)
                for found in replies[index * len(OPEN_STATUSES) : (index + 1) * len(OPEN_STATUSES)]
                for member in found
            ]
            snapshot.open[project] = sorted(
                ((sort_ts, deployment_id) for sort_ts, deployment_id in members), reverse=True
            )
        return snapshot

    def repeats(self, event: Event) -> bool:
        """Whether ``event``'s own id was stored already (the script checks again)."""
        return bool(event.dedup_key) and f"event_id:{event.dedup_key}" in self.seen

    def deployment(self, deployment_id: str) -> Stored | None:
        if deployment_id not in self.deployments:
            with self.store._redis.pipeline(transaction=False) as pipe:
                self.store._pipe_deployment(pipe, deployment_id)
                [row] = pipe.execute()
            self.deployments[deployment_id] = self.store._stored(deployment_id, row)
        return self.deployments[deployment_id]

    def open_deployments(self, project: str, limit: int) -> list[tuple[str, str]]:
        return self.open.get(project, [])[:limit]

    def lifecycle(self, deployment_id: str) -> list[Event]:
        raws = self.store._redis.lrange(self.store._key("life:", deployment_id), 0, -1)
        return [self.store._life_event(deployment_id, raw) for raw in cast(list[bytes], raws)]


def _mode(event: Event, entry: Entry | None) -> tuple[str, str]:
    """How the append script places an event (see APPEND's modes)."""
    if event.type in PROJECT_ONLY_TYPES or entry is None:
        return ("n", "") if event.deployment_id is None else ("p", event.deployment_id)
    if entry.new:
        return "a", ""
    if entry.joins is not None:
        return "r", str(entry.joins + 1)  # the script counts events from 1
    return "d", str(event.deployment_id)


class RedisStore:
    """Event log and deployment view in one Redis (see module docstring)."""

    def __init__(
        self,
        url: StoreURL,
        *,
        retention: Retention | None = None,
        hooks: StoreHooks | None = None,
    ) -> None:
        plain_url = url.redis_url
        self.prefix = f"{url.prefix}:"
        self.retention = retention or Retention()
        self.hooks = hooks or StoreHooks()
        retention_seconds = self.retention.days * 86400
        self._dedup_ttl = math.ceil(retention_seconds)
        self._stream_ttl_ms = math.ceil(retention_seconds * 1000)
        try:
            self._pool = redis.BlockingConnectionPool.from_url(
                plain_url,
                max_connections=POOL_SIZE,
                timeout=POOL_TIMEOUT,
                socket_timeout=SOCKET_TIMEOUT,
                socket_connect_timeout=CONNECT_TIMEOUT,
                health_check_interval=30,
                retry=Retry(ExponentialWithJitterBackoff(cap=0.5, base=0.05), 2),
            )
            # An unknown option in the URL fails here, not at the first command.
            self._pool.connection_class(**self._pool.connection_kwargs)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"bad Redis URL {url}: {exc}") from None
        self._redis = redis.Redis(connection_pool=self._pool)
        self._init = self._redis.register_script(redis_scripts.INIT)
        self._append = self._redis.register_script(redis_scripts.APPEND)
        self._set_view = self._redis.register_script(redis_scripts.SET_VIEW)
        self._drop = self._redis.register_script(redis_scripts.DROP_DEPLOYMENT)
        self._raise_pruned = self._redis.register_script(redis_scripts.RAISE_PRUNED)
        self._migrate = self._redis.register_script(redis_scripts.MIGRATE)
        self._read_row = self._redis.register_script(redis_scripts.READ_ROW)
        self._read_rows = self._redis.register_script(redis_scripts.READ_ROWS)
        self._analysis = RedisLogAnalysis(self, self.prefix)
        self._aggregates = RedisAggregates(self, self.prefix)
        self._listener: gevent.Greenlet | None = None
        self._closed = False
        self.epoch = 0
        self._high = 0  # the newest seq of ``epoch`` this process has seen
        with _available(self._closed):
            self._refuse_newer_layout()
            self.epoch = int(self._init(args=[self.prefix, self._known()]))
            self._upgrade_layout()
            self._aggregates.build()
        self._tail_epoch = self.epoch

    def _refuse_newer_layout(self) -> None:
        """Raise :class:`StoreTooNew` before anything is written to a newer hub's store."""
        found = self._redis.hget(self._key("meta"), "layout")
        if found is not None and found.isdigit() and int(found) > int(LAYOUT):
            raise StoreTooNew(
                f"the Redis store under prefix {self.prefix!r} has key layout {int(found)}, "
                f"written by a newer hub; this one reads layout {int(LAYOUT)} and older: "
                "run the newer hub (nothing was changed)"
            )

    def _upgrade_layout(self) -> None:
        """Move what the layouts before :data:`LAYOUT` kept in streams per deployment (replay
        entries, log lines) into its lists, and drop the set of deployments by last seq
        they kept beside the one by last activity (pruning by count reads that one now),
        once per store: the first process to open it does, the others wait for it.  Until
        then nothing else is read or written."""
        meta = self._key("meta")
        if self._redis.hget(meta, "layout") == LAYOUT:
            return
        lock = self._redis.lock(
            self._key("lock:layout"),
            timeout=LAYOUT_LOCK_SECONDS,
            blocking_timeout=LAYOUT_LOCK_SECONDS,
        )
        if not lock.acquire():
            raise StoreUnavailable("another process is still upgrading the store's layout")
        try:
            if self._redis.hget(meta, "layout") == LAYOUT:
                return
            self._refuse_newer_layout()  # a newer hub's, upgraded while this one waited
            deployments: set[str] = set()
            for family in ("ds:", "logs:"):
                pattern = glob(self._key(family)) + "*"
                for key in cast(Iterator[bytes], self._redis.scan_iter(match=pattern, count=1000)):
                    deployments.add(key.decode()[len(self._key(family)) :])
            moved = sum(int(self._migrate(args=[self.prefix, d])) for d in sorted(deployments))
            self._redis.delete(self._key("lastseq"))
            self._redis.hset(meta, "layout", LAYOUT)
            if deployments:
                log.info("moved %d entries of %d deployments into lists", moved, len(deployments))
        finally:
            release(lock)

    def _key(self, *parts: str) -> str:
        return self.prefix + "".join(parts)

    def _known(self) -> str:
        """What the scripts compare with Redis to notice that it lost recent writes."""
        return f"{self.epoch}:{self._high}"

    def _saw(self, epoch: int, seq: int) -> None:
        if epoch > self.epoch:
            self.epoch, self._high = epoch, 0
        if epoch == self.epoch:
            self._high = max(self._high, seq)

    # -- writing -----------------------------------------------------------------

    def append(self, batch: Batch) -> Accepted:
        """Decide the batch with the ledger, store it whole in one script call, then
        write the views it changed.

        The ledger decides from a snapshot read first (the deployments the
        batch names, and for legacy bodies the projects' open deployments,
        read under a per-project lock); the script then appends atomically.
        A fold decided from the snapshot is written only if no other process
        appended to that deployment's lifecycle in between; otherwise the view
        is folded again from the stored lifecycle.
        """
        projects = sorted(
            {
                e.project
                for e in batch.events
                if e.deployment_id is None and e.type not in PROJECT_ONLY_TYPES
                if e.join is not Join.NEW
            }
        )
        with _available(self._closed), self._join_locks(projects):
            snapshot = _Snapshot.read(self, batch, projects)
            if snapshot.conflicting_delivery:
                raise DeliveryConflict("the delivery id was used before for another body")
            if snapshot.repeated_delivery is not None:
                return Accepted(ids=snapshot.repeated_delivery, duplicate=True)
            recorder = Recorder(snapshot, epoch=self.epoch, next_seq=None)
            size = len(batch.events)
            entries = [
                None if snapshot.repeats(event) else record_in_batch(recorder, event, i, size)
                for i, event in enumerate(batch.events)
            ]
            answer = orjson.loads(self._append(args=self._append_args(batch, entries)))
            if answer.get("conflict"):
                raise DeliveryConflict("the delivery id was used before for another body")
            self._saw(int(answer["epoch"]), max(map(_event_seq, answer["ids"]), default=0))
            stored = [
                cast(Entry, entries[index - 1]).event.with_(id=event_id, deployment_id=deployment)
                for index, event_id, deployment in answer.get("stored", [])
            ]
            if stored:
                self._write_views(recorder, answer)
                self._write_failures(recorder, answer)
        return Accepted(ids=answer["ids"], duplicate=answer["duplicate"], stored=stored)

    def _append_args(self, batch: Batch, entries: list[Entry | None]) -> list[Any]:
        args: list[Any] = [
            self.prefix,
            self._known(),
            uuid.uuid4().hex,
            batch.delivery_key or "",
            batch.digest or "",
            self._dedup_ttl,
            self.retention.max_events,
            self._stream_ttl_ms,
            TOKEN_TTL_SECONDS,
            len(batch.events),
        ]
        for original, entry in zip(batch.events, entries, strict=True):
            event = original if entry is None else entry.event
            mode, deployment = _mode(event, entry)
            metrics = metrics_key = b""
            if event.type == "metrics_update" and mode not in "np":
                metrics_key, metrics = metrics_key_of(event), metrics_value(event)
            body = pack(event)
            args += [
                event.type,
                event.project,
                mode,
                deployment,
                f"event_id:{event.dedup_key}" if event.dedup_key else "",
                pack_life(event.type, event.project, body)
                if event.type in LIFECYCLE_TYPES
                else b"",
                body,
                event.timestamp,
                b"\n".join(orjson.dumps(list(line)) for line in entry.lines) if entry else b"",
                metrics_key,
                metrics,
            ]
        return args

    def _write_views(self, recorder: Recorder, answer: dict[str, Any]) -> None:
        """Write the folds the ledger decided, or fold again where another write came between.

        If Redis goes away now, the events are stored anyway: such a deployment
        stays in the ``dirty`` set until :meth:`repair_views` (when the
        listener reconnects, and on every prune) folds it again.
        """
        named = {f"#{index - 1}": deployment for index, _, deployment in answer["stored"]}
        changed = {deployment: rest for deployment, *rest in answer["deps"]}
        try:
            for touched in recorder.deployments():
                deployment_id = named.get(touched.key, touched.key)
                if deployment_id not in changed:
                    continue  # only log lines or metrics: nothing of the view moved
                prior, life, added = changed[deployment_id]
                expected = touched.stored.version if touched.stored else 0
                if prior == expected and added == len(touched.added):
                    self._set_fold(deployment_id, touched.fold, life)
                else:
                    self._refresh_view(deployment_id)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            log.warning("events stored; views wait for Redis (%s)", exc)

    def _write_failures(self, recorder: Recorder, answer: dict[str, Any]) -> None:
        """The failure records the append changed (after the views, from the stored folds);
        if Redis goes away now, :meth:`RedisLogAnalysis.reconcile` catches up on the next
        prune."""
        try:
            self._analysis.after_append(recorder, answer)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            log.warning("events stored; failure records wait for Redis (%s)", exc)

    def repair_views(self) -> int:
        """Re-fold every view that may lag its events; return how many were looked at."""
        with _available(self._closed):
            dirty = [_text(d) for d in cast(set[bytes], self._redis.smembers(self._key("dirty")))]
            try:
                for deployment_id in dirty:
                    self._refresh_view(deployment_id)
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                log.warning("views of %d deployments wait for Redis (%s)", len(dirty), exc)
        return len(dirty)

    def _refresh_view(self, deployment_id: str) -> None:
        """Fold the deployment again from its stored lifecycle; store it unless a fuller
        fold is stored already."""
        stored = self._stored_from_lifecycle(deployment_id)
        if stored is not None:
            self._set_fold(deployment_id, stored.fold, stored.version)

    def _stored_from_lifecycle(self, deployment_id: str) -> Stored | None:
        """The deployment folded from every lifecycle event stored (``None``: it is gone)."""
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.hmget(self._key("dep:", deployment_id), "project", "ts0", "metrics_key")
            pipe.lrange(self._key("life:", deployment_id), 0, -1)
            (project, ts0, metrics_key), entries = pipe.execute()
        if project is None:
            return None  # pruned in the meantime
        lifecycle = [self._life_event(deployment_id, raw) for raw in entries]
        fold = Fold.of(lifecycle)
        if project.decode() not in fold.projects:
            fold.projects.append(project.decode())
        fold.created_ts = ts0.decode() if ts0 else fold.created_ts
        version = max((_event_seq(e.id) for e in lifecycle), default=0)
        return Stored(fold, metrics_key, version)

    def _set_fold(self, deployment_id: str, fold: Fold, view_seq: int) -> None:
        """Store the fold, index the deployment and move its counts by it, unless a fuller
        fold is stored; decided again while another process moves its counts first."""
        status, _, _ = fold.headline()
        branch = fold.metadata.get("branch")
        item = facts(fold)
        while True:
            answer = self._set_view(
                args=[
                    self.prefix,
                    deployment_id,
                    view_seq,
                    fold.project,
                    status,
                    "0" if branch is None else f"1{branch}",
                    f"{fold.sort_ts()}\0{deployment_id}",
                    fold.dumps(),
                    *self._aggregates.count_args(deployment_id, item),
                ]
            )
            if int(answer) != -1:
                return

    @contextlib.contextmanager
    def _join_locks(self, projects: list[str]) -> Iterator[None]:
        """Serialise batches that join legacy bodies to a project's open deployment.

        Such a body names no deployment; it joins the project's newest open
        one, so two of them for the same project must not decide from the
        same snapshot.
        """
        with contextlib.ExitStack() as stack:
            for project in projects:
                lock = self._redis.lock(
                    self._key("lock:join:", project),
                    timeout=JOIN_LOCK_SECONDS,
                    blocking_timeout=JOIN_LOCK_SECONDS,
                )
                if not lock.acquire():
                    raise StoreUnavailable(f"project {project!r} is busy joining deployments")
                stack.callback(release, lock)
            yield

    # -- the event log -----------------------------------------------------------------

    def _entry(self, entry_id: bytes, fields: dict[bytes, bytes]) -> Event:
        """The event of a log entry (one written before held its whole id in ``i``)."""
        deployment = fields.get(b"d")
        return event_of(
            unpack(fields[b"b"]),
            event_type=fields[b"t"].decode(),
            project=fields[b"p"].decode(),
            deployment_id=None if deployment is None else deployment.decode(),
            event_id=(
                make_event_id(int(fields[b"e"]), _seq(entry_id))
                if b"e" in fields
                else fields[b"i"].decode()
            ),
        )

    def _life_event(self, deployment_id: str, raw: bytes) -> Event:
        """A lifecycle entry's event (``storage/redis_life.py``): its seq takes an id in the
        store's epoch (only its seq is ever read of it: the fold's version); an entry
        written before seqs held the id."""
        seq, event_type, project, body = unpack_life(raw)
        return event_of(
            body,
            event_type=event_type,
            project=project,
            deployment_id=deployment_id,
            event_id=make_event_id(self.epoch, seq) if isinstance(seq, int) else seq,
        )

    def _events(self, rows: list[StreamEntry]) -> list[tuple[int, Event]]:
        """The events of log or replay entries; a replay entry holds only its seq, and its
        event is read from the log (gone from it, trimmed: left out)."""
        wanted = [entry_id for entry_id, fields in rows if b"b" not in fields]
        found: dict[bytes, dict[bytes, bytes]] = {}
        if wanted:
            with self._redis.pipeline(transaction=False) as pipe:
                for entry_id in wanted:
                    pipe.xrange(self._key("log"), entry_id, entry_id)
                for reply in pipe.execute():
                    found.update(reply)
        return [
            (_seq(entry_id), self._entry(entry_id, fields if b"b" in fields else found[entry_id]))
            for entry_id, fields in rows
            if b"b" in fields or entry_id in found
        ]

    def _listed(
        self, key: str, after: int, upto: int | None, *, newest_first: bool, want: int
    ) -> list[StreamEntry]:
        """Log entries of the seqs a deployment's list holds in ``(after, upto]``, at most
        ``want`` from the oldest (``newest_first``: the newest), as replay entries."""
        seqs = [int(s) for s in cast(list[bytes], self._redis.lrange(key, 0, -1))]
        chosen = [s for s in seqs if s > after and (upto is None or s <= upto)]
        chosen = chosen[::-1][:want] if newest_first else chosen[:want]
        return [(f"{s}-0".encode(), {}) for s in chosen]

    def _range(
        self, key: str, start: str, end: str, count: int, *, newest_first: bool = False
    ) -> list[StreamEntry]:
        """Stream entries from ``start`` to ``end`` (``newest_first``: from ``end`` down)."""
        if newest_first:
            rows = self._redis.xrevrange(key, end, start, count=count)
        else:
            rows = self._redis.xrange(key, start, end, count=count)
        return cast(list[StreamEntry], rows or [])

    def last_seq(self) -> int:
        """The log's newest seq; like :meth:`read_after`, it positions the tail in the epoch."""
        with _available(self._closed), self._redis.pipeline(transaction=True) as pipe:
            pipe.hget(self._key("meta"), "epoch")
            pipe.xrevrange(self._key("log"), "+", "-", count=1)
            epoch, rows = pipe.execute()
        top = _seq(rows[0][0]) if rows else 0
        if epoch is not None:
            self._tail_epoch = int(epoch)
            self._saw(int(epoch), top)
        return top

    def read_after(self, seq: int, limit: int) -> list[tuple[int, Event]]:
        """Events past ``seq`` in order; after a new epoch, the new epoch's events from its start.

        The caller's position belongs to the old epoch then, and the new
        epoch's seqs may be lower, so the tail starts over where it begins.
        """
        with _available(self._closed):
            with self._redis.pipeline(transaction=True) as pipe:
                pipe.hmget(self._key("meta"), "epoch", "floor")
                pipe.xrange(self._key("log"), f"({seq}-0", "+", count=limit)
                (epoch, floor), rows = pipe.execute()
            if epoch is not None and int(epoch) != self._tail_epoch:
                log.warning("store epoch changed from %s to %s", self._tail_epoch, int(epoch))
                self._tail_epoch = int(epoch)
                rows = self._range(self._key("log"), f"({int(floor)}-0", "+", limit)
            if rows:
                self._saw(self._tail_epoch, _seq(rows[-1][0]))
        return self._events(rows)

    def _meta(self) -> tuple[int, int]:
        """The current epoch and the newest seq pruning removed."""
        epoch, pruned = cast(
            list[bytes | None], self._redis.hmget(self._key("meta"), "epoch", "pruned_upto")
        )
        if epoch is None:  # Redis lost everything since we last wrote: recreate the epoch
            return int(self._init(args=[self.prefix, self._known()])), 0
        return int(epoch), int(pruned or 0)

    def _reaches_back(self, key: str, after: int) -> bool:
        """Whether a replay stream still holds every entry it got after seq ``after``.

        Pruning deletes entries (Redis records the newest deleted id); the
        ``MAXLEN ~`` cap trims the oldest, so a point before the first entry
        kept, in a stream that lost entries, is out of reach.
        """
        if key.startswith(self._key("de:")):  # a list loses only what its cap trimmed
            cap = self.retention.max_events
            oldest = cast(list[bytes], self._redis.lrange(key, 0, 0))
            full = cap > 0 and int(self._redis.llen(key)) >= cap
            return not (full and oldest and after < int(oldest[0]))
        try:
            info = self._redis.xinfo_stream(key)
        except redis.ResponseError:  # no such stream: nothing kept yet, or it expired
            return True
        if after < _seq(info.get("max-deleted-entry-id") or b"0-0"):
            return False
        if info["entries-added"] > info["length"]:
            first = info.get("recorded-first-entry-id") or b"0-0"
            return after >= _seq(first) or info["length"] == 0
        return True

    def _scan(
        self,
        key: str,
        *,
        newest_first: bool,
        after: int,
        upto: int | None,
        keep: Callable[[Event], bool] | None,
        want: int,
    ) -> list[tuple[int, Event]]:
        """Up to ``want`` events of ``key`` (a stream, or a deployment's list of seqs) with
        seqs in ``(after, upto]`` that ``keep`` accepts."""
        listed = key.startswith(self._key("de:"))
        found: list[tuple[int, Event]] = []
        while len(found) < want:
            count = want - len(found) if keep is None else max(want - len(found), SCAN_CHUNK)
            if listed:
                rows = self._listed(key, after, upto, newest_first=newest_first, want=count)
            else:
                end = "+" if upto is None else f"{upto}-0"
                rows = self._range(key, f"({after}-0", end, count, newest_first=newest_first)
            for seq, event in self._events(rows):
                if keep is None or keep(event):
                    found.append((seq, event))
            if len(rows) < count:
                break
            if newest_first:
                upto = _seq(rows[-1][0]) - 1
            else:
                after = _seq(rows[-1][0])
        return found[:want]

    def history(self, match: Filter, since: str | None, upto: int, limit: int) -> History:
        """Events for ``match`` up to ``upto``; ``recovered`` tells if they reach ``since``."""
        with _available(self._closed):
            epoch, pruned_upto = self._meta()
            if match.project is not None:
                key = self._key("ps:", match.project)
            elif match.deployment_id is not None:
                key = self._key("de:", match.deployment_id)
            else:
                key = self._key("log")  # every project
            resume = resume_from(since, epoch=epoch, upto=upto, pruned_upto=pruned_upto)
            if resume.recovered and since is not None and not self._reaches_back(key, resume.after):
                resume = Resume(resume.after, False)  # the stream was trimmed past it
            types = match.types
            rows = self._scan(
                key,
                newest_first=True,
                after=resume.after,
                upto=upto,
                keep=None if types is None else (lambda e: e.type in types),
                want=limit + 1,
            )
        if len(rows) > limit:
            rows = rows[:limit]
            resume = resume.truncated(since)
        rows.reverse()
        return History([event for _, event in rows], resume.recovered)

    def events(
        self, *, project: str | None, deployment_id: str | None, since: str | None, limit: int
    ) -> Page[dict[str, Any]]:
        with _available(self._closed):
            epoch, pruned_upto = self._meta()
            resume = resume_from(since, epoch=epoch, upto=self.last_seq(), pruned_upto=pruned_upto)
            if deployment_id is not None:
                key = self._key("de:", deployment_id)
            elif project is not None:
                key = self._key("ps:", project)
            else:
                key = self._key("log")
            keep = None
            if deployment_id is not None and project is not None:
                keep = lambda e: e.project == project  # noqa: E731 - a one-line filter
            rows = self._scan(
                key,
                newest_first=False,
                after=resume.after,
                upto=None,
                keep=keep,
                want=limit + 1,
            )
        items = [event.to_dict() for _, event in rows[:limit]]
        more = len(rows) > limit and items
        return Page(items, items[-1]["id"] if more else None, resume.recovered)

    # -- the deployment view -------------------------------------------------------------

    def _list_key(self, project: str | None, status: str | None, branch: str | None) -> str:
        return self._key("dl:", f"{_part(project)}|{_part(status)}|{_part(branch)}")

    def _pipe_row(self, pipe: Any, deployment_id: str, *fields: str) -> None:
        """Queue a read of the deployment's hash ``fields``, its ``fold`` from its own key."""
        self._read_row(args=[self.prefix, deployment_id, *fields], client=pipe)

    def _rows(self, deployment_ids: list[str], *fields: str) -> list[list[bytes | None]]:
        """The hash ``fields`` of each deployment, in order, :data:`ROWS_PER_CALL` to a call."""
        rows: list[list[bytes | None]] = []
        for i in range(0, len(deployment_ids), ROWS_PER_CALL):
            chunk = deployment_ids[i : i + ROWS_PER_CALL]
            rows += self._read_rows(args=[self.prefix, len(fields), *fields, *chunk])
        return rows

    def _pipe_deployment(self, pipe: Any, deployment_id: str) -> None:
        """Queue the read that :meth:`_stored` turns into the deployment's state."""
        self._pipe_row(pipe, deployment_id, *STORED_FIELDS)

    def _stored(self, deployment_id: str, row: list[bytes | None]) -> Stored | None:
        """The deployment as stored; folded again from its lifecycle if its fold lags."""
        project, raw, view_seq, metrics_key, ts0, life_seq = row
        if project is None:
            return None
        if raw is None or int(view_seq or 0) < int(life_seq or 0):
            return self._stored_from_lifecycle(deployment_id)
        return Stored(_fold(project, raw, ts0), metrics_key, int(view_seq or 0))

    def _views(self, deployment_ids: list[str]) -> dict[str, tuple[DeploymentView, bytes | None]]:
        """``(view, metrics)`` of each deployment that still has a fold, by id, in order."""
        replies = self._rows(deployment_ids, "project", "fold", "metrics", "view", "last_activity")
        return {
            deployment_id: (_view(deployment_id, project, raw, legacy, received), metrics)
            for deployment_id, (project, raw, metrics, legacy, received) in zip(
                deployment_ids, replies, strict=True
            )
            if project is not None and (raw is not None or legacy is not None)
        }

    def list_deployments(
        self,
        *,
        project: str | None,
        status: str | None,
        branch: str | None,
        limit: int,
        cursor: str | None,
        environment: str | None = None,
    ) -> Page[ListRow]:
        if environment is not None:  # no index by environment: filtered row by row
            return paging.in_environment(
                self,
                environment,
                project=project,
                status=status,
                branch=branch,
                limit=limit,
                cursor=cursor,
            )
        top = "+"
        if cursor is not None:
            sort_ts, deployment_id = decode_cursor(cursor)
            top = f"({sort_ts}\0{deployment_id}"
        with _available(self._closed):
            members = self._redis.zrevrangebylex(
                self._list_key(project, status, branch), top, "-", 0, limit + 1
            )
            keys = [_text(member).split("\0", 1) for member in members]
            rows = self._views([deployment_id for _, deployment_id in keys[:limit]])
        items = [list_row(view, metrics) for view, metrics in rows.values()]
        next_cursor = encode_cursor(*keys[limit - 1]) if len(keys) > limit else None
        return Page(items, next_cursor)

    def get_deployment(self, deployment_id: str) -> DeploymentView | None:
        with _available(self._closed), self._redis.pipeline(transaction=True) as pipe:
            self._pipe_row(
                pipe,
                deployment_id,
                "project",
                "fold",
                "metrics",
                "last_id",
                "view",
                "last_activity",
            )
            pipe.llen(self._key("ln:", deployment_id))
            (project, raw, metrics, last_id, legacy, received), lines = pipe.execute()
        if project is None or (raw is None and legacy is None):
            return None
        view = _view(deployment_id, project, raw, legacy, received)
        view["metrics"] = orjson.loads(metrics) if metrics else None
        view["last_event_id"] = last_id.decode()
        view["log_lines"] = lines
        return view

    def logs(
        self,
        deployment_id: str,
        *,
        job: str | None,
        step: str | None,
        after: str | None,
        limit: int,
    ) -> Page[LogRow]:
        start = int(after) if after is not None else 0
        found: list[LogRow] = []
        with _available(self._closed):
            while len(found) <= limit:
                count = max(limit + 1 - len(found), SCAN_CHUNK if job or step else 0)
                rows = self._analysis.lines(deployment_id, after=start, count=count)
                for line_id, event_id, line in rows:
                    if (job is None or line.job == job) and (step is None or line.step == step):
                        found.append(log_row(line_id, line, event_id))
                if len(rows) < count:
                    break
                start = rows[-1][0]
        items = found[:limit]
        return Page(items, items[-1]["id"] if len(found) > limit else None)

    def projects(self) -> list[ProjectSummary]:
        counted = sorted({"success", "failure", "cancelled", *OPEN_STATUSES})
        width = len(counted) + 2
        with _available(self._closed):
            members = cast(set[bytes], self._redis.smembers(self._key("projects")))
            names = sorted(member.decode() for member in members)
            with self._redis.pipeline(transaction=True) as pipe:
                for project in names:
                    pipe.zcard(self._list_key(project, None, None))
                    for status in counted:
                        pipe.zcard(self._list_key(project, status, None))
                    pipe.zrevrangebylex(self._list_key(project, None, None), "+", "-", 0, 1)
                replies = pipe.execute()
            latest_ids = {
                project: _text(replies[i * width + width - 1][0]).split("\0", 1)[1]
                for i, project in enumerate(names)
                if replies[i * width]
            }
            latest = self._views(list(latest_ids.values()))
        result = []
        for i, project in enumerate(names):
            deployment_id = latest_ids.get(project)
            if deployment_id is None or deployment_id not in latest:
                continue
            counts = replies[i * width + 1 : i * width + width - 1]
            statuses = dict(zip(counted, counts, strict=True))
            view, metrics = latest[deployment_id]
            result.append(project_summary(project, statuses, list_row(view, metrics)))
        return result

    # -- log analysis (storage/redis_analysis.py) ------------------------------------------

    def failure(self, deployment_id: str) -> FailureView | None:
        with _available(self._closed):
            return self._analysis.failure(deployment_id)

    def failures(
        self, *, project: str | None, since: str, limit: int, cursor: str | None
    ) -> Page[FailureGroup]:
        with _available(self._closed):
            return self._analysis.failures(project=project, since=since, limit=limit, cursor=cursor)

    def search_logs(self, search: LogSearch, *, limit: int, cursor: str | None) -> SearchPage:
        with _available(self._closed):
            return self._analysis.search(search, limit=limit, cursor=cursor)

    def recent_folds(
        self, *, project: str | None, status: str | None, since: str, limit: int
    ) -> tuple[list[Fold], bool]:
        found, more = self._recent(project, status, since, limit)
        return [fold for _, fold in found], more

    def step_runs(
        self, *, project: str | None, since: str, limit: int
    ) -> tuple[list[StepRuns], bool]:
        """From the folds as read: kept as rows, they would add to every deployment's memory."""
        found, more = self._recent(project, None, since, limit)
        runs = (step_runs(deployment_id, fold) for deployment_id, fold in found)
        return [each for each in runs if each is not None], more

    def _recent(
        self, project: str | None, status: str | None, since: str, limit: int
    ) -> tuple[list[tuple[str, Fold]], bool]:
        """``(id, fold)`` from the listing set of ``project``/``status``, newest first by
        sort time, at most ``limit``; and whether more were left."""
        with _available(self._closed):
            members = self._redis.zrevrangebylex(
                self._list_key(project, status, None), "+", f"[{since}", 0, limit + 1
            )
            ids = [_text(member).split("\0", 1)[1] for member in members]
            rows = self._rows(ids[:limit], *STORED_FIELDS)
            found = [
                (deployment_id, stored.fold)
                for deployment_id, row in zip(ids[:limit], rows, strict=True)
                if (stored := self._stored(deployment_id, row)) is not None
            ]
        return found, len(ids) > limit

    def environment_states(
        self, *, project: str | None
    ) -> tuple[list[EnvironmentState], int, bool]:
        """From the aggregates: each environment's three deployments, one lookup each."""
        with _available(self._closed):
            picks, scanned = self._aggregates.environment_picks(project)
            wanted = sorted({i for pick in picks for i in pick[3:] if i is not None})
            views = self._views(wanted)
        rows = {deployment_id: list_row(*views[deployment_id]) for deployment_id in views}
        return picked_states(picks, rows), scanned, False

    def delivery_window(
        self, *, project: str | None, since: str, zone: tzinfo, asked: str | None
    ) -> DeliveryWindow:
        """From the aggregates (``storage/redis_aggregates.py``), as SQLite counts them."""
        with _available(self._closed):
            return self._aggregates.delivery_window(
                project=project, since=since, zone=zone, asked=asked
            )

    # -- upkeep ------------------------------------------------------------------------

    def prune(self) -> int:
        """Drop whole deployments (and project notes) past the age or count limit.

        As in SQLite: whole deployments go, never part of one, and
        ``pruned_upto`` remembers the newest seq removed.  One process prunes
        at a time (a lock); the others skip their turn.  Every call also
        re-folds views that a write cut short by an outage left behind.
        """
        with _available(self._closed):
            self.repair_views()
            self._analysis.reconcile()
            self._analysis.warm()
            if not self.retention.active:
                return 0
            lock = self._redis.lock(self._key("lock:prune"), timeout=300, blocking=False)
            if not lock.acquire():
                return 0
            try:
                return self._prune()
            finally:
                release(lock)

    def _prune(self) -> int:
        seconds, micros = self._redis.time()
        cutoff = self.retention.age_cutoff(seconds + micros / 1e6)
        doomed: set[str] = set()
        if cutoff is not None:
            doomed.update(self._members(self._key("activity"), "-inf", f"({cutoff}"))
        limit_seq = 0
        excess = self.retention.excess(self._redis.xlen(self._key("log")))
        if excess:
            oldest = self._range(self._key("log"), "-", "+", excess)
            limit_seq = _seq(oldest[-1][0])
            # Seqs and receipt times grow together: a deployment last written by a seq up
            # to the limit was last active by that entry's time (the script checks its seq;
            # should Redis's clock step back, one written just before waits for a later prune).
            received = oldest[-1][1][b"r"].decode()
            doomed.update(self._members(self._key("activity"), "-inf", received))
        dropped: set[str] = set()
        max_seq = 0
        age = "" if cutoff is None else f"{cutoff:.6f}"
        for deployment_id in sorted(doomed):
            top = self._drop_deployment(deployment_id, age, limit_seq)
            if top is not None:
                self._analysis.drop(deployment_id)
                dropped.add(deployment_id)
                max_seq = max(max_seq, int(top))
        removed, top_removed = self._drop_entries(dropped, cutoff, limit_seq)
        max_seq = max(max_seq, top_removed)
        if max_seq:
            self._raise_pruned(args=[self.prefix, max_seq])
        if removed:
            log.info("pruned %d events of %d deployments", removed, len(dropped))
        return removed

    def _drop_deployment(self, deployment_id: str, age: str, limit_seq: int) -> bytes | None:
        """Drop the deployment and its counts if it is still past a limit: its last seq."""
        while True:
            top = self._drop(
                args=[
                    self.prefix,
                    deployment_id,
                    age,
                    limit_seq,
                    *self._aggregates.count_args(deployment_id, None),
                ]
            )
            if top != -1:
                return cast(bytes | None, top)

    def _folds(self, deployment_ids: list[str]) -> list[Fold | None]:
        """The stored fold of each deployment (``None``: it has none)."""
        with self._redis.pipeline(transaction=False) as pipe:
            for deployment_id in deployment_ids:
                self._pipe_row(pipe, deployment_id, "project", "fold", "ts0")
            rows = pipe.execute()
        return [
            None if project is None or raw is None else _fold(project, raw, ts0)
            for project, raw, ts0 in rows
        ]

    def aggregate_cells(self) -> dict[Cell, int]:
        with _available(self._closed):
            return self._aggregates.aggregate_cells()

    def outage_days(self) -> dict[OutageKey, Outages]:
        with _available(self._closed):
            return self._aggregates.outage_days()

    def _members(self, key: str, low: str, high: str) -> list[str]:
        members = cast(list[bytes], self._redis.zrangebyscore(key, low, high))
        return [member.decode() for member in members]

    def _drop_entries(
        self, dropped: set[str], cutoff: float | None, limit_seq: int
    ) -> tuple[int, int]:
        """Delete the log entries of dropped deployments and old project notes.

        Everything prunable is in the log's oldest stretch (seq up to the count
        limit, or received before the age cutoff), so only that stretch is read.
        """
        removed = top = 0
        start = "-"
        while True:
            rows = self._range(self._key("log"), start, "+", SCAN_CHUNK)
            doomed: list[tuple[bytes, bytes]] = []
            stop = False
            for entry_id, fields in rows:
                seq = _seq(entry_id)
                if not ((cutoff is not None and float(fields[b"r"]) < cutoff) or seq <= limit_seq):
                    stop = True
                    break
                deployment = fields.get(b"d")
                loose = deployment is None or fields[b"t"].decode() in PROJECT_ONLY_TYPES
                if loose or (deployment is not None and deployment.decode() in dropped):
                    doomed.append((entry_id, fields[b"p"]))
                    top = max(top, seq)
            if doomed:
                with self._redis.pipeline(transaction=True) as pipe:
                    pipe.xdel(self._key("log"), *(entry_id for entry_id, _ in doomed))
                    for entry_id, project in doomed:
                        pipe.xdel(self._key("ps:", project.decode()), entry_id)
                    removed += int(pipe.execute()[0])
            if stop or len(rows) < SCAN_CHUNK:
                return removed, top
            start = f"({rows[-1][0].decode()}"

    def ping(self) -> None:
        with _available(self._closed):
            self._redis.ping()

    # -- cross-process wake-ups ------------------------------------------------------------

    def start_listener(self, notify: Callable[[], None]) -> None:
        """Call ``notify`` whenever any process appends (and after each reconnect).

        Needs gevent's patched sockets (gunicorn's gevent worker); without them
        a blocking read would stall the process, and the hub's poll alone
        carries other processes' events.
        """
        if self._listener is not None:
            return
        if not gevent.monkey.is_module_patched("socket"):
            log.info("sockets are not patched by gevent: no Redis listener, polling only")
            return
        self._listener = gevent.spawn(self._listen, notify)

    def _listen(self, notify: Callable[[], None]) -> None:
        failures = 0
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call,unused-ignore]  # redis-py leaves it unannotated
            try:
                pubsub.subscribe(self._key("notify"))
                if failures:
                    log.info("Redis listener reconnected")
                    self.hooks.on_reconnect()
                    with contextlib.suppress(StoreUnavailable):
                        self.repair_views()  # writes cut short by the outage
                failures = 0
                notify()  # whatever was appended while we were away is in the log
                while True:
                    if pubsub.get_message(timeout=LISTEN_POLL) is not None:
                        notify()
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                delay = LISTEN_BACKOFF.compute(failures)
                failures += 1
                log.warning("Redis listener disconnected (%s); retrying in %.0f s", exc, delay)
                gevent.sleep(delay)
            finally:
                with contextlib.suppress(redis.RedisError, OSError):
                    pubsub.close()

    def close(self) -> None:
        self._closed = True
        if self._listener is not None:
            self._listener.kill()
            self._listener = None
        self._pool.disconnect()


def _fold(project: bytes, raw: bytes, ts0: bytes | None) -> Fold:
    """A stored fold with the names and creation time its hash keeps beside it."""
    fold = Fold.loads(raw)
    if project.decode() not in fold.projects:
        fold.projects.append(project.decode())
    if ts0 is not None and fold.created_ts is None:
        fold.created_ts = ts0.decode()
    return fold


def _view(
    deployment_id: str,
    project: bytes,
    raw: bytes | None,
    legacy: bytes | None,
    received: bytes | None,
) -> DeploymentView:
    """Rendered from the fold; a hash written before folds were kept has its view as JSON."""
    view: DeploymentView = (
        orjson.loads(cast(bytes, legacy))
        if raw is None
        else render(_fold(project, raw, None), deployment_id)
    )
    view["last_news_at"] = news_at(float(received)) if received else None
    return view


def _event_seq(event_id: str) -> int:
    position = parse_event_id(event_id)
    return 0 if position is None else position[1]
