"""Group commit in the SQLite store: concurrent appends share a transaction, not a failure.

Each test runs real greenlets against a real SQLite file; failures are made by
SQLite itself (triggers, a deferred foreign key), never by replacing its calls.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gevent
import pytest

from app.ingest import load_one
from ledger.events import Event
from ledger.ids import make_event_id, parse_event_id
from ledger.view import build_view
from storage.sqlite_store import SqliteStore
from storage.store import Accepted, Batch, StoreHooks, StoreUnavailable
from tests.conftest import TIMEOUT_FACTOR


def event(**body: Any) -> Event:
    return load_one(
        {"project": "web", "deployment_id": "1", "type": "log_entry", "message": "m", **body},
        "deployment",
    )


@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "hub.db")


@pytest.fixture
def store(path: str) -> Iterator[SqliteStore]:
    opened = SqliteStore(path, hooks=HOOKS, group_commit=True)
    yield opened
    opened.close()


#: The size of every group the stores of these tests wrote, as their hook reported it.
GROUP_SIZES: list[int] = []
HOOKS = StoreHooks(on_group=GROUP_SIZES.append)


def groups() -> tuple[int, int]:
    """Groups written so far in this process, and the batches they held."""
    return len(GROUP_SIZES), sum(GROUP_SIZES)


def completed_steps(name: str, count: int, second: str, *, per_second: int) -> list[Event]:
    """``count`` successful steps, ``per_second`` of them stamped in each second of ``second``."""
    return [
        event(
            type="step_completed",
            step_name=f"{name} {i}",
            step_status="success",
            timestamp=second.format(i // per_second),
        )
        for i in range(count)
    ]


def append_together(store: SqliteStore, batches: list[Batch]) -> list[Accepted | Exception]:
    """Append every batch from its own greenlet, all queued before the writer runs."""

    def append(batch: Batch) -> Accepted | Exception:
        try:
            return store.append(batch)
        except Exception as exc:  # noqa: BLE001 - the test inspects what each caller got
            return exc

    greenlets = [gevent.spawn(append, batch) for batch in batches]
    gevent.joinall(greenlets, timeout=10 * TIMEOUT_FACTOR, raise_error=True)
    return [greenlet.value for greenlet in greenlets]


def stored_messages(path: str) -> list[str]:
    """What another connection sees committed, in seq order (a message is kept in its line)."""
    with sqlite3.connect(path) as other:
        rows = other.execute(
            "SELECT message FROM events JOIN log_lines USING (seq) ORDER BY seq"
        ).fetchall()
    return [message for (message,) in rows]


def poison(path: str, action: str = "ABORT") -> None:
    """Make SQLite refuse any event of project ``poison`` (another connection, same file)."""
    with sqlite3.connect(path) as other:
        other.execute(
            "CREATE TRIGGER poison BEFORE INSERT ON events WHEN NEW.project = 'poison' "
            f"BEGIN SELECT RAISE({action}, 'poisoned'); END"
        )


def test_concurrent_appends_share_one_transaction(store: SqliteStore) -> None:
    before = groups()
    answers = append_together(store, [Batch([event(message=str(i))]) for i in range(10)])
    count, total = groups()
    assert (count - before[0], total - before[1]) == (1, 10)
    ids = [answer.ids[0] for answer in answers if isinstance(answer, Accepted)]
    assert ids == sorted(ids)
    assert len(set(ids)) == 10
    assert store.last_seq() == 10


def test_each_caller_is_answered_after_the_commit_that_holds_its_events(
    store: SqliteStore, path: str
) -> None:
    """Another connection already sees a caller's events when its append returns."""
    seen: list[list[str]] = []

    def append(index: int) -> None:
        store.append(Batch([event(message=str(index))]))
        seen.append(stored_messages(path))

    gevent.joinall([gevent.spawn(append, i) for i in range(5)], raise_error=True)
    assert all(len(messages) == 5 for messages in seen)


def test_a_failing_batch_is_rolled_back_alone(store: SqliteStore, path: str) -> None:
    poison(path)
    answers = append_together(
        store,
        [
            Batch([event(message="first")]),
            Batch([event(message="lost"), event(project="poison", message="bad")]),
            Batch([event(message="last")]),
        ],
    )
    assert isinstance(answers[0], Accepted)
    assert isinstance(answers[2], Accepted)
    assert isinstance(answers[1], StoreUnavailable)
    assert "poisoned" in str(answers[1])
    assert stored_messages(path) == ["first", "last"]
    assert [e.id for _, e in store.read_after(0, 10)] == answers[0].ids + answers[2].ids


def test_a_python_error_in_one_batch_reaches_only_its_caller(
    store: SqliteStore, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = store._record

    def failing_record(batch: Batch, *args: Any) -> Accepted:
        if batch.events[0].payload["message"] == "bad":
            raise ValueError("not storable")
        return record(batch, *args)

    monkeypatch.setattr(store, "_record", failing_record)
    answers = append_together(
        store,
        [Batch([event(message="a")]), Batch([event(message="bad")]), Batch([event(message="b")])],
    )
    assert isinstance(answers[1], ValueError)
    assert stored_messages(path) == ["a", "b"]


def test_a_failed_batch_leaves_its_delivery_key_to_the_next_one(
    store: SqliteStore, path: str
) -> None:
    poison(path)
    answers = append_together(
        store,
        [
            Batch([event(project="poison")], "Idempotency-Key:k"),
            Batch([event(message="retry")], "Idempotency-Key:k"),
        ],
    )
    assert isinstance(answers[0], StoreUnavailable)
    assert isinstance(answers[1], Accepted)
    assert not answers[1].duplicate
    assert stored_messages(path) == ["retry"]


def test_a_repeated_delivery_in_one_group_is_stored_once(store: SqliteStore) -> None:
    answers = append_together(
        store,
        [
            Batch([event(message="a")], "Idempotency-Key:same"),
            Batch([event(message="a")], "Idempotency-Key:same"),
            Batch([event(event_id="e1")]),
            Batch([event(event_id="e1"), event(message="new")]),
        ],
    )
    first, again, single, mixed = answers
    assert isinstance(first, Accepted)
    assert isinstance(again, Accepted)
    assert (first.duplicate, again.duplicate, again.ids) == (False, True, first.ids)
    assert isinstance(single, Accepted)
    assert isinstance(mixed, Accepted)
    assert mixed.ids[0] == single.ids[0]
    assert not mixed.duplicate
    assert [e.id for e in mixed.stored] == mixed.ids[1:]
    assert store.last_seq() == 3


def test_a_failed_commit_fails_the_whole_group_and_stores_nothing(
    store: SqliteStore, path: str
) -> None:
    """A deferred foreign key breaks only at COMMIT: every caller gets a 503."""
    with sqlite3.connect(path) as other:
        other.executescript(
            "CREATE TABLE parent (id TEXT PRIMARY KEY);"
            "CREATE TABLE child (pid TEXT REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED);"
            "CREATE TRIGGER orphan AFTER INSERT ON events WHEN NEW.project = 'orphan' "
            "BEGIN INSERT INTO child VALUES ('missing'); END;"
        )
    store._db.execute("PRAGMA foreign_keys = ON")  # per connection: the store's own
    answers = append_together(
        store,
        [
            Batch([event(message="a")], "Idempotency-Key:a"),
            Batch([event(project="orphan")]),
            Batch([event(message="b")]),
        ],
    )
    assert all(isinstance(answer, StoreUnavailable) for answer in answers)
    assert "commit failed" in str(answers[0])
    assert stored_messages(path) == []
    assert store.last_seq() == 0
    again = store.append(Batch([event(message="a")], "Idempotency-Key:a"))
    assert not again.duplicate
    assert stored_messages(path) == ["a"]


def test_sqlite_abandoning_the_transaction_fails_every_batch(store: SqliteStore, path: str) -> None:
    """``RAISE(ROLLBACK)`` undoes the batches before it too: none may be answered stored."""
    poison(path, "ROLLBACK")
    answers = append_together(
        store,
        [Batch([event(message="a")]), Batch([event(project="poison")]), Batch([event()])],
    )
    assert all(isinstance(answer, StoreUnavailable) for answer in answers)
    assert stored_messages(path) == []
    assert store.append(Batch([event(message="later")])).ids


def test_a_group_holds_at_most_max_group_events(path: str) -> None:
    store = SqliteStore(path, hooks=HOOKS, group_commit=True, max_group_events=4)
    before = groups()
    batches = [Batch([event(message=f"{i}a"), event(message=f"{i}b")]) for i in range(5)]
    batches.append(Batch([event(message=f"big{i}") for i in range(6)]))
    answers = append_together(store, batches)
    count, total = groups()
    store.close()
    assert (count - before[0], total - before[1]) == (4, 6)  # 2+2, 2+2, 2, then 6 alone
    ids = [i for answer in answers if isinstance(answer, Accepted) for i in answer.ids]
    assert ids == sorted(ids)
    assert len(ids) == 16


def test_the_view_is_right_after_a_batch_of_its_deployment_is_rolled_back(
    store: SqliteStore, path: str
) -> None:
    """A batch refused after its first event re-folded the view leaves no trace in it."""
    poison(path)
    started = event(type="deployment_started", timestamp="2024-01-01T00:00:00Z")
    failed = event(type="deployment_completed", status="failure", timestamp="2024-01-01T00:00:05Z")
    step = event(
        type="step_completed",
        step_name="build / test",
        step_status="success",
        timestamp="2024-01-01T00:00:03Z",
    )
    answers = append_together(
        store,
        [Batch([started]), Batch([failed, event(project="poison")]), Batch([step])],
    )
    assert isinstance(answers[1], StoreUnavailable)
    view = store.get_deployment("1")
    assert view is not None
    for extra in ("last_event_id", "log_lines", "metrics", "last_news_at"):
        view.pop(extra)
    assert view == build_view("1", [started, step])
    assert view["status"] == "running"


def test_a_group_writes_each_deployment_row_once_and_right(store: SqliteStore, path: str) -> None:
    """Many events of one deployment in a group, late ones too: one row write, a true view."""
    steps = completed_steps("build / step", 12, "2024-01-01T00:00:0{}.000Z", per_second=4)
    ordering = steps[4:] + steps[:4]  # the first second's steps arrive last
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)
    answers = append_together(
        store,
        [Batch([item]) for item in ordering] + [Batch([event(message="a"), event(message="b")])],
    )
    store._db.set_trace_callback(None)
    assert sum(s.startswith("INSERT INTO deployments") for s in statements) == 1
    view = store.get_deployment("1")
    assert view is not None
    assert view.pop("last_event_id") == answers[-1].ids[-1]  # type: ignore[union-attr]
    assert view.pop("log_lines") == 2
    view.pop("metrics")
    view.pop("last_news_at")
    assert view == build_view("1", steps)


def test_groups_of_any_size_and_order_fold_as_a_fresh_fold(store: SqliteStore) -> None:
    """Shuffled bursts sharing timestamps, in random groups, some repeated: a true view."""
    import random

    from tests.unit.test_fold import STORY

    burst = completed_steps("deploy / part", 15, "2025-08-12T11:20:3{}.000Z", per_second=5)
    for seed in range(12):
        shuffled = random.Random(seed)
        deployment = f"g-{seed}"
        items = [e.with_(deployment_id=deployment) for e in STORY + burst]
        ordering = items + shuffled.sample(items, 4)
        shuffled.shuffle(ordering)
        while ordering:
            size = shuffled.randint(1, 9)
            append_together(store, [Batch([item]) for item in ordering[:size]])
            ordering = ordering[size:]
        view = store.get_deployment(deployment)
        assert view is not None
        for extra in ("last_event_id", "log_lines", "metrics", "last_news_at"):
            view.pop(extra)
        assert view == build_view(deployment, items)


def test_what_reads_rows_inside_a_group_sees_the_rows_written_before_it(
    store: SqliteStore,
) -> None:
    """A legacy step joins, an unknown project resolves, metrics land: mid-group, as alone."""
    at = [f"2024-01-01T00:00:0{i}.000Z" for i in range(5)]  # the order they are written in
    answers = append_together(
        store,
        [
            Batch([event(type="deployment_started", deployment_id="run-1", timestamp=at[0])]),
            Batch(
                [
                    load_one(
                        {
                            "project": "web",
                            "step_name": "deploy",
                            "status": "running",
                            "timestamp": at[1],
                        },
                        "step",
                    )
                ]
            ),
            Batch([event(project="unknown", deployment_id="run-1", timestamp=at[2])]),
            Batch([event(type="deployment_started", deployment_id="run-2", timestamp=at[3])]),
            Batch(
                [
                    load_one(
                        {
                            "type": "metrics_update",
                            "project": "web",
                            "deployment_id": "run-2",
                            "metrics": {"p95": 3},
                            "timestamp": at[4],
                        },
                        "deployment",
                    )
                ]
            ),
        ],
    )
    joined, unknown = answers[1], answers[2]
    assert isinstance(joined, Accepted)
    assert isinstance(unknown, Accepted)
    assert joined.stored[0].deployment_id == "run-1"
    assert unknown.stored[0].project == "web"
    view = store.get_deployment("run-2")
    assert view is not None
    assert view["metrics"]["p95"] == 3
    assert view["last_event_id"] == answers[4].ids[0]  # type: ignore[union-attr]


def test_a_group_is_written_in_the_order_its_events_fold(store: SqliteStore) -> None:
    """Concurrent requests have no order of their own: the group takes the fold's."""
    stamps = ["2024-01-01T00:00:02.000Z", "2024-01-01T00:00:00.000Z", "2024-01-01T00:00:01.000Z"]
    answers = append_together(store, [Batch([event(message=at, timestamp=at)]) for at in stamps])
    ids = [answer.ids[0] for answer in answers if isinstance(answer, Accepted)]
    assert [ids.index(i) for i in sorted(ids)] == [1, 2, 0]


def test_the_writer_outlives_an_unexpected_error(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug in writing one group fails that group's callers with 503s, not the writer."""

    def broken(group: list[Any]) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(store._writer, "_write_group", broken)
    answers = append_together(store, [Batch([event()]), Batch([event()])])
    assert all(isinstance(answer, StoreUnavailable) for answer in answers)
    monkeypatch.undo()
    assert store.append(Batch([event(message="later")])).ids
    assert store.last_seq() == 1


def test_close_answers_the_callers_still_queued(path: str) -> None:
    store = SqliteStore(path, hooks=HOOKS, group_commit=True)
    waiting = [gevent.spawn(store.append, Batch([event()])) for _ in range(3)]
    gevent.sleep(0)  # the callers queue; the writer they started has not run yet
    store.close()
    gevent.joinall(waiting, timeout=10 * TIMEOUT_FACTOR)
    assert all(isinstance(g.exception, StoreUnavailable) for g in waiting)


def test_without_gevent_patching_each_append_is_its_own_transaction(path: str) -> None:
    store = SqliteStore(path, hooks=HOOKS)
    before = groups()
    store.append(Batch([event()]))
    store.close()
    assert (store._writer.grouped, groups()) == (False, before)


# -- a batch's rows, inserted together at its end ------------------------------------------


@pytest.fixture(params=[False, True], ids=["direct", "grouped"])
def grouping(request: pytest.FixtureRequest) -> bool:
    """Whether the store writes through its group-commit writer or one transaction each."""
    return bool(request.param)


def seq_of(event_id: str) -> int:
    parsed = parse_event_id(event_id)
    assert parsed is not None
    return parsed[1]


def read_ids(store: SqliteStore) -> list[str]:
    """Every event id a reader sees, in log order; asserts the seqs are dense."""
    rows = store.read_after(0, 1000)
    assert [seq for seq, _ in rows] == list(range(1, len(rows) + 1))
    assert all(seq_of(e.id) == seq for seq, e in rows)
    return [e.id for _, e in rows]


def log_event_ids(store: SqliteStore, deployment_id: str) -> list[str]:
    page = store.logs(deployment_id, job=None, step=None, after=None, limit=1000)
    return [line["event_id"] for line in page.items]


def test_ids_of_a_batch_are_consecutive_and_continue_across_batches_and_reopening(
    path: str, grouping: bool
) -> None:
    store = SqliteStore(path, hooks=HOOKS, group_commit=grouping)
    first = store.append(
        Batch(
            [
                event(type="deployment_started"),
                event(message="one\ntwo"),
                event(type="step_started", step_name="build / x", logs="starting"),
                event(deployment_id="2", message="other"),
                event(message="three"),
            ]
        )
    )
    second = store.append(Batch([event(message=str(i)) for i in range(3)]))
    epoch = store.epoch
    store.close()
    reopened = SqliteStore(path, hooks=HOOKS, group_commit=grouping)
    third = reopened.append(Batch([event(message="after"), event(type="deployment_started")]))
    try:
        assert reopened.epoch == epoch
        ids = first.ids + second.ids + third.ids
        assert [seq_of(i) for i in ids] == list(range(1, 11))
        assert [e.id for e in first.stored + second.stored + third.stored] == ids
        assert read_ids(reopened) == ids
        assert reopened.last_seq() == 10
        expected_lines = [ids[1], ids[1], ids[2], ids[4], *second.ids, ids[8]]
        assert log_event_ids(reopened, "1") == expected_lines
        assert log_event_ids(reopened, "2") == [ids[3]]
        view = reopened.get_deployment("1")
        assert view is not None
        assert (view["last_event_id"], view["log_lines"]) == (ids[9], 8)
    finally:
        reopened.close()


def test_batches_of_one_group_get_consecutive_ids_each(store: SqliteStore) -> None:
    """Each batch of a group numbers its events from where the one before it stopped."""
    batches = [
        Batch([event(deployment_id=str(b), message=f"{b}.{i}") for i in range(b + 1)])
        for b in range(5)
    ]
    answers = append_together(store, batches)
    accepted = [answer for answer in answers if isinstance(answer, Accepted)]
    assert len(accepted) == 5
    for answer in accepted:
        seqs = [seq_of(i) for i in answer.ids]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert sorted(i for answer in accepted for i in answer.ids) == read_ids(store)
    for b, answer in enumerate(accepted):
        assert log_event_ids(store, str(b)) == answer.ids


def legacy(status: str, logs: str, timestamp: str) -> Event:
    """A ``notify-dashboard.sh`` body: no deployment id to join on (LEGACY.md §2)."""
    return load_one(
        {
            "project": "web",
            "status": status,
            "duration": "",
            "timestamp": timestamp,
            "sourceRepo": "acme/web",
            "runId": "",
            "deployType": "backend",
            "serverHost": "",
            "logs": logs,
            "errorMessage": "",
        },
        "deployment",
    )


def test_a_legacy_body_mid_batch_gets_the_auto_id_of_its_own_seq(path: str, grouping: bool) -> None:
    """``<project>-auto-<seq>``: the seq its own event is stored as, not the batch's first."""
    store = SqliteStore(path, hooks=HOOKS, group_commit=grouping)
    store.append(Batch([event(project="api", deployment_id="a", message="before")]))
    accepted = store.append(
        Batch(
            [
                event(project="api", deployment_id="a", message="first of the batch"),
                event(project="api", deployment_id="b", type="deployment_started"),
                legacy("running", "pulling\nbuilding", "2024-01-01T00:00:00Z"),
                event(project="api", deployment_id="a", message="between"),
                legacy("success", "done", "2024-01-01T00:00:09Z"),  # closes the one just started
                event(project="api", deployment_id="b", message="last"),
            ]
        )
    )
    try:
        started, completed = accepted.stored[2], accepted.stored[4]
        auto = f"web-auto-{seq_of(started.id)}"
        assert seq_of(started.id) == 4
        assert (started.deployment_id, completed.deployment_id) == (auto, auto)
        assert [e.deployment_id for _, e in store.read_after(0, 10)] == [
            "a",
            "a",
            "b",
            auto,
            "a",
            auto,
            "b",
        ]
        assert read_ids(store)[1:] == accepted.ids
        view = store.get_deployment(auto)
        assert view is not None
        assert (view["project"], view["status"], view["last_event_id"]) == (
            "web",
            "success",
            completed.id,
        )
        page = store.logs(auto, job=None, step=None, after=None, limit=10)
        assert [(line["message"], line["event_id"]) for line in page.items] == [
            ("pulling", started.id),
            ("building", started.id),
            ("done", completed.id),
        ]
        assert log_event_ids(store, "a") == [read_ids(store)[0], accepted.ids[0], accepted.ids[3]]
    finally:
        store.close()


def out_of_order(deployment_id: str) -> list[Event]:
    """One deployment's story as a sender may post it: completions before their starts."""
    at = [f"2024-01-01T00:00:0{i}.000Z" for i in range(8)]

    def step(kind: str, name: str, moment: int, **body: Any) -> Event:
        return event(
            type=kind, deployment_id=deployment_id, step_name=name, timestamp=at[moment], **body
        )

    return [
        event(
            type="deployment_completed",
            deployment_id=deployment_id,
            status="success",
            timestamp=at[7],
            logs="all done",
        ),
        event(deployment_id=deployment_id, message="tail of the build", timestamp=at[3]),
        step(
            "step_completed",
            "build / compile",
            4,
            step_status="success",
            logs="compiled\n3 warnings",
        ),
        step("step_started", "build / compile", 1),
        event(deployment_id=deployment_id, message="head of the build", timestamp=at[2]),
        event(type="deployment_started", deployment_id=deployment_id, timestamp=at[0]),
        step(
            "step_completed", "deploy / upload", 6, step_status="failure", errorMessage="disk full"
        ),
        step("step_started", "deploy / upload", 5),
    ]


def stored_story(store: SqliteStore, deployment_id: str) -> dict[str, Any]:
    """The deployment's view and log lines, with ids reduced to their seqs (epochs differ)."""
    view = store.get_deployment(deployment_id)
    assert view is not None
    view["last_event_id"] = seq_of(view["last_event_id"])
    view["last_news_at"] = "received"  # when, differs between the two stores by nature
    page = store.logs(deployment_id, job=None, step=None, after=None, limit=100)
    lines = [{**line, "event_id": seq_of(line["event_id"])} for line in page.items]
    return {"view": view, "lines": lines}


def test_a_batch_of_late_lifecycle_events_folds_as_one_event_per_batch(
    tmp_path: Path, grouping: bool
) -> None:
    """Re-folds read the batch's own events before they are all inserted: nothing is missed."""
    together = SqliteStore(str(tmp_path / "together.db"), group_commit=grouping)
    apart = SqliteStore(str(tmp_path / "apart.db"), group_commit=grouping)
    try:
        together.append(Batch(out_of_order("7")))
        for item in out_of_order("7"):
            apart.append(Batch([item]))
        story = stored_story(together, "7")
        assert story == stored_story(apart, "7")
        view = dict(story["view"])
        assert view.pop("last_news_at") == "received"
        newest = len(out_of_order("7"))
        assert (view.pop("log_lines"), view.pop("metrics"), view.pop("last_event_id")) == (
            6,
            None,
            newest,
        )
        assert view == build_view("7", out_of_order("7"))
        assert [(line["message"], line["event_id"]) for line in story["lines"]] == [
            ("all done", 1),
            ("tail of the build", 2),
            ("compiled", 3),
            ("3 warnings", 3),
            ("head of the build", 5),
            ("disk full", 7),
        ]
    finally:
        together.close()
        apart.close()


def test_a_deployments_last_event_is_the_newest_of_its_batch(grouping: bool, path: str) -> None:
    store = SqliteStore(path, hooks=HOOKS, group_commit=grouping)
    try:
        accepted = store.append(
            Batch(
                [
                    event(type="deployment_started"),
                    event(message="a log line"),
                    event(type="step_started", step_name="build / compile"),
                ]
            )
        )
        view = store.get_deployment("1")
        assert view is not None
        assert view["last_event_id"] == accepted.ids[-1]
    finally:
        store.close()


def refuse_log_line(path: str, message: str) -> None:
    """Make SQLite refuse a log line with ``message``: after the batch's events are in."""
    with sqlite3.connect(path) as other:
        other.execute(
            "CREATE TRIGGER refuse_line BEFORE INSERT ON log_lines "
            f"WHEN NEW.message = '{message}' BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )


@pytest.mark.parametrize(
    "failing",
    [
        [event(message="kept?"), event(project="poison")],
        [event(message="kept?"), event(message="refused"), event(message="after")],
        [  # the first event's fold inserts the rows so far, before the batch fails
            event(type="deployment_started", logs="started"),
            event(type="step_completed", step_name="a / b", step_status="success", logs="x"),
            event(type="deployment_started", timestamp="2000-01-01T00:00:00Z"),
            event(project="poison"),
        ],
    ],
    ids=["event-refused", "log-line-refused", "after-a-re-fold"],
)
def test_a_failing_batch_leaves_no_events_no_log_lines_and_no_gap(
    path: str, grouping: bool, failing: list[Event]
) -> None:
    store = SqliteStore(path, hooks=HOOKS, group_commit=grouping)
    poison(path)
    refuse_log_line(path, "refused")
    try:
        before = store.append(Batch([event(message="before")]))
        with pytest.raises(StoreUnavailable):
            store.append(Batch(failing))
        assert read_ids(store) == before.ids
        assert log_event_ids(store, "1") == before.ids
        view = store.get_deployment("1")
        assert view is not None
        assert (view["last_event_id"], view["log_lines"], view["status"]) == (
            before.ids[0],
            1,
            build_view("1", before.stored)["status"],
        )
        after = store.append(Batch([event(message="a"), event(message="b")]))
        assert read_ids(store) == before.ids + after.ids
        assert log_event_ids(store, "1") == before.ids + after.ids
    finally:
        store.close()
    reopened = SqliteStore(path, hooks=HOOKS)
    try:
        assert read_ids(reopened) == before.ids + after.ids
        assert reopened.append(Batch([event()])).ids == [make_event_id(reopened.epoch, 4)]
    finally:
        reopened.close()


def test_a_batch_failing_in_a_group_leaves_the_others_dense_with_their_log_lines(
    store: SqliteStore, path: str
) -> None:
    """Rolled back to its savepoint, a batch leaves neither rows nor a hole between the others."""
    refuse_log_line(path, "refused")
    answers = append_together(
        store,
        [
            Batch([event(message="a1"), event(message="a2")]),
            Batch([event(deployment_id="2", message="lost"), event(message="refused")]),
            Batch([event(deployment_id="2", message="c1"), event(message="c2")]),
        ],
    )
    first, failed, last = answers
    assert isinstance(failed, StoreUnavailable)
    assert isinstance(first, Accepted)
    assert isinstance(last, Accepted)
    ids = read_ids(store)
    assert sorted(first.ids + last.ids) == ids
    assert log_event_ids(store, "2") == last.ids[:1]
    assert log_event_ids(store, "1") == sorted([*first.ids, last.ids[1]])
