"""``hubctl github watch`` against a local fake of GitHub's Actions API and the real hub."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest

from hubctl.cli import main
from tests.e2e.server import HubServer
from tests.fake_github import OWNER_REPO, TOKEN, FakeGitHub, FakeRun, build_run

pytestmark = pytest.mark.e2e

THREE_JOBS = [
    ("build", [("Checkout", "success", 2), ("Compile", "success", 3)]),
    ("test", [("Unit tests", "success", 4)]),
    ("deploy", [("Upload", "success", 2), ("Restart service", "success", 1)]),
]


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubServer]:
    server = HubServer(
        tmp_path_factory.mktemp("github-watch"),
        env={"HUB_WEBHOOK_SECRETS": "watch-secret", "HUB_GITHUB_REPOSITORIES": OWNER_REPO},
    ).start()
    yield server
    server.stop()


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    with FakeGitHub() as fake:
        yield fake


def watch(
    hub: HubServer, github: FakeGitHub, run_id: int, *extra: str, token: str = TOKEN
) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(
        [
            "--hub",
            hub.url + "/project-dashboard",
            "github",
            "watch",
            "--repo",
            OWNER_REPO,
            "--run-id",
            str(run_id),
            "--api-url",
            github.url,
            "--interval",
            "0.02",
            *extra,
        ],
        environ={"GITHUB_TOKEN": token, "DASHBOARD_SECRET": "watch-secret"},
        stdout=out,
        stderr=err,
    )
    return code, out.getvalue(), err.getvalue()


def view(hub: HubServer, run_id: int) -> dict[str, Any]:
    status, body = hub.request("GET", f"/api/deployments/{run_id}")
    assert status == 200, body
    return body


def tree(deployment: dict[str, Any]) -> list[tuple[str, list[tuple[str, str, int | None]]]]:
    return [
        (job["name"], [(s["name"], s["status"], s["duration_ms"]) for s in job["steps"]])
        for job in deployment["jobs"]
    ]


def expected_tree(run: FakeRun) -> list[tuple[str, list[tuple[str, str, int | None]]]]:
    return [
        (
            job.name,
            [
                (
                    s.name,
                    s.conclusion,
                    int((s.completed - s.started).total_seconds() * 1000)
                    if s.started and s.completed
                    else None,
                )
                for s in job.steps
            ],
        )
        for job in run.jobs
    ]


def stored_events(hub: HubServer, run_id: int) -> list[dict[str, Any]]:
    status, page = hub.request("GET", f"/api/events?deployment_id={run_id}&limit=1000")
    assert status == 200
    return list(page["events"])


def test_the_deployment_ends_with_the_runs_jobs_steps_and_durations(
    hub: HubServer, github: FakeGitHub
) -> None:
    run = github.add(build_run(8001, THREE_JOBS, conclusion="success"))
    code, out, err = watch(hub, github, 8001)
    assert code == 0, err
    assert "run 8001 success: sent" in out
    deployment = view(hub, 8001)
    assert tree(deployment) == expected_tree(run)
    assert (deployment["status"], deployment["project"]) == ("success", "axi-star-cloud")
    assert deployment["duration_ms"] == int((run.completed - run.started).total_seconds() * 1000)
    assert (deployment["branch"], deployment["workflow_name"]) == ("main", "Deploy Project")
    for job in run.jobs:
        for step in job.steps:
            query = urlencode({"job": job.name, "step": step.name, "limit": 1000})
            status, page = hub.request("GET", f"/api/deployments/8001/logs?{query}")
            assert status == 200
            assert [line["message"] for line in page["lines"]] == [x for x in step.lines if x]


def test_pages_of_jobs_are_all_read_and_logs_are_fetched_without_the_token(
    hub: HubServer, github: FakeGitHub
) -> None:
    """Three jobs at two per page need the Link header; the signed log URL gets no token."""
    github.add(build_run(8002, THREE_JOBS, conclusion="success"))
    code, _, err = watch(hub, github, 8002)
    assert code == 0, err
    assert any("page=2" in path for path in github.paths())
    downloads = [(p, h) for p, h in github.requests if p.startswith("/download/")]
    assert len(downloads) == 3
    assert all("Authorization" not in headers for _, headers in downloads)
    assert github.refused_downloads == 0
    assert [job["name"] for job in view(hub, 8002)["jobs"]] == ["build", "test", "deploy"]


def test_a_restarted_watcher_stores_nothing_new(hub: HubServer, github: FakeGitHub) -> None:
    run = github.add(build_run(8003, THREE_JOBS, conclusion="success", stages=6))
    code, out, _ = watch(hub, github, 8003, "--once")
    assert code == 0
    early = stored_events(hub, 8003)
    assert [e["type"] for e in early][:1] == ["deployment_started"]
    assert "deployment_completed" not in {e["type"] for e in early}
    code, _, _ = watch(hub, github, 8003)
    assert code == 0
    complete = stored_events(hub, 8003)
    assert complete[: len(early)] == early
    code, out, _ = watch(hub, github, 8003)
    assert code == 0
    assert "the hub already had" in out
    assert stored_events(hub, 8003) == complete
    assert tree(view(hub, 8003)) == expected_tree(run)


@pytest.mark.parametrize(
    ("conclusion", "steps", "statuses"),
    [
        (
            "failure",
            [("Compile", "failure", 2), ("Deploy", "skipped", 0)],
            ["success", "failure", "skipped", "success"],
        ),
        (
            "cancelled",
            [("Compile", "cancelled", 2), ("Deploy", "skipped", 0)],
            ["success", "cancelled", "skipped", "success"],
        ),
    ],
    ids=["failed", "cancelled"],
)
def test_failed_and_cancelled_runs_end_with_their_conclusion(
    hub: HubServer,
    github: FakeGitHub,
    conclusion: str,
    steps: list[tuple[str, str, int]],
    statuses: list[str],
) -> None:
    run_id = 8010 + len(conclusion)
    run = github.add(build_run(run_id, [("deploy", steps)], conclusion=conclusion))
    code, out, err = watch(hub, github, run_id)
    assert code == 0, err
    assert f"run {run_id} {conclusion}" in out
    deployment = view(hub, run_id)
    assert deployment["status"] == conclusion
    assert [s["status"] for s in deployment["jobs"][0]["steps"]] == statuses
    assert deployment["jobs"][0]["status"] == (
        "failure" if conclusion == "failure" else "cancelled"
    )
    assert tree(deployment) == expected_tree(run)
    status, page = hub.request("GET", f"/api/deployments/{run_id}/logs?limit=1000")
    assert status == 200
    assert any(line["level"] == "error" for line in page["lines"])


@pytest.mark.parametrize("kind", ["retry-after", "reset", "secondary"])
def test_rate_limits_are_waited_out(hub: HubServer, github: FakeGitHub, kind: str) -> None:
    run_id = {"retry-after": 8021, "reset": 8022, "secondary": 8023}[kind]
    run = github.add(build_run(run_id, THREE_JOBS[:1], conclusion="success"))
    github.limits = [kind]
    code, _, err = watch(hub, github, run_id)
    assert code == 0, err
    assert "GitHub rate limit" in err
    assert github.limits == []
    assert tree(view(hub, run_id)) == expected_tree(run)


def test_a_rate_limit_longer_than_max_wait_stops_with_a_clear_error(
    hub: HubServer, github: FakeGitHub
) -> None:
    github.add(build_run(8024, THREE_JOBS[:1], conclusion="success"))
    github.limits = ["retry-after"] * 5
    code, _, err = watch(hub, github, 8024, "--max-wait", "2")
    assert code == 4
    assert "over --max-wait" in err


def test_a_log_that_is_not_ready_yet_is_fetched_later(hub: HubServer, github: FakeGitHub) -> None:
    run = github.add(build_run(8030, THREE_JOBS[:1], conclusion="success", first_job_id=3000))
    github.log_delays[3000] = 3
    code, _, err = watch(hub, github, 8030)
    assert code == 0, err
    assert github.log_delays[3000] == 0
    assert view(hub, 8030)["log_lines"] == sum(
        len([x for x in s.lines if x]) for s in run.jobs[0].steps
    )


@pytest.mark.parametrize(
    ("run_id", "token", "message"),
    [(8040, "wrong", "check GITHUB_TOKEN"), (999999, TOKEN, "GitHub answered 404")],
    ids=["bad-token", "unknown-run"],
)
def test_github_refusals_are_reported(
    hub: HubServer, github: FakeGitHub, run_id: int, token: str, message: str
) -> None:
    github.add(build_run(8040, THREE_JOBS[:1], conclusion="success"))
    code, _, err = watch(hub, github, run_id, token=token)
    assert code == 4
    assert err.startswith("hubctl: ")
    assert message in err


def test_a_run_reported_by_webhooks_and_the_watcher_is_stored_once(
    hub: HubServer, github: FakeGitHub
) -> None:
    """Both sources translate with app/github.py, so their events carry the same ids."""
    run = github.add(build_run(8050, THREE_JOBS[:2], conclusion="success"))
    run.fetches = run.stages
    for number, (name, payload) in enumerate(
        [("workflow_run", run.webhook_run("completed"))]
        + [("workflow_job", run.webhook_job(job, "completed")) for job in run.jobs]
    ):
        body = json.dumps(payload).encode()
        signature = hmac.new(b"watch-secret", body, hashlib.sha256).hexdigest()
        status, _ = hub.request(
            "POST",
            "/api/webhooks/github",
            body,
            {
                "Content-Type": "application/json",
                "X-GitHub-Event": name,
                "X-GitHub-Delivery": f"both-{number}",
                "X-Hub-Signature-256": f"sha256={signature}",
            },
        )
        assert status == 200
    lifecycle = [e for e in stored_events(hub, 8050) if e["type"] != "log_entry"]
    run.fetches = 0
    code, _, err = watch(hub, github, 8050)
    assert code == 0, err
    after = stored_events(hub, 8050)
    assert [e for e in after if e["type"] != "log_entry"] == lifecycle
    assert any(e["type"] == "log_entry" for e in after)


@pytest.mark.parametrize(
    ("path", "answer", "message"),
    [
        ("/runs/8060", (200, {"message": "ok"}), "is not a run"),
        ("/runs/8060/jobs", (200, {"total_count": 1, "jobs": [{"name": "no id"}]}), "not a job"),
        ("/runs/8060/jobs", (200, {"total_count": 1}), "has no job list"),
        ("/runs/8060", (502, {"message": "bad gateway"}), "HTTP 502 (after 2 attempts)"),
    ],
    ids=["run-without-id", "job-without-id", "no-job-list", "server-errors"],
)
def test_broken_github_answers_are_reported_not_crashed_on(
    hub: HubServer, github: FakeGitHub, path: str, answer: tuple[int, Any], message: str
) -> None:
    github.add(build_run(8060, THREE_JOBS[:1], conclusion="success"))
    github.overrides[f"/repos/{OWNER_REPO}/actions{path}"] = answer
    code, _, err = watch(hub, github, 8060, "--retries", "1")
    assert code == 4
    assert message in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--run-id", "../../x"], "--run-id must be a run's number"),
        (["--repo", "not a repo"], "--repo must be OWNER/REPO"),
    ],
    ids=["run-id", "repo"],
)
def test_bad_watch_arguments_are_refused(
    hub: HubServer, github: FakeGitHub, args: list[str], message: str
) -> None:
    code, _, err = watch(hub, github, 1, *args)
    assert code == 1
    assert message in err
