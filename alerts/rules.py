"""When a deployment deserves an alert, and what the alert says.

Pure: events and deployment rows in, :class:`Alert` values out; the runner
(``alerts/runner.py``) feeds them and sends what they raise.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ledger.events import Event
from ledger.failures import FailureView
from ledger.links import absolute, deployment_link, line_link
from ledger.stats import percentile
from ledger.timestamps import parse_timestamp
from ledger.view import DeploymentView, ListRow

#: Fewer successful deployments than this say nothing about a project's usual duration.
P95_MIN_SAMPLES = 5
#: Longest alert text; chat services cut or refuse longer messages.
MAX_TEXT = 3000


@dataclass(frozen=True)
class Alert:
    """One alert: what happened to which deployment, and the text people read."""

    cause: str
    project: str
    deployment_id: str
    summary: str
    details: dict[str, Any] = field(default_factory=dict)
    step: str | None = None  # "job / step" for a stall

    @property
    def key(self) -> str:
        """What makes two alerts the same one: once per deployment and cause (and step)."""
        return f"{self.cause}:{self.deployment_id}" + (f":{self.step}" if self.step else "")

    def text(self) -> str:
        lines = [self.summary]
        for name, label in _TEXT_FIELDS:
            value = self.details.get(name)
            if value:
                lines.append(f"{label}: {str(value)[:500]}")
        return "\n".join(lines)[:MAX_TEXT]


#: The details an alert's text shows, in order, with their labels.
_TEXT_FIELDS = (
    ("failing_step", "failed step"),
    ("failing_line", "failing line"),
    ("seen_before", "seen before"),
    ("branch", "branch"),
    ("commit", "commit"),
    ("actor", "actor"),
    ("error", "error"),
    ("run_url", "run_url"),
    ("line_url", "log"),
)


def _context(row: Mapping[str, Any]) -> dict[str, Any]:
    names = (
        "status",
        "started_at",
        "completed_at",
        "duration_ms",
        "branch",
        "commit",
        "actor",
        "environment",
        "error",
        "run_url",
        "workflow_name",
    )
    return {name: row.get(name) for name in names}


def failure_alert(event: Event) -> Alert | None:
    """An alert for a failed deployment's completion event, else ``None``."""
    payload = event.payload
    if event.type != "deployment_completed" or payload.get("status") != "failure":
        return None
    details = {
        name: payload.get(name)
        for name in ("branch", "commit", "actor", "error", "run_url", "duration_ms")
    }
    return Alert(
        "failed",
        event.project,
        event.deployment_id or "",
        f"Deployment failed: {event.project} {event.deployment_id}",
        details,
    )


def with_failure(alert: Alert, failure: FailureView | None, public_url: str = "") -> Alert:
    """A failure alert with the line that explains it, a link to that line (under the
    dashboard's ``public_url``) and how often the same failure was seen before."""
    if failure is None:
        return alert
    details = dict(alert.details)
    if failure["job"] is not None:
        details["failing_step"] = f"{failure['job']} / {failure['step']}"
    line = failure["line"]
    if line is not None:
        details["failing_line"] = line["text"]
        link = line_link(alert.deployment_id, line["job"], line["step"], line["id"])
    else:
        details["failing_line"] = failure["message"]
        link = deployment_link(alert.deployment_id)
    details["line_url"] = absolute(public_url, link)
    details["signature"] = failure["signature"]
    seen = failure["seen"]
    if seen["count"]:
        details["seen_before"] = (
            f"{seen['count']} time{'s' if seen['count'] != 1 else ''}, "
            f"first {seen['first_seen']}, last {seen['last_seen']}"
        )
    return replace(alert, details=details)


def failure_alert_of_row(row: ListRow) -> Alert:
    return Alert(
        "failed",
        row["project"],
        row["deployment_id"],
        f"Deployment failed: {row['project']} {row['deployment_id']}",
        _context(row),
    )


def p95(values: list[float]) -> float | None:
    """Nearest-rank 95th percentile, or ``None`` with too few values to mean anything."""
    if len(values) < P95_MIN_SAMPLES:
        return None
    return percentile(sorted(values), 95)


def long_running_alert(
    row: ListRow, now: float, absolute: float, factor: float, project_p95: float | None
) -> Alert | None:
    """An alert when a running deployment's age passes the lower of its two thresholds."""
    started_at = row["started_at"]
    if not started_at:
        return None
    elapsed = now - parse_timestamp(started_at).timestamp()
    limits = []
    if absolute > 0:
        limits.append((absolute, f"the {absolute:g} s limit"))
    if factor > 0 and project_p95:
        limits.append(
            (factor * project_p95, f"{factor:g} x the project's p95 of {project_p95:.0f} s")
        )
    if not limits:
        return None
    threshold, reason = min(limits)
    if elapsed <= threshold:
        return None
    details = {**_context(row), "elapsed_seconds": round(elapsed), "threshold_seconds": threshold}
    return Alert(
        "long_running",
        row["project"],
        row["deployment_id"],
        f"Deployment running for {elapsed / 60:.1f} min, over {reason}: "
        f"{row['project']} {row['deployment_id']}",
        details,
    )


def stalled_alerts(view: DeploymentView, quiet_seconds: float) -> list[Alert]:
    """One alert per running step of a deployment that has been quiet for ``quiet_seconds``."""
    alerts = []
    for job in view.get("jobs") or []:
        for step in job.get("steps") or []:
            if step.get("status") != "running":
                continue
            name = f"{job['name']} / {step['name']}"
            details = {
                **_context(view),
                "job": job["name"],
                "step": step["name"],
                "step_started_at": step.get("started_at"),
                "quiet_seconds": round(quiet_seconds),
            }
            alerts.append(
                Alert(
                    "stalled",
                    view["project"],
                    view["deployment_id"],
                    f"Step {name} has had no news for {quiet_seconds / 60:.1f} min: "
                    f"{view['project']} {view['deployment_id']}",
                    details,
                    step=name,
                )
            )
    return alerts
