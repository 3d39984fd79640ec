"""The deployment view the read API serves, rendered from a fold.

Stores keep the fold (``ledger/fold.py``) and render on read, so the shape of
the view is written here once, whichever store answers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NotRequired, TypedDict, cast

import orjson

from ledger.durations import span
from ledger.events import RUN_METADATA, TERMINAL_STATUSES, Event
from ledger.fold import Fold, Step, earliest, infer_status
from ledger.projects import ProjectCounts, project_counts
from ledger.timestamps import duration_between


class StepView(TypedDict):
    name: str
    key: str | None
    status: str
    step_number: int | None
    started_at: str | None
    completed_at: str | None
    duration_ms: int | None
    retries: int
    error: str | None
    message: str | None
    stale: NotRequired[bool]


class JobView(TypedDict):
    name: str
    status: str
    started_at: str | None
    completed_at: str | None
    duration_ms: int | None
    steps: list[StepView]
    stale: NotRequired[bool]


class Rollback(TypedDict):
    from_deployment_id: str | None
    reason: str | None
    at: str


class DeploymentHead(TypedDict):
    """What a deployment's page and its row in a list both say about it."""

    deployment_id: str
    project: str
    status: str
    status_inferred: bool
    started_at: str | None
    completed_at: str | None
    duration_ms: int | None
    error: str | None
    message: str | None
    branch: str | None
    commit: str | None
    actor: str | None
    environment: str | None
    repository: str | None
    workflow_name: str | None
    workflow_id: str | None
    run_url: str | None
    environment_url: str | None
    version: str | None
    rollback: Rollback | None
    updated_at: str | None
    last_news_at: NotRequired[str | None]
    stale: NotRequired[bool]


class DeploymentView(DeploymentHead):
    """``GET /api/deployments/<id>``: the deployment, its run metadata and its job tree.

    The store adds what lives beside the fold: the latest metrics report, the
    newest event's id, how many log lines the deployment has and when it last
    heard of it; the read API adds ``stale`` (:mod:`ledger.staleness`).
    """

    jobs: list[JobView]
    metrics: NotRequired[dict[str, Any] | None]
    last_event_id: NotRequired[str]
    log_lines: NotRequired[int]


class StepCounts(TypedDict):
    total: int
    success: int
    failure: int
    running: int
    skipped: int
    cancelled: int


class ListRow(DeploymentHead):
    """A row of ``GET /api/deployments``: the view without its tree, with step counts."""

    jobs: int
    steps: StepCounts
    metrics: dict[str, Any] | None


#: The run metadata every view carries, in ``RUN_METADATA``'s order.
assert RUN_METADATA == (  # noqa: S101 - import-time invariant: the views name these keys
    "branch",
    "commit",
    "actor",
    "environment",
    "repository",
    "workflow_name",
    "workflow_id",
    "run_url",
)


def step_view(step: Step) -> StepView:
    completed_at = step.completed_at if step.status in TERMINAL_STATUSES else None
    started_at, duration = span(step.started_at, completed_at, step.duration_ms)
    return {
        "name": step.name,
        "key": step.key,
        "status": step.status,
        "step_number": step.step_number,
        "started_at": started_at,
        "completed_at": completed_at,
        "duration_ms": duration,
        "retries": step.retries,
        "error": step.error,
        "message": step.message,
    }


def render(fold: Fold, deployment_id: str) -> DeploymentView:
    """The tree the read API serves."""
    status, completed_at, headline_start = fold.headline()
    started_at, duration = span(headline_start, completed_at, fold.duration_ms)
    meta = fold.metadata
    return {
        "deployment_id": deployment_id,
        "project": fold.project,
        "status": status,
        "status_inferred": fold.status is None,
        "started_at": started_at,
        "completed_at": completed_at,
        "duration_ms": duration,
        "error": fold.error,
        "message": fold.message,
        "branch": meta.get("branch"),
        "commit": meta.get("commit"),
        "actor": meta.get("actor"),
        "environment": meta.get("environment"),
        "repository": meta.get("repository"),
        "workflow_name": meta.get("workflow_name"),
        "workflow_id": meta.get("workflow_id"),
        "run_url": meta.get("run_url"),
        "environment_url": meta.get("environment_url"),
        "version": meta.get("version"),
        "rollback": cast(Rollback | None, fold.rollback),
        "jobs": jobs(fold.steps.values()),
        "updated_at": fold.last_ts,
    }


def build_view(deployment_id: str, events: list[Event]) -> DeploymentView:
    """Fold a deployment's events from scratch and render it: the view's definition."""
    fold = Fold.of(events)
    for event in events:  # log and metrics events name the project too
        fold.note(event)
    return render(fold, deployment_id)


def jobs(steps: Iterable[Step]) -> list[JobView]:
    by_job: dict[str, list[Step]] = {}
    for step in steps:
        by_job.setdefault(step.job, []).append(step)
    ordered: list[tuple[str, JobView]] = []
    for name, members in by_job.items():
        members.sort(
            key=lambda s: (
                s.step_number if s.step_number is not None else 1 << 30,
                s.started_at or s.first_seen,
                s.name,
            )
        )
        rendered = [step_view(s) for s in members]
        status = infer_status([s["status"] for s in rendered], settled="success")
        started = earliest([s["started_at"] for s in rendered])
        ends = [s["completed_at"] for s in rendered]
        completed = max(e for e in ends if e) if status in TERMINAL_STATUSES and any(ends) else None
        job: JobView = {
            "name": name,
            "status": status,
            "started_at": started,
            "completed_at": completed,
            "duration_ms": duration_between(started, completed),
            "steps": rendered,
        }
        ordered.append((min(s.started_at or s.first_seen for s in members), job))
    ordered.sort(key=lambda item: (item[0], item[1]["name"]))
    return [job for _, job in ordered]


def list_row(view: DeploymentView, metrics: bytes | None) -> ListRow:
    """A deployments-list row: the view without its step tree, plus step counts."""
    statuses = [step["status"] for job in view["jobs"] for step in job["steps"]]
    row = {key: value for key, value in view.items() if key != "jobs"}
    row["jobs"] = len(view["jobs"])
    row["steps"] = StepCounts(
        total=len(statuses),
        success=statuses.count("success"),
        failure=statuses.count("failure"),
        running=statuses.count("running"),
        skipped=statuses.count("skipped"),
        cancelled=statuses.count("cancelled"),
    )
    row["metrics"] = orjson.loads(metrics) if metrics else None
    return cast(ListRow, row)


class ProjectSummary(TypedDict):
    project: str
    latest_deployment: ListRow
    counts: ProjectCounts


def project_summary(project: str, statuses: Mapping[str, int], latest: ListRow) -> ProjectSummary:
    """One entry of ``GET /api/projects``: the project, its latest deployment, its counts."""
    return {"project": project, "latest_deployment": latest, "counts": project_counts(statuses)}
