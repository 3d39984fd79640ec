"""SQLite's search index takes log lines in runs, and searches never miss the rest.

Lines wait above ``meta``'s mark until ``index_batch`` of them do; the write that
gets there indexes them all.  A search reads the waiting lines from their table,
so it answers from everything stored; a restart, pruning, and a file of the
schema before the runs keep the index and the mark in step.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from ledger.retention import Retention
from ledger.search import LogSearch, parse_query
from storage.sqlite_store import SqliteStore
from storage.sqlite_version import SCHEMA_VERSION, stamped_schema
from storage.store import Batch
from tests.integration.test_log_analysis_contract import ev
from tests.integration.test_search_scope import every_hit, indexed

NEEDLE = LogSearch(parse_query("needle"))


def log(store: SqliteStore, deployment: str, first: int, count: int, **body: str) -> None:
    """One write of ``count`` matching lines, numbered from ``first``."""
    store.append(
        Batch(
            [
                ev(deployment, "log_entry", f"01T10:00:{first + i:02d}.000", message=f"needle {i}")
                for i in range(count)
            ]
        )
    )


def found(store: SqliteStore, search: LogSearch = NEEDLE, limit: int = 2) -> list[int]:
    """The ids of every hit, page by page (pages of two cross the mark)."""
    return [int(h["id"]) for h in every_hit(store, search, limit=limit)]


def sound(store: SqliteStore) -> None:
    store._db.execute("INSERT INTO log_search (log_search) VALUES ('integrity-check')")


def test_lines_wait_for_a_run_and_searches_find_them_meanwhile(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "hub.sqlite3"), index_batch=5)
    try:
        for n in range(4):
            log(store, "d1", n, 1)
        assert store._indexed_upto() == 0
        assert indexed(store, "needle") == []
        assert found(store) == [4, 3, 2, 1]
        assert found(store, LogSearch(parse_query("needle"), deployment_id="d1")) == [4, 3, 2, 1]
        assert found(store, LogSearch(parse_query("needle"), deployment_id="d2")) == []
        log(store, "d1", 4, 1)  # the fifth waiting line: the run goes in
        assert store._indexed_upto() == 5
        assert indexed(store, "needle") == [5, 4, 3, 2, 1]
        log(store, "d2", 5, 3)
        assert indexed(store, "needle") == [5, 4, 3, 2, 1]
        assert found(store) == [8, 7, 6, 5, 4, 3, 2, 1]  # three waiting, five indexed
        log(store, "d2", 8, 12)  # one write past the batch indexes its own lines too
        assert store._indexed_upto() == 20
        assert indexed(store, "needle") == list(range(20, 0, -1))
        assert found(store, limit=3) == list(range(20, 0, -1))
        sound(store)
    finally:
        store.close()


def test_a_restarted_store_finds_the_waiting_lines_and_indexes_them_later(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "hub.sqlite3")
    store = SqliteStore(path, index_batch=5)
    log(store, "d1", 0, 3)
    store.close()
    store = SqliteStore(path, index_batch=5)
    try:
        assert indexed(store, "needle") == []
        assert found(store) == [3, 2, 1]
        log(store, "d1", 3, 2)
        assert indexed(store, "needle") == [5, 4, 3, 2, 1]
        sound(store)
    finally:
        store.close()


def test_pruning_forgets_what_the_index_holds_and_drops_the_waiting_lines(
    tmp_path: Path,
) -> None:
    """A contentless index forgets a line given what it indexed: asking it to forget a
    line it never held would corrupt it, so pruning forgets only lines up to the mark."""
    store = SqliteStore(
        str(tmp_path / "hub.sqlite3"), retention=Retention(max_events=2), index_batch=5
    )
    try:
        log(store, "d1", 0, 6)  # indexed
        log(store, "d2", 6, 2)  # waiting
        log(store, "d3", 8, 2)  # waiting; only d3 is kept
        assert store._indexed_upto() == 6
        assert store.prune() == 8
        assert indexed(store, "needle") == []
        assert found(store) == [10, 9]
        sound(store)
        log(store, "d3", 10, 3)
        assert indexed(store, "needle") == [13, 12, 11, 10, 9]
        assert found(store) == [13, 12, 11, 10, 9]
        sound(store)
    finally:
        store.close()


def test_a_file_of_the_schema_before_runs_keeps_its_index_whole(tmp_path: Path) -> None:
    """Schema 2 indexed each line as it was stored: the upgrade marks them all indexed,
    so none is indexed twice and none is left waiting."""
    path = str(tmp_path / "hub.sqlite3")
    store = SqliteStore(path, index_batch=1)
    log(store, "d1", 0, 3)
    store.close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = '2' WHERE key = 'schema'")
        db.execute("DELETE FROM meta WHERE key = 'log_search_upto'")
    db.close()
    store = SqliteStore(path, index_batch=5)
    try:
        assert stamped_schema(store._db) == SCHEMA_VERSION
        assert store._indexed_upto() == 3
        assert indexed(store, "needle") == [3, 2, 1]
        assert found(store) == [3, 2, 1]
        log(store, "d1", 3, 5)
        assert indexed(store, "needle") == [8, 7, 6, 5, 4, 3, 2, 1]
        sound(store)
    finally:
        store.close()
