"""Log analysis in the SQLite store: failure records, full-text search, folds for trends.

Kept apart from ``storage/sqlite_store.py``, which mixes these methods in: the
store's write calls :meth:`SqliteLogAnalysis._move_indexed_lines`,
:meth:`SqliteLogAnalysis._index_waiting_lines` and
:meth:`SqliteLogAnalysis._record_failures` inside its transaction, and its
pruning :meth:`SqliteLogAnalysis._prune_log_analysis`, so that both stay
exactly in step with the log lines and the deployment rows.

* ``failures``: one row per failed deployment, the ledger's record
  (:func:`ledger.failures.explain`), written in the same transaction as the
  completion (or the log lines) that changed it, deleted when a re-run passes;
  indexed by what ``GET /api/failures`` tallies (so SQLite counts a window from the
  index alone) and by signature and time (``seen``, and a group's newest failures).
* ``log_search``: a contentless FTS5 index of the log lines, rowid = the
  line's id, of :func:`ledger.search.index_text` and, in a column of its own, of
  :func:`ledger.search.scope_text` (its deployment and that deployment's project, so
  those filters narrow inside the index); it only narrows a search down, and
  :func:`ledger.search.hit` decides every result, as on every store.

  Lines join the index in runs, not one write at a time: FTS5 writes a new
  segment (two more pages, and merges later) at each commit that adds to it, which
  made most one-line requests a tenth dearer.  ``meta``'s ``log_search_upto`` is the
  newest line the index holds; the write that takes the lines above it to
  ``index_batch`` indexes them all, in its own transaction, under their rows'
  projects as that write leaves them.  A search reads the lines above the mark
  from ``log_lines`` itself (fewer than ``index_batch``, the newest), so it always
  answers from everything stored; pruning and moves forget and index again only
  what the index holds.

Files from before these tables existed get them at open, filled from the
lines and deployments they hold (once; ``meta`` remembers it).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import sqlite3
from collections.abc import Iterator, Mapping
from typing import Any

import orjson

from ledger.failures import (
    MAX_EXPLAIN_LINES,
    RECENT_DEPLOYMENTS,
    FailureGroup,
    FailureRow,
    FailureTally,
    FailureView,
    action_for,
    explain,
    failure_page,
    failure_view,
    row_of,
    seen_of,
)
from ledger.fold import Fold
from ledger.ids import make_event_id
from ledger.logs import LogLine, log_row
from ledger.recorder import Recorder
from ledger.search import (
    LogSearch,
    SearchHit,
    SearchPage,
    decode_search_cursor,
    encode_search_cursor,
    fts_query,
    hit,
    index_text,
    scope_text,
)
from storage.sqlite_errors import read_errors
from storage.store import Page

log = logging.getLogger(__name__)


#: Contentless: the words stay in ``log_lines`` only, found again by rowid (= line id).
#: ``scope`` names the line's project and deployment (:func:`ledger.search.scope_text`).
LOG_SEARCH = (
    "CREATE VIRTUAL TABLE IF NOT EXISTS log_search USING fts5("
    "words, scope, content='', tokenize='unicode61 remove_diacritics 0', columnsize=0)"
)
#: What the index holds for each line of ``log_lines AS l`` (``deployments AS d`` joined).
_INDEXED = "l.line, hub_index_text(l.message), hub_scope(d.project, l.deployment_id)"
_LINES = "log_lines AS l LEFT JOIN deployments AS d ON d.deployment_id = l.deployment_id"
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS failures ("
    " deployment_id TEXT PRIMARY KEY, project TEXT NOT NULL, job TEXT, step TEXT,"
    " signature TEXT NOT NULL, pattern TEXT NOT NULL, sample TEXT NOT NULL,"
    " failed_at TEXT NOT NULL, record BLOB NOT NULL)",
    # Covers the tallies of a window, in the order they are grouped in: one pass over the
    # index, no row read and no sort.
    "CREATE INDEX IF NOT EXISTS failures_tallied "
    "ON failures (signature, project, job, step, failed_at)",
    "DROP INDEX IF EXISTS failures_by_time",  # what files before the tallies had instead
    "CREATE INDEX IF NOT EXISTS failures_by_signature "
    "ON failures (signature, failed_at, deployment_id)",
    LOG_SEARCH,
)
#: ``meta`` keys saying the tables were filled from what the file held before them (an
#: index without ``scope``, from before the filters narrowed in it, is built again).
_BUILT = ("log_search_scoped", "failures_built")
#: ``meta``'s key for the newest line the index holds (the lines above it wait for a run).
INDEXED_UPTO = "log_search_upto"
#: Lines left out of the index before a write indexes them as one run.
INDEX_BATCH = 256
#: Candidate lines read per query round of a search.
SEARCH_CHUNK = 500
#: Candidates a search examines before it answers ``truncated`` (only lines the index
#: finds but the filters or the exact match refuse count against it).
MAX_SEARCH_CANDIDATES = 50000


#: :func:`scope_text`, remembered: a write's lines belong to a few deployments, and the
#: hashes are most of what indexing a line costs in Python.
_scope_of = functools.lru_cache(maxsize=4096)(scope_text)


class SqliteLogAnalysis:
    """Failures, search and trend reads of :class:`~storage.sqlite_store.SqliteStore`."""

    _db: sqlite3.Connection
    epoch: int
    index_batch: int

    # -- opening -----------------------------------------------------------------------

    def _create_log_analysis(self) -> None:
        """The tables, and the functions the index is filled with (per connection).

        Each is registered once: registering a function expires every prepared
        statement of the connection, so that the next use of each parses it again.
        """
        self._db.create_function("hub_index_text", 1, index_text, deterministic=True)
        self._db.create_function("hub_scope", 2, _scope_of, deterministic=True)
        for statement in _SCHEMA:
            self._db.execute(statement)

    def _fill_log_analysis(self) -> None:
        """Index the lines and explain the failures a file held before these tables (once)."""
        built = {
            key
            for (key,) in self._db.execute(
                f"SELECT key FROM meta WHERE key IN ({','.join('?' * len(_BUILT))})", _BUILT
            )
        }
        if "log_search_scoped" not in built:
            self._db.execute("DROP TABLE IF EXISTS log_search")
            self._db.execute(LOG_SEARCH)
            self._db.execute("DELETE FROM meta WHERE key = 'log_search_built'")  # its old name
            count = self._index_above(0)
            self._mark_all_indexed()
            if count > 0:
                log.info("indexed %d stored log lines for search", count)
        if "failures_built" not in built:
            rows = self._db.execute(
                "SELECT deployment_id, project, fold FROM deployments WHERE status = 'failure' "
                "AND deployment_id NOT IN (SELECT deployment_id FROM failures)"
            ).fetchall()
            for deployment_id, project, raw in rows:
                self._explain(deployment_id, _fold(project, raw))
            if rows:
                log.info("explained %d stored failed deployments", len(rows))
        for key in _BUILT:
            self._db.execute("INSERT OR IGNORE INTO meta VALUES (?, '1')", (key,))
        self._db.execute("INSERT OR IGNORE INTO meta VALUES (?, '0')", (INDEXED_UPTO,))

    # -- writing, inside the store's transaction ------------------------------------------

    def _next_line(self) -> int:
        """The id the next log line gets (``AUTOINCREMENT`` never reuses one)."""
        row = self._db.execute(
            "SELECT seq FROM sqlite_sequence WHERE name = 'log_lines'"
        ).fetchone()
        return 1 if row is None else int(row[0]) + 1

    def _indexed_upto(self) -> int:
        """The newest line the index holds: every stored line up to it is indexed, none
        above it."""
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (INDEXED_UPTO,)).fetchone()
        return 0 if row is None else int(row[0])

    def _move_indexed_lines(self, recorder: Recorder, found: Mapping[str, str]) -> None:
        """Index again, under its new project, what the index holds of each deployment
        this write moves to another project (a later event names it); called before the
        write changes any deployment row, since the index forgets a line given what it
        indexed.  ``found`` is each row's project as the write found it."""
        upto: int | None = None
        for touched in recorder.deployments():
            before = found.get(touched.key)
            if before is None or not (touched.created or touched.refolded):
                continue
            if before == touched.project:
                continue
            upto = self._indexed_upto() if upto is None else upto
            self._forget_lines("l.deployment_id = ? AND l.line <= ?", (touched.key, upto))
            self._db.execute(
                "INSERT INTO log_search (rowid, words, scope) SELECT l.line, "
                "hub_index_text(l.message), hub_scope(?, l.deployment_id) FROM log_lines AS l "
                "WHERE l.deployment_id = ? AND l.line <= ?",
                (touched.project, touched.key, upto),
            )

    def _index_waiting_lines(self, newest: int) -> None:
        """Index the lines above the mark once ``index_batch`` of them wait (``newest`` is
        the newest line stored); called after the write's rows are written, so that each
        line is indexed under the project its row has (what pruning forgets it under)."""
        upto = self._indexed_upto()
        if newest - upto >= self.index_batch:
            self._index_above(upto)
            self._db.execute("UPDATE meta SET value = ? WHERE key = ?", (str(newest), INDEXED_UPTO))

    def _mark_all_indexed(self) -> None:
        """Say that the index holds every stored line (it was just built, or a file of an
        earlier schema indexed each line as it was stored)."""
        self._db.execute(
            "INSERT OR REPLACE INTO meta VALUES (?, (SELECT coalesce(max(line), 0) "
            "FROM log_lines))",
            (INDEXED_UPTO,),
        )

    def _index_above(self, upto: int) -> int:
        """Index every stored line above ``upto``; how many."""
        return int(
            self._db.execute(
                f"INSERT INTO log_search (rowid, words, scope) SELECT {_INDEXED} FROM {_LINES} "
                "WHERE l.line > ?",
                (upto,),
            ).rowcount
        )

    def _forget_lines(self, where: str, params: tuple[Any, ...]) -> None:
        """Take lines out of the index: a contentless index forgets a line given what it
        indexed (so before the line, or its deployment's project, changes)."""
        self._db.execute(
            f"INSERT INTO log_search (log_search, rowid, words, scope) SELECT 'delete', "
            f"{_INDEXED} FROM {_LINES} WHERE {where}",
            params,
        )

    def _record_failures(self, recorder: Recorder) -> None:
        """Explain each deployment the write failed (or logged to after it failed); forget
        the failure of one a re-run turned around."""
        for touched in recorder.deployments():
            action = action_for(touched)
            if action == "explain":
                self._explain(touched.key, touched.fold)
            elif action == "clear":
                self._db.execute("DELETE FROM failures WHERE deployment_id = ?", (touched.key,))

    def _explain(self, deployment_id: str, fold: Fold) -> None:
        rows = self._db.execute(
            "SELECT line, job, step, level, ts, message, seq FROM log_lines "
            "WHERE deployment_id = ? ORDER BY line DESC LIMIT ?",
            (deployment_id, MAX_EXPLAIN_LINES),
        ).fetchall()
        rows.reverse()
        lines = [
            log_row(line, LogLine(j, s, lvl, ts, msg), make_event_id(self.epoch, seq))
            for line, j, s, lvl, ts, msg, seq in rows
        ]
        record = explain(deployment_id, fold, lines, None)
        row = row_of(record)
        self._db.execute(
            "INSERT OR REPLACE INTO failures (deployment_id, project, job, step, signature, "
            "pattern, sample, failed_at, record) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (*row, orjson.dumps(record)),
        )

    def _prune_log_analysis(self, deployment_id: str) -> None:
        """Forget a pruned deployment's failure and index entries (before its lines and
        its row go)."""
        self._forget_lines(
            "l.deployment_id = ? AND l.line <= ?", (deployment_id, self._indexed_upto())
        )
        self._db.execute("DELETE FROM failures WHERE deployment_id = ?", (deployment_id,))

    # -- reading -------------------------------------------------------------------------

    @read_errors
    def failure(self, deployment_id: str) -> FailureView | None:
        row = self._db.execute(
            "SELECT record, signature, failed_at FROM failures WHERE deployment_id = ?",
            (deployment_id,),
        ).fetchone()
        if row is None:
            return None
        raw, signature, failed_at = row
        earlier = "signature = ? AND (failed_at, deployment_id) < (?, ?)"
        params = (signature, failed_at, deployment_id)
        count, first_seen = self._db.execute(
            f"SELECT count(*), min(failed_at) FROM failures WHERE {earlier}", params
        ).fetchone()
        recent = self._db.execute(
            f"SELECT failed_at, deployment_id FROM failures WHERE {earlier} "
            "ORDER BY failed_at DESC, deployment_id DESC LIMIT 5",
            params,
        ).fetchall()
        return failure_view(orjson.loads(raw), seen_of(count, first_seen, recent))

    @read_errors
    def failures(
        self, *, project: str | None, since: str, limit: int, cursor: str | None
    ) -> Page[FailureGroup]:
        """Failures since ``since`` grouped by signature, most frequent first: SQLite tallies
        the window in one pass, and reads the rows of the page's signatures only.

        Raises:
            ValueError: ``cursor`` is not one this store handed out.
        """
        with _snapshot(self._db):
            return self._failures(project=project, since=since, limit=limit, cursor=cursor)

    def _failures(
        self, *, project: str | None, since: str, limit: int, cursor: str | None
    ) -> Page[FailureGroup]:
        window = "failed_at >= ?" + ("" if project is None else " AND project = ?")
        params: list[Any] = [since] if project is None else [since, project]
        tallies = [
            FailureTally(*row)
            for row in self._db.execute(
                "SELECT signature, project, job, step, count(*), min(failed_at), max(failed_at) "
                f"FROM failures WHERE {window} GROUP BY signature, project, job, step",
                params,
            )
        ]

        def newest(signature: str) -> list[FailureRow]:
            return [
                FailureRow(*row)
                for row in self._db.execute(
                    "SELECT deployment_id, project, job, step, signature, pattern, sample, "
                    f"failed_at FROM failures WHERE signature = ? AND {window} "
                    "ORDER BY failed_at DESC, deployment_id DESC LIMIT ?",
                    (signature, *params, RECENT_DEPLOYMENTS),
                )
            ]

        items, next_cursor = failure_page(tallies, newest, limit=limit, cursor=cursor)
        return Page(items, next_cursor)

    @read_errors
    def search_logs(self, search: LogSearch, *, limit: int, cursor: str | None) -> SearchPage:
        """Lines matching ``search``, newest first; FTS5 narrows, :func:`hit` decides.

        Raises:
            ValueError: ``cursor`` is not one this store handed out.
        """
        below = decode_search_cursor(cursor) if cursor is not None else 1 << 62
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in (
            ("d.project", search.project),
            ("l.deployment_id", search.deployment_id),
            ("l.job", search.job),
            ("l.step", search.step),
            ("l.level", search.level),
        ):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if search.since is not None:
            clauses.append("l.ts >= ?")
            params.append(search.since)
        if search.until is not None:
            clauses.append("l.ts <= ?")
            params.append(search.until)
        filters = "".join(f" AND {clause}" for clause in clauses)
        columns = "l.deployment_id, d.project, l.job, l.step, l.level, l.ts, l.message"
        lines = "JOIN deployments AS d ON d.deployment_id = l.deployment_id"
        # Lines above the mark are read from their table (the newest, and few), the rest
        # found through the index; the mark read once keeps the two apart.
        upto = self._indexed_upto()
        waiting = (
            f"SELECT l.line, {columns} FROM log_lines AS l {lines} "
            f"WHERE l.line > ? AND l.line < ?{filters} ORDER BY l.line DESC LIMIT ?"
        )
        indexed = (
            f"SELECT s.rowid, {columns} FROM log_search AS s "
            f"JOIN log_lines AS l ON l.line = s.rowid {lines} "
            f"WHERE log_search MATCH ? AND s.rowid < ?{filters} ORDER BY s.rowid DESC LIMIT ?"
        )
        match = fts_query(search.query, project=search.project, deployment_id=search.deployment_id)
        found: list[SearchHit] = []
        examined = 0
        while True:
            if below > upto + 1:
                rows = self._db.execute(waiting, (upto, below, *params, SEARCH_CHUNK)).fetchall()
            else:
                rows = self._db.execute(indexed, (match, below, *params, SEARCH_CHUNK)).fetchall()
            for line, deployment_id, project, job, step, level, ts, message in rows:
                examined += 1
                result = hit(search, line, deployment_id, project, (job, step, level, ts, message))
                if result is not None:
                    found.append(result)
                    if len(found) > limit:
                        last = int(found[limit - 1]["id"])
                        return SearchPage(found[:limit], encode_search_cursor(last))
            if len(rows) == SEARCH_CHUNK:
                below = rows[-1][0]
            elif below > upto + 1:
                below = upto + 1  # the waiting lines are done: on to the index
                continue
            else:
                return SearchPage(found, None)
            if examined >= MAX_SEARCH_CANDIDATES:
                return SearchPage(found, encode_search_cursor(below), truncated=True)

    @read_errors
    def recent_folds(
        self, *, project: str | None, status: str | None, since: str, limit: int
    ) -> tuple[list[Fold], bool]:
        """Folds of deployments sorting at or after ``since``, newest first, at most
        ``limit``; and whether more were left."""
        sql = "SELECT project, fold FROM deployments WHERE sort_ts >= ?"
        params: list[Any] = [since]
        for column, value in (("project", project), ("status", status)):
            if value is not None:
                sql += f" AND {column} = ?"
                params.append(value)
        rows = self._db.execute(
            f"{sql} ORDER BY sort_ts DESC, deployment_id DESC LIMIT ?", (*params, limit + 1)
        ).fetchall()
        return [_fold(p, raw) for p, raw in rows[:limit]], len(rows) > limit


@contextlib.contextmanager
def _snapshot(db: sqlite3.Connection) -> Iterator[None]:
    """Statements that must see one state of the file: another process may commit
    between two autocommit reads (a re-run that passes deletes a failure the first
    read counted).  Nothing in this process writes meanwhile: the store's writer
    shares the connection and no read yields to it."""
    db.execute("BEGIN")
    try:
        yield
    finally:
        db.execute("COMMIT")


def _fold(project: str, raw: bytes) -> Fold:
    """A row's fold with the row's project among its names (as the store reads it)."""
    fold = Fold.loads(raw)
    if project not in fold.projects:
        fold.projects.append(project)
    return fold
