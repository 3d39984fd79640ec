"""GitHub runs, jobs and logs as typed events: the translation both GitHub sources share."""

from __future__ import annotations

import json
from typing import Any

import pytest

from app.github import decode_delivery, load_bodies
from ledger.errors import Invalid, Malformed
from senders.github import (
    LOG_GROUP_LINES,
    MAX_LOG_LINE,
    IgnoredDelivery,
    clean_name,
    delivery_bodies,
    job_events,
    log_events,
    repository_projects,
    run_events,
    split_job_log,
    status_of,
)
from tests.fake_github import build_run

PROJECTS = {"moselu/axi-star-cloud": "star"}


def failed_run() -> Any:
    return build_run(
        42,
        [
            (
                "build",
                [("Checkout", "success", 2), ("Compile", "failure", 3), ("Deploy", "skipped", 0)],
            )
        ],
        conclusion="failure",
    )


@pytest.mark.parametrize(
    ("status", "conclusion", "expected"),
    [
        ("completed", "success", "success"),
        ("completed", "neutral", "success"),
        ("completed", "failure", "failure"),
        ("completed", "timed_out", "failure"),
        ("completed", "startup_failure", "failure"),
        ("completed", "cancelled", "cancelled"),
        ("completed", "skipped", "skipped"),
        ("completed", None, "failure"),
        ("in_progress", None, "running"),
        ("queued", None, "pending"),
        ("waiting", None, "pending"),
    ],
)
def test_github_states_map_onto_the_hub_vocabulary(
    status: str, conclusion: str | None, expected: str
) -> None:
    assert status_of(status, conclusion) == expected


def test_names_become_one_bounded_line() -> None:
    assert clean_name("build\n(ubuntu,\t3.11)") == "build (ubuntu, 3.11)"
    assert len(clean_name("Run " + "x" * 500)) == 200
    assert clean_name("  ", "job") == "job"
    assert clean_name(None, "job") == "job"


def test_a_running_run_only_starts_the_deployment() -> None:
    run = failed_run()
    run.fetches = 1
    (started,) = run_events(run.run_json(), "star")
    assert started["type"] == "deployment_started"
    assert started["deployment_id"] == "42"
    assert started["event_id"] == "gh-42-1-started"
    assert (started["branch"], started["actor"], started["workflow_name"]) == (
        "main",
        "mose",
        "Deploy Project",
    )
    event = load_bodies([started])[0]
    assert event.payload["started_at"] == "2025-08-12T11:20:00.000Z"
    assert event.payload["run_url"].endswith("/actions/runs/42")
    assert event.payload["extra"]["commit_timestamp"] == "2025-08-12T11:19:00.000Z"


def test_a_finished_run_completes_it_with_its_conclusion_and_duration() -> None:
    run = failed_run()
    run.fetches = run.stages
    started, completed = load_bodies(run_events(run.run_json(), "star"))
    assert completed.type == "deployment_completed"
    assert completed.dedup_key == "gh-42-1-completed"
    assert completed.payload["status"] == "failure"
    assert completed.payload["duration_ms"] == 9000
    assert started.dedup_key != completed.dedup_key


def test_a_re_run_attempt_is_a_new_start_of_the_same_deployment() -> None:
    run = failed_run()
    run.attempt = 2
    (started,) = run_events({**run.run_json(), "status": "in_progress"}, "star")
    assert (started["deployment_id"], started["event_id"]) == ("42", "gh-42-2-started")


def test_steps_start_and_end_with_github_times() -> None:
    run = failed_run()
    events = load_bodies(job_events(run.job_json(run.jobs[0]), "star"))
    summary = [
        (e.type, e.payload["step"], e.payload["status"], e.payload["duration_ms"]) for e in events
    ]
    assert summary == [
        ("step_started", "Set up job", "running", None),
        ("step_completed", "Set up job", "success", 1000),
        ("step_started", "Checkout", "running", None),
        ("step_completed", "Checkout", "success", 2000),
        ("step_started", "Compile", "running", None),
        ("step_completed", "Compile", "failure", 3000),
        ("step_completed", "Deploy", "skipped", 0),
        ("step_started", "Complete job", "running", None),
        ("step_completed", "Complete job", "success", 1000),
    ]
    assert {e.payload["job"] for e in events} == {"build"}
    assert [e.payload["step_number"] for e in events if e.type == "step_completed"] == [
        1,
        2,
        3,
        4,
        5,
    ]
    assert events[5].dedup_key == "gh-42-1-1000-3-completed"


def test_a_running_job_reports_only_what_has_happened() -> None:
    run = failed_run()
    run.fetches = 1
    cutoff = run.cutoff()
    bodies = job_events(run.job_json(run.jobs[0], cutoff), "star")
    assert [(b["type"], b["step"]) for b in bodies] == [
        ("step_started", "Set up job"),
        ("step_completed", "Set up job"),
        ("step_started", "Checkout"),
    ]


def test_the_job_log_is_cut_into_the_steps_that_printed_it() -> None:
    run = failed_run()
    job = run.jobs[0]
    lines = split_job_log(run.log_text(job), run.job_json(job)["steps"])
    for step in job.steps:
        assert [line.text for line in lines if line.step == step.name] == step.lines
    assert lines[0].timestamp == "2025-08-12T11:20:00.100Z"
    assert not lines[0].text.startswith("\ufeff")
    assert [line.level for line in lines if line.text.startswith("##[error]")] == ["error"]


def test_a_users_group_inside_a_step_does_not_start_the_next_step() -> None:
    steps = [
        {
            "name": "Build",
            "number": 1,
            "conclusion": "success",
            "started_at": "2025-08-12T11:20:00Z",
            "completed_at": "2025-08-12T11:20:05Z",
        },
        {
            "name": "Test",
            "number": 2,
            "conclusion": "success",
            "started_at": "2025-08-12T11:20:05Z",
            "completed_at": "2025-08-12T11:20:09Z",
        },
    ]
    log = "\n".join(
        [
            "2025-08-12T11:20:00.5Z ##[group]Run make",
            "2025-08-12T11:20:02.0Z ##[group]Run nested composite step",
            "2025-08-12T11:20:03.0Z ::group:: is printed as ##[group]",
            "2025-08-12T11:20:05.2Z still the end of Build",
            "2025-08-12T11:20:05.3Z ##[group]Run make test",
            "not stamped: stays with the line before",
        ]
    )
    lines = split_job_log(log, steps)
    assert [line.step for line in lines] == ["Build"] * 4 + ["Test"] * 2
    assert lines[-1].timestamp == "2025-08-12T11:20:05.300Z"


def test_a_log_without_steps_belongs_to_the_job() -> None:
    lines = split_job_log("2025-08-12T11:20:00Z hello\n", [])
    assert [(line.step, line.text) for line in lines] == [(None, "hello")]


def test_a_huge_log_line_is_cut() -> None:
    (line,) = split_job_log("2025-08-12T11:20:00Z " + "x" * (MAX_LOG_LINE + 10), [])
    assert len(line.text) < MAX_LOG_LINE + 20
    assert line.text.endswith("[line cut]")


def test_log_events_group_lines_by_step_and_level_with_stable_ids() -> None:
    run = failed_run()
    job = run.job_json(run.jobs[0])
    text = run.log_text(run.jobs[0])
    bodies = log_events(job, "star", text)
    assert bodies == log_events(job, "star", text)
    assert [(b["step"], b["level"]) for b in bodies] == [
        ("Set up job", "info"),
        ("Checkout", "info"),
        ("Compile", "info"),
        ("Compile", "error"),
        ("Complete job", "info"),
    ]
    assert bodies[1]["message"].split("\n") == run.jobs[0].steps[1].lines
    assert bodies[0]["event_id"] == "gh-42-1-1000-log-1"
    events = load_bodies(bodies)
    assert events[3].payload["level"] == "error"


def test_long_step_output_is_split_into_several_events() -> None:
    steps = [
        {
            "name": "Build",
            "number": 1,
            "conclusion": "success",
            "started_at": "2025-08-12T11:20:00Z",
            "completed_at": "2025-08-12T11:21:00Z",
        }
    ]
    text = "\n".join(f"2025-08-12T11:20:01Z line {i}" for i in range(LOG_GROUP_LINES + 5))
    job = {"id": 1, "run_id": 2, "name": "b", "steps": steps}
    bodies = log_events(job, "p", text)
    assert [len(b["message"].split("\n")) for b in bodies] == [LOG_GROUP_LINES, 5]


def test_repository_setting_maps_repositories_to_projects() -> None:
    assert repository_projects(["MoseLu/axi-star-cloud", "MoseLu/axi-deploy = deploys"]) == {
        "moselu/axi-star-cloud": "axi-star-cloud",
        "moselu/axi-deploy": "deploys",
    }


def test_a_workflow_job_delivery_gives_step_events_for_the_listed_project() -> None:
    run = failed_run()
    bodies = delivery_bodies("workflow_job", run.webhook_job(run.jobs[0], "completed"), PROJECTS)
    assert {b["project"] for b in bodies} == {"star"}
    assert len(bodies) == 9


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ([], "_schema"),
        ({"action": "completed"}, "repository"),
        ({"repository": {"full_name": "MoseLu/axi-star-cloud"}}, "workflow_run"),
        (
            {"repository": {"full_name": "MoseLu/axi-star-cloud"}, "workflow_run": {"id": "1"}},
            "workflow_run",
        ),
        (
            {"repository": {"full_name": "MoseLu/axi-star-cloud"}, "workflow_run": {"id": True}},
            "workflow_run",
        ),
    ],
    ids=["not-an-object", "no-repository", "no-run", "string-id", "boolean-id"],
)
def test_malformed_deliveries_name_the_missing_field(payload: Any, field: str) -> None:
    with pytest.raises(Invalid) as caught:
        delivery_bodies("workflow_run", payload, PROJECTS)
    assert field in caught.value.details


def test_unlisted_repositories_and_queued_jobs_are_ignored() -> None:
    run = failed_run()
    with pytest.raises(IgnoredDelivery, match="not in HUB_GITHUB_REPOSITORIES"):
        delivery_bodies("workflow_run", run.webhook_run("completed"), {})
    run.fetches = 0
    queued = run.webhook_job(run.jobs[0], "queued")
    queued["workflow_job"]["steps"] = []
    with pytest.raises(IgnoredDelivery, match="no started step"):
        delivery_bodies("workflow_job", queued, PROJECTS)


@pytest.mark.parametrize("event_name", ["ping", "push", "check_run", None])
def test_other_events_are_ignored_before_the_body_is_read(event_name: str | None) -> None:
    with pytest.raises(IgnoredDelivery):
        decode_delivery(b"not json at all", event_name, PROJECTS, max_depth=32, max_events=1000)


def test_bad_json_and_deep_json_are_refused() -> None:
    with pytest.raises(Malformed):
        decode_delivery(b"{", "workflow_run", PROJECTS, max_depth=32, max_events=1000)
    deep: Any = {}
    for _ in range(40):
        deep = {"x": deep}
    with pytest.raises(Invalid, match="nested deeper"):
        decode_delivery(
            json.dumps(deep).encode(), "workflow_run", PROJECTS, max_depth=32, max_events=1000
        )


def test_an_invalid_translated_event_names_its_index() -> None:
    with pytest.raises(Invalid) as caught:
        load_bodies(
            [
                {
                    "type": "step_completed",
                    "project": "p",
                    "deployment_id": "1",
                    "step": "s",
                    "status": "success",
                },
                {
                    "type": "step_completed",
                    "project": "p",
                    "deployment_id": "1",
                    "step": "s",
                    "status": "weird",
                },
            ]
        )
    assert caught.value.details["index"] == 1


def test_a_delivery_with_more_events_than_a_batch_may_hold_is_refused() -> None:
    run = failed_run()
    payload = json.dumps(run.webhook_job(run.jobs[0], "completed")).encode()
    with pytest.raises(Invalid, match="at most 4 are allowed"):
        decode_delivery(payload, "workflow_job", PROJECTS, max_depth=32, max_events=4)
    assert len(decode_delivery(payload, "workflow_job", PROJECTS, max_depth=32, max_events=9)) == 9
