"""SQLite's failures answer, tallied in SQL, is the ledger's answer over the same rows.

:func:`ledger.failures.failure_page` defines a group; SQLite hands it tallies it
counted with ``GROUP BY`` and the rows of the page's signatures only.  Here
any history (failures, re-runs that pass, pruning by count) is written
through the store's own write path, then every page of every window and
project filter is compared with :func:`ledger.failures.group_failures` over
the rows the store holds, read whole.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.failures import FailureGroup, FailureRow, group_failures
from ledger.retention import Retention
from storage.sqlite_store import SqliteStore
from storage.store import Batch
from tests.integration.test_log_analysis_contract import failed_run, passed_run

ERRORS = ("Error: disk full", "Error: timed out after 30 s", "fatal: bad object 1f2e")
run = st.fixed_dictionaries(
    {
        "deployment": st.integers(min_value=0, max_value=7),
        "day": st.integers(min_value=1, max_value=6),
        "passed": st.booleans(),
        "error": st.sampled_from(ERRORS),
        "project": st.sampled_from(["web", "api", "db"]),
        "step": st.sampled_from(["build / compile", "test / unit"]),
    }
)


def every_page(
    pages: Any, *, project: str | None, since: str, limit: int
) -> list[list[FailureGroup]]:
    """Each page in turn, following ``next_cursor``."""
    result: list[list[FailureGroup]] = []
    cursor = None
    while True:
        items, cursor = pages(project=project, since=since, limit=limit, cursor=cursor)
        result.append(items)
        if cursor is None:
            return result
        assert len(result) < 50


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    runs=st.lists(run, min_size=1, max_size=14),
    keep=st.sampled_from([0, 30, 60]),
    limit=st.integers(min_value=1, max_value=4),
)
def test_tallied_pages_equal_the_pages_of_the_rows(
    tmp_path_factory: Any, runs: list[dict[str, Any]], keep: int, limit: int
) -> None:
    path = Path(tmp_path_factory.mktemp("tallies")) / "hub.sqlite3"
    store = SqliteStore(str(path), retention=Retention(max_events=keep))
    try:
        for spec in runs:
            name = f"d{spec['deployment']}"
            events = (
                passed_run(name, spec["day"], project=spec["project"])
                if spec["passed"]
                else failed_run(
                    name, spec["day"], spec["error"], project=spec["project"], step=spec["step"]
                )
            )
            store.append(Batch(events))
        store.prune()
        rows = [
            FailureRow(*row)
            for row in store._db.execute(
                "SELECT deployment_id, project, job, step, signature, pattern, sample, failed_at "
                "FROM failures"
            )
        ]

        def from_rows(
            *, project: str | None, since: str, limit: int, cursor: str | None
        ) -> tuple[list[FailureGroup], str | None]:
            kept = [r for r in rows if r.failed_at >= since and project in (None, r.project)]
            return group_failures(kept, limit=limit, cursor=cursor)

        def from_store(
            *, project: str | None, since: str, limit: int, cursor: str | None
        ) -> tuple[list[FailureGroup], str | None]:
            page = store.failures(project=project, since=since, limit=limit, cursor=cursor)
            return page.items, page.next_cursor

        for project in (None, "web", "api"):
            for since in ("", "2025-03-03T00:00:00.000Z", "2025-03-05T10:00:05.000Z"):
                expected = every_page(from_rows, project=project, since=since, limit=limit)
                got = every_page(from_store, project=project, since=since, limit=limit)
                assert got == expected
                whole = [g for page in got for g in page]
                assert whole == from_rows(project=project, since=since, limit=99, cursor=None)[0]
    finally:
        store.close()


def test_a_file_with_the_earlier_time_index_gets_the_tallied_one(tmp_path: Path) -> None:
    path = str(tmp_path / "hub.sqlite3")
    store = SqliteStore(path)
    store.append(Batch(failed_run("d1", 1, "Error: disk full")))
    store._db.execute("DROP INDEX failures_tallied")
    store._db.execute("CREATE INDEX failures_by_time ON failures (failed_at, deployment_id)")
    store.close()
    store = SqliteStore(path)
    try:
        indexes = {
            name
            for (name,) in store._db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'failures' "
                "AND sql IS NOT NULL"
            )
        }
        assert indexes == {"failures_tallied", "failures_by_signature"}
        page = store.failures(project=None, since="", limit=5, cursor=None)
        assert [(g["count"], g["deployments"]) for g in page.items] == [(1, ["d1"])]
    finally:
        store.close()


class _CommitsAfterTheTally:
    """The reader's connection, on which another process's write lands right after the
    failures were tallied and before their rows are read."""

    def __init__(self, db: Any, write: Any) -> None:
        self._db, self._write = db, write

    def execute(self, sql: str, *args: Any) -> Any:
        cursor = self._db.execute(sql, *args)
        if "GROUP BY signature" in sql and self._write is not None:
            rows = cursor.fetchall()
            self._write()
            self._write = None
            return iter(rows)
        return cursor

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)


def test_a_rerun_passing_in_another_process_mid_read_does_not_break_the_answer(
    tmp_path: Path,
) -> None:
    """The tally and the rows are read in one snapshot: the page counts the failure the
    other process deleted meanwhile, as it was when the read began."""
    path = str(tmp_path / "hub.sqlite3")
    reader, writer = SqliteStore(path), SqliteStore(path)
    try:
        writer.append(Batch(failed_run("d1", 1, "Error: disk full")))
        raw = reader._db
        reader._db = _CommitsAfterTheTally(raw, lambda: writer.append(Batch(passed_run("d1", 2))))  # type: ignore[assignment]
        page = reader.failures(
            project=None, since="2000-01-01T00:00:00.000Z", limit=10, cursor=None
        )
        reader._db = raw
        assert [(g["count"], g["deployments"]) for g in page.items] == [(1, ["d1"])]
        after = reader.failures(
            project=None, since="2000-01-01T00:00:00.000Z", limit=10, cursor=None
        )
        assert after.items == []
    finally:
        reader.close()
        writer.close()
