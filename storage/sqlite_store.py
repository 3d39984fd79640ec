"""The embedded default store: one SQLite file in WAL mode.

Why SQLite: a deployment hub must survive a restart or a ``kill -9`` without
an extra server to operate, and SQLite's WAL journal gives exactly that with
one writer at a time, which is all one hub needs.  Each request's events are
written together with their log lines, the re-folded deployment views and the
idempotency records, so a request is stored whole or not at all.
``memory://`` is the same code on ``:memory:``.

Group commit: a ``COMMIT`` costs more than storing one event, so under
gevent (gunicorn's worker) the requests that reach the store while it is busy
are written by one writer greenlet in one ``BEGIN IMMEDIATE`` ... ``COMMIT``
(at most :data:`MAX_GROUP_EVENTS` events), and each deployment row the group
touches is written once, at its end.  A request whose batch fails is rolled
back alone (the group is written again, each batch in its own ``SAVEPOINT``)
and only its caller gets the error; a failed ``COMMIT`` fails every request of
the group.  Nobody is answered before the ``COMMIT`` that holds their events,
so a 2xx still means stored durably.  Without gevent's patching (plain
threads, scripts) each request is its own transaction.

Event ids are ``<epoch>-<seq>`` and the epoch is fixed when the file was
created.  A batch's seqs follow the largest ever stored (``AUTOINCREMENT``'s
``sqlite_sequence``, so none is reused even after pruning), are given by the
writer rather than drawn one ``INSERT`` at a time, and the batch's events and
log lines go in with one ``executemany`` each.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import gevent
import gevent.event
import gevent.monkey
import orjson

from ledger.events import PROJECT_ONLY_TYPES, Event
from ledger.filters import Filter
from ledger.ids import make_event_id, parse_event_id
from ledger.view import (
    LIFECYCLE_TYPES,
    Fold,
    content_key,
    decode_cursor,
    encode_cursor,
    list_row,
    log_lines_of,
    resolve_project,
    sort_key,
)
from storage.store import Accepted, Batch, History, Page, StoreHooks, StoreUnavailable

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    type TEXT NOT NULL,
    project TEXT NOT NULL,
    deployment_id TEXT,
    received_at REAL NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_deployment ON events (deployment_id, seq);
CREATE INDEX IF NOT EXISTS events_by_project ON events (project, seq);
CREATE TABLE IF NOT EXISTS deliveries (
    key TEXT PRIMARY KEY,
    ids BLOB NOT NULL,
    received_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS deployments (
    deployment_id TEXT PRIMARY KEY,
    project TEXT NOT NULL,
    status TEXT NOT NULL,
    branch TEXT,
    sort_ts TEXT NOT NULL,
    last_seq INTEGER NOT NULL,
    last_activity REAL NOT NULL,
    fold BLOB NOT NULL,
    metrics BLOB,
    metrics_key BLOB
);
CREATE INDEX IF NOT EXISTS deployments_by_time ON deployments (sort_ts, deployment_id);
CREATE INDEX IF NOT EXISTS deployments_by_project ON deployments (project, sort_ts);
CREATE TABLE IF NOT EXISTS log_lines (
    line INTEGER PRIMARY KEY AUTOINCREMENT,
    deployment_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    job TEXT,
    step TEXT,
    level TEXT NOT NULL,
    ts TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS log_lines_by_deployment ON log_lines (deployment_id, line);
"""

#: Decoded folds kept for the deployments written most recently.
_FOLD_CACHE_SIZE = 256
#: Most events one group commit writes; batches past it wait for the next transaction.
MAX_GROUP_EVENTS = 2000
_LIFECYCLE_SQL = ",".join(f"'{t}'" for t in LIFECYCLE_TYPES)


@dataclass
class _BatchWrites:
    """What one batch has written so far, so its many log lines skip repeated work.

    A batch is mostly log lines of one deployment: after its first event the
    others neither look the deployment up nor rewrite its row; ``touched`` is
    applied once at the end of the batch.  Its events and log lines are
    inserted together, one ``executemany`` each (their seqs are given, not
    drawn one ``INSERT`` at a time), before anything reads the log again.
    """

    next_seq: int  # what the next event of the batch is stored as
    known: dict[str, str] = field(default_factory=dict)  # deployment id -> project
    touched: dict[str, int] = field(default_factory=dict)  # deployment id -> newest seq
    events: list[tuple[Any, ...]] = field(default_factory=list)  # rows not yet inserted
    lines: list[tuple[Any, ...]] = field(default_factory=list)


#: A stored fold and the last seq it holds: where a late event is re-folded from.
_Checkpoint = tuple[bytes, int]


@dataclass(slots=True)
class _Cached:
    """A fold kept decoded, valid while ``encoded`` is what its row still holds."""

    encoded: bytes
    fold: Fold
    checkpoint: _Checkpoint | None


@dataclass(slots=True)
class _Pending:
    """A deployment's row as the group so far leaves it, written once before ``COMMIT``."""

    fold: Fold
    checkpoint: _Checkpoint | None
    project: str
    last_seq: int
    last_activity: float
    timestamp: str  # of the event that last set the row: sort_ts when the start is unknown


@dataclass(slots=True)
class _Queued:
    """A caller's batch waiting for the writer greenlet, and where its answer goes."""

    batch: Batch
    answer: Any = field(default_factory=gevent.event.AsyncResult)  # Accepted or the error


def _store_errors(method: Callable[P, T]) -> Callable[P, T]:
    """SQLite failures on reads surface as :class:`StoreUnavailable`, as on writes (503)."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return method(*args, **kwargs)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"read failed: {exc}") from exc

    return wrapper


class SqliteStore:
    """Event log and deployment view in one SQLite database (see module docstring)."""

    def __init__(
        self,
        path: str,
        *,
        synchronous: str = "NORMAL",
        retention_days: float = 0.0,
        retention_max_events: int = 0,
        group_commit: bool | None = None,
        max_group_events: int = MAX_GROUP_EVENTS,
        hooks: StoreHooks | None = None,
    ) -> None:
        """``group_commit`` defaults to whether gevent has patched ``threading``."""
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._folds: dict[str, _Cached] = {}  # by deployment id, oldest first
        self.retention_days = retention_days
        self.retention_max_events = retention_max_events
        self.group_commit = (
            gevent.monkey.is_module_patched("threading") if group_commit is None else group_commit
        )
        self.max_group_events = max_group_events
        self.hooks = hooks or StoreHooks()
        self._queue: deque[_Queued] = deque()
        self._work = gevent.event.Event()
        self._writer: gevent.Greenlet | None = None  # started by the first grouped append
        # Deployment rows a group defers to its end (None: written as each event comes).
        self._pending: dict[str, _Pending] | None = None
        self._writes: _BatchWrites | None = None  # of the batch being written
        self._group_seq: int | None = None  # the next seq, within a group's optimistic pass
        try:
            self._db = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False, timeout=10.0
            )
            # 8 KiB pages: a batch's rows and index entries dirty fewer pages, so each
            # COMMIT writes (and each checkpoint copies) less.  Only a new file takes it.
            self._db.execute("PRAGMA page_size=8192")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous}")
            self._db.executescript(_SCHEMA)
            self.epoch = self._init_epoch()
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot open SQLite store {path!r}: {exc}") from exc

    def _init_epoch(self) -> int:
        with self._transaction():
            self._db.execute(
                "INSERT OR IGNORE INTO meta VALUES ('epoch', ?)",
                (str(time.time_ns() // 1_000_000),),
            )
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('pruned_upto', '0')")
        return int(self._meta("epoch"))

    def _meta(self, key: str) -> str:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return str(row[0])

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"store busy or unavailable: {exc}") from exc
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            self._folds.clear()  # they may hold events that were not stored
            raise
        try:
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._db.execute("ROLLBACK")
            self._folds.clear()
            raise StoreUnavailable(f"commit failed: {exc}") from exc

    # -- writing -----------------------------------------------------------------

    def append(self, batch: Batch) -> Accepted:
        if not self.group_commit:
            try:
                with self._transaction():
                    return self._append(batch)
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"write failed: {exc}") from exc
        if self._writer is None or self._writer.dead:
            self._writer = gevent.spawn(self._write_forever)
        queued = _Queued(batch)
        self._queue.append(queued)
        self._work.set()
        accepted: Accepted = queued.answer.get()
        return accepted

    def _write_forever(self) -> None:
        """The writer greenlet: each pass stores everything queued, in groups.

        Waking it is a callback of gevent's loop, so every request that became
        ready in the same turn of the loop has queued its batch by then; one
        ``gevent.sleep(0)`` lets the greenlets already scheduled queue theirs
        too.  No yield happens between ``BEGIN`` and ``COMMIT``: the readers
        that share this connection never see a group half written.
        """
        try:
            while True:
                self._work.wait()
                gevent.sleep(0)
                self._work.clear()
                while self._queue:
                    group = self._take_group()
                    try:
                        self._write_group(group)
                    except Exception as exc:  # the writer outlives a bug; this group gets 503s
                        log.exception("group commit failed")
                        self._answer_failure(group, exc)
        finally:  # however the writer ends, nobody may wait forever for an answer
            self._fail_queued()

    def _fail_queued(self) -> None:
        while self._queue:
            self._queue.popleft().answer.set_exception(StoreUnavailable("store closed"))

    def _take_group(self) -> list[_Queued]:
        """The oldest queued batches, up to :attr:`max_group_events` (at least one batch)."""
        group = [self._queue.popleft()]
        size = len(group[0].batch.events)
        while self._queue and size + len(self._queue[0].batch.events) <= self.max_group_events:
            size += len(self._queue[0].batch.events)
            group.append(self._queue.popleft())
        return group

    def _write_group(self, group: list[_Queued]) -> None:
        """One transaction for ``group``; answer each caller once, after the ``COMMIT``.

        First optimistically: no savepoints, and each deployment's row (its fold
        re-encoded, its headline, the upsert of a fold of a dozen kilobytes) is
        written once at the end of the group however many of its events the group
        holds.  Should anything fail before the ``COMMIT``, the attempt is rolled
        back whole and the group written again carefully: each batch in its own
        savepoint, its rows as it goes, so that only a batch that fails is
        rolled back and only its caller gets the error.

        The requests of a group are concurrent, none answered yet, so any order
        is a true one: they are written in the order their deployments fold them
        (by their first event's time, then content), so that events stamped in
        the same millisecond, which arrive in any order, are folded in place
        instead of again from a checkpoint.
        """
        self.hooks.on_group(len(group))
        group.sort(key=_fold_order)
        try:
            self._begin()
        except StoreUnavailable as exc:
            self._answer_failure(group, exc)
            return
        self._pending = {}
        try:
            done = [(queued, self._append(queued.batch)) for queued in group]
            self._flush_pending()
        except Exception:  # noqa: BLE001 - written again carefully, which names the culprit
            self._pending = self._group_seq = None
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            self._folds.clear()
            self._write_group_carefully(group)
            return
        finally:
            self._pending = self._group_seq = None
        self._commit(group, done)

    def _write_group_carefully(self, group: list[_Queued]) -> None:
        """One savepoint per batch: a batch that fails is rolled back alone."""
        try:
            self._begin()
        except StoreUnavailable as exc:
            self._answer_failure(group, exc)
            return
        done: list[tuple[_Queued, Accepted]] = []
        try:
            for queued in group:
                self._db.execute("SAVEPOINT batch")
                try:
                    accepted = self._append(queued.batch)
                except Exception as exc:  # noqa: BLE001 - raised to the batch's own caller
                    self._fail_batch(queued, exc)
                    continue
                self._db.execute("RELEASE batch")
                done.append((queued, accepted))
        except Exception as exc:  # noqa: BLE001 - every caller not yet answered gets a 503
            self._answer_failure(group, exc)
            return
        self._commit(group, done)

    def _begin(self) -> None:
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"store busy or unavailable: {exc}") from exc

    def _commit(self, group: list[_Queued], done: list[tuple[_Queued, Accepted]]) -> None:
        """``COMMIT``, then answer; a failed ``COMMIT`` fails every caller of the group."""
        try:
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._answer_failure(group, StoreUnavailable(f"commit failed: {exc}"))
            return
        for queued, accepted in done:
            queued.answer.set(accepted)

    def _answer_failure(self, group: list[_Queued], exc: Exception) -> None:
        """Every caller not yet answered gets a 503; what is left of the group is rolled back."""
        log.error("group commit of %d requests failed: %s", len(group), exc)
        for queued in group:
            if not queued.answer.ready():
                queued.answer.set_exception(_unavailable(exc))
        self._folds.clear()
        if self._db.in_transaction:
            with contextlib.suppress(sqlite3.Error):  # nothing was committed either way
                self._db.execute("ROLLBACK")

    def _fail_batch(self, queued: _Queued, exc: Exception) -> None:
        """Undo one batch of a group; its caller gets what the direct path would raise.

        Raises :class:`StoreUnavailable` when SQLite has already rolled the whole
        transaction back (a full disk, say): the batches before it are gone too.
        """
        if not self._db.in_transaction:
            queued.answer.set_exception(_unavailable(exc))
            raise _unavailable(exc)
        self._db.execute("ROLLBACK TO batch")
        self._db.execute("RELEASE batch")
        self._folds.clear()  # they may hold the events just rolled back
        queued.answer.set_exception(_unavailable(exc) if isinstance(exc, sqlite3.Error) else exc)

    def _append(self, batch: Batch) -> Accepted:
        if batch.delivery_key is not None:
            ids = self._delivery(batch.delivery_key)
            if ids is not None:
                return Accepted(ids=ids, duplicate=True)
        ids, stored = [], []
        grouped = self._pending is not None  # the optimistic pass: nothing is rolled back alone
        first = self._group_seq if grouped and self._group_seq is not None else self._next_seq()
        writes = self._writes = _BatchWrites(first)
        try:
            for event in batch.events:
                key = f"event_id:{event.dedup_key}" if event.dedup_key else None
                earlier = self._delivery(key) if key else None
                if earlier is not None:
                    ids.extend(earlier)
                    continue
                saved = self._insert(event, writes)
                stored.append(saved)
                ids.append(saved.id)
                if key:
                    self._remember(key, [saved.id])
            self._insert_rows()
        finally:
            self._writes = None
        if grouped:
            self._group_seq = writes.next_seq
        self._touch(writes.touched)
        if batch.delivery_key is not None:
            self._remember(batch.delivery_key, ids)
        return Accepted(ids=ids, duplicate=not stored, stored=stored)

    def _delivery(self, key: str) -> list[str] | None:
        row = self._db.execute("SELECT ids FROM deliveries WHERE key = ?", (key,)).fetchone()
        return None if row is None else list(orjson.loads(row[0]))

    def _remember(self, key: str, ids: list[str]) -> None:
        self._db.execute(
            "INSERT INTO deliveries VALUES (?, ?, ?)", (key, orjson.dumps(ids), time.time())
        )

    def _next_seq(self) -> int:
        row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
        return 1 if row is None else int(row[0]) + 1

    def _resolve(self, event: Event, writes: _BatchWrites) -> Event:
        """Give a legacy body its deployment and an ``unknown`` project its real one."""
        if event.type in PROJECT_ONLY_TYPES:
            return event
        known = writes.known
        if event.deployment_id in known and event.project == known[event.deployment_id]:
            return event
        deployment_id = event.deployment_id
        if deployment_id is None or event.project in ("", "unknown"):
            self._flush_pending()  # the queries below read what the rows say
        if deployment_id is None:
            if event.join != "new":
                row = self._db.execute(
                    "SELECT deployment_id FROM deployments WHERE project = ? AND status IN "
                    "('running', 'pending') ORDER BY sort_ts DESC, deployment_id DESC LIMIT 1",
                    (event.project,),
                ).fetchone()
                deployment_id = row[0] if row else None
            if deployment_id is None:
                deployment_id = f"{event.project}-auto-{writes.next_seq}"
        project = event.project
        if project in ("", "unknown"):
            row = self._db.execute(
                "SELECT project FROM deployments WHERE deployment_id = ?", (deployment_id,)
            ).fetchone()
            project = row[0] if row else "unknown"
        if deployment_id == event.deployment_id and project == event.project:
            return event
        return event.with_(deployment_id=deployment_id, project=project)

    def _insert(self, event: Event, writes: _BatchWrites) -> Event:
        event = self._resolve(event, writes)
        seq, now = writes.next_seq, time.time()
        writes.next_seq += 1
        writes.events.append(
            (seq, event.type, event.project, event.deployment_id, now, _body(event))
        )
        saved = event.with_id(make_event_id(self.epoch, seq))
        if event.deployment_id is not None and event.type not in PROJECT_ONLY_TYPES:
            writes.lines.extend((event.deployment_id, seq, *line) for line in log_lines_of(saved))
            if event.type == "log_entry" and event.deployment_id in writes.known:
                writes.touched[event.deployment_id] = seq
            else:
                writes.known[event.deployment_id] = self._update_deployment(saved, seq, now)
        return saved

    def _insert_rows(self) -> None:
        """Insert the events and log lines the batch holds so far (before the log is read)."""
        writes = self._writes
        if writes is None:
            return
        if writes.events:
            self._db.executemany(
                "INSERT INTO events (seq, type, project, deployment_id, received_at, body) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                writes.events,
            )
            writes.events.clear()
        if writes.lines:
            self._db.executemany(
                "INSERT INTO log_lines (deployment_id, seq, job, step, level, ts, message) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                writes.lines,
            )
            writes.lines.clear()

    def _touch(self, touched: dict[str, int]) -> None:
        """Record the newest activity of deployments whose log lines skipped their row.

        Only where the log line is the newest: a lifecycle event later in the batch
        has already written its own, newer, seq.
        """
        now = time.time()
        rows = []
        for deployment_id, seq in touched.items():
            pending = self._pending.get(deployment_id) if self._pending is not None else None
            if pending is None:
                rows.append((seq, now, deployment_id, seq))
            elif seq > pending.last_seq:
                pending.last_seq, pending.last_activity = seq, now
        if rows:
            self._db.executemany(
                "UPDATE deployments SET last_seq = ?, last_activity = ? "
                "WHERE deployment_id = ? AND last_seq < ?",
                rows,
            )

    def _fold(
        self, deployment_id: str, event: Event, seq: int, saved: bytes | None
    ) -> tuple[Fold, _Checkpoint | None]:
        """The deployment's fold with ``event`` (stored as ``seq``) in it, and its checkpoint.

        The last folds written are kept decoded in memory; one is reused only while
        the stored bytes are still exactly what this process wrote (another worker
        may have written since), and the cache is dropped on any rollback.  The
        checkpoint is the stored fold as it was before the newest timestamp began.
        """
        if saved is None or event.type not in LIFECYCLE_TYPES:
            return self._refold(deployment_id), None
        cached = self._folds.get(deployment_id)
        if cached is not None and cached.encoded == saved:
            fold, checkpoint = cached.fold, cached.checkpoint
        else:
            fold, checkpoint = Fold.loads(saved), None
        if fold.last_key is None or event.timestamp > fold.last_key[0]:
            checkpoint = (saved, seq - 1)
        return self._fold_onto(deployment_id, event, fold, checkpoint)

    def _fold_onto(
        self, deployment_id: str, event: Event, fold: Fold, checkpoint: _Checkpoint | None
    ) -> tuple[Fold, _Checkpoint | None]:
        """``fold`` with ``event`` in it: applied directly when it sorts after everything
        folded; else, typically stamped in the same millisecond (or second) as the last
        ones, folded again from the checkpoint with the few events stored since; only
        when even the checkpoint is too new, folded again from the whole log.
        """
        key = content_key(event)
        if fold.follows(event, key):
            fold.apply(event, key)
            return fold, checkpoint
        if checkpoint is not None:
            resumed = self._fold_since(deployment_id, *checkpoint)
            if resumed is not None:
                return resumed, checkpoint
        return self._refold(deployment_id), None

    def _refold(self, deployment_id: str) -> Fold:
        self._insert_rows()
        rows = self._db.execute(
            f"SELECT seq, body FROM events WHERE deployment_id = ? AND type IN ({_LIFECYCLE_SQL})",
            (deployment_id,),
        )
        return Fold.of([self._decode(s, b) for s, b in rows])

    def _fold_since(self, deployment_id: str, saved: bytes, since: int) -> Fold | None:
        """``saved`` (the fold of the events up to ``since``) with the later ones applied.

        As :meth:`Fold.of` does from scratch: repeats dropped, then in sort order.
        ``None`` when a later event sorts before what ``saved`` holds.
        """
        fold = Fold.loads(saved)
        self._insert_rows()
        rows = self._db.execute(
            f"SELECT seq, body FROM events WHERE deployment_id = ? AND seq > ? "
            f"AND type IN ({_LIFECYCLE_SQL})",
            (deployment_id, since),
        )
        keyed = {content_key(e): e for e in (self._decode(s, b) for s, b in rows)}
        if not all(fold.follows(e, key) for key, e in keyed.items()):
            return None
        for key, e in sorted(keyed.items(), key=lambda item: sort_key(item[1], item[0])):
            fold.apply(e, key)
        return fold

    def _remember_fold(
        self, deployment_id: str, encoded: bytes, fold: Fold, checkpoint: _Checkpoint | None
    ) -> None:
        self._folds.pop(deployment_id, None)
        self._folds[deployment_id] = _Cached(encoded, fold, checkpoint)
        while len(self._folds) > _FOLD_CACHE_SIZE:
            del self._folds[next(iter(self._folds))]

    def _update_deployment(self, event: Event, seq: int, now: float) -> str:
        """Bring the deployment's row up to date with ``event``; return its project.

        Within a group the row is only brought up to date in memory
        (:class:`_Pending`) and written by :meth:`_flush_pending`.
        """
        deployment_id = str(event.deployment_id)
        pending = self._pending.get(deployment_id) if self._pending is not None else None
        if pending is not None and event.type == "metrics_update":
            self._flush_pending()  # its metrics go straight into the row, which must exist
            pending = None
        if pending is not None:
            if event.type in LIFECYCLE_TYPES:
                pending.fold, pending.checkpoint = self._fold_onto(
                    deployment_id, event, pending.fold, pending.checkpoint
                )
                pending.project = resolve_project(
                    [*pending.fold.projects, pending.project, event.project]
                )
                pending.timestamp = event.timestamp
            pending.last_seq, pending.last_activity = seq, now
            return pending.project
        row = self._db.execute(
            "SELECT project, metrics_key, fold FROM deployments WHERE deployment_id = ?",
            (deployment_id,),
        ).fetchone()
        if row is None or event.type in LIFECYCLE_TYPES:
            fold, checkpoint = self._fold(deployment_id, event, seq, row[2] if row else None)
            pending = _Pending(
                fold,
                checkpoint,
                resolve_project([*fold.projects, row[0] if row else "", event.project]),
                seq,
                now,
                event.timestamp,
            )
            if self._pending is None or event.type == "metrics_update":
                self._write_row(deployment_id, pending)
            else:
                self._pending[deployment_id] = pending
            project = pending.project
        else:
            project = row[0]
            self._db.execute(
                "UPDATE deployments SET last_seq = ?, last_activity = ? WHERE deployment_id = ?",
                (seq, now, deployment_id),
            )
        if event.type == "metrics_update":
            key = event.timestamp.encode() + content_key(event)
            current = None if row is None else row[1]
            if current is None or key > current:
                self._db.execute(
                    "UPDATE deployments SET metrics = ?, metrics_key = ? WHERE deployment_id = ?",
                    (
                        orjson.dumps({**event.payload["metrics"], "_at": event.timestamp}),
                        key,
                        deployment_id,
                    ),
                )
        return str(project)

    def _write_row(self, deployment_id: str, row: _Pending) -> None:
        status, _, started_at = row.fold.headline()
        encoded = row.fold.dumps()
        self._remember_fold(deployment_id, encoded, row.fold, row.checkpoint)
        self._db.execute(
            "INSERT INTO deployments (deployment_id, project, status, branch, sort_ts, "
            "last_seq, last_activity, fold) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (deployment_id) DO UPDATE SET project = excluded.project, "
            "status = excluded.status, branch = excluded.branch, sort_ts = excluded.sort_ts, "
            "last_seq = excluded.last_seq, last_activity = excluded.last_activity, "
            "fold = excluded.fold",
            (
                deployment_id,
                row.project,
                status,
                row.fold.metadata.get("branch"),
                started_at or row.timestamp,
                row.last_seq,
                row.last_activity,
                encoded,
            ),
        )

    def _flush_pending(self) -> None:
        """Write the rows a group deferred, each once."""
        if self._pending:
            for deployment_id, row in self._pending.items():
                self._write_row(deployment_id, row)
            self._pending.clear()

    # -- the event log -----------------------------------------------------------------

    def _decode(self, seq: int, body: bytes) -> Event:
        data = orjson.loads(body)
        data["id"] = make_event_id(self.epoch, seq)
        return Event.from_dict(data)

    @_store_errors
    def last_seq(self) -> int:
        row = self._db.execute("SELECT max(seq) FROM events").fetchone()
        return int(row[0] or 0)

    @_store_errors
    def read_after(self, seq: int, limit: int) -> list[tuple[int, Event]]:
        rows = self._db.execute(
            "SELECT seq, body FROM events WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit)
        ).fetchall()
        return [(s, self._decode(s, b)) for s, b in rows]

    @_store_errors
    def history(self, match: Filter, since: str | None, upto: int, limit: int) -> History:
        """Events for ``match`` up to ``upto``; ``recovered`` tells if they reach ``since``."""
        after, recovered = 0, True
        if since is not None:
            position = parse_event_id(since)
            if position is None or position[0] != self.epoch or position[1] > upto:
                recovered = False  # another epoch, not ours, or from the future: start over
            else:
                after = position[1]
                recovered = after >= int(self._meta("pruned_upto"))
        column, value = (
            ("project", match.project)
            if match.project is not None
            else ("deployment_id", match.deployment_id)
        )
        types = sorted(match.types) if match.types else None
        type_sql = f" AND type IN ({','.join('?' * len(types))})" if types else ""
        rows = self._db.execute(
            f"SELECT seq, body FROM events WHERE {column} = ? AND seq > ? AND seq <= ?"
            f"{type_sql} ORDER BY seq DESC LIMIT ?",
            (value, after, upto, *(types or []), limit + 1),
        ).fetchall()
        if len(rows) > limit:
            rows = rows[:limit]
            recovered = recovered and since is None
        rows.reverse()
        return History([self._decode(s, b) for s, b in rows], recovered)

    @_store_errors
    def events(
        self, *, project: str | None, deployment_id: str | None, since: str | None, limit: int
    ) -> Page:
        clauses: list[str] = ["seq > ?"]
        params: list[Any] = [0]
        if since is not None:
            position = parse_event_id(since)
            if position is not None and position[0] == self.epoch:
                params[0] = position[1]
        for column, value in (("project", project), ("deployment_id", deployment_id)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        rows = self._db.execute(
            f"SELECT seq, body FROM events WHERE {' AND '.join(clauses)} ORDER BY seq LIMIT ?",
            (*params, limit + 1),
        ).fetchall()
        items = [self._decode(s, b).to_dict() for s, b in rows[:limit]]
        more = len(rows) > limit
        return Page(items, items[-1]["id"] if more and items else None)

    # -- the deployment view -------------------------------------------------------------

    @_store_errors
    def list_deployments(
        self,
        *,
        project: str | None,
        status: str | None,
        branch: str | None,
        limit: int,
        cursor: str | None,
    ) -> Page:
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in (("project", project), ("status", status), ("branch", branch)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if cursor is not None:
            sort_ts, deployment_id = decode_cursor(cursor)
            clauses.append("(sort_ts, deployment_id) < (?, ?)")
            params += [sort_ts, deployment_id]
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._db.execute(
            f"SELECT deployment_id, sort_ts, project, fold, metrics FROM deployments {where} "
            "ORDER BY sort_ts DESC, deployment_id DESC LIMIT ?",
            (*params, limit + 1),
        ).fetchall()
        items = [list_row(_view(d, p, f), m) for d, _, p, f, m in rows[:limit]]
        next_cursor = (
            encode_cursor(rows[limit - 1][1], rows[limit - 1][0]) if (len(rows) > limit) else None
        )
        return Page(items, next_cursor)

    @_store_errors
    def get_deployment(self, deployment_id: str) -> dict[str, Any] | None:
        row = self._db.execute(
            "SELECT project, fold, metrics, last_seq FROM deployments WHERE deployment_id = ?",
            (deployment_id,),
        ).fetchone()
        if row is None:
            return None
        view = _view(deployment_id, row[0], row[1])
        view["metrics"] = orjson.loads(row[2]) if row[2] else None
        view["last_event_id"] = make_event_id(self.epoch, row[3])
        view["log_lines"] = self._db.execute(
            "SELECT count(*) FROM log_lines WHERE deployment_id = ?", (deployment_id,)
        ).fetchone()[0]
        return view

    @_store_errors
    def logs(
        self,
        deployment_id: str,
        *,
        job: str | None,
        step: str | None,
        after: str | None,
        limit: int,
    ) -> Page:
        clauses: list[str] = ["deployment_id = ?"]
        params: list[Any] = [deployment_id]
        for column, value in (("job", job), ("step", step)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if after is not None:
            clauses.append("line > ?")
            params.append(int(after))
        rows = self._db.execute(
            f"SELECT line, job, step, level, ts, message, seq FROM log_lines "
            f"WHERE {' AND '.join(clauses)} ORDER BY line LIMIT ?",
            (*params, limit + 1),
        ).fetchall()
        items = [
            {
                "id": str(line),
                "job": j,
                "step": s,
                "level": lvl,
                "timestamp": ts,
                "message": msg,
                "event_id": make_event_id(self.epoch, seq),
            }
            for line, j, s, lvl, ts, msg, seq in rows[:limit]
        ]
        return Page(items, items[-1]["id"] if len(rows) > limit else None)

    @_store_errors
    def projects(self) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT project, count(*), sum(status = 'success'), sum(status = 'failure'), "
            "sum(status IN ('running', 'pending')), sum(status = 'cancelled') "
            "FROM deployments GROUP BY project ORDER BY project"
        ).fetchall()
        result = []
        for project, total, success, failure, running, cancelled in rows:
            latest = self._db.execute(
                "SELECT deployment_id, fold, metrics FROM deployments WHERE project = ? "
                "ORDER BY sort_ts DESC, deployment_id DESC LIMIT 1",
                (project,),
            ).fetchone()
            result.append(
                {
                    "project": project,
                    "latest_deployment": list_row(_view(latest[0], project, latest[1]), latest[2]),
                    "counts": {
                        "total": total,
                        "success": success,
                        "failure": failure,
                        "running": running,
                        "cancelled": cancelled,
                    },
                }
            )
        return result

    # -- upkeep ------------------------------------------------------------------------

    def prune(self) -> int:
        """Drop whole deployments (and project notes) past the age or count limit.

        Whole deployments go, never part of one, so a view can always be re-folded
        from what is left; ``pruned_upto`` remembers the newest seq removed, which
        is how a resuming client learns its history no longer reaches back.
        """
        doomed: set[str] = set()
        cutoff = time.time() - self.retention_days * 86400 if self.retention_days else None
        with self._transaction():
            if cutoff is not None:
                doomed.update(
                    r[0]
                    for r in self._db.execute(
                        "SELECT deployment_id FROM deployments WHERE last_activity < ?", (cutoff,)
                    )
                )
            total = self._db.execute("SELECT count(*) FROM events").fetchone()[0]
            limit_seq = 0
            if self.retention_max_events and total > self.retention_max_events:
                limit_seq = self._db.execute(
                    "SELECT seq FROM events ORDER BY seq LIMIT 1 OFFSET ?",
                    (total - self.retention_max_events - 1,),
                ).fetchone()[0]
                doomed.update(
                    r[0]
                    for r in self._db.execute(
                        "SELECT deployment_id FROM deployments WHERE last_seq <= ?", (limit_seq,)
                    )
                )
            removed = max_seq = 0
            for deployment_id in doomed:
                top = (
                    self._db.execute(
                        "SELECT max(seq) FROM events WHERE deployment_id = ?", (deployment_id,)
                    ).fetchone()[0]
                    or 0
                )
                max_seq = max(max_seq, top)
                removed += self._db.execute(
                    "DELETE FROM events WHERE deployment_id = ?", (deployment_id,)
                ).rowcount
                self._db.execute("DELETE FROM log_lines WHERE deployment_id = ?", (deployment_id,))
                self._db.execute(
                    "DELETE FROM deployments WHERE deployment_id = ?", (deployment_id,)
                )
            loose = "deployment_id IS NULL OR type IN ('project_status', 'test')"
            for clause, value in (("received_at < ?", cutoff), ("seq <= ?", limit_seq or None)):
                if value is None:
                    continue
                top = (
                    self._db.execute(
                        f"SELECT max(seq) FROM events WHERE ({loose}) AND {clause}",
                        (value,),
                    ).fetchone()[0]
                    or 0
                )
                max_seq = max(max_seq, top)
                removed += self._db.execute(
                    f"DELETE FROM events WHERE ({loose}) AND {clause}", (value,)
                ).rowcount
            if cutoff is not None:
                self._db.execute("DELETE FROM deliveries WHERE received_at < ?", (cutoff,))
            if max_seq:
                self._db.execute(
                    "UPDATE meta SET value = max(CAST(value AS INTEGER), ?) "
                    "WHERE key = 'pruned_upto'",
                    (max_seq,),
                )
        if removed:
            log.info("pruned %d events of %d deployments", removed, len(doomed))
        return int(removed)

    def ping(self) -> None:
        try:
            self._db.execute("SELECT 1 FROM meta LIMIT 1").fetchone()
        except sqlite3.Error as exc:
            raise StoreUnavailable(str(exc)) from exc

    def close(self) -> None:
        if self._writer is not None:
            self._writer.kill()  # a writer that never ran is dropped without its finally
            self._fail_queued()
        self._db.close()


def _fold_order(queued: _Queued) -> tuple[str, int, str]:
    events = queued.batch.events
    return sort_key(events[0], content_key(events[0])) if events else ("", 0, "")


def _body(event: Event) -> bytes:
    """What the log keeps of an event: its wire shape without the id (the row's seq is)."""
    body = event.to_dict()
    del body["id"]
    return orjson.dumps(body)


def _unavailable(exc: Exception) -> StoreUnavailable:
    """The error a caller gets for ``exc``: a new one each, since each raises it."""
    if isinstance(exc, StoreUnavailable):
        error = StoreUnavailable(str(exc))
        error.__cause__ = exc.__cause__
    else:
        error = StoreUnavailable(f"write failed: {exc}")
        error.__cause__ = exc
    return error


def _view(deployment_id: str, project: str, fold: bytes) -> dict[str, Any]:
    """The view is rendered on read: rows keep only the fold, which is half the bytes."""
    return {**Fold.loads(fold).render(deployment_id), "project": project}
