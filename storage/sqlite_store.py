"""The embedded default store: one SQLite file in WAL mode.

Why SQLite: a deployment hub must survive a restart or a ``kill -9`` without
an extra server to operate, and SQLite's WAL journal gives exactly that with
one writer at a time, which is all one hub needs.  Each request's events are
written together with their log lines, the deployment rows the ledger decided
and the idempotency records, so a request is stored whole or not at all.
``memory://`` is the same code on ``:memory:``.

Writes go through :class:`~storage.group_commit.GroupCommit`, which shares one
transaction among concurrent requests; inside it, one
:class:`~ledger.recorder.Recorder` per transaction makes every decision, and
this module persists them: the events and their log lines (one
``executemany`` each), then each deployment's row once.  Rows keep the
ledger's fold, and views are rendered from it on read.

Event ids are ``<epoch>-<seq>`` and the epoch is fixed when the file was
created.  A write's seqs follow the largest ever stored (``AUTOINCREMENT``'s
``sqlite_sequence``, so none is reused even after pruning).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gevent.monkey
import orjson

from ledger.cursors import decode_cursor, encode_cursor
from ledger.environments import EnvironmentState, picked_states
from ledger.events import LIFECYCLE_TYPES, OPEN_STATUSES, PROJECT_ONLY_TYPES, Event
from ledger.filters import Filter
from ledger.fold import Fold, content_key, sort_key
from ledger.ids import make_event_id
from ledger.logs import LogLine, LogRow, log_row
from ledger.recorder import Recorder, Stored, Touched, record_in_batch
from ledger.resume import resume_from
from ledger.retention import Retention
from ledger.staleness import news_at
from ledger.view import DeploymentView, ListRow, ProjectSummary, list_row, project_summary, render
from storage.bodies import event_of, lines_of, pack, text_in_lines, unpack
from storage.group_commit import GroupCommit
from storage.sqlite_aggregates import SqliteAggregates
from storage.sqlite_analysis import INDEX_BATCH, LOG_SEARCH, SqliteLogAnalysis
from storage.sqlite_errors import read_errors
from storage.sqlite_steps import SqliteStepRuns
from storage.sqlite_version import SCHEMA_VERSION, newer_schema, stamped_schema
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

log = logging.getLogger(__name__)


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
    received_at REAL NOT NULL,
    digest TEXT
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

#: Most events one group commit writes; batches past it wait for the next transaction.
MAX_GROUP_EVENTS = 2000
#: WAL pages that make a commit copy the WAL into the file (SQLite's default: 1,000).  A
#: checkpoint copies each page once however many commits changed it, and every commit
#: changes the same few (the ends of the indexes, ``sqlite_sequence``, the search index's
#: structure, a deployment's row): ten times fewer checkpoints copy far fewer pages, for a
#: WAL of up to 80 MiB on disk.
WAL_CHECKPOINT_PAGES = 10000
_LIFECYCLE_SQL = ",".join(f"'{t}'" for t in sorted(LIFECYCLE_TYPES))
_OPEN_SQL = ",".join(f"'{s}'" for s in sorted(OPEN_STATUSES))
#: What :meth:`SqliteStore._decode` reads of an event row.
_EVENT_COLUMNS = "seq, type, project, deployment_id, body"


class _Source:
    """What the ledger asks while a transaction writes: read from that transaction.

    The recorder holds every deployment the transaction touched; these reads
    only ever see rows and events committed or written before it began.
    """

    def __init__(self, store: SqliteStore, first_seq: int) -> None:
        self.store = store
        self.first_seq = first_seq
        #: Each stored deployment read, by id: its row's ``project`` as the write found it.
        self.projects: dict[str, str] = {}

    def deployment(self, deployment_id: str) -> Stored | None:
        row = self.store._db.execute(
            "SELECT project, fold, metrics_key FROM deployments WHERE deployment_id = ?",
            (deployment_id,),
        ).fetchone()
        if row is None:
            return None
        self.projects[deployment_id] = row[0]
        return Stored(_fold(row[0], row[1]), row[2])

    def open_deployments(self, project: str, limit: int) -> list[tuple[str, str]]:
        rows = self.store._db.execute(
            f"SELECT sort_ts, deployment_id FROM deployments WHERE project = ? AND status IN "
            f"({_OPEN_SQL}) ORDER BY sort_ts DESC, deployment_id DESC LIMIT ?",
            (project, limit),
        ).fetchall()
        return [(sort_ts, deployment_id) for sort_ts, deployment_id in rows]

    def lifecycle(self, deployment_id: str) -> list[Event]:
        rows = self.store._db.execute(
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE deployment_id = ? AND seq < ? "
            f"AND type IN ({_LIFECYCLE_SQL})",
            (deployment_id, self.first_seq),
        ).fetchall()
        return [event for _, event in self.store._decode(rows)]


class SqliteStore(SqliteLogAnalysis, SqliteAggregates, SqliteStepRuns):
    """Event log and deployment view in one SQLite database (see module docstring).

    Failure records, log search and the folds an ETA reads are
    :class:`~storage.sqlite_analysis.SqliteLogAnalysis`'s; the counters that
    project and delivery figures are read from
    :class:`~storage.sqlite_aggregates.SqliteAggregates`'s; the step runs trends count
    :class:`~storage.sqlite_steps.SqliteStepRuns`'s.
    """

    def __init__(
        self,
        path: str,
        *,
        synchronous: str = "NORMAL",
        retention: Retention | None = None,
        group_commit: bool | None = None,
        max_group_events: int = MAX_GROUP_EVENTS,
        index_batch: int = INDEX_BATCH,
        hooks: StoreHooks | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``group_commit`` defaults to whether gevent has patched ``threading``; ``clock``
        gives receipt times (what "last news" and pruning by age count from);
        ``index_batch`` is how many log lines wait before the search index takes them
        (``storage/sqlite_analysis.py``; 1 indexes each write's lines at once)."""
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.retention = retention or Retention()
        self.hooks = hooks or StoreHooks()
        self.clock = clock
        self.index_batch = index_batch
        try:
            self._db = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False, timeout=10.0
            )
            refused = newer_schema(path, stamped_schema(self._db))
            if refused is not None:
                self._db.close()
                raise StoreTooNew(refused)
            # 8 KiB pages: a batch's rows and index entries dirty fewer pages, so each
            # COMMIT writes (and each checkpoint copies) less.  Only a new file takes it.
            self._db.execute("PRAGMA page_size=8192")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous}")
            self._db.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
            self._db.executescript(_SCHEMA)
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(deliveries)")}
            if "digest" not in columns:  # a file from before bodies were told apart
                self._db.execute("ALTER TABLE deliveries ADD COLUMN digest TEXT")
            self._create_log_analysis()
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot open SQLite store {path!r}: {exc}") from exc
        self._writer: GroupCommit[Batch, Accepted] = GroupCommit(
            self._db,
            self._write,
            size=lambda batch: len(batch.events),
            order=_fold_order,
            max_size=max_group_events,
            grouped=(
                gevent.monkey.is_module_patched("threading")
                if group_commit is None
                else group_commit
            ),
            on_group=self.hooks.on_group,
        )
        self._writer.run(self._upgrade)
        self.epoch = self._writer.run(self._init_epoch)
        self._writer.run(self._fill_log_analysis)
        self._writer.run(self._build_aggregates)
        self._writer.run(self._build_step_runs)

    def _upgrade(self) -> None:
        """Bring a file of an earlier schema to :data:`SCHEMA_VERSION`, in place, in one
        transaction (a file that fails half-way is left as it was)."""
        found = self._db.execute(
            "SELECT key, value FROM meta WHERE key IN ('schema', 'epoch')"
        ).fetchall()
        version = int(dict(found).get("schema", 1 if found else SCHEMA_VERSION))
        refused = newer_schema(self.path, version)  # a newer hub's, since the check at open
        if refused is not None:
            raise StoreTooNew(refused)
        if version < SCHEMA_VERSION:
            log.info("upgrading %s from schema %d to %d", self.path, version, SCHEMA_VERSION)
        if version < 2:
            self._upgrade_to_compact()
        if version < 3:  # schema 3: the index takes lines in runs; so far it held each one
            self._mark_all_indexed()
        self._db.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))

    def _upgrade_to_compact(self) -> None:
        """Schema 1 to 2: each body packed (``storage/bodies.py``), a log entry's message
        kept in its lines only, and the search index contentless (refilled on open)."""
        self._db.execute("DROP TABLE IF EXISTS log_search")
        self._db.execute(LOG_SEARCH)
        self._db.execute("DELETE FROM meta WHERE key = 'log_search_scoped'")
        held = self._db.execute(
            "SELECT seq, min(line), count(*), group_concat(message, char(10)) "
            "FROM (SELECT seq, line, message FROM log_lines ORDER BY line) GROUP BY seq"
        )
        lines = next(held, None)
        after = 0
        while rows := self._db.execute(
            "SELECT seq, body FROM events WHERE seq > ? ORDER BY seq LIMIT 1000", (after,)
        ).fetchall():
            packed = []
            for seq, raw in rows:
                while lines is not None and lines[0] < seq:
                    lines = next(held, None)
                event = Event.from_dict({**orjson.loads(raw), "id": ""})
                span = None
                if lines is not None and lines[0] == seq:
                    message = event.payload.get("message")
                    split = message.splitlines() if isinstance(message, str) else []
                    if event.type == "log_entry" and message == lines[3] and len(split) == lines[2]:
                        span = (lines[1], lines[2])
                packed.append((pack(event, span), seq))
            self._db.executemany("UPDATE events SET body = ? WHERE seq = ?", packed)
            after = rows[-1][0]

    def _init_epoch(self) -> int:
        self._db.execute(
            "INSERT OR IGNORE INTO meta VALUES ('epoch', ?)", (str(time.time_ns() // 1_000_000),)
        )
        self._db.execute("INSERT OR IGNORE INTO meta VALUES ('pruned_upto', '0')")
        return int(self._meta("epoch"))

    def _meta(self, key: str) -> str:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return str(row[0])

    # -- writing ---------------------------------------------------------------------------

    def append(self, batch: Batch) -> Accepted:
        return self._writer.submit(batch)

    def _write(self, batches: list[Batch]) -> list[Accepted]:
        """Store ``batches`` in the open transaction: one recorder decides for all of them."""
        first_seq = self._next_seq()
        source = _Source(self, first_seq)
        recorder = Recorder(source, epoch=self.epoch, next_seq=first_seq)
        now = self.clock()
        events: list[tuple[Any, ...]] = []
        lines: list[tuple[Any, ...]] = []
        first_line = self._next_line()
        answers = [
            self._record(batch, recorder, now, events, lines, first_line) for batch in batches
        ]
        self._db.executemany(
            "INSERT INTO events (seq, type, project, deployment_id, received_at, body) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            events,
        )
        if lines:
            self._db.executemany(
                "INSERT INTO log_lines (line, deployment_id, seq, job, step, level, ts, message) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                lines,
            )
        self._move_indexed_lines(recorder, source.projects)
        for touched in recorder.deployments():
            self._write_row(touched, now)
        if lines:
            self._index_waiting_lines(first_line + len(lines) - 1)
        self._record_failures(recorder)
        self._aggregate(recorder)
        self._keep_step_runs(recorder)
        return answers

    def _record(
        self,
        batch: Batch,
        recorder: Recorder,
        now: float,
        events: list[tuple[Any, ...]],
        lines: list[tuple[Any, ...]],
        first_line: int,
    ) -> Accepted:
        """Enter one request's events into ``recorder``; queue their rows (log lines get
        ids from ``first_line`` on, in the order they are queued)."""
        if batch.delivery_key is not None:
            row = self._db.execute(
                "SELECT ids, digest FROM deliveries WHERE key = ?", (batch.delivery_key,)
            ).fetchone()
            if row is not None:
                if row[1] and batch.digest and row[1] != batch.digest:
                    raise DeliveryConflict("the delivery id was used before for another body")
                return Accepted(ids=list(orjson.loads(row[0])), duplicate=True)
        ids, stored = [], []
        for index, event in enumerate(batch.events):
            key = f"event_id:{event.dedup_key}" if event.dedup_key else None
            repeated = self._delivery(key) if key else None
            if repeated is not None:
                ids.extend(repeated)
                continue
            entry = record_in_batch(recorder, event, index, len(batch.events))
            saved, seq = entry.event, entry.seq
            line = first_line + len(lines)
            held = (line, len(entry.lines)) if text_in_lines(saved, entry.lines) else None
            body = pack(saved, held)
            events.append((seq, saved.type, saved.project, saved.deployment_id, now, body))
            lines.extend(
                (line + i, saved.deployment_id, seq, *log_line)
                for i, log_line in enumerate(entry.lines)
            )
            stored.append(saved)
            ids.append(saved.id)
            if key:
                self._remember(key, [saved.id], now)
        if batch.delivery_key is not None:
            self._remember(batch.delivery_key, ids, now, batch.digest)
        return Accepted(ids=ids, duplicate=not stored, stored=stored)

    def _delivery(self, key: str) -> list[str] | None:
        row = self._db.execute("SELECT ids FROM deliveries WHERE key = ?", (key,)).fetchone()
        return None if row is None else list(orjson.loads(row[0]))

    def _remember(self, key: str, ids: list[str], now: float, digest: str | None = None) -> None:
        self._db.execute(
            "INSERT INTO deliveries (key, ids, received_at, digest) VALUES (?, ?, ?, ?)",
            (key, orjson.dumps(ids), now, digest),
        )

    def _next_seq(self) -> int:
        row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
        return 1 if row is None else int(row[0]) + 1

    def _write_row(self, touched: Touched, now: float) -> None:
        """Persist what the recorder decided for one deployment."""
        if touched.created or touched.refolded:
            fold = touched.fold
            status, _, _ = fold.headline()
            self._db.execute(
                "INSERT INTO deployments (deployment_id, project, status, branch, sort_ts, "
                "last_seq, last_activity, fold) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (deployment_id) DO UPDATE SET project = excluded.project, "
                "status = excluded.status, branch = excluded.branch, sort_ts = excluded.sort_ts, "
                "last_seq = excluded.last_seq, last_activity = excluded.last_activity, "
                "fold = excluded.fold",
                (
                    touched.key,
                    fold.project,
                    status,
                    fold.metadata.get("branch"),
                    fold.sort_ts(),
                    touched.last_seq,
                    now,
                    fold.dumps(),
                ),
            )
        else:
            self._db.execute(
                "UPDATE deployments SET last_seq = ?, last_activity = ? WHERE deployment_id = ?",
                (touched.last_seq, now, touched.key),
            )
        if touched.metrics is not None:
            self._db.execute(
                "UPDATE deployments SET metrics_key = ?, metrics = ? WHERE deployment_id = ?",
                (*touched.metrics, touched.key),
            )

    # -- the event log ---------------------------------------------------------------------

    def _decode(self, rows: list[tuple[Any, ...]]) -> list[tuple[int, Event]]:
        """Events of ``rows`` (:data:`_EVENT_COLUMNS`), messages taken back from their lines."""
        bodies = [unpack(row[4]) for row in rows]
        held = [span for body in bodies if (span := lines_of(body)) is not None]
        texts: dict[int, str] = {}
        if held:
            low = min(first for first, _ in held)
            high = max(first + count for first, count in held)
            if high - low <= 4 * sum(count for _, count in held):  # one range holds them all
                spans = [(low, high - low)]
            else:
                spans = held
            for first, count in spans:
                texts.update(
                    self._db.execute(
                        "SELECT line, message FROM log_lines WHERE line >= ? AND line < ?",
                        (first, first + count),
                    ).fetchall()
                )
        result = []
        for (seq, event_type, project, deployment_id, _), body in zip(rows, bodies, strict=True):
            span = lines_of(body)
            text = None
            if span is not None:
                text = "\n".join(texts[line] for line in range(span[0], span[0] + span[1]))
            event = event_of(
                body,
                event_type=event_type,
                project=project,
                deployment_id=deployment_id,
                event_id=make_event_id(self.epoch, seq),
                text=text,
            )
            result.append((seq, event))
        return result

    @read_errors
    def last_seq(self) -> int:
        row = self._db.execute("SELECT max(seq) FROM events").fetchone()
        return int(row[0] or 0)

    @read_errors
    def read_after(self, seq: int, limit: int) -> list[tuple[int, Event]]:
        rows = self._db.execute(
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit)
        ).fetchall()
        return self._decode(rows)

    @read_errors
    def history(self, match: Filter, since: str | None, upto: int, limit: int) -> History:
        """Events for ``match`` up to ``upto``; ``recovered`` tells if they reach ``since``."""
        resume = resume_from(
            since, epoch=self.epoch, upto=upto, pruned_upto=int(self._meta("pruned_upto"))
        )
        clauses: list[str] = ["seq > ?", "seq <= ?"]
        params: list[Any] = [resume.after, upto]
        if match.project is not None:
            clauses.append("project = ?")
            params.append(match.project)
        elif match.deployment_id is not None:
            clauses.append("deployment_id = ?")
            params.append(match.deployment_id)
        if match.types:
            types = sorted(match.types)
            clauses.append(f"type IN ({','.join('?' * len(types))})")
            params += types
        rows = self._db.execute(
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE {' AND '.join(clauses)} "
            "ORDER BY seq DESC LIMIT ?",
            (*params, limit + 1),
        ).fetchall()
        if len(rows) > limit:
            rows = rows[:limit]
            resume = resume.truncated(since)
        rows.reverse()
        return History([event for _, event in self._decode(rows)], resume.recovered)

    @read_errors
    def events(
        self, *, project: str | None, deployment_id: str | None, since: str | None, limit: int
    ) -> Page[dict[str, Any]]:
        resume = resume_from(
            since,
            epoch=self.epoch,
            upto=self.last_seq(),
            pruned_upto=int(self._meta("pruned_upto")),
        )
        clauses: list[str] = ["seq > ?"]
        params: list[Any] = [resume.after]
        for column, value in (("project", project), ("deployment_id", deployment_id)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        rows = self._db.execute(
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE {' AND '.join(clauses)} "
            "ORDER BY seq LIMIT ?",
            (*params, limit + 1),
        ).fetchall()
        items = [event.to_dict() for _, event in self._decode(rows[:limit])]
        more = len(rows) > limit
        return Page(items, items[-1]["id"] if more and items else None, resume.recovered)

    # -- the deployment view -----------------------------------------------------------------

    @read_errors
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
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in (("project", project), ("status", status), ("branch", branch)):
            if value is not None:
                clauses.append(f"d.{column} = ?")
                params.append(value)
        # to one environment: walk that environment's index of deployment_facts instead
        order = "d" if environment is None else "f"
        if environment is not None:
            clauses.append("f.environment = ?")
            params.append(environment)
        if cursor is not None:
            sort_ts, deployment_id = decode_cursor(cursor)
            clauses.append(f"({order}.sort_ts, {order}.deployment_id) < (?, ?)")
            params += [sort_ts, deployment_id]
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        source = (
            "deployments d"
            if environment is None
            else "deployment_facts f INDEXED BY facts_by_environment_time "
            "JOIN deployments d ON d.deployment_id = f.deployment_id"
        )
        rows = self._db.execute(
            "SELECT d.deployment_id, d.sort_ts, d.project, d.fold, d.metrics, d.last_activity "
            f"FROM {source} {where} "
            f"ORDER BY {order}.sort_ts DESC, {order}.deployment_id DESC LIMIT ?",
            (*params, limit + 1),
        ).fetchall()
        items = [list_row(_view(d, p, f, a), m) for d, _, p, f, m, a in rows[:limit]]
        next_cursor = (
            encode_cursor(rows[limit - 1][1], rows[limit - 1][0]) if (len(rows) > limit) else None
        )
        return Page(items, next_cursor)

    @read_errors
    def get_deployment(self, deployment_id: str) -> DeploymentView | None:
        row = self._db.execute(
            "SELECT project, fold, metrics, last_seq, last_activity FROM deployments "
            "WHERE deployment_id = ?",
            (deployment_id,),
        ).fetchone()
        if row is None:
            return None
        view = _view(deployment_id, row[0], row[1], row[4])
        view["metrics"] = orjson.loads(row[2]) if row[2] else None
        view["last_event_id"] = make_event_id(self.epoch, row[3])
        view["log_lines"] = self._db.execute(
            "SELECT count(*) FROM log_lines WHERE deployment_id = ?", (deployment_id,)
        ).fetchone()[0]
        return view

    @read_errors
    def logs(
        self,
        deployment_id: str,
        *,
        job: str | None,
        step: str | None,
        after: str | None,
        limit: int,
    ) -> Page[LogRow]:
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
            log_row(line, LogLine(j, s, lvl, ts, msg), make_event_id(self.epoch, seq))
            for line, j, s, lvl, ts, msg, seq in rows[:limit]
        ]
        return Page(items, items[-1]["id"] if len(rows) > limit else None)

    @read_errors
    def projects(self) -> list[ProjectSummary]:
        counts = self._project_counts()
        result = []
        for project in sorted(counts):
            latest = self._db.execute(
                "SELECT deployment_id, fold, metrics, last_activity FROM deployments "
                "WHERE project = ? ORDER BY sort_ts DESC, deployment_id DESC LIMIT 1",
                (project,),
            ).fetchone()
            row = list_row(_view(latest[0], project, latest[1], latest[3]), latest[2])
            result.append(project_summary(project, counts[project], row))
        return result

    @read_errors
    def environment_states(
        self, *, project: str | None
    ) -> tuple[list[EnvironmentState], int, bool]:
        picks, scanned = self._environment_picks(project)
        wanted = sorted({i for pick in picks for i in pick[3:] if i is not None})
        rows: dict[str, ListRow] = {}
        for first in range(0, len(wanted), 500):
            chunk = wanted[first : first + 500]
            for deployment_id, name, fold, metrics, received in self._db.execute(
                "SELECT deployment_id, project, fold, metrics, last_activity FROM deployments "
                f"WHERE deployment_id IN ({','.join('?' * len(chunk))})",
                chunk,
            ):
                rows[deployment_id] = list_row(_view(deployment_id, name, fold, received), metrics)
        return picked_states(picks, rows), scanned, False

    # -- upkeep ------------------------------------------------------------------------------

    def prune(self) -> int:
        """Drop whole deployments (and project notes) past the retention limits.

        ``pruned_upto`` remembers the newest seq removed, which is how a
        resuming client learns its history no longer reaches back.
        """
        return self._writer.run(self._prune)

    def _prune(self) -> int:
        retention = self.retention
        if not retention.active:
            return 0
        age_cutoff = retention.age_cutoff(self.clock())
        seq_cutoff = 0
        excess = retention.excess(self._db.execute("SELECT count(*) FROM events").fetchone()[0])
        if excess:
            seq_cutoff = self._db.execute(
                "SELECT seq FROM events ORDER BY seq LIMIT 1 OFFSET ?", (excess - 1,)
            ).fetchone()[0]
        limits: list[tuple[str, float]] = []
        if age_cutoff is not None:
            limits.append(("last_activity < ?", age_cutoff))
        if seq_cutoff:
            limits.append(("last_seq <= ?", seq_cutoff))
        if not limits:
            return 0  # a count limit not reached, and no age limit
        doomed = [
            row[0]
            for row in self._db.execute(
                "SELECT deployment_id FROM deployments WHERE "
                + " OR ".join(clause for clause, _ in limits),
                [value for _, value in limits],
            )
        ]
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
            self._prune_log_analysis(deployment_id)
            self._prune_aggregates(deployment_id)
            self._prune_step_runs(deployment_id)
            self._db.execute("DELETE FROM log_lines WHERE deployment_id = ?", (deployment_id,))
            self._db.execute("DELETE FROM deployments WHERE deployment_id = ?", (deployment_id,))
        loose = f"deployment_id IS NULL OR type IN ({','.join('?' * len(PROJECT_ONLY_TYPES))})"
        for clause, value in (("received_at < ?", age_cutoff), ("seq <= ?", seq_cutoff or None)):
            if value is None:
                continue
            params = (*sorted(PROJECT_ONLY_TYPES), value)
            top = (
                self._db.execute(
                    f"SELECT max(seq) FROM events WHERE ({loose}) AND {clause}", params
                ).fetchone()[0]
                or 0
            )
            max_seq = max(max_seq, top)
            removed += self._db.execute(
                f"DELETE FROM events WHERE ({loose}) AND {clause}", params
            ).rowcount
        if age_cutoff is not None:
            self._db.execute("DELETE FROM deliveries WHERE received_at < ?", (age_cutoff,))
        if max_seq:
            self._db.execute(
                "UPDATE meta SET value = max(CAST(value AS INTEGER), ?) WHERE key = 'pruned_upto'",
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
        self._writer.close()
        self._db.close()


def _fold_order(batch: Batch) -> tuple[str, int, str]:
    """A group's batches in the order their deployments fold them (by their first event's
    time, then content), so that same-millisecond events fold in place."""
    events = batch.events
    return sort_key(events[0], content_key(events[0])) if events else ("", 0, "")


def _fold(project: str, raw: bytes) -> Fold:
    """A row's fold; the row's project is one of its names (rows of earlier versions
    kept the name of the event that created them only in the column)."""
    fold = Fold.loads(raw)
    if project not in fold.projects:
        fold.projects.append(project)
    return fold


def _view(deployment_id: str, project: str, raw: bytes, received: float) -> DeploymentView:
    """The view is rendered on read: rows keep only the fold, which is half the bytes."""
    view = render(_fold(project, raw), deployment_id)
    view["last_news_at"] = news_at(received)
    return view
