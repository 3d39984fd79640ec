"""Step trends and the ETA, from hand-made histories."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from app.ingest import load_one
from ledger.events import Event
from ledger.fold import Fold
from ledger.trends import eta, step_p50s, step_runs, step_trends, window_bounds
from ledger.view import build_view

NOW = datetime(2025, 3, 31, 12, 0, tzinfo=UTC)


def ev(deployment: str, kind: str, at: str, **body: Any) -> Event:
    return load_one(
        {"type": kind, "project": "web", "deployment_id": deployment, "timestamp": at, **body},
        "deployment",
    )


def run(
    deployment: str,
    day: int,
    steps: dict[str, tuple[str, int]],
    *,
    commit: str | None = None,
    done: bool = True,
) -> list[Event]:
    """A deployment started on March ``day`` running ``steps``: name -> (status, seconds),
    one after the other."""
    clock = datetime(2025, 3, day, 10, 0, tzinfo=UTC).timestamp()
    start = datetime.fromtimestamp(clock, UTC).isoformat()
    events = [ev(deployment, "deployment_started", start, **({"commit": commit} if commit else {}))]
    for name, (status, seconds) in steps.items():
        began = datetime.fromtimestamp(clock, UTC).isoformat()
        events.append(ev(deployment, "step_started", began, step_name=name))
        if status == "running":
            continue
        clock += seconds
        events.append(
            ev(
                deployment,
                "step_completed",
                datetime.fromtimestamp(clock, UTC).isoformat(),
                step_name=name,
                status=status,
                started_at=began,
            )
        )
    if done:
        failed = any(status == "failure" for status, _ in steps.values())
        end = datetime.fromtimestamp(clock + 1, UTC).isoformat()
        events.append(
            ev(deployment, "deployment_completed", end, status="failed" if failed else "success")
        )
    return events


def fold(events: list[Event]) -> Fold:
    return Fold.of(events)


def trends(folds: list[Fold], days: int = 10) -> dict[tuple[str, str], dict[str, Any]]:
    start, middle = window_bounds(NOW, days)
    found = (step_runs(f"d{n}", each) for n, each in enumerate(folds))
    runs = [each for each in found if each is not None]
    return {(t["job"], t["step"]): dict(t) for t in step_trends(runs, start=start, middle=middle)}


def test_runs_failures_and_durations_per_step() -> None:
    folds = [
        fold(run("a", 25, {"build / compile": ("success", 60), "deploy / push": ("success", 10)})),
        fold(run("b", 26, {"build / compile": ("success", 80), "deploy / push": ("failure", 5)})),
        fold(run("c", 27, {"build / compile": ("success", 100)})),
        fold(run("d", 28, {"build / compile": ("failure", 20)})),
    ]
    found = trends(folds)
    compile_ = found["build", "compile"]
    assert (compile_["runs"], compile_["failures"], compile_["failure_rate"]) == (4, 1, 0.25)
    assert (compile_["p50_ms"], compile_["p95_ms"]) == (60000, 100000)
    assert compile_["previous"]["runs"] == 0
    assert compile_["regressed"] is False
    push = found["deploy", "push"]
    assert (push["runs"], push["failures"], push["failure_rate"]) == (2, 1, 0.5)
    assert push["project"] == "web"


def test_a_step_regresses_when_its_p50_grows_by_more_than_half() -> None:
    previous = [fold(run(f"p{i}", 12 + i, {"build / compile": ("success", 60)})) for i in range(3)]
    slower = [fold(run(f"s{i}", 24 + i, {"build / compile": ("success", 91)})) for i in range(3)]
    found = trends(previous + slower)["build", "compile"]
    assert (found["p50_ms"], found["previous"]["p50_ms"]) == (91000, 60000)
    assert found["regressed"] is True
    just = [fold(run(f"j{i}", 24 + i, {"build / compile": ("success", 90)})) for i in range(3)]
    assert trends(previous + just)["build", "compile"]["regressed"] is False


def test_deployments_outside_both_windows_are_not_counted() -> None:
    folds = [fold(run("old", 1, {"build / compile": ("success", 60)}))]
    assert trends(folds) == {}


def test_flaky_a_rerun_of_the_same_deployment() -> None:
    """GitHub re-runs an attempt under the same run id: the step failed, then passed."""
    first = run("r", 27, {"build / test": ("failure", 30)})
    again = [
        ev("r", "deployment_started", "2025-03-27T11:00:00Z"),
        ev("r", "step_started", "2025-03-27T11:00:00Z", step_name="build / test"),
        ev(
            "r",
            "step_completed",
            "2025-03-27T11:00:40Z",
            step_name="build / test",
            status="success",
        ),
        ev("r", "deployment_completed", "2025-03-27T11:00:41Z", status="success"),
    ]
    found = trends([fold(first + again)])["build", "test"]
    assert (found["runs"], found["failures"], found["flaky"]) == (1, 0, 1)


def test_flaky_another_deployment_of_the_same_commit() -> None:
    folds = [
        fold(run("x1", 27, {"build / test": ("failure", 30)}, commit="abc123")),
        fold(run("x2", 28, {"build / test": ("success", 30)}, commit="abc123")),
        fold(run("y1", 28, {"build / test": ("success", 30)}, commit="def456")),
        fold(run("x3", 29, {"build / test": ("success", 30)}, commit="abc123")),
    ]
    found = trends(folds)["build", "test"]
    assert (found["runs"], found["failures"], found["flaky"]) == (4, 1, 1)


def test_a_failure_in_the_previous_window_still_makes_a_success_flaky() -> None:
    folds = [
        fold(run("x1", 20, {"build / test": ("failure", 30)}, commit="abc123")),
        fold(run("x2", 28, {"build / test": ("success", 30)}, commit="abc123")),
    ]
    found = trends(folds, days=5)["build", "test"]
    assert (found["flaky"], found["previous"]["failures"]) == (1, 0)


# -- the ETA --------------------------------------------------------------------------------

HISTORY_STEPS = {
    "build / compile": ("success", 60),
    "build / test": ("success", 120),
    "deploy / push": ("success", 30),
}


def history(count: int) -> list[Fold]:
    return [fold(run(f"h{i}", 1 + i, HISTORY_STEPS)) for i in range(count)]


def test_an_eta_adds_the_p50_of_the_steps_still_ahead() -> None:
    events = run(
        "now",
        31,
        {"build / compile": ("success", 50), "build / test": ("running", 0)},
        done=False,
    )
    view = build_view("now", events)
    test_started = datetime(2025, 3, 31, 10, 0, 50, tzinfo=UTC)
    answer = eta(view, history(5), test_started.replace(second=0, minute=1, hour=10))
    # test has run 10 s of its 120 s p50; push (30 s) has not started
    assert answer == {
        "remaining_ms": 110000 + 30000,
        "finish_at": "2025-03-31T10:03:20.000Z",
        "basis": 5,
        "progress": round((60000 + 10000) / (60000 + 10000 + 140000), 4),
    }


def test_a_step_past_its_p50_has_nothing_left() -> None:
    events = run("now", 31, {"build / compile": ("running", 0)}, done=False)
    view = build_view("now", events)
    late = datetime(2025, 3, 31, 11, 0, tzinfo=UTC)
    answer = eta(view, history(3), late)
    assert answer is not None
    assert answer["remaining_ms"] == 120000 + 30000


def test_no_eta_without_history_or_when_it_is_not_running() -> None:
    running = build_view("now", run("now", 31, {"build / compile": ("running", 0)}, done=False))
    assert eta(running, [], NOW) is None
    finished = build_view("x", run("x", 30, HISTORY_STEPS))
    assert eta(finished, history(3), NOW) is None


def test_p50s_come_from_successful_runs_only() -> None:
    folds = [
        *history(3),
        fold(run("bad", 9, {"build / compile": ("failure", 1), "build / test": ("success", 999)})),
    ]
    p50s, basis = step_p50s(folds)
    assert p50s["build", "compile"] == 60000
    assert p50s["build", "test"] == 120000
    assert basis == 4
