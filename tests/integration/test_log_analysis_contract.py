"""Failures, log search and the folds trends read: the same answers from every store.

Runs over every implementation (memory, sqlite, sqlite-grouped, redis; see
``conftest.store_factory``).  Expected answers are written out, so two
stores agree because each gives the one answer, not because they share a bug.
"""

from __future__ import annotations

from typing import Any

import pytest

from app.ingest import load_one
from ledger.events import Event
from ledger.search import LogSearch, SearchHit, parse_query
from storage.store import Batch, Store
from tests.integration.conftest import StoreFactory


def ev(deployment: str, kind: str, at: str, *, project: str = "web", **body: Any) -> Event:
    return load_one(
        {
            "type": kind,
            "project": project,
            "deployment_id": deployment,
            "timestamp": f"2025-03-{at}Z",
            **body,
        },
        "deployment",
    )


def failed_run(
    deployment: str,
    day: int,
    error_line: str,
    *,
    project: str = "web",
    step: str = "build / compile",
    commit: str | None = None,
) -> list[Event]:
    """A deployment whose step logs ``error_line`` among ordinary lines and fails."""
    at = f"{day:02d}T10:00"
    extra = {"commit": commit} if commit else {}
    return [
        ev(deployment, "deployment_started", f"{at}:00.000", project=project, **extra),
        ev(deployment, "step_started", f"{at}:01.000", project=project, step_name=step),
        ev(
            deployment,
            "log_entry",
            f"{at}:02.000",
            project=project,
            step_name=step,
            message="Installing dependencies\nCompiling 42 modules",
        ),
        ev(
            deployment,
            "log_entry",
            f"{at}:03.000",
            project=project,
            step_name=step,
            message=error_line,
        ),
        ev(
            deployment,
            "step_completed",
            f"{at}:04.000",
            project=project,
            step_name=step,
            status="failed",
            error="Process completed with exit code 1.",
        ),
        ev(deployment, "deployment_completed", f"{at}:05.000", project=project, status="failed"),
    ]


def passed_run(deployment: str, day: int, *, project: str = "web", **body: Any) -> list[Event]:
    at = f"{day:02d}T10:00"
    return [
        ev(deployment, "deployment_started", f"{at}:00.000", project=project, **body),
        ev(
            deployment, "step_started", f"{at}:01.000", project=project, step_name="build / compile"
        ),
        ev(
            deployment,
            "log_entry",
            f"{at}:02.000",
            project=project,
            step_name="build / compile",
            message="all good",
        ),
        ev(
            deployment,
            "step_completed",
            f"{at}:30.000",
            project=project,
            step_name="build / compile",
            status="success",
        ),
        ev(deployment, "deployment_completed", f"{at}:31.000", project=project, status="success"),
    ]


def store_all(store: Store, *runs: list[Event]) -> None:
    for run in runs:
        store.append(Batch(run))


# -- the failing line and the record ---------------------------------------------------------


def test_a_failed_deployment_is_explained_by_its_failing_line(store: Store) -> None:
    store_all(store, failed_run("d1", 1, "\x1b[31mError:\x1b[0m Cannot find module 'left-pad'"))
    failure = store.failure("d1")
    assert failure is not None
    assert (failure["job"], failure["step"]) == ("build", "compile")
    assert failure["line"] is not None
    assert failure["line"]["text"] == "Error: Cannot find module 'left-pad'"
    lines = store.logs("d1", job=None, step=None, after=None, limit=100).items
    assert [line["id"] for line in lines if "left-pad" in line["message"]] == [
        failure["line"]["id"]
    ]
    assert failure["message"] == "Process completed with exit code 1."
    assert failure["pattern"] == "error: cannot find module <value>"
    assert failure["failed_at"] == "2025-03-01T10:00:05.000Z"
    assert failure["seen"] == {"count": 0, "first_seen": None, "last_seen": None, "deployments": []}
    assert [(s["job"], s["step"]) for s in failure["steps"]] == [("build", "compile")]


def test_deployments_that_did_not_fail_have_no_failure(store: Store) -> None:
    store_all(store, passed_run("ok", 1))
    assert store.failure("ok") is None
    assert store.failure("nobody") is None


def test_seen_counts_the_earlier_failures_of_the_same_signature(store: Store) -> None:
    store_all(
        store,
        failed_run("d1", 1, "Error: connect ECONNREFUSED 10.0.0.1:5432"),
        failed_run("d2", 2, "Error: connect ECONNREFUSED 10.0.0.7:6543"),
        failed_run("other", 3, "Error: disk quota exceeded"),
        failed_run("d3", 4, "Error: connect ECONNREFUSED 10.0.0.9:5432", project="api"),
    )
    first, third = store.failure("d1"), store.failure("d3")
    assert first is not None
    assert third is not None
    assert first["signature"] == third["signature"] != store.failure("other")["signature"]  # type: ignore[index]
    assert first["seen"]["count"] == 0
    assert third["seen"] == {
        "count": 2,
        "first_seen": "2025-03-01T10:00:05.000Z",
        "last_seen": "2025-03-02T10:00:05.000Z",
        "deployments": ["d2", "d1"],
    }


def test_a_rerun_that_passes_clears_the_failure(store: Store) -> None:
    store_all(store, failed_run("d1", 1, "Error: flaky"))
    assert store.failure("d1") is not None
    store_all(
        store,
        [
            ev("d1", "deployment_started", "01T11:00:00.000"),
            ev("d1", "step_started", "01T11:00:01.000", step_name="build / compile"),
            ev(
                "d1",
                "step_completed",
                "01T11:00:02.000",
                step_name="build / compile",
                status="success",
            ),
            ev("d1", "deployment_completed", "01T11:00:03.000", status="success"),
        ],
    )
    assert store.failure("d1") is None
    assert store.failures(project=None, since="", limit=10, cursor=None).items == []


def test_lines_that_arrive_later_explain_it_better(store: Store) -> None:
    """Logs shipped after the completion (stamped before it) take over from the exit code."""
    run = failed_run("d1", 1, "compiling")
    store_all(store, run)
    failure = store.failure("d1")
    assert failure is not None
    assert failure["line"] is not None
    assert failure["line"]["text"] == "Process completed with exit code 1."
    store.append(
        Batch(
            [
                ev(
                    "d1",
                    "log_entry",
                    "01T10:00:03.500",
                    step_name="build / compile",
                    message="fatal: bad object HEAD",
                )
            ]
        )
    )
    failure = store.failure("d1")
    assert failure is not None
    assert failure["line"]["text"] == "fatal: bad object HEAD"  # type: ignore[index]


def test_a_deployment_failed_without_steps_is_explained_by_its_own_error(store: Store) -> None:
    store.append(
        Batch(
            [
                ev("d1", "deployment_started", "01T10:00:00.000"),
                ev(
                    "d1",
                    "deployment_completed",
                    "01T10:00:09.000",
                    status="failed",
                    error="部署失败：磁盘已满",
                ),
            ]
        )
    )
    failure = store.failure("d1")
    assert failure is not None
    assert (failure["job"], failure["step"]) == (None, None)
    assert failure["line"] is not None
    assert failure["line"]["text"] == "部署失败：磁盘已满"
    assert failure["message"] == "部署失败：磁盘已满"


# -- failures grouped by signature ---------------------------------------------------------


def many_failures(store: Store) -> None:
    store_all(
        store,
        failed_run("a1", 1, "Error: connect ECONNREFUSED 10.0.0.1:5432"),
        failed_run("b1", 2, "Error: disk quota exceeded"),
        failed_run("a2", 3, "Error: connect ECONNREFUSED 10.0.0.2:5432", step="deploy / migrate"),
        failed_run("c1", 4, "panic: nil map", project="api"),
        failed_run("a3", 5, "Error: connect ECONNREFUSED 10.0.0.3:5432", project="api"),
        failed_run("b2", 6, "Error: disk quota exceeded"),
        passed_run("ok", 7),
    )


def test_failures_group_by_signature_most_frequent_first(store: Store) -> None:
    many_failures(store)
    page = store.failures(project=None, since="", limit=10, cursor=None)
    assert page.next_cursor is None
    assert [(g["count"], g["deployments"]) for g in page.items] == [
        (3, ["a3", "a2", "a1"]),
        (2, ["b2", "b1"]),
        (1, ["c1"]),
    ]
    top = page.items[0]
    assert top["sample"] == "Error: connect ECONNREFUSED 10.0.0.3:5432"
    assert top["pattern"] == "error: connect econnrefused <ip>:<port>"
    assert top["projects"] == ["api", "web"]
    assert top["steps"] == [
        {"job": "build", "step": "compile", "count": 2},
        {"job": "deploy", "step": "migrate", "count": 1},
    ]
    assert (top["first_seen"], top["last_seen"]) == (
        "2025-03-01T10:00:05.000Z",
        "2025-03-05T10:00:05.000Z",
    )


def test_failures_by_project_window_and_page(store: Store) -> None:
    many_failures(store)
    web = store.failures(project="web", since="", limit=10, cursor=None).items
    assert [(g["count"], g["deployments"]) for g in web] == [(2, ["b2", "b1"]), (2, ["a2", "a1"])]
    recent = store.failures(project=None, since="2025-03-04T00:00:00.000Z", limit=10, cursor=None)
    assert [g["deployments"] for g in recent.items] == [["b2"], ["a3"], ["c1"]]
    seen: list[list[str]] = []
    cursor = None
    while True:
        page = store.failures(project=None, since="", limit=1, cursor=cursor)
        seen += [g["deployments"] for g in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == [["a3", "a2", "a1"], ["b2", "b1"], ["c1"]]
    with pytest.raises(ValueError, match="cursor"):
        store.failures(project=None, since="", limit=1, cursor="garbage")


def test_pruning_forgets_failures_and_search_results(store_factory: StoreFactory) -> None:
    store = store_factory(retention_days=1e-9)
    store_all(store, failed_run("old", 1, "Error: gone soon"))
    assert store.search_logs(LogSearch(parse_query("gone")), limit=10, cursor=None).items
    assert store.prune() > 0
    store_all(store, failed_run("new", 2, "Error: stays"))
    assert store.failure("old") is None
    assert [
        g["deployments"] for g in store.failures(project=None, since="", limit=9, cursor=None).items
    ] == [["new"]]
    found = store.search_logs(LogSearch(parse_query("error")), limit=10, cursor=None)
    assert {h["deployment_id"] for h in found.items} == {"new"}


# -- search --------------------------------------------------------------------------------


def corpus(store: Store) -> None:
    store_all(
        store,
        failed_run("d1", 1, "\x1b[31mError:\x1b[0m connect ECONNREFUSED 10.0.0.1:5432"),
        failed_run(
            "d2", 2, "错误：部署失败，无法连接到服务器", project="api", step="deploy / upload"
        ),
        passed_run("d3", 3),
        [
            ev(
                "d4",
                "log_entry",
                "04T10:00:00.000",
                step_name="test / unit",
                message="Running migrations",
            ),
            ev(
                "d4",
                "log_entry",
                "04T10:00:01.000",
                step_name="test / unit",
                message="migration 0042 applied",
                level="warning",
            ),
            ev(
                "d4",
                "log_entry",
                "04T10:00:02.000",
                step_name="test / unit",
                message="Connection refused by peer",
                level="error",
            ),
        ],
    )


def search(store: Store, q: str, **filters: Any) -> list[SearchHit]:
    return store.search_logs(LogSearch(parse_query(q), **filters), limit=100, cursor=None).items


def texts(hits: list[SearchHit]) -> list[str]:
    return [h["text"] for h in hits]


def test_search_words_phrases_and_prefixes_newest_first(store: Store) -> None:
    corpus(store)
    assert texts(search(store, "connection")) == ["Connection refused by peer"]
    assert texts(search(store, "ERROR connect")) == ["Error: connect ECONNREFUSED 10.0.0.1:5432"]
    assert texts(search(store, "migr*")) == ["migration 0042 applied", "Running migrations"]
    assert texts(search(store, '"exit code 1"')) == ["Process completed with exit code 1."] * 2
    assert texts(search(store, "失败")) == ["错误：部署失败，无法连接到服务器"]
    assert search(store, '"refused connection"') == []
    assert search(store, "nothing-like-this") == []


def test_a_hit_has_its_place_text_and_spans(store: Store) -> None:
    corpus(store)
    [found] = search(store, "econnrefused 5432")
    assert {k: v for k, v in found.items() if k != "id" and k != "timestamp"} == {
        "deployment_id": "d1",
        "project": "web",
        "job": "build",
        "step": "compile",
        "level": "info",
        "text": "Error: connect ECONNREFUSED 10.0.0.1:5432",
        "match": [[15, 27], [37, 41]],
    }
    assert found["timestamp"] == "2025-03-01T10:00:03.000Z"
    lines = store.logs("d1", job=None, step=None, after=None, limit=100).items
    assert [line["id"] for line in lines if "ECONNREFUSED" in line["message"]] == [found["id"]]


def test_search_filters(store: Store) -> None:
    corpus(store)
    assert {h["deployment_id"] for h in search(store, '"exit code"', project="api")} == {"d2"}
    assert {h["deployment_id"] for h in search(store, '"exit code"', deployment_id="d1")} == {"d1"}
    assert texts(search(store, "migr*", level="warning")) == ["migration 0042 applied"]
    assert search(store, "migr*", job="build") == []
    assert len(search(store, "migr*", job="test", step="unit")) == 2
    assert texts(
        search(store, "exit", since="2025-03-02T00:00:00.000Z", until="2025-03-02T23:00:00.000Z")
    ) == ["Process completed with exit code 1."]
    assert search(store, "connection", project="nobody") == []
    assert search(store, "connection", deployment_id="nobody") == []


def test_search_pages_go_on_where_they_stopped(store: Store) -> None:
    store.append(
        Batch(
            [
                ev("d1", "log_entry", f"01T10:00:{i:02d}.000", message=f"line {i} of the log")
                for i in range(25)
            ]
        )
    )
    everything = [h["text"] for h in search(store, "log")]
    assert everything == [f"line {i} of the log" for i in reversed(range(25))]
    pages: list[str] = []
    cursor = None
    while True:
        page = store.search_logs(LogSearch(parse_query("log")), limit=7, cursor=cursor)
        assert not page.truncated
        pages += texts(page.items)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert pages == everything
    with pytest.raises(ValueError, match="cursor"):
        store.search_logs(LogSearch(parse_query("log")), limit=7, cursor="nope")


def test_search_sees_lines_written_after_an_earlier_search(store: Store) -> None:
    """Whatever a store keeps to answer faster, it never answers from a stale state."""
    corpus(store)
    assert search(store, "kraken") == []
    assert texts(search(store, "connection")) == ["Connection refused by peer"]
    store.append(
        Batch(
            [
                ev(
                    "d4",
                    "log_entry",
                    "04T10:00:03.000",
                    step_name="test / unit",
                    message="the Kraken connection woke",
                )
            ]
        )
    )
    store.append(Batch([ev("d9", "log_entry", "09T10:00:00.000", message="another kraken")]))
    assert texts(search(store, "kraken")) == ["another kraken", "the Kraken connection woke"]
    assert texts(search(store, "connection")) == [
        "the Kraken connection woke",
        "Connection refused by peer",
    ]


# -- folds for trends -----------------------------------------------------------------------


def test_recent_folds_newest_first_from_a_time(store: Store) -> None:
    store_all(
        store,
        passed_run("p1", 1),
        failed_run("p2", 2, "Error: x"),
        passed_run("p3", 3),
        passed_run("q1", 4, project="api"),
    )
    folds, more = store.recent_folds(project="web", status=None, since="", limit=10)
    assert [f.metadata.get("commit") for f in folds] == [None, None, None]
    assert [f.sort_ts() for f in folds] == [
        "2025-03-03T10:00:00.000Z",
        "2025-03-02T10:00:00.000Z",
        "2025-03-01T10:00:00.000Z",
    ]
    assert not more
    folds, more = store.recent_folds(project="web", status="success", since="", limit=1)
    assert [f.sort_ts() for f in folds] == ["2025-03-03T10:00:00.000Z"]
    assert more
    folds, _ = store.recent_folds(
        project=None, status=None, since="2025-03-03T00:00:00.000Z", limit=10
    )
    assert [f.project for f in folds] == ["api", "web"]
