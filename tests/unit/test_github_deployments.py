"""GitHub Deployments: GitHub's published examples, the linking rule, and any arrival order."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.github import decode_delivery
from ledger.errors import Invalid
from ledger.events import Event
from senders.github import DEPLOYMENT_STATES, IgnoredDelivery, deployment_bodies
from tests.conftest import ROOT
from tests.fake_github import build_run
from tests.folding import stored, views

FIXTURES = ROOT / "tests" / "fixtures" / "github"
PROJECTS = {"codertocat/hello-world": "hello", "octocoders/hello-world": "hello"}


def fixture(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return loaded


def deliver(event_name: str, payload: Any, projects: dict[str, str] = PROJECTS) -> list[Event]:
    return decode_delivery(
        json.dumps(payload).encode(), event_name, projects, max_depth=32, max_events=1000
    )


def summary(events: list[Event]) -> list[tuple[str, str | None, str | None, str]]:
    return [(e.type, e.deployment_id, e.payload["status"], e.timestamp) for e in events]


# -- every published example -----------------------------------------------------------------

EXPECTED: dict[str, list[tuple[str, str | None, str | None, str]]] = {
    "deployment.created.1.json": [
        ("deployment_started", "gh-deploy-145988746", "pending", "2019-05-15T15:20:53.000Z")
    ],
    # made by the workflow run 289782451 (GitHub Pages): it joins the run
    "deployment.created.2.json": [
        ("deployment_started", "289782451", "running", "2022-01-03T01:28:30.000Z")
    ],
    "deployment.created.3.json": [
        ("deployment_started", "gh-deploy-145988746", "pending", "2019-05-15T15:20:53.000Z")
    ],
    "deployment.created.4.json": [
        ("deployment_started", "gh-deploy-145988746", "pending", "2019-05-15T15:20:53.000Z")
    ],
    "deployment_status.created.1.json": [
        ("deployment_started", "gh-deploy-145988746", "pending", "2019-05-15T15:20:53.000Z"),
        ("deployment_completed", "gh-deploy-145988746", "success", "2019-05-15T15:20:55.000Z"),
    ],
    "deployment_status.created.2.json": [
        ("deployment_started", "289782451", "running", "2022-01-03T01:28:30.000Z"),
        ("deployment_started", "289782451", "running", "2022-01-03T01:28:40.000Z"),
    ],
    "deployment_status.created.3.json": [
        ("deployment_started", "gh-deploy-145988746", "pending", "2019-05-15T15:20:53.000Z"),
        ("deployment_completed", "gh-deploy-145988746", "success", "2019-05-15T15:20:55.000Z"),
    ],
    "deployment_status.created.4.json": [
        ("deployment_started", "gh-deploy-145988746", "pending", "2019-05-15T15:20:53.000Z"),
        ("deployment_completed", "gh-deploy-145988746", "success", "2019-05-15T15:20:55.000Z"),
    ],
    "workflow_run.completed.1.json": [  # GitHub's example says "queued" despite its action
        ("deployment_started", "1589141559", "running", "2021-12-16T19:37:22.000Z")
    ],
    "workflow_run.completed.2.json": [
        ("deployment_started", "289782451", "running", "2020-10-05T16:33:49.000Z"),
        ("deployment_completed", "289782451", "success", "2020-10-05T16:33:49.000Z"),
    ],
    "workflow_run.completed.3.json": [
        ("deployment_started", "289782451", "running", "2020-10-05T16:33:49.000Z"),
        ("deployment_completed", "289782451", "success", "2020-10-05T16:33:49.000Z"),
    ],
    "workflow_run.requested.4.json": [
        ("deployment_started", "289782451", "running", "2020-10-05T16:33:49.000Z")
    ],
    "workflow_run.requested.5.json": [  # completed with action_required: a failure
        ("deployment_started", "289782451", "running", "2020-10-05T16:33:49.000Z"),
        ("deployment_completed", "289782451", "failure", "2020-10-05T16:33:24.000Z"),
    ],
}

#: workflow_job examples: (deployment id, job name, steps started, steps ended).
JOBS = {
    "workflow_job.in_progress.1.json": ("940463255", "Test workflow", 1, 0),
    "workflow_job.completed.2.json": ("2202229078", "linters", 10, 12),  # two skipped
    "workflow_job.completed.3.json": ("2202229078", "linters", 8, 8),
    "workflow_job.in_progress.4.json": ("2202229078", "Analyze (javascript)", 1, 0),
    "workflow_job.in_progress.5.json": ("5373506832", "Do examples need to be regenerated?", 3, 2),
}

IGNORED = {
    "workflow_job.queued.6.json": "no started step yet",
    "workflow_job.queued.7.json": "no started step yet",
    "workflow_job.waiting.8.json": "no started step yet",
}


def all_fixtures() -> list[str]:
    return sorted(p.name for p in FIXTURES.glob("*.json"))


def test_every_published_example_has_an_expectation() -> None:
    pings = {name for name in all_fixtures() if name.startswith("ping.")}
    assert set(all_fixtures()) == set(EXPECTED) | set(JOBS) | set(IGNORED) | pings
    assert len(pings) == 4


def listing(payload: dict[str, Any]) -> dict[str, str]:
    return {payload["repository"]["full_name"].lower(): "hello"}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_runs_and_deployments_of_the_published_examples(name: str) -> None:
    payload = fixture(name)
    events = deliver(name.split(".")[0], payload, listing(payload))
    assert summary(events) == EXPECTED[name]
    assert all(event.project == "hello" for event in events)
    assert len({event.dedup_key for event in events}) == len(events)


@pytest.mark.parametrize("name", sorted(JOBS))
def test_jobs_of_the_published_examples(name: str) -> None:
    payload = fixture(name)
    events = deliver("workflow_job", payload, listing(payload))
    deployment_id, job, started, ended = JOBS[name]
    assert {e.deployment_id for e in events} == {deployment_id}
    assert {e.payload["job"] for e in events} == {job}
    assert sum(e.type == "step_started" for e in events) == started
    assert sum(e.type == "step_completed" for e in events) == ended


@pytest.mark.parametrize("name", sorted(IGNORED))
def test_jobs_that_have_not_started_are_ignored(name: str) -> None:
    payload = fixture(name)
    with pytest.raises(IgnoredDelivery, match=IGNORED[name]):
        deliver("workflow_job", payload, listing(payload))


@pytest.mark.parametrize("name", ["ping.1.json", "ping.2.json", "ping.3.json"])
def test_a_ping_says_the_hook_works_and_what_it_records(name: str) -> None:
    with pytest.raises(IgnoredDelivery) as caught:
        deliver("ping", fixture(name))
    assert caught.value.reason == "'ping' records nothing"
    assert caught.value.message == (
        "hook 109948940 works: its signature was accepted; repository "
        "'Octocoders/Hello-World' is recorded as project 'hello'"
    )
    with pytest.raises(IgnoredDelivery) as unlisted:
        deliver("ping", fixture(name), {})
    assert "is not in HUB_GITHUB_REPOSITORIES" in str(unlisted.value.message)


def test_an_organisation_ping_names_no_repository() -> None:
    with pytest.raises(IgnoredDelivery) as caught:
        deliver("ping", fixture("ping.4.json"))
    assert caught.value.message is not None
    assert caught.value.message.startswith("hook 109948940 works")
    with pytest.raises(IgnoredDelivery) as broken:
        decode_delivery(b"{not json", "ping", PROJECTS, max_depth=32, max_events=10)
    assert broken.value.message is not None
    assert broken.value.message.startswith("the hook works")


def test_a_deployment_keeps_its_environment_ref_sha_creator_and_description() -> None:
    payload = fixture("deployment.created.1.json")
    payload["deployment"]["description"] = "Deploy request from hubot"
    payload["deployment"]["payload"] = {"version": "2.4.1"}
    (started,) = deliver("deployment", payload)
    assert started.payload["environment"] == "production"
    assert (started.payload["branch"], started.payload["commit"]) == (
        "master",
        "f95f852bd8fca8fcc58a9a2d6c842781e32a215e",
    )
    assert started.payload["actor"] == "Codertocat"
    assert started.payload["message"] == "Deploy request from hubot"
    assert started.payload["repository"] == "Codertocat/Hello-World"
    assert started.payload["extra"]["version"] == "2.4.1"
    assert started.payload["extra"]["github_deployment_id"] == 145988746
    assert started.dedup_key == "gh-deployment-145988746-created"


def test_a_status_keeps_its_urls_and_the_view_shows_them() -> None:
    payload = fixture("deployment_status.created.2.json")  # joined to run 289782451
    payload["deployment_status"]["environment_url"] = "https://codertocat.github.io/"
    events = deliver("deployment_status", payload)
    view = views([events])["289782451"]
    assert view["environment"] == "github-pages"
    assert view["environment_url"] == "https://codertocat.github.io/"
    assert view["status"] == "running"
    # a joined deployment leaves the run's own link alone; the status's is kept as extra
    assert view["run_url"] is None
    assert events[1].payload["extra"]["target_url"].startswith("https://github.com/CorsixTH/")


def test_a_status_of_a_deployment_of_its_own_links_its_log() -> None:
    payload = fixture("deployment_status.created.1.json")
    payload["deployment_status"].update(state="in_progress", log_url="https://ci.example.com/9")
    events = deliver("deployment_status", payload)
    assert views([events])["gh-deploy-145988746"]["run_url"] == "https://ci.example.com/9"


@pytest.mark.parametrize(("state", "status"), sorted(DEPLOYMENT_STATES.items()))
def test_every_status_state_moves_the_deployment(state: str, status: str | None) -> None:
    payload = fixture("deployment_status.created.1.json")
    payload["deployment_status"].update(state=state, description="smoke test failed")
    events = deliver("deployment_status", payload)
    view = views([events])["gh-deploy-145988746"]
    if status is None:  # inactive: a newer deployment replaced it; nothing else changes
        assert events[1].type == "log_entry"
        assert "is inactive" in events[1].payload["message"]
        assert view["status"] == "pending"
        return
    assert view["status"] == status
    if status == "failure":
        assert view["error"] == "smoke test failed"


def test_inactive_does_not_undo_a_success() -> None:
    success = fixture("deployment_status.created.1.json")
    inactive = copy.deepcopy(success)
    inactive["deployment_status"].update(
        id=209916299, state="inactive", created_at="2019-05-16T09:00:00Z"
    )
    view = views([deliver("deployment_status", success), deliver("deployment_status", inactive)])
    assert view["gh-deploy-145988746"]["status"] == "success"


def test_unknown_states_and_incomplete_deployments_are_refused() -> None:
    payload = fixture("deployment_status.created.1.json")
    payload["deployment_status"]["state"] = "exploded"
    with pytest.raises(Invalid, match="unknown deployment status state"):
        deliver("deployment_status", payload)
    with pytest.raises(Invalid, match="needs a 'deployment' object"):
        deployment_bodies("deployment", {}, "hello")
    with pytest.raises(Invalid, match="incomplete"):
        deployment_bodies("deployment", {"deployment": {"id": "x"}}, "hello")
    status = fixture("deployment_status.created.1.json")
    del status["deployment_status"]
    with pytest.raises(Invalid, match="'deployment_status' object"):
        deliver("deployment_status", status)


def test_unlisted_repositories_are_ignored() -> None:
    with pytest.raises(IgnoredDelivery, match="not in HUB_GITHUB_REPOSITORIES"):
        deliver("deployment", fixture("deployment.created.1.json"), {})


# -- hand-made sequences in any order --------------------------------------------------------


def standalone_deliveries() -> list[tuple[str, dict[str, Any]]]:
    """A deployment made through the API: created, queued, in progress, success."""
    created = fixture("deployment.created.1.json")
    deliveries: list[tuple[str, dict[str, Any]]] = [("deployment", created)]
    for number, (state, at) in enumerate(
        [
            ("queued", "2019-05-15T15:20:54Z"),
            ("in_progress", "2019-05-15T15:21:00Z"),
            ("success", "2019-05-15T15:23:10Z"),
        ]
    ):
        status = fixture("deployment_status.created.1.json")
        status["deployment_status"].update(
            id=209916260 + number,
            state=state,
            created_at=at,
            updated_at=at,
            environment_url="https://hello.example.com" if state == "success" else "",
        )
        deliveries.append(("deployment_status", status))
    return deliveries


def linked_deliveries() -> list[tuple[str, dict[str, Any]]]:
    """A run whose deploy job made a deployment: the run, its job, the deployment's statuses."""
    run = build_run(
        777,
        [("deploy", [("Checkout", "success", 2), ("Ship", "success", 5)])],
        conclusion="success",
    )
    run.repo = "Codertocat/Hello-World"
    run.fetches = run.stages
    deployment = fixture("deployment.created.2.json")
    deployment["workflow_run"]["id"] = 777
    deployment["deployment"].update(
        environment="production", created_at="2025-08-12T11:20:03Z", ref="main"
    )
    deliveries: list[tuple[str, dict[str, Any]]] = [
        ("workflow_run", run.webhook_run("requested")),
        ("workflow_job", run.webhook_job(run.jobs[0], "completed")),
        ("workflow_run", run.webhook_run("completed")),
        ("deployment", deployment),
    ]
    for number, (state, at) in enumerate(
        [("in_progress", "2025-08-12T11:20:04Z"), ("success", "2025-08-12T11:20:08Z")]
    ):
        status = fixture("deployment_status.created.2.json")
        status["workflow_run"]["id"] = 777
        status["deployment"] = deployment["deployment"]
        status["deployment_status"].update(
            id=5000 + number,
            state=state,
            created_at=at,
            environment="production",
            environment_url="https://hello.example.com",
        )
        deliveries.append(("deployment_status", status))
    return deliveries


def translated(deliveries: list[tuple[str, dict[str, Any]]]) -> list[list[Event]]:
    return [deliver(name, payload) for name, payload in deliveries]


def test_a_deployment_of_its_own_moves_through_its_statuses() -> None:
    view = views(translated(standalone_deliveries()))["gh-deploy-145988746"]
    assert (view["status"], view["environment"], view["environment_url"]) == (
        "success",
        "production",
        "https://hello.example.com",
    )
    assert (view["started_at"], view["completed_at"]) == (
        "2019-05-15T15:20:53.000Z",
        "2019-05-15T15:23:10.000Z",
    )
    assert view["duration_ms"] == 137000
    assert view["actor"] == "Codertocat"


def test_a_deployment_made_by_a_run_is_that_runs_deployment() -> None:
    all_views = views(translated(linked_deliveries()))
    assert list(all_views) == ["777"]
    view = all_views["777"]
    assert view["status"] == "success"
    assert view["environment"] == "production"
    assert view["environment_url"] == "https://hello.example.com"
    assert view["actor"] == "mose"  # who triggered the run, not the deployment's bot
    assert view["run_url"] is not None
    assert view["run_url"].endswith("/actions/runs/777")
    assert {"Checkout", "Ship"} <= {step["name"] for job in view["jobs"] for step in job["steps"]}


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_any_arrival_order_with_redeliveries_folds_alike(data: st.DataObject) -> None:
    for deliveries in (standalone_deliveries(), linked_deliveries()):
        events = translated(deliveries)
        expected = views(events)
        order = data.draw(st.permutations(events + data.draw(st.lists(st.sampled_from(events)))))
        assert views(order) == expected


def test_a_status_before_its_deployment_gives_the_same_deployment() -> None:
    deliveries = translated(standalone_deliveries())
    assert views(reversed(deliveries)) == views(deliveries)
    assert len(stored(reversed(deliveries))) == len(stored(deliveries)) == 4
