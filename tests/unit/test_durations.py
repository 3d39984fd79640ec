"""Every duration the view reports agrees with the times it reports, whatever was sent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from app.ingest import load_one
from ledger.durations import span
from ledger.events import Event
from ledger.timestamps import duration_between, format_timestamp
from ledger.view import DeploymentView, build_view

BASE = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

moments = st.integers(min_value=0, max_value=3600).map(
    lambda s: format_timestamp(BASE + timedelta(seconds=s))
)
maybe_moment = st.none() | moments
durations = st.none() | st.integers(min_value=0, max_value=7200)
step_names = st.sampled_from(["build / compile", "build / test", "deploy / upload", "notify"])


@st.composite
def events(draw: st.DrawFn) -> Event:
    """Any lifecycle event of deployment 7, with or without times and durations."""
    kind = draw(st.sampled_from(["deployment_started", "deployment_completed", "step"]))
    body: dict[str, Any] = {"project": "web", "deployment_id": "7", "timestamp": draw(moments)}
    if kind == "deployment_started":
        body.update(type=kind, started_at=draw(maybe_moment))
    elif kind == "deployment_completed":
        status = draw(st.sampled_from(["success", "failed", "cancelled"]))
        body.update(type=kind, status=status, started_at=draw(maybe_moment))
        body.update(completed_at=draw(maybe_moment), duration=draw(durations))
    else:
        status = draw(st.sampled_from(["started", "running", "success", "failure", "skipped"]))
        body.update(type="step_manual", step_name=draw(step_names), step_status=status)
        body.update(started_at=draw(maybe_moment), completed_at=draw(maybe_moment))
        body.update(duration=draw(durations))
    return load_one({key: value for key, value in body.items() if value is not None}, "deployment")


def agrees(item: dict[str, Any] | DeploymentView) -> bool:
    started, completed, duration = item["started_at"], item["completed_at"], item["duration_ms"]
    if started is not None and completed is not None:
        return duration == duration_between(started, completed)
    return completed is not None or duration is None  # an open one has no duration yet


@settings(max_examples=300, deadline=None)
@given(st.lists(events(), min_size=1, max_size=12))
def test_every_duration_agrees_with_the_times_reported_beside_it(sent: list[Event]) -> None:
    view = build_view("7", sent)
    assert agrees(view), view
    for job in view["jobs"]:
        assert agrees(dict(job)), job
        for step in job["steps"]:
            assert agrees(dict(step)), step
            if job["started_at"] and step["started_at"]:
                assert job["started_at"] <= step["started_at"]  # a job spans its steps
            if job["completed_at"] and step["completed_at"]:
                assert step["completed_at"] <= job["completed_at"]


def test_the_times_win_over_the_senders_duration() -> None:
    """The deployment that said "took 9.0 s" while its start and finish were 11 s apart."""
    assert span("2026-03-01T12:00:00.000Z", "2026-03-01T12:00:11.000Z", 9000) == (
        "2026-03-01T12:00:00.000Z",
        11000,
    )


def test_without_a_start_the_senders_duration_places_it() -> None:
    assert span(None, "2026-03-01T12:00:11.000Z", 9000) == ("2026-03-01T12:00:02.000Z", 9000)


def test_an_open_span_has_no_duration_and_an_unknown_one_none() -> None:
    assert span("2026-03-01T12:00:00.000Z", None, 5) == ("2026-03-01T12:00:00.000Z", None)
    assert span(None, "2026-03-01T12:00:11.000Z", None) == (None, None)
