"""The fold: a deployment's view is a pure function of the set of its events."""

from __future__ import annotations

import zlib
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from app.ingest import load_one
from ledger.events import Event
from ledger.fold import FOLD_DICTIONARY, Fold
from ledger.view import build_view


def event(**body: Any) -> Event:
    return load_one({"project": "web", "deployment_id": "7", **body}, "deployment")


STORY = [
    event(
        type="deployment_started",
        timestamp="2025-08-12T11:20:00Z",
        branch="main",
        commit="abc123",
        actor="alice",
    ),
    event(type="step_started", step_name="build / compile", timestamp="2025-08-12T11:20:01Z"),
    event(
        type="step_completed",
        step_name="build / compile",
        step_status="success",
        timestamp="2025-08-12T11:20:31Z",
    ),
    event(type="step_started", step_name="build / test", timestamp="2025-08-12T11:20:31Z"),
    event(
        type="step_completed",
        step_name="build / test",
        step_status="failure",
        timestamp="2025-08-12T11:21:00Z",
        errorMessage="2 tests failed",
    ),
    event(type="step_started", step_name="deploy / upload", timestamp="2025-08-12T11:21:00Z"),
    event(
        type="step_completed",
        step_name="deploy / upload",
        step_status="skipped",
        timestamp="2025-08-12T11:21:00Z",
    ),
    event(
        type="deployment_completed",
        status="failed",
        timestamp="2025-08-12T11:21:05Z",
        started_at="2025-08-12T11:20:00Z",
        completed_at="2025-08-12T11:21:05Z",
    ),
    event(
        type="step_manual",
        step_name="notify",
        step_status="retrying",
        timestamp="2025-08-12T11:21:06Z",
    ),
]


def test_story_builds_the_expected_tree() -> None:
    view = build_view("7", STORY)
    assert view["status"] == "failure"
    assert view["duration_ms"] == 65000
    assert (view["branch"], view["commit"], view["actor"]) == ("main", "abc123", "alice")
    assert [j["name"] for j in view["jobs"]] == ["build", "deploy", "default"]
    build = view["jobs"][0]
    assert build["status"] == "failure"
    assert [(s["name"], s["status"], s["duration_ms"]) for s in build["steps"]] == [
        ("compile", "success", 30000),
        ("test", "failure", 29000),
    ]
    assert build["steps"][1]["error"] == "2 tests failed"
    assert view["jobs"][1]["status"] == "skipped"
    notify = view["jobs"][2]["steps"][0]
    assert (notify["status"], notify["retries"]) == ("running", 1)


@settings(max_examples=200, deadline=None)
@given(st.permutations(STORY), st.lists(st.sampled_from(STORY), max_size=5))
def test_view_is_the_same_in_any_order_with_duplicates(
    ordering: list[Event], repeats: list[Event]
) -> None:
    """Arrival order and redelivery never change the view."""
    assert build_view("7", ordering + repeats) == build_view("7", STORY)


def test_completion_before_start_still_ends_completed() -> None:
    view = build_view("7", [STORY[7], STORY[0]])
    assert view["status"] == "failure"
    assert view["completed_at"] == "2025-08-12T11:21:05.000Z"


def test_a_step_after_the_deployment_ended_does_not_reopen_it() -> None:
    late = event(type="step_started", step_name="late", timestamp="2025-08-12T11:30:00Z")
    view = build_view("7", [*STORY, late])
    assert view["status"] == "failure"


def test_a_start_after_a_completion_is_a_rerun() -> None:
    rerun = event(type="deployment_started", timestamp="2025-08-12T12:00:00Z")
    view = build_view("7", [*STORY, rerun])
    assert view["status"] == "running"
    assert view["completed_at"] is None
    assert view["duration_ms"] is None


def test_steps_without_deployment_events_infer_status() -> None:
    running = build_view("7", STORY[1:2])
    assert (running["status"], running["status_inferred"]) == ("running", True)
    failed = build_view("7", STORY[1:5])
    assert failed["status"] == "failure"


def test_legacy_completion_with_duration_derives_its_start() -> None:
    done = load_one(
        {
            "project": "p",
            "status": "success",
            "duration": "45",
            "runId": "9",
            "timestamp": "2025-08-12T11:20:45Z",
        },
        "deployment",
    )
    view = build_view("9", [done])
    assert view["started_at"] == "2025-08-12T11:20:00.000Z"
    assert view["duration_ms"] == 45000


def test_step_numbers_order_steps() -> None:
    second = event(
        type="step_completed",
        step="b",
        job="j",
        step_number=2,
        status="success",
        timestamp="2025-08-12T11:20:00Z",
    )
    first = event(
        type="step_completed",
        step="a",
        job="j",
        step_number=1,
        status="success",
        timestamp="2025-08-12T11:25:00Z",
    )
    view = build_view("7", [second, first])
    assert [s["name"] for s in view["jobs"][0]["steps"]] == ["a", "b"]


def test_unknown_project_takes_the_real_one() -> None:
    anonymous = load_one(
        {"type": "step_started", "project": "unknown", "deployment_id": "7", "step_name": "s"},
        "deployment",
    )
    assert build_view("7", [anonymous, STORY[0]])["project"] == "web"
    assert build_view("7", [anonymous])["project"] == "unknown"


def test_rollback_is_recorded() -> None:
    rollback = event(
        type="deployment_rollback",
        from_deployment_id="6",
        reason="broken",
        timestamp="2025-08-12T11:22:00Z",
    )
    view = build_view("7", [*STORY, rollback])
    assert view["rollback"]["from_deployment_id"] == "6"
    assert view["rollback"]["reason"] == "broken"


def test_a_lone_completion_without_duration_has_no_start() -> None:
    """Unknown is shown as unknown, not as a deployment that took 0 ms."""
    done = load_one(
        {"project": "p", "status": "success", "timestamp": "2025-08-17T03:16:40Z"}, "summary"
    )
    view = build_view("s", [done])
    assert (view["status"], view["started_at"], view["duration_ms"]) == ("success", None, None)
    assert view["completed_at"] == "2025-08-17T03:16:40.000Z"


def test_environment_url_and_version_come_from_extra_keys_latest_first() -> None:
    view = build_view(
        "7",
        [
            event(
                type="deployment_started",
                timestamp="2025-08-12T11:20:00Z",
                environment="production",
                environment_url="https://old.example.com",
                version="1.2.0",
            ),
            event(
                type="deployment_completed",
                status="success",
                timestamp="2025-08-12T11:21:00Z",
                environment_url="https://shop.example.com",
            ),
            event(type="deployment_completed", status="success", timestamp="2025-08-12T11:20:30Z"),
        ],
    )
    assert view["environment"] == "production"
    assert view["environment_url"] == "https://shop.example.com"
    assert view["version"] == "1.2.0"


def test_extra_metadata_that_is_not_text_is_not_shown() -> None:
    view = build_view(
        "7",
        [event(type="deployment_started", timestamp="2025-08-12T11:20:00Z", version=3)],
    )
    assert view["version"] is None
    assert view["environment_url"] is None


def test_a_stored_fold_reads_back_whole_also_as_written_before_it_was_deflated() -> None:
    fold = Fold.of([event.with_id(f"1-{i}") for i, event in enumerate(STORY)])
    raw = fold.dumps()
    inflate = zlib.decompressobj(zdict=FOLD_DICTIONARY)
    plain = inflate.decompress(raw)  # what a store held before folds were deflated
    assert plain.startswith(b"{")
    alone = zlib.compress(plain, 1)  # deflated before the dictionary
    assert len(raw) < len(alone) < len(plain) / 2
    assert Fold.loads(raw) == Fold.loads(alone) == Fold.loads(plain) == fold
