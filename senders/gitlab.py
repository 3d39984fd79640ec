"""GitLab pipelines, jobs and deployments as the hub's typed events.

GitLab's project webhooks report a pipeline (``Pipeline Hook``, with all its
jobs), each job on its own as its status changes (``Job Hook``, usually
before the pipeline hook that sums it up) and each deployment to an
environment (``Deployment Hook``).  The translation is pure, like
``senders/github.py``: it returns typed wire bodies that the route
(``app/gitlab.py``) loads with the schemas every event passes.

Identity:

* a **pipeline is a deployment**: ``gl-<project id>-<pipeline id>``; its
  stages are the hub's jobs and its jobs (GitLab calls them builds) the
  steps, with GitLab's own times;
* a **Deployment Hook** is a deployment of its own,
  ``gl-<project id>-deployment-<deployment id>``, to its environment with the
  environment's URL.  GitLab names the job that deployed (``deployable_id``)
  but not its pipeline, so it cannot be joined to the pipeline without state;
  as in GitLab, the deployment is what the environment records.

Every event id is derived from what the event says (pipeline, job id, status,
the time GitLab gives), and every time is cut to whole seconds (the pipeline
hook gives seconds, the job hook sometimes milliseconds), so the same job
reported by a pipeline hook and by a job hook is the same event, and
redeliveries and any arrival order fold to the same view.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from ledger.errors import Invalid
from ledger.events import MAX_NAME_LENGTH
from ledger.timestamps import format_timestamp, parse_timestamp
from senders.github import IgnoredDelivery, clean_name

#: ``X-Gitlab-Event`` of the hooks that are recorded; every other one is acknowledged.
PIPELINE_HOOK = "Pipeline Hook"
JOB_HOOK = "Job Hook"
DEPLOYMENT_HOOK = "Deployment Hook"
RECORDED_HOOKS = (PIPELINE_HOOK, JOB_HOOK, DEPLOYMENT_HOOK)

#: GitLab's pipeline and job statuses in the hub's vocabulary.  The waiting ones
#: (``created``, ``pending``, ``manual``: waiting for someone to start it, ...) are
#: ``pending``; a job appears among the steps once it starts, or ends without starting.
STATUSES: dict[str, str] = {
    "created": "pending",
    "waiting_for_resource": "pending",
    "preparing": "pending",
    "waiting_for_callback": "pending",
    "pending": "pending",
    "scheduled": "pending",
    "manual": "pending",
    "running": "running",
    "success": "success",
    "failed": "failure",
    "canceled": "cancelled",
    "canceling": "running",
    "skipped": "skipped",
}

#: A Deployment Hook's ``status`` (GitLab's deployment statuses).
DEPLOYMENT_STATUSES: dict[str, str] = {
    "created": "pending",
    "blocked": "pending",
    "running": "running",
    "success": "success",
    "failed": "failure",
    "canceled": "cancelled",
    "skipped": "skipped",
}

_ZONE = re.compile(r"\s+(UTC|[+-]\d\d:?\d\d)$")
_SHA = re.compile(r"[0-9a-f]{40}")


def project_names(entries: Iterable[str]) -> dict[str, str]:
    """``HUB_GITLAB_PROJECTS`` as ``{lower-case group/path: project}``.

    An entry is ``group/path`` (the project is the path's last part) or
    ``group/path=project``; GitLab compares paths without case.
    """
    names = {}
    for entry in entries:
        path, _, project = entry.partition("=")
        path = path.strip().strip("/")
        names[path.lower()] = project.strip() or path.rpartition("/")[2]
    return names


def gitlab_time(value: Any) -> str | None:
    """A GitLab time (``2016-08-12 15:23:28 UTC``, ``... +0200`` or ISO-8601) in the hub's
    spelling, cut to whole seconds; ``None`` for missing or unparsable ones."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = _ZONE.sub(lambda m: "Z" if m[1] == "UTC" else m[1], value.strip())
    try:
        return format_timestamp(parse_timestamp(text).replace(microsecond=0))
    except ValueError:
        return None


def status_of(status: Any) -> str | None:
    """The hub's word for a GitLab pipeline or job status (``None``: unknown)."""
    return STATUSES.get(str(status or "").lower())


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def delivery_bodies(hook: str, payload: Any, projects: Mapping[str, str]) -> list[dict[str, Any]]:
    """Typed bodies for one GitLab delivery, or :class:`IgnoredDelivery` saying why none."""
    if not isinstance(payload, dict):
        raise Invalid("a GitLab delivery is a JSON object", {"_schema": ["Not an object."]})
    gitlab_project = payload.get("project")
    if not isinstance(gitlab_project, dict):
        gitlab_project = {}
    path = gitlab_project.get("path_with_namespace")
    if not isinstance(path, str) or not path:
        raise Invalid(
            "the delivery names no project",
            {"project": {"path_with_namespace": ["Missing data for required field."]}},
        )
    project = projects.get(path.lower())
    if project is None:
        raise IgnoredDelivery(f"project {path[:MAX_NAME_LENGTH]!r} is not in HUB_GITLAB_PROJECTS")
    found: Any = gitlab_project.get("id")
    if not _whole(found):
        found = payload.get("project_id")
    if not _whole(found):
        raise Invalid(
            "the delivery gives no project id",
            {"project": {"id": ["Must be a whole number."]}},
        )
    project_id: int = found
    if hook == PIPELINE_HOOK:
        bodies = pipeline_events(payload, project, project_id, path)
    elif hook == JOB_HOOK:
        bodies = job_hook_events(payload, project, project_id)
        if not bodies:
            raise IgnoredDelivery(
                f"job {payload.get('build_id')} is {payload.get('build_status')!r}: "
                "it shows once it starts"
            )
    else:
        bodies = deployment_events(payload, project, project_id, path)
    return [{k: v for k, v in body.items() if v is not None} for body in bodies]


def pipeline_id_of(project_id: int, pipeline_id: Any) -> str:
    return f"gl-{project_id}-{pipeline_id}"


def pipeline_events(
    payload: Mapping[str, Any], project: str, project_id: int, path: str
) -> list[dict[str, Any]]:
    """A pipeline's start, its status now, and each of its jobs that started or ended."""
    attributes = payload.get("object_attributes")
    if not isinstance(attributes, Mapping) or not _whole(attributes.get("id")):
        raise Invalid(
            "a Pipeline Hook needs object_attributes with the pipeline's id",
            {"object_attributes": {"id": ["Must be a whole number."]}},
        )
    status = status_of(attributes.get("status"))
    if status is None:
        raise Invalid(
            f"unknown pipeline status {str(attributes.get('status'))[:50]!r}",
            {"object_attributes": {"status": [f"Must be one of: {', '.join(STATUSES)}."]}},
        )
    pipeline = attributes["id"]
    deployment_id = pipeline_id_of(project_id, pipeline)
    key = f"gl-{project_id}-{pipeline}"
    builds = [
        b for b in payload.get("builds") or [] if isinstance(b, Mapping) and _whole(b.get("id"))
    ]
    created_at = gitlab_time(attributes.get("created_at"))
    user = payload.get("user")
    commit = payload.get("commit")
    name = _text(attributes.get("name")) or (
        f"pipeline #{attributes['iid']}" if _whole(attributes.get("iid")) else "pipeline"
    )
    events: list[dict[str, Any]] = [
        {
            "type": "deployment_started",
            "project": project,
            "deployment_id": deployment_id,
            "event_id": f"{key}-created",
            "status": "pending",
            "timestamp": created_at,
            "started_at": created_at,
            "branch": _text(attributes.get("ref")),
            "commit": _text(attributes.get("sha")),
            "commit_timestamp": gitlab_time(commit.get("timestamp"))
            if isinstance(commit, Mapping)
            else None,
            "actor": clean_name(user["username"])
            if isinstance(user, Mapping) and _text(user.get("username"))
            else None,
            "repository": clean_name(path),
            "workflow_name": clean_name(name),
            "workflow_id": str(pipeline),
            "run_url": _text(attributes.get("url")),
            "source": _text(attributes.get("source")),
            "tag": attributes.get("tag") if isinstance(attributes.get("tag"), bool) else None,
        }
    ]
    starts = [t for b in builds if (t := gitlab_time(b.get("started_at")))]
    ends = [t for b in builds if (t := gitlab_time(b.get("finished_at")))]
    raw = str(attributes.get("status")).lower()
    if status == "running":
        running = [
            t
            for b in builds
            if status_of(b.get("status")) == "running" and (t := gitlab_time(b.get("started_at")))
        ]
        at = max(running, default=None) or min(starts, default=None) or created_at
        events.append(
            {
                "type": "deployment_started",
                "project": project,
                "deployment_id": deployment_id,
                "event_id": f"{key}-running-{at}",
                "status": "running",
                "timestamp": at,
            }
        )
    elif raw == "manual":  # blocked: waiting for someone to start a manual job
        at = max(ends, default=None) or created_at
        events.append(
            {
                "type": "deployment_started",
                "project": project,
                "deployment_id": deployment_id,
                "event_id": f"{key}-manual-{at}",
                "status": "pending",
                "timestamp": at,
                "message": "waiting for a manual job to be started",
            }
        )
    elif status not in ("pending", "running"):
        at = gitlab_time(attributes.get("finished_at")) or max(ends, default=None) or created_at
        duration = attributes.get("duration")
        events.append(
            {
                "type": "deployment_completed",
                "project": project,
                "deployment_id": deployment_id,
                "event_id": f"{key}-{status}-{at}",
                "status": status,
                "timestamp": at,
                "completed_at": at,
                "duration": duration
                if isinstance(duration, int | float) and not isinstance(duration, bool)
                else None,
                "error": _pipeline_error(builds) if status == "failure" else None,
            }
        )
    for build in builds:
        events += job_events(
            project,
            deployment_id,
            key,
            job_id=build["id"],
            stage=build.get("stage"),
            name=build.get("name"),
            status=build.get("status"),
            started_at=build.get("started_at"),
            finished_at=build.get("finished_at"),
            failure_reason=build.get("failure_reason"),
        )
    return events


def _pipeline_error(builds: list[Mapping[str, Any]]) -> str:
    """Which jobs failed the pipeline (those allowed to fail did not), and why."""
    failed = [
        f"{clean_name(b.get('stage'), 'stage')} / {clean_name(b.get('name'), 'job')}"
        + (f" ({b['failure_reason']})" if _text(b.get("failure_reason")) else "")
        for b in builds
        if status_of(b.get("status")) == "failure" and not b.get("allow_failure")
    ]
    return "failed: " + ", ".join(failed) if failed else "pipeline failed"


def job_hook_events(
    payload: Mapping[str, Any], project: str, project_id: int
) -> list[dict[str, Any]]:
    """One job's step, live: the same events its pipeline's hook gives for it later."""
    missing = {
        name: ["Must be a whole number."]
        for name in ("build_id", "pipeline_id")
        if not _whole(payload.get(name))
    }
    if missing:
        raise Invalid("a Job Hook needs the job's and its pipeline's ids", missing)
    if status_of(payload.get("build_status")) is None:
        raise Invalid(
            f"unknown job status {str(payload.get('build_status'))[:50]!r}",
            {"build_status": [f"Must be one of: {', '.join(STATUSES)}."]},
        )
    pipeline = payload["pipeline_id"]
    return job_events(
        project,
        pipeline_id_of(project_id, pipeline),
        f"gl-{project_id}-{pipeline}",
        job_id=payload["build_id"],
        stage=payload.get("build_stage"),
        name=payload.get("build_name"),
        status=payload.get("build_status"),
        started_at=payload.get("build_started_at_iso") or payload.get("build_started_at"),
        finished_at=payload.get("build_finished_at_iso") or payload.get("build_finished_at"),
        failure_reason=payload.get("build_failure_reason"),
    )


def job_events(
    project: str,
    deployment_id: str,
    key: str,
    *,
    job_id: int,
    stage: Any,
    name: Any,
    status: Any,
    started_at: Any,
    finished_at: Any,
    failure_reason: Any,
) -> list[dict[str, Any]]:
    """A GitLab job as a step of its stage: started once it ran, completed once it ended.

    A job that never ran and has no end time (skipped or cancelled before it
    started) gives nothing: it has no time to place it by.  Built from the
    fields a pipeline hook's ``builds`` and a job hook share, and nothing
    else, so both give identical events.
    """
    hub_status = status_of(status)
    if hub_status is None:
        raise Invalid(
            f"unknown job status {str(status)[:50]!r}",
            {"status": [f"Must be one of: {', '.join(STATUSES)}."]},
        )
    started = gitlab_time(started_at)
    common = {
        "project": project,
        "deployment_id": deployment_id,
        "job": clean_name(stage, "stage"),
        "step": clean_name(name, f"job {job_id}"),
        "job_id": job_id,
    }
    events: list[dict[str, Any]] = []
    if started and hub_status not in ("pending", "skipped"):
        events.append(
            {
                **common,
                "type": "step_started",
                "event_id": f"{key}-job-{job_id}-started",
                "status": "running",
                "timestamp": started,
                "started_at": started,
            }
        )
    ended = gitlab_time(finished_at) or started
    if hub_status in ("success", "failure", "cancelled", "skipped") and ended:
        events.append(
            {
                **common,
                "type": "step_completed",
                "event_id": f"{key}-job-{job_id}-{hub_status}",
                "status": hub_status,
                "timestamp": ended,
                "started_at": started,
                "completed_at": ended,
                "error": _text(failure_reason) if hub_status == "failure" else None,
            }
        )
    return events


def deployment_events(
    payload: Mapping[str, Any], project: str, project_id: int, path: str
) -> list[dict[str, Any]]:
    """A Deployment Hook: the deployment to its environment, with the environment's URL.

    Every hook gives the deployment's details with a start at the status's time
    (so a lost ``running`` hook still leaves them), and an end when the status
    is one.
    """
    if not _whole(payload.get("deployment_id")):
        raise Invalid(
            "a Deployment Hook needs the deployment's id",
            {"deployment_id": ["Must be a whole number."]},
        )
    raw = str(payload.get("status") or "").lower()
    status = DEPLOYMENT_STATUSES.get(raw)
    if status is None:
        raise Invalid(
            f"unknown deployment status {raw[:50]!r}",
            {"status": [f"Must be one of: {', '.join(DEPLOYMENT_STATUSES)}."]},
        )
    gitlab_deployment = payload["deployment_id"]
    deployment_id = f"gl-{project_id}-deployment-{gitlab_deployment}"
    key = deployment_id
    at = gitlab_time(payload.get("status_changed_at"))
    commit_url = _text(payload.get("commit_url")) or ""
    sha = commit_url.rstrip("/").rpartition("/")[2]
    user = payload.get("user")
    common: dict[str, Any] = {
        "project": project,
        "deployment_id": deployment_id,
        "timestamp": at,
        "environment_url": _text(payload.get("environment_external_url")),
        "environment_tier": _text(payload.get("environment_tier")),
        "gitlab_deployment_id": gitlab_deployment,
        "job_id": payload.get("deployable_id") if _whole(payload.get("deployable_id")) else None,
        "deployment_status": raw,
    }
    environment = _text(payload.get("environment"))
    events: list[dict[str, Any]] = [
        {
            **common,
            "type": "deployment_started",
            "event_id": f"{key}-{raw}-started",
            "status": status if status in ("pending", "running") else "running",
            "started_at": at,
            "environment": clean_name(environment) if environment else None,
            "commit": sha if _SHA.fullmatch(sha) else _text(payload.get("short_sha")),
            "actor": clean_name(user["username"])
            if isinstance(user, Mapping) and _text(user.get("username"))
            else None,
            "repository": clean_name(path),
            "run_url": _text(payload.get("deployable_url")),
            "message": _text(payload.get("commit_title")),
        }
    ]
    if status not in ("pending", "running"):
        events.append(
            {
                **common,
                "type": "deployment_completed",
                "event_id": f"{key}-{raw}",
                "status": status,
                "completed_at": at,
                "error": f"deployment {raw}" if status == "failure" else None,
            }
        )
    return events
