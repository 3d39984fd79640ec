"""GitHub Actions runs, jobs, steps and job logs as the hub's typed events.

GitHub reports a run and its jobs (with their steps) in the same shape in two
places: the ``workflow_run``/``workflow_job`` webhook deliveries that
``POST /api/webhooks/github`` receives, and the REST answers that
``hubctl github watch`` polls.  One translation serves both, so the two
sources give identical events with identical ``event_id`` values, and a run
reported by both (or a watcher restarted halfway) is stored once.

The translation returns typed wire bodies (what any sender may post to
``/api/webhooks/deployment``); the webhook route (``app/github.py``) loads them
with the typed schemas, so GitHub events pass the one validation path every
other event does.

Identity: the deployment is the run (``deployment_id`` = run id), a job is
its name, a step its name; event ids are ``gh-<run>-<attempt>-...`` so a
re-run attempt is a new start of the same deployment while a repeat of the
same attempt changes nothing.

GitHub Deployments (``deployment``/``deployment_status`` deliveries) join the
run that created them, else are deployments of their own
(:func:`deployment_id_of`); their event ids are
``gh-deployment-<id>-created`` and ``gh-deployment-<id>-status-<status id>``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ledger.errors import Invalid
from ledger.events import MAX_NAME_LENGTH, OPEN_STATUSES
from ledger.timestamps import format_timestamp, parse_timestamp

#: GitHub's check conclusions in the hub's status vocabulary.
CONCLUSIONS: dict[str, str] = {
    "success": "success",
    "neutral": "success",
    "failure": "failure",
    "timed_out": "failure",
    "startup_failure": "failure",
    "action_required": "failure",
    "cancelled": "cancelled",
    "stale": "cancelled",
    "skipped": "skipped",
}

#: The webhook events that carry runs and jobs.
WORKFLOW_EVENTS = ("workflow_run", "workflow_job")
#: The webhook events of GitHub Deployments.
DEPLOYMENT_EVENTS = ("deployment", "deployment_status")
#: Every webhook event that is recorded; any other is acknowledged and dropped.
RECORDED_EVENTS = WORKFLOW_EVENTS + DEPLOYMENT_EVENTS

#: A deployment status's ``state`` in the hub's vocabulary; ``inactive`` (a newer
#: deployment to the environment replaced this one) changes no status: it is a log line.
DEPLOYMENT_STATES: dict[str, str | None] = {
    "queued": "pending",
    "pending": "pending",
    "waiting": "pending",
    "in_progress": "running",
    "success": "success",
    "failure": "failure",
    "error": "failure",
    "inactive": None,
}

#: The runner opens each step's output with this header (``::group::`` of users is kept).
STEP_HEADER = "##[group]Run "

#: Longest log line posted; GitHub allows far longer ones, the dashboard needs no more.
MAX_LOG_LINE = 16384
#: Lines and characters gathered into one ``log_entry`` event.
LOG_GROUP_LINES = 200
LOG_GROUP_CHARS = 65536

_LOG_LINE = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)) ?(.*)")
_LEVEL_MARKERS = (
    ("##[error]", "error"),
    ("##[warning]", "warning"),
    ("##[debug]", "debug"),
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


class IgnoredDelivery(Exception):
    """A delivery that is acknowledged and stores nothing (another event, an unlisted repo).

    ``message``, when set, is said to the sender besides the reason (a ``ping``'s answer).
    """

    def __init__(self, reason: str, message: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.message = message


def status_of(status: str | None, conclusion: str | None) -> str:
    """The hub's status for a run, job or step from GitHub's ``status`` and ``conclusion``."""
    if status == "completed":
        return CONCLUSIONS.get(conclusion or "", "failure")
    if status == "in_progress":
        return "running"
    return "pending"


def clean_name(value: Any, fallback: str = "unnamed") -> str:
    """A job or step name as the hub's names must be: one line, bounded, never empty."""
    text = _CONTROL.sub(" ", str(value if value is not None else "")).strip()
    return text[:MAX_NAME_LENGTH].strip() or fallback


def _time(value: Any) -> str | None:
    """A GitHub timestamp in the hub's spelling; ``None`` for missing or unparsable ones."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return format_timestamp(parse_timestamp(value))
    except ValueError:
        return None


def _attempt(obj: Mapping[str, Any]) -> int:
    attempt = obj.get("run_attempt")
    return attempt if isinstance(attempt, int) and attempt > 0 else 1


def run_events(run: Mapping[str, Any], project: str) -> list[dict[str, Any]]:
    """``deployment_started`` once the run exists, ``deployment_completed`` once it ended."""
    run_id = str(run["id"])
    key = f"gh-{run_id}-{_attempt(run)}"
    started_at = _time(run.get("run_started_at")) or _time(run.get("created_at"))
    common: dict[str, Any] = {
        "project": project,
        "deployment_id": run_id,
        "workflow_name": clean_name(run.get("name"), "workflow"),
        "workflow_id": run_id,
        "run_attempt": _attempt(run),
    }
    repository = run.get("repository")
    if isinstance(repository, Mapping) and repository.get("full_name"):
        common["repository"] = clean_name(repository["full_name"])
    started: dict[str, Any] = {
        "type": "deployment_started",
        **common,
        "event_id": f"{key}-started",
        "timestamp": started_at,
        "started_at": started_at,
        "branch": run.get("head_branch") or None,
        "commit": run.get("head_sha") or None,
        "run_url": run.get("html_url") or None,
    }
    head = run.get("head_commit")
    if isinstance(head, Mapping) and _time(head.get("timestamp")):
        started["commit_timestamp"] = _time(head.get("timestamp"))
    actor = run.get("triggering_actor") or run.get("actor")
    if isinstance(actor, Mapping) and actor.get("login"):
        started["actor"] = clean_name(actor["login"])
    if isinstance(run.get("run_number"), int):
        started["run_number"] = run["run_number"]
    events = [{k: v for k, v in started.items() if v is not None}]
    if run.get("status") == "completed":
        completed_at = _time(run.get("updated_at"))
        events.append(
            {
                "type": "deployment_completed",
                **common,
                "event_id": f"{key}-completed",
                "status": status_of("completed", run.get("conclusion")),
                "timestamp": completed_at,
                "started_at": started_at,
                "completed_at": completed_at,
                "conclusion": run.get("conclusion"),
            }
        )
    return events


def job_events(job: Mapping[str, Any], project: str) -> list[dict[str, Any]]:
    """``step_started``/``step_completed`` for each step of ``job`` that got that far.

    A skipped step never ran, so it gets only its ``step_completed``.
    """
    run_id = str(job["run_id"])
    job_name = clean_name(job.get("name"), "job")
    key = f"gh-{run_id}-{_attempt(job)}-{job['id']}"
    events: list[dict[str, Any]] = []
    for index, step in enumerate(_steps(job), start=1):
        number = _number(step) or index
        status = status_of(step.get("status"), step.get("conclusion"))
        if status == "pending":
            continue
        started_at = _time(step.get("started_at"))
        completed_at = _time(step.get("completed_at"))
        common = {
            "project": project,
            "deployment_id": run_id,
            "job": job_name,
            "step": clean_name(step.get("name"), f"step {number}"),
            "step_number": number,
            "workflow_id": run_id,
            "job_id": job["id"],
        }
        if job.get("workflow_name"):
            common["workflow_name"] = clean_name(job["workflow_name"])
        if status != "skipped" and started_at:
            events.append(
                {
                    "type": "step_started",
                    **common,
                    "event_id": f"{key}-{number}-started",
                    "status": "running",
                    "timestamp": started_at,
                    "started_at": started_at,
                }
            )
        if status in OPEN_STATUSES:
            continue
        ended = completed_at or started_at or _time(job.get("completed_at"))
        events.append(
            {
                "type": "step_completed",
                **common,
                "event_id": f"{key}-{number}-completed",
                "status": status,
                "timestamp": ended,
                "started_at": started_at,
                "completed_at": ended,
            }
        )
    return [{k: v for k, v in event.items() if v is not None} for event in events]


def _steps(job: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    steps = job.get("steps")
    if not isinstance(steps, list):
        return []
    return [step for step in steps if isinstance(step, Mapping)]


@dataclass(frozen=True, slots=True)
class LogLine:
    """One line of a job log, with the step it was printed in (``None``: the job itself)."""

    step: str | None
    timestamp: str | None
    level: str
    text: str


def split_job_log(text: str, steps: Sequence[Mapping[str, Any]]) -> list[LogLine]:
    """Cut a job log (``<ISO time> <text>`` lines) into the job's steps.

    The log does not name its steps.  Lines go to steps that ran (not
    skipped), in step order, moving on to the next step when either the
    runner's ``##[group]Run `` header appears after that step has started, or
    a line is stamped after the current step's end (GitHub's step times are
    whole seconds, so a line in the very second one step ended and the next
    began stays with the earlier one unless it is a header).  Other
    ``##[group]``/``##[endgroup]`` lines (a user's ``::group::``) and every
    line's text are kept verbatim, only cut to :data:`MAX_LOG_LINE`.
    """
    ran = sorted(
        (
            s
            for s in steps
            if s.get("conclusion") != "skipped" and _second(s.get("started_at")) is not None
        ),
        key=_number,
    )
    starts = [_second(s.get("started_at")) for s in ran]
    ends = [_second(s.get("completed_at")) for s in ran]
    names = [clean_name(s.get("name"), f"step {s.get('number')}") for s in ran]
    current = 0
    lines: list[LogLine] = []
    stamp: str | None = None
    for raw in text.removeprefix("\ufeff").split("\n"):
        raw = raw.removesuffix("\r")
        match = _LOG_LINE.fullmatch(raw)
        body = raw
        if match:
            stamp, body = _time(match[1]) or stamp, match[2]
        if not match and raw == "":
            continue
        moment = _second(stamp)
        header = body.startswith(STEP_HEADER)
        while moment is not None and current + 1 < len(ran):
            next_start, end = starts[current + 1], ends[current]
            if next_start is None or moment < next_start:
                break
            if header:
                current += 1
                break
            if end is None or moment <= end:
                break
            current += 1
        if len(body) > MAX_LOG_LINE:
            body = body[:MAX_LOG_LINE] + " [line cut]"
        level = next((lvl for marker, lvl in _LEVEL_MARKERS if body.startswith(marker)), "info")
        lines.append(LogLine(names[current] if ran else None, stamp, level, body))
    return lines


def _number(step: Mapping[str, Any]) -> int:
    number = step.get("number")
    return number if isinstance(number, int) else 0


def _second(value: Any) -> datetime | None:
    """A time cut to whole seconds, the precision GitHub gives step times in."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return parse_timestamp(value).replace(microsecond=0)
    except ValueError:
        return None


def log_events(job: Mapping[str, Any], project: str, log_text: str) -> list[dict[str, Any]]:
    """``log_entry`` events for a finished job's log, lines of one step and level together.

    Each event holds up to :data:`LOG_GROUP_LINES` consecutive lines (joined by
    ``\\n``, stamped with the first line's time); its ``event_id`` counts
    groups from the start of the log, so the same log always gives the same ids.
    """
    run_id = str(job["run_id"])
    job_name = clean_name(job.get("name"), "job")
    key = f"gh-{run_id}-{_attempt(job)}-{job['id']}-log"
    events: list[dict[str, Any]] = []
    group: list[LogLine] = []
    size = 0

    def flush() -> None:
        message = "\n".join(line.text for line in group)
        if message.strip("\n"):
            first = group[0]
            event: dict[str, Any] = {
                "type": "log_entry",
                "project": project,
                "deployment_id": run_id,
                "job": job_name,
                "level": first.level,
                "message": message,
                "event_id": f"{key}-{len(events) + 1}",
                "source": "github",
            }
            if first.step is not None:
                event["step"] = first.step
            if first.timestamp is not None:
                event["timestamp"] = first.timestamp
            events.append(event)
        group.clear()

    for line in split_job_log(log_text, _steps(job)):
        if group and (
            line.step != group[0].step
            or line.level != group[0].level
            or len(group) >= LOG_GROUP_LINES
            or size + len(line.text) > LOG_GROUP_CHARS
        ):
            flush()
            size = 0
        group.append(line)
        size += len(line.text) + 1
    if group:
        flush()
    return events


def repository_projects(entries: Iterable[str]) -> dict[str, str]:
    """``HUB_GITHUB_REPOSITORIES`` as ``{lower-case owner/repo: project}``.

    An entry is ``owner/repo`` (the project is the repository's name) or
    ``owner/repo=project``; GitHub compares repository names without case.
    """
    projects = {}
    for entry in entries:
        name, _, project = entry.partition("=")
        name = name.strip()
        projects[name.lower()] = project.strip() or name.rpartition("/")[2]
    return projects


def delivery_bodies(
    event_name: str, payload: Any, projects: Mapping[str, str]
) -> list[dict[str, Any]]:
    """Typed bodies for one webhook delivery, or :class:`IgnoredDelivery` saying why none."""
    if not isinstance(payload, dict):
        raise Invalid("a GitHub delivery is a JSON object", {"_schema": ["Not an object."]})
    repository = payload.get("repository")
    full_name = repository.get("full_name") if isinstance(repository, dict) else None
    if not isinstance(full_name, str) or not full_name:
        raise Invalid(
            "the delivery names no repository",
            {"repository": {"full_name": ["Missing data for required field."]}},
        )
    project = projects.get(full_name.lower())
    if project is None:
        raise IgnoredDelivery(
            f"repository {full_name[:MAX_NAME_LENGTH]!r} is not in HUB_GITHUB_REPOSITORIES"
        )
    if event_name in DEPLOYMENT_EVENTS:
        return deployment_bodies(event_name, payload, project)
    obj = payload.get(event_name)
    if not isinstance(obj, dict):
        raise Invalid(
            f"a {event_name} delivery needs a {event_name!r} object",
            {event_name: ["Missing data for required field."]},
        )
    required = ("id",) if event_name == "workflow_run" else ("id", "run_id")
    errors = {name: ["Must be a whole number."] for name in required if not _whole(obj.get(name))}
    if errors:
        raise Invalid(f"the {event_name} object is incomplete", {event_name: errors})
    if event_name == "workflow_run":
        return run_events({**obj, "repository": repository}, project)
    bodies = job_events(obj, project)
    if not bodies:
        raise IgnoredDelivery(
            f"workflow_job {payload.get('action') or 'delivery'} has no started step yet"
        )
    return bodies


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def deployment_id_of(payload: Mapping[str, Any], deployment: Mapping[str, Any]) -> str:
    """The hub's deployment for a GitHub deployment: its workflow run's, when it has one.

    A deployment that a workflow run created (a job with ``environment:``)
    carries that run as ``workflow_run``; the run is recorded under its id
    (:func:`run_events`), so the deployment joins it and the two are one.  Any
    other deployment (made through the API, by an app or a script) is a
    deployment of its own, ``gh-deploy-<deployment id>``.
    """
    run = payload.get("workflow_run")
    if isinstance(run, Mapping) and _whole(run.get("id")):
        return str(run["id"])
    return f"gh-deploy-{deployment['id']}"


def deployment_bodies(
    event_name: str, payload: Mapping[str, Any], project: str
) -> list[dict[str, Any]]:
    """Typed bodies for a ``deployment`` or ``deployment_status`` delivery.

    Both carry the deployment, so both give its start (the same ``event_id``,
    so it is stored once, whichever arrives first); a status adds its own event.
    """
    deployment = payload.get("deployment")
    if not isinstance(deployment, Mapping):
        raise Invalid(
            f"a {event_name} delivery needs a 'deployment' object",
            {"deployment": ["Missing data for required field."]},
        )
    if not _whole(deployment.get("id")):
        raise Invalid(
            "the deployment object is incomplete",
            {"deployment": {"id": ["Must be a whole number."]}},
        )
    repository = payload.get("repository")
    full_name = repository.get("full_name") if isinstance(repository, Mapping) else None
    target = deployment_id_of(payload, deployment)
    linked = not target.startswith("gh-deploy-")
    bodies = [deployment_created(deployment, project, target, linked=linked, repository=full_name)]
    if event_name == "deployment_status":
        status = payload.get("deployment_status")
        if not isinstance(status, Mapping) or not _whole(status.get("id")):
            raise Invalid(
                "a deployment_status delivery needs a 'deployment_status' object with an id",
                {"deployment_status": ["Missing data for required field."]},
            )
        bodies.append(deployment_status_body(deployment, status, project, target, linked=linked))
    return [{k: v for k, v in body.items() if v is not None} for body in bodies]


def _environment(*sources: Mapping[str, Any]) -> str | None:
    for source in sources:
        name = source.get("environment")
        if isinstance(name, str) and name.strip():
            return clean_name(name)
    return None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def deployment_created(
    deployment: Mapping[str, Any],
    project: str,
    deployment_id: str,
    *,
    linked: bool,
    repository: Any = None,
) -> dict[str, Any]:
    """The deployment's start, from the deployment object alone (both deliveries carry it).

    A deployment of its own waits (``pending``) until a status says it runs; one that
    joins its workflow run is part of a run that is already running.  Its creator is
    the actor only when it stands alone: a run names who triggered it.
    """
    created_at = _time(deployment.get("created_at"))
    creator = deployment.get("creator")
    body: dict[str, Any] = {
        "type": "deployment_started",
        "project": project,
        "deployment_id": deployment_id,
        "event_id": f"gh-deployment-{deployment['id']}-created",
        "status": "running" if linked else "pending",
        "timestamp": created_at,
        "started_at": created_at,
        "environment": _environment(deployment),
        "branch": _text(deployment.get("ref")),
        "commit": _text(deployment.get("sha")),
        "message": _text(deployment.get("description")),
        "github_deployment_id": deployment["id"],
        "task": _text(deployment.get("task")),
    }
    if isinstance(repository, str) and repository:
        body["repository"] = clean_name(repository)
    if not linked and isinstance(creator, Mapping) and _text(creator.get("login")):
        body["actor"] = clean_name(creator["login"])
    extra = deployment.get("payload")
    if isinstance(extra, Mapping) and _text(extra.get("version")):
        body["version"] = extra["version"]
    return body


def deployment_status_body(
    deployment: Mapping[str, Any],
    status: Mapping[str, Any],
    project: str,
    deployment_id: str,
    *,
    linked: bool,
) -> dict[str, Any]:
    """What one deployment status says: the deployment waits, runs, ends, or went inactive."""
    state = str(status.get("state") or "")
    if state not in DEPLOYMENT_STATES:
        raise Invalid(
            f"unknown deployment status state {state[:50]!r}",
            {"deployment_status": {"state": [f"Must be one of: {', '.join(DEPLOYMENT_STATES)}."]}},
        )
    hub_status = DEPLOYMENT_STATES[state]
    at = _time(status.get("created_at")) or _time(deployment.get("created_at"))
    environment = _environment(status, deployment)
    target_url = _text(status.get("log_url")) or _text(status.get("target_url"))
    common: dict[str, Any] = {
        "project": project,
        "deployment_id": deployment_id,
        "event_id": f"gh-deployment-{deployment['id']}-status-{status['id']}",
        "timestamp": at,
        "environment_url": _text(status.get("environment_url")),
        "target_url": target_url,
        "github_deployment_id": deployment["id"],
        "deployment_state": state,
    }
    if hub_status is None:
        shown = f" to {environment}" if environment else ""
        return {
            **common,
            "type": "log_entry",
            "level": "info",
            "message": f"GitHub deployment {deployment['id']}{shown} is inactive: "
            "a newer deployment replaced it",
        }
    description = _text(status.get("description"))
    if hub_status in OPEN_STATUSES:
        return {
            **common,
            "type": "deployment_started",
            "status": "running" if linked else hub_status,
            "started_at": None if linked else _time(deployment.get("created_at")),
            "environment": environment,
            "run_url": None if linked else target_url,
            "message": description,
        }
    return {
        **common,
        "type": "deployment_completed",
        "status": hub_status,
        "completed_at": at,
        "started_at": None if linked else _time(deployment.get("created_at")),
        "environment": environment,
        "error": (description or f"deployment {state}") if hub_status == "failure" else None,
        "message": description if hub_status != "failure" else None,
    }


def ping_answer(payload: Any, projects: Mapping[str, str]) -> str:
    """What a ``ping`` is told: the hook reached the hub, and whether it records anything."""
    hook_id = payload.get("hook_id") if isinstance(payload, dict) else None
    hook = f"hook {hook_id}" if _whole(hook_id) else "the hook"
    repository = payload.get("repository") if isinstance(payload, dict) else None
    full_name = repository.get("full_name") if isinstance(repository, dict) else None
    if isinstance(full_name, str) and full_name:
        listed = full_name.lower() in projects
        shown = full_name[:MAX_NAME_LENGTH]
        return f"{hook} works: its signature was accepted; repository {shown!r} " + (
            f"is recorded as project {projects[full_name.lower()]!r}"
            if listed
            else "is not in HUB_GITHUB_REPOSITORIES, so its deliveries are ignored"
        )
    return (
        f"{hook} works: its signature was accepted; deliveries are recorded for the "
        "repositories in HUB_GITHUB_REPOSITORIES"
    )
