"""GitLab pipelines, jobs and deployments: GitLab's documented examples, and any arrival order."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.gitlab import decode_delivery
from ledger.errors import Invalid, Malformed
from ledger.events import Event
from senders.github import IgnoredDelivery
from senders.gitlab import (
    DEPLOYMENT_STATUSES,
    STATUSES,
    gitlab_time,
    project_names,
    status_of,
)
from tests.conftest import ROOT
from tests.folding import views

FIXTURES = ROOT / "tests" / "fixtures" / "gitlab"
PROJECTS = project_names(
    ["gitlab-org/gitlab-test=shop", "root/test-deployment-webhooks", "Group/Sub/Shop"]
)


def fixture(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return loaded


def deliver(hook: str, payload: Any, projects: dict[str, str] = PROJECTS) -> list[Event]:
    return decode_delivery(
        json.dumps(payload).encode(), hook, projects, max_depth=32, max_events=1000
    )


def test_project_names_are_the_paths_last_part_unless_named() -> None:
    assert PROJECTS == {
        "gitlab-org/gitlab-test": "shop",
        "root/test-deployment-webhooks": "test-deployment-webhooks",
        "group/sub/shop": "Shop",
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2016-08-12 15:23:28 UTC", "2016-08-12T15:23:28.000Z"),
        ("2021-04-28 21:50:00 +0200", "2021-04-28T19:50:00.000Z"),
        ("2021-02-23T02:41:37.886Z", "2021-02-23T02:41:37.000Z"),
        ("2016-08-12T17:23:21+02:00", "2016-08-12T15:23:21.000Z"),
        ("yesterday", None),
        (None, None),
        ("", None),
    ],
)
def test_gitlab_times_in_every_spelling_become_whole_seconds(
    text: str | None, expected: str | None
) -> None:
    assert gitlab_time(text) == expected


def test_every_status_has_a_word_of_the_hub() -> None:
    assert status_of("FAILED") == "failure"
    assert status_of("manual") == "pending"
    assert status_of("canceled") == "cancelled"
    assert status_of("exploded") is None
    assert set(STATUSES.values()) <= {
        "pending",
        "running",
        "success",
        "failure",
        "cancelled",
        "skipped",
    }
    assert set(DEPLOYMENT_STATUSES.values()) <= set(STATUSES.values())


# -- GitLab's documented examples ------------------------------------------------------------


def test_the_documented_pipeline_hook() -> None:
    events = deliver("Pipeline Hook", fixture("pipeline-hook.json"))
    assert {e.deployment_id for e in events} == {"gl-1-31"}
    assert {e.project for e in events} == {"shop"}
    view = views([events])["gl-1-31"]
    assert (view["status"], view["started_at"], view["completed_at"]) == (
        "success",
        "2016-08-12T15:23:28.000Z",
        "2016-08-12T15:26:29.000Z",
    )
    # one definition of a duration (ledger.durations): the span of the times shown, so
    # GitLab's own figure (63 s, without the queue) gives way to the 181 s between them
    assert view["duration_ms"] == 181000
    assert (view["branch"], view["commit"], view["actor"]) == (
        "master",
        "bcbb5ec396a2c0f828686f14fac9b80b780504f2",
        "root",
    )
    assert view["workflow_name"] == "Pipeline for branch: master"
    assert view["run_url"] == "http://example.com/gitlab-org/gitlab-test/-/pipelines/31"
    assert view["repository"] == "gitlab-org/gitlab-test"
    tree = {job["name"]: [(s["name"], s["status"]) for s in job["steps"]] for job in view["jobs"]}
    # the staging job was only created and production skipped without running: neither
    # has a time of its own, so they show once they run
    assert tree == {
        "build": [("build-image", "success")],
        "test": [("test-build", "failure"), ("test-image", "success")],
    }
    assert [job["name"] for job in view["jobs"]] == ["build", "test"]
    failed = next(s for j in view["jobs"] for s in j["steps"] if s["name"] == "test-build")
    assert failed["error"] == "script_failure"
    assert (failed["started_at"], failed["duration_ms"]) == ("2016-08-12T15:26:12.000Z", 17000)


def test_the_documented_job_hook_waits_until_its_job_starts() -> None:
    with pytest.raises(IgnoredDelivery, match="job 1977 is 'created': it shows once it starts"):
        deliver("Job Hook", fixture("job-hook.json"))
    running = fixture("job-hook.json")
    running.update(build_status="running", build_started_at="2021-02-23T02:41:40.123Z")
    (started,) = deliver("Job Hook", running)
    assert (
        started.type,
        started.deployment_id,
        started.payload["job"],
        started.payload["step"],
    ) == (
        "step_started",
        "gl-380-2366",
        "test",
        "test",
    )
    assert started.timestamp == "2021-02-23T02:41:40.000Z"
    assert started.dedup_key == "gl-380-2366-job-1977-started"


def test_the_documented_deployment_hook() -> None:
    events = deliver("Deployment Hook", fixture("deployment-hook.json"))
    view = views([events])["gl-30-deployment-15"]
    assert view["project"] == "test-deployment-webhooks"
    assert (view["status"], view["environment"], view["environment_url"]) == (
        "success",
        "staging",
        "https://staging.example.com",
    )
    assert view["commit"] == "279484c09fbe69ededfced8c1bb6e6d24616b468"
    assert (view["actor"], view["message"]) == ("root", "Add new file")
    assert view["run_url"] == "http://10.126.0.2:3000/root/test-deployment-webhooks/-/jobs/796"
    assert view["completed_at"] == "2021-04-28T19:50:00.000Z"
    assert events[-1].payload["extra"]["environment_tier"] == "staging"


def test_a_deployment_hook_running_then_failed() -> None:
    running = fixture("deployment-hook.json")
    running.update(status="running", status_changed_at="2021-04-28 21:49:00 +0200")
    failed = fixture("deployment-hook.json")
    failed.update(status="failed")
    deliveries = [deliver("Deployment Hook", running), deliver("Deployment Hook", failed)]
    view = views(deliveries)["gl-30-deployment-15"]
    assert (view["status"], view["error"], view["duration_ms"]) == (
        "failure",
        "deployment failed",
        60000,
    )
    assert views(reversed(deliveries)) == views(deliveries)


@pytest.mark.parametrize("hook", ["Push Hook", "Pipeline Hook", "Deployment Hook"])
def test_unlisted_projects_and_other_hooks_are_ignored(hook: str) -> None:
    payload = fixture("pipeline-hook.json")
    if hook == "Push Hook":
        with pytest.raises(IgnoredDelivery, match="'Push Hook' is not recorded"):
            deliver(hook, payload)
        return
    with pytest.raises(IgnoredDelivery, match="not in HUB_GITLAB_PROJECTS"):
        deliver(hook, payload, {})


def test_a_delivery_without_a_hook_header_is_ignored_before_its_body_is_read() -> None:
    with pytest.raises(IgnoredDelivery, match="without X-Gitlab-Event"):
        decode_delivery(b"not json", None, PROJECTS, max_depth=32, max_events=10)


@pytest.mark.parametrize(
    ("hook", "change", "message"),
    [
        ("Pipeline Hook", {"object_attributes": None}, "object_attributes"),
        ("Pipeline Hook", {"object_attributes": {"id": 1, "status": "odd"}}, "unknown pipeline"),
        ("Pipeline Hook", {"project": {"path_with_namespace": "gitlab-org/gitlab-test"}}, "id"),
        ("Pipeline Hook", {"project": None}, "names no project"),
        ("Job Hook", {"build_id": "x"}, "job's and its pipeline's ids"),
        ("Job Hook", {"build_status": "odd"}, "unknown job status"),
        ("Deployment Hook", {"deployment_id": None}, "deployment's id"),
        ("Deployment Hook", {"status": "odd"}, "unknown deployment status"),
    ],
)
def test_malformed_deliveries_are_refused(hook: str, change: dict[str, Any], message: str) -> None:
    name = {"Pipeline Hook": "pipeline-hook", "Job Hook": "job-hook"}.get(hook, "deployment-hook")
    payload = {**fixture(f"{name}.json"), **change}
    if hook == "Deployment Hook":
        payload["project"]["path_with_namespace"] = "gitlab-org/gitlab-test"
    with pytest.raises(Invalid, match=message):
        deliver(hook, payload)


def test_bad_json_is_refused() -> None:
    with pytest.raises(Malformed):
        decode_delivery(b"{", "Job Hook", PROJECTS, max_depth=32, max_events=10)
    with pytest.raises(Invalid, match="at most 2"):
        decode_delivery(
            json.dumps(fixture("pipeline-hook.json")).encode(),
            "Pipeline Hook",
            PROJECTS,
            max_depth=32,
            max_events=2,
        )
    with pytest.raises(Invalid, match="nested deeper"):
        decode_delivery(
            json.dumps(fixture("pipeline-hook.json")).encode(),
            "Pipeline Hook",
            PROJECTS,
            max_depth=3,
            max_events=100,
        )


# -- a pipeline whose job hooks arrive before, after and between its pipeline hooks ----------

T = "2025-08-12 11:{:02d}:{:02d} UTC"


def build(
    job_id: int, stage: str, name: str, status: str, started: int | None, finished: int | None
) -> dict[str, Any]:
    """One job as a pipeline hook lists it (the documented shape)."""
    template = copy.deepcopy(fixture("pipeline-hook.json")["builds"][1])
    template.update(
        id=job_id,
        stage=stage,
        name=name,
        status=status,
        created_at=T.format(20, 0),
        started_at=None if started is None else T.format(20, started),
        finished_at=None if finished is None else T.format(20, finished),
        failure_reason="script_failure" if status == "failed" else None,
    )
    return template


def pipeline_hook(
    status: str, builds: list[dict[str, Any]], finished: int | None
) -> dict[str, Any]:
    payload = fixture("pipeline-hook.json")
    payload["object_attributes"].update(
        id=900,
        iid=12,
        status=status,
        created_at=T.format(20, 0),
        finished_at=None if finished is None else T.format(20, finished),
        duration=None if finished is None else finished,
    )
    payload["builds"] = builds
    return payload


def job_hook(job: dict[str, Any]) -> dict[str, Any]:
    """The same job as a job hook reports it: ISO times with milliseconds."""
    payload = fixture("job-hook.json")

    def iso(text: str | None) -> str | None:
        return None if text is None else text.replace(" UTC", ".512Z").replace(" ", "T")

    payload.update(
        build_id=job["id"],
        build_name=job["name"],
        build_stage=job["stage"],
        build_status=job["status"],
        build_created_at=iso(job["created_at"]),
        build_created_at_iso=None,
        build_started_at=iso(job["started_at"]),
        build_started_at_iso=None,
        build_finished_at=iso(job["finished_at"]),
        build_finished_at_iso=None,
        build_failure_reason=job["failure_reason"],
        pipeline_id=900,
        project_id=1,
    )
    payload["project"] = fixture("pipeline-hook.json")["project"]
    return payload


def story() -> list[tuple[str, dict[str, Any]]]:
    """build → test (one job fails, then its retry passes) → deploy; hooks as GitLab sends them."""
    compile_running = build(1, "build", "compile", "running", 5, None)
    compile_done = build(1, "build", "compile", "success", 5, 40)
    unit_failed = build(2, "test", "unit", "failed", 41, 50)
    unit_retry_running = build(4, "test", "unit", "running", 55, None)
    unit_retry = build(4, "test", "unit", "success", 55, 59)
    deploy_pending = build(3, "deploy", "ship", "created", None, None)
    deploy_done = build(3, "deploy", "ship", "success", 59, 59)
    return [
        ("Pipeline Hook", pipeline_hook("pending", [deploy_pending], None)),
        ("Job Hook", job_hook(compile_running)),
        ("Pipeline Hook", pipeline_hook("running", [compile_running, deploy_pending], None)),
        ("Job Hook", job_hook(compile_done)),
        ("Job Hook", job_hook(unit_failed)),
        ("Pipeline Hook", pipeline_hook("failed", [compile_done, unit_failed], 50)),
        ("Job Hook", job_hook(unit_retry_running)),
        ("Pipeline Hook", pipeline_hook("running", [compile_done, unit_retry_running], None)),
        ("Job Hook", job_hook(unit_retry)),
        ("Job Hook", job_hook(deploy_done)),
        (
            "Pipeline Hook",
            pipeline_hook("success", [compile_done, unit_failed, unit_retry, deploy_done], 59),
        ),
    ]


def translated() -> list[list[Event]]:
    deliveries = []
    for hook, payload in story():
        try:
            deliveries.append(deliver(hook, payload))
        except IgnoredDelivery:
            deliveries.append([])
    return deliveries


def test_the_story_ends_with_the_retried_pipeline_green() -> None:
    view = views(translated())["gl-1-900"]
    # the retry after the failure is a re-run: the deployment ran again from 11:20:55
    assert (view["status"], view["started_at"], view["completed_at"]) == (
        "success",
        "2025-08-12T11:20:55.000Z",
        "2025-08-12T11:20:59.000Z",
    )
    tree = {j["name"]: [(s["name"], s["status"]) for s in j["steps"]] for j in view["jobs"]}
    assert tree == {
        "build": [("compile", "success")],
        "test": [("unit", "success")],
        "deploy": [("ship", "success")],
    }


def test_job_hooks_and_pipeline_hooks_report_a_job_as_the_same_events() -> None:
    done = build(1, "build", "compile", "success", 5, 40)
    from_job_hook = deliver("Job Hook", job_hook(done))
    from_pipeline = deliver("Pipeline Hook", pipeline_hook("running", [done], None))
    steps = [e for e in from_pipeline if e.type.startswith("step_")]
    assert [e.to_dict() for e in steps] == [e.to_dict() for e in from_job_hook]
    assert [e.dedup_key for e in steps] == [e.dedup_key for e in from_job_hook]


def test_the_failed_pipeline_says_which_job_failed_it() -> None:
    deliveries = translated()[:6]
    view = views(deliveries)["gl-1-900"]
    assert (view["status"], view["error"]) == ("failure", "failed: test / unit (script_failure)")


def test_a_pipeline_waiting_for_a_manual_job_is_pending() -> None:
    compile_done = build(1, "build", "compile", "success", 5, 40)
    gate = build(3, "deploy", "ship", "manual", None, None)
    events = deliver("Pipeline Hook", pipeline_hook("manual", [compile_done, gate], None))
    view = views([events])["gl-1-900"]
    assert (view["status"], view["message"]) == (
        "pending",
        "waiting for a manual job to be started",
    )
    assert [j["name"] for j in view["jobs"]] == ["build"]


@settings(max_examples=80, deadline=None)
@given(st.data())
def test_hooks_in_any_order_with_redeliveries_fold_alike(data: st.DataObject) -> None:
    deliveries = translated()
    expected = views(deliveries)
    repeats = data.draw(st.lists(st.sampled_from(deliveries), max_size=4))
    order = data.draw(st.permutations(deliveries + repeats))
    assert views(order) == expected


@pytest.mark.parametrize("split", [2, 5, 9])
def test_job_hooks_all_before_or_all_after_the_pipeline_hooks(split: int) -> None:
    deliveries = translated()
    jobs = [d for (hook, _), d in zip(story(), deliveries, strict=True) if hook == "Job Hook"]
    pipelines = [d for (hook, _), d in zip(story(), deliveries, strict=True) if hook != "Job Hook"]
    expected = views(deliveries)
    assert views(jobs + pipelines) == expected
    assert views(pipelines + jobs) == expected
    assert views(pipelines[:split] + jobs + pipelines[split:]) == expected
