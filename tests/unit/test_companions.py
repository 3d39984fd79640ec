"""A lifecycle event's log text travels as log_entry events stored right after it."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from app.ingest import load_one
from ledger.companions import with_companions
from ledger.events import Event, Join
from ledger.logs import LogLine, log_lines_of
from tests.unit.test_recorder import Book

BIG_LOG = "\n".join(f"line {n}: compiling module {n} " + "x" * 80 for n in range(3000))


def typed(**body: Any) -> Event:
    base = {"type": "step_completed", "project": "web", "deployment_id": "7", "step": "build"}
    return load_one({**base, **body}, "deployment")


def lines(events: list[Event]) -> list[LogLine]:
    return [line for event in events for line in log_lines_of(event)]


def test_events_without_logs_are_stored_as_they_are() -> None:
    events = [
        typed(status="success"),
        load_one({"project": "web", "status": "running"}, "deployment"),
    ]
    split = with_companions(events)
    assert split.events is events
    assert split.own == [0, 1]


def test_logs_and_error_move_into_companions_after_their_event() -> None:
    step = typed(status="failure", logs="npm ci\nnpm ERR! 404", error="exit code 1", event_id="e1")
    note = typed(type="log_entry", message="after")
    split = with_companions([step, note])
    lifecycle, logs, error, after = split.events
    assert split.own == [0, 3]
    assert (lifecycle.type, lifecycle.payload["logs"], lifecycle.payload["error"]) == (
        "step_completed",
        None,
        "exit code 1",  # the view still shows the step's error
    )
    assert lifecycle.lines_follow
    assert [(e.type, e.payload["level"], e.payload["message"]) for e in (logs, error)] == [
        ("log_entry", "info", "npm ci\nnpm ERR! 404"),
        ("log_entry", "error", "exit code 1"),
    ]
    for companion in (logs, error):
        assert (companion.project, companion.deployment_id, companion.timestamp) == (
            "web",
            "7",
            step.timestamp,
        )
        assert (companion.payload["job"], companion.payload["step"]) == (
            step.payload["job"],
            "build",
        )
        assert companion.join is None  # it names its deployment
    assert (logs.dedup_key, error.dedup_key) == ("e1#logs", "e1#error")
    assert after is note


def test_the_log_lines_are_the_same_lines_in_the_same_order() -> None:
    step = typed(status="failure", logs="one\ntwo", error="boom\ntrace")
    assert lines(with_companions([step]).events) == log_lines_of(step)


@settings(max_examples=200, deadline=None)
@given(
    logs=st.one_of(st.none(), st.text(min_size=1, max_size=300)),
    error=st.one_of(st.none(), st.text(min_size=1, max_size=100)),
    kind=st.sampled_from(["step_started", "step_completed", "deployment_completed"]),
)
def test_any_lifecycle_event_keeps_its_log_lines(
    logs: str | None, error: str | None, kind: str
) -> None:
    step = typed(type=kind, status="failure", logs=logs, error=error)
    split = with_companions([step]).events
    assert lines(split) == log_lines_of(step)
    assert not split[0].payload["logs"]


def test_a_lifecycle_frame_stays_small_whatever_the_log() -> None:
    step = typed(status="success", logs=BIG_LOG, duration_ms=1200)
    assert len(orjson.dumps(step.with_id("x").to_dict())) > 300_000
    lifecycle = with_companions([step]).events[0]
    assert len(orjson.dumps(lifecycle.with_id("1700000000000-1").to_dict())) < 512


def test_a_legacy_body_s_companions_follow_it_into_its_deployment() -> None:
    """Legacy bodies name no deployment: the companions go where their body went,
    whether it started one, joined the open one or closed it."""
    book = Book()
    running = load_one(
        {"project": "site", "status": "running", "logs": "starting", "runId": ""}, "deployment"
    )
    (started, started_log) = with_companions([running]).events
    assert started_log.join is Join.PRECEDING
    entries = book.write([started, started_log])
    deployment = entries[0].event.deployment_id
    assert entries[1].event.deployment_id == deployment

    other = load_one({"project": "site", "status": "running", "runId": ""}, "deployment")
    book.write([other])  # a newer run of the same project is open now

    step = load_one(
        {"project": "site", "step_name": "deploy", "status": "success", "step_logs": "copied"},
        "step",
    )
    success = load_one(
        {"project": "site", "status": "success", "logs": "done", "runId": ""}, "deployment"
    )
    entries = book.write(with_companions([step, success]).events)
    newest = entries[0].event.deployment_id
    assert newest != deployment
    # the step joined the newest open run, the completion closed it: every log line went along
    assert {entry.event.deployment_id for entry in entries} == {newest}
    assert [line.text for entry in entries for line in entry.lines] == ["copied", "done"]


def test_a_companion_without_its_body_joins_the_newest_open_deployment() -> None:
    """Its body was a repeat (stored before companions existed): nothing precedes it."""
    book = Book()
    book.write([load_one({"project": "site", "status": "running", "runId": ""}, "deployment")])
    step = load_one(
        {"project": "site", "step_name": "deploy", "status": "success", "step_logs": "copied"},
        "step",
    )
    companion = with_companions([step]).events[1]
    (entry,) = book.write([companion])
    assert entry.event.deployment_id == book.events[0].deployment_id
