"""SQLite narrows a search's project and deployment filters inside its index.

Each line is indexed with its deployment and that deployment's project
(:func:`ledger.search.scope_text`), so the index must follow a deployment a
later event moves to another project, forget pruned lines under what it
indexed, and be built again for files whose index had no such column.  The
answers stay those of the filters applied to every match.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.retention import Retention
from ledger.search import LogSearch, SearchHit, fts_query, parse_query
from storage.sqlite_store import SqliteStore
from storage.store import Batch
from tests.integration.test_log_analysis_contract import ev


def every_hit(store: SqliteStore, search: LogSearch, limit: int = 7) -> list[SearchHit]:
    """Every hit, page by page; no page may stop at the store's bound."""
    hits: list[SearchHit] = []
    cursor = None
    while True:
        page = store.search_logs(search, limit=limit, cursor=cursor)
        assert not page.truncated
        hits += page.items
        cursor = page.next_cursor
        if cursor is None:
            return hits


def indexed(store: SqliteStore, query: str, **scope: str) -> list[int]:
    """The lines the index alone finds (newest first)."""
    match = fts_query(parse_query(query), **scope)
    rows = store._db.execute(
        "SELECT rowid FROM log_search WHERE log_search MATCH ? ORDER BY rowid DESC", (match,)
    )
    return [line for (line,) in rows]


def flooded(store: SqliteStore) -> None:
    """``big`` logs 400 matching lines, ``small`` one in forty of them, interleaved."""
    for batch in range(20):
        events = []
        for i in range(20):
            n = batch * 20 + i
            events.append(
                ev(
                    f"big-{n % 7}",
                    "log_entry",
                    f"01T10:{n // 60:02d}:{n % 60:02d}.000",
                    project="big",
                    message=f"needle {n} in the haystack",
                )
            )
            if n % 40 == 0:
                events.append(
                    ev(
                        f"small-{n % 3}",
                        "log_entry",
                        f"01T10:{n // 60:02d}:{n % 60:02d}.500",
                        project="small",
                        message=f"needle {n} of the small one",
                    )
                )
        store.append(Batch(events))


def test_a_filter_flooded_by_other_projects_answers_as_the_unfiltered_search(
    tmp_path: Path,
) -> None:
    store = SqliteStore(str(tmp_path / "hub.sqlite3"), index_batch=1)
    try:
        flooded(store)
        query = parse_query("needle")
        everything = every_hit(store, LogSearch(query), limit=50)
        for project in ("small", "big", "none"):
            expected = [h for h in everything if h["project"] == project]
            assert every_hit(store, LogSearch(query, project=project)) == expected
        for deployment in ("small-0", "big-3"):
            expected = [h for h in everything if h["deployment_id"] == deployment]
            assert expected
            assert every_hit(store, LogSearch(query, deployment_id=deployment)) == expected
        assert len(indexed(store, "needle", project="small")) == 10
    finally:
        store.close()


def test_a_deployment_moved_to_another_project_is_found_under_the_new_one(
    tmp_path: Path,
) -> None:
    store = SqliteStore(
        str(tmp_path / "hub.sqlite3"), retention=Retention(days=1e-9), index_batch=1
    )
    try:
        store.append(
            Batch(
                [
                    ev("d1", "log_entry", "01T10:00:00.000", project="web-b", message="needle"),
                    ev("d2", "log_entry", "01T10:00:01.000", project="web-a", message="needle"),
                ]
            )
        )
        assert indexed(store, "needle", project="web-b") == [1]
        # A project's first name in byte order wins (ledger.projects): a write without
        # lines moves the deployment, then one with a line.
        store.append(Batch([ev("d1", "deployment_started", "01T10:00:02.000", project="web-a")]))
        assert indexed(store, "needle", project="web-b") == []
        assert indexed(store, "needle", project="web-a") == [2, 1]
        store.append(
            Batch([ev("d1", "log_entry", "01T10:00:03.000", project="web-a", message="needle")])
        )
        assert indexed(store, "needle", project="web-a") == [3, 2, 1]
        found = every_hit(store, LogSearch(parse_query("needle"), project="web-a"))
        assert [(h["id"], h["deployment_id"]) for h in found] == [
            ("3", "d1"),
            ("2", "d2"),
            ("1", "d1"),
        ]
        assert store.prune() > 0
        assert indexed(store, "needle") == []
        store._db.execute("INSERT INTO log_search (log_search) VALUES ('integrity-check')")
    finally:
        store.close()


def test_an_index_without_scope_is_built_again_once(tmp_path: Path) -> None:
    path = str(tmp_path / "hub.sqlite3")
    store = SqliteStore(path, index_batch=1)
    flooded(store)
    store.close()
    db = sqlite3.connect(path)
    with db:
        db.execute("DROP TABLE log_search")
        db.execute(
            "CREATE VIRTUAL TABLE log_search USING fts5(words, content='', "
            "tokenize='unicode61 remove_diacritics 0', columnsize=0)"
        )
        db.execute("INSERT INTO log_search (rowid, words) SELECT line, message FROM log_lines")
        db.execute("UPDATE meta SET key = 'log_search_built' WHERE key = 'log_search_scoped'")
    db.close()
    store = SqliteStore(path)
    try:
        assert len(indexed(store, "needle", project="small")) == 10
        assert len(every_hit(store, LogSearch(parse_query("needle"), project="small"))) == 10
        keys = {key for (key,) in store._db.execute("SELECT key FROM meta")}
        assert "log_search_scoped" in keys
        assert "log_search_built" not in keys
    finally:
        store.close()
    again = SqliteStore(path)  # built once: nothing is indexed twice
    try:
        assert len(indexed(again, "needle", project="small")) == 10
    finally:
        again.close()


step = st.fixed_dictionaries(
    {
        "deployment": st.integers(min_value=0, max_value=4),
        "project": st.sampled_from(["web-c", "web-b", "web-a"]),
        "lines": st.integers(min_value=0, max_value=3),
        "lifecycle": st.booleans(),
    }
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    writes=st.lists(step, min_size=1, max_size=10),
    keep=st.sampled_from([0, 8, 16]),
    batch=st.sampled_from([1, 3, 256]),
)
def test_the_index_holds_each_line_under_its_deployments_project(
    tmp_path_factory: Any, writes: list[dict[str, Any]], keep: int, batch: int
) -> None:
    """Whatever moves deployments between projects (a later event naming one earlier in
    byte order) and whatever pruning drops, each line the index holds is found there under
    its deployment's project and its deployment, and nowhere else; the lines still waiting
    for it are not in it; and searches find every line under its project, waiting or not."""
    path = Path(tmp_path_factory.mktemp("scope")) / "hub.sqlite3"
    store = SqliteStore(str(path), retention=Retention(max_events=keep), index_batch=batch)
    try:
        for n, spec in enumerate(writes):
            name, project = f"d{spec['deployment']}", spec["project"]
            at = f"01T10:{n:02d}"
            events = [ev(name, "deployment_started", f"{at}:00.000", project=project)]
            events = events if spec["lifecycle"] else []
            events += [
                ev(name, "log_entry", f"{at}:{i + 1:02d}.000", project=project, message="needle")
                for i in range(spec["lines"])
            ]
            if events:
                store.append(Batch(events))
        store.prune()
        stored = store._db.execute(
            "SELECT l.line, l.deployment_id, d.project FROM log_lines AS l "
            "JOIN deployments AS d ON d.deployment_id = l.deployment_id ORDER BY l.line DESC"
        ).fetchall()
        upto = store._indexed_upto()
        held = [row for row in stored if row[0] <= upto]
        assert batch > 1 or held == stored
        assert len(stored) - len(held) < batch
        assert indexed(store, "needle") == [line for line, _, _ in held]
        needle = parse_query("needle")
        assert [int(h["id"]) for h in every_hit(store, LogSearch(needle))] == [
            line for line, _, _ in stored
        ]
        for project in ("web-a", "web-b", "web-c"):
            assert indexed(store, "needle", project=project) == [
                line for line, _, p in held if p == project
            ]
            assert [int(h["id"]) for h in every_hit(store, LogSearch(needle, project=project))] == [
                line for line, _, p in stored if p == project
            ]
        for deployment in {d for _, d, _ in stored}:
            assert indexed(store, "needle", deployment_id=deployment) == [
                line for line, d, _ in held if d == deployment
            ]
            found = every_hit(store, LogSearch(needle, deployment_id=deployment))
            assert [int(h["id"]) for h in found] == [
                line for line, d, _ in stored if d == deployment
            ]
        store._db.execute("INSERT INTO log_search (log_search) VALUES ('integrity-check')")
    finally:
        store.close()


def test_a_row_that_names_another_project_than_its_fold_keeps_its_lines_in_step(
    tmp_path: Path,
) -> None:
    """A row of an earlier version may keep in its column a name its fold would not pick
    (the fold takes the first of its names in byte order, and the row's comes later):
    lines logged to it are indexed under the row's project, which pruning forgets them
    under, and a refold that writes another project to the row moves them with it."""
    store = SqliteStore(str(tmp_path / "hub.sqlite3"), index_batch=1)

    def in_step() -> None:
        [(project,)] = store._db.execute("SELECT project FROM deployments").fetchall()
        lines = sorted(line for (line,) in store._db.execute("SELECT line FROM log_lines"))
        assert sorted(indexed(store, "needle", project=project)) == lines
        for other in {"web", "zz-legacy"} - {project}:
            assert indexed(store, "needle", project=other) == []

    try:
        store.append(Batch([ev("d1", "deployment_started", "01T10:00:00.000", project="web")]))
        store._db.execute("UPDATE deployments SET project = 'zz-legacy' WHERE deployment_id = 'd1'")
        store.append(
            Batch([ev("d1", "log_entry", "01T10:00:01.000", project="web", message="needle")])
        )
        in_step()
        assert indexed(store, "needle", project="zz-legacy") != []  # the row's, not the fold's
        step = {"step_name": "build", "project": "web"}
        store.append(Batch([ev("d1", "step_started", "01T10:00:02.000", **step)]))
        in_step()
        store._db.execute("INSERT INTO log_search (log_search) VALUES ('integrity-check')")
    finally:
        store.close()
