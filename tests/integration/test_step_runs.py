"""Step runs kept as events are stored equal the runs the folds give, and count as folds did.

Whatever the order events arrive in, however they are split into writes,
repeated or pruned: the rows the SQLite store keeps are
:func:`ledger.trends.step_runs` over its current folds.  And on every store,
:func:`ledger.trends.step_trends` over the runs it reads gives what the rule
gave when it counted folds (:func:`fold_trends`, kept here as it was written),
the bound on deployments and ``truncated`` included.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.ingest import load_one
from ledger.events import Event
from ledger.fold import Fold
from ledger.retention import Retention
from ledger.timestamps import format_timestamp
from ledger.trends import FINISHED, StepTrend, _Tally, step_trends, trends_of
from ledger.view import step_view
from storage.redis_store import RedisStore
from storage.sqlite_store import SqliteStore
from storage.store import Batch, Store
from storage.url import StoreURL
from tests.integration.arrivals import kept_events, store_checking, write_sizes
from tests.redis_server import RedisServer

BASE = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
STEPS = ["build / compile", "build / test", "deploy / upload"]

step = st.fixed_dictionaries(
    {
        "name": st.sampled_from(STEPS),
        # "again": failed, then passed on a re-run of the same deployment
        "outcome": st.sampled_from(["success", "failure", "again", "running"]),
        "seconds": st.integers(min_value=0, max_value=300),
    }
)
deployment = st.fixed_dictionaries(
    {
        "project": st.sampled_from(["web", "api"]),
        "commit": st.sampled_from([None, "c1", "c2"]),
        "steps": st.lists(step, max_size=3),
        "completed": st.sampled_from([None, "success", "failure"]),
        "late_start": st.booleans(),  # the start arrives after everything else
    }
)


def events_of(number: int, start: int, spec: dict[str, Any]) -> list[Event]:
    """Deployment ``number`` starting ``start`` minutes after :data:`BASE`."""
    began = BASE + timedelta(minutes=start)
    base = {"project": spec["project"], "deployment_id": f"d{number:02d}"}
    at = began
    bodies: list[dict[str, Any]] = []
    for item in spec["steps"]:
        job, name = item["name"].split(" / ")
        ran = {"job": job, "step": name}
        outcomes = {"again": ["failure", "success"], "running": []}.get(
            item["outcome"], [item["outcome"]]
        )
        bodies.append({"type": "step_started", **ran, "timestamp": at})
        for outcome in outcomes:
            at += timedelta(seconds=item["seconds"])
            bodies.append({"type": "step_completed", **ran, "status": outcome, "timestamp": at})
            at += timedelta(seconds=1)
            if outcome == "failure" and item["outcome"] == "again":
                bodies.append({"type": "step_started", **ran, "timestamp": at})
    if spec["completed"]:
        at += timedelta(seconds=1)
        bodies.append(
            {"type": "deployment_completed", "status": spec["completed"], "timestamp": at}
        )
    commit = {"commit": spec["commit"]} if spec["commit"] else {}
    started = {"type": "deployment_started", **commit, "timestamp": began}
    bodies = [*bodies, started] if spec["late_start"] else [started, *bodies]
    return [
        load_one({**base, **body, "timestamp": format_timestamp(body["timestamp"])}, "deployment")
        for body in bodies
    ]


def fold_trends(
    folds: Iterable[Fold], *, start: str, middle: str, end: str | None = None
) -> list[StepTrend]:
    """Step trends as they were counted from folds, before the runs were kept."""
    ordered = sorted(folds, key=lambda f: (f.sort_ts(), f.created_ts or ""))
    tallies: dict[tuple[str, str, str], tuple[_Tally, _Tally]] = {}
    last_outcome: dict[tuple[str, str, str, str], str] = {}
    for fold in ordered:
        started = fold.sort_ts()
        window = (
            1
            if started >= middle and (end is None or started <= end)
            else 0
            if start <= started < middle
            else None
        )
        commit = fold.metadata.get("commit")
        for item in fold.steps.values():
            if item.status not in FINISHED:
                continue
            key = (fold.project, item.job, item.name)
            earlier = last_outcome.get((*key, commit)) if commit else None
            if commit:
                last_outcome[(*key, commit)] = item.status
            if window is None:
                continue
            tally = tallies.setdefault(key, (_Tally(), _Tally()))[window]
            tally.runs += 1
            if item.status == "failure":
                tally.failures += 1
            elif item.failed_runs or earlier == "failure":
                tally.flaky += 1
            duration = step_view(item)["duration_ms"]
            if duration is not None:
                tally.durations.append(duration)
    return trends_of(tallies)


def kept_as_folded(store: SqliteStore) -> None:
    kept = store.kept_step_runs()
    assert kept == store.folded_step_runs()
    runs, more = store.step_runs(project=None, since="", limit=1000)
    assert (set(runs), len(runs), more) == (kept, len(kept), False)


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def open_store(request: pytest.FixtureRequest) -> Callable[[], Store]:
    """Open an empty store of one kind (Redis: a prefix of its own)."""
    if request.param == "sqlite":
        return lambda: SqliteStore(":memory:")
    server: RedisServer = request.getfixturevalue("redis_server")
    return lambda: RedisStore(StoreURL.parse(server.url(prefix=f"steps-{uuid.uuid4().hex}")))


@settings(max_examples=60, deadline=None)
@given(
    specs=st.lists(deployment, min_size=1, max_size=8),
    data=st.data(),
    sizes=write_sizes,
    keep=kept_events,
)
def test_kept_step_runs_equal_the_runs_of_the_folds(
    specs: list[dict[str, Any]], data: st.DataObject, sizes: list[int], keep: int
) -> None:
    """Any arrival order, repeats, writes of any size, then pruning by count."""
    starts = data.draw(st.lists(st.integers(0, 3000), min_size=len(specs), max_size=len(specs)))
    events = [e for n, spec in enumerate(specs) for e in events_of(n, starts[n], spec)]
    store = SqliteStore(":memory:", retention=Retention(max_events=keep))
    store_checking(store, events, data, sizes, kept_as_folded)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    specs=st.lists(deployment, min_size=1, max_size=10),
    data=st.data(),
    since=st.integers(min_value=-10, max_value=2000),
    days=st.integers(min_value=0, max_value=2000),
    limit=st.integers(min_value=1, max_value=12),
    project=st.sampled_from([None, "web"]),
)
def test_trends_from_the_runs_are_the_trends_of_the_folds(
    open_store: Callable[[], Store],
    specs: list[dict[str, Any]],
    data: st.DataObject,
    since: int,
    days: int,
    limit: int,
    project: str | None,
) -> None:
    """The newest ``limit`` deployments from ``since`` on, counted in two windows."""
    starts = data.draw(
        st.lists(st.integers(0, 3000), min_size=len(specs), max_size=len(specs), unique=True)
    )
    store = open_store()
    try:
        for number, spec in enumerate(specs):
            store.append(Batch(events_of(number, starts[number], spec)))
        start = format_timestamp(BASE + timedelta(minutes=since))
        middle = format_timestamp(BASE + timedelta(minutes=since + days))
        runs, more = store.step_runs(project=project, since=start, limit=limit)
        folds, folds_more = store.recent_folds(
            project=project, status=None, since=start, limit=limit
        )
        assert more == folds_more
        assert step_trends(runs, start=start, middle=middle) == fold_trends(
            folds, start=start, middle=middle
        )
    finally:
        store.close()


def test_a_file_from_before_the_step_runs_gets_them_when_opened(tmp_path: Path) -> None:
    """A file without the table, or with one of another layout, gets it filled from its
    deployment rows once, when opened."""
    path = str(tmp_path / "hub.db")
    store = SqliteStore(path)
    spec = {
        "project": "web",
        "commit": "c1",
        "steps": [{"name": "build / test", "outcome": "again", "seconds": 30}],
        "completed": "success",
        "late_start": False,
    }
    for number in range(4):
        store.append(Batch(events_of(number, 10 * number, spec)))
    store.close()
    with sqlite3.connect(path) as db:
        db.execute("DROP TABLE step_runs")
        db.execute("CREATE TABLE step_runs (deployment_id TEXT PRIMARY KEY, rows BLOB)")
        db.execute("UPDATE meta SET value = '0' WHERE key = 'step_runs'")
    reopened = SqliteStore(path)
    try:
        kept_as_folded(reopened)
        assert len(reopened.kept_step_runs()) == 4
    finally:
        reopened.close()
