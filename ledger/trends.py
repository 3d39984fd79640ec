"""Step trends over a window, and the ETA of a running deployment.

Pure: the runs of steps in, figures out.  A deployment contributes its
:class:`StepRuns`, the steps of it that finished (:func:`step_runs`, the one
rule of what a fold gives trends), so a store can keep that narrow record beside
the fold, in the same write, and answer from it instead of decoding folds; a
recomputation from the folds gives the same records.  A step's **runs** are its
final outcomes (``success`` or ``failure``) in deployments started within the
window; its **failures** the runs that failed; it is **flaky** once for each
success that followed a failure of the same step on the same commit: an earlier
attempt of the same deployment (a re-run) or an earlier deployment of that
commit.  Durations are those of its finished runs (``p50``/``p95``,
nearest-rank, :func:`ledger.stats.percentile`); a step **regressed** when its
p50 grew by more than half over the previous window of the same length.

The **ETA** of a running deployment adds up, for the steps still ahead, the
p50 of that step over the project's recent successful deployments (for a
step running now: what is left of its p50).  Steps run in parallel jobs are
added as if one ran after the other, so the ETA errs late, never early.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from operator import itemgetter
from typing import NamedTuple, TypedDict

from ledger.durations import duration
from ledger.fold import Fold
from ledger.stats import percentile
from ledger.timestamps import format_timestamp, parse_timestamp
from ledger.view import DeploymentView, step_view

#: p50 growth over the previous window beyond which a step has regressed.
REGRESSION_FACTOR = 1.5
#: Recent successful deployments of a project an ETA is based on.
ETA_HISTORY = 20

FINISHED = ("success", "failure")
#: The order trends take deployments in: by start, then creation, then id.
_ORDER = itemgetter(0, 1, 2)


class Figures(TypedDict):
    runs: int
    failures: int
    failure_rate: float | None
    flaky: int
    p50_ms: int | float | None
    p95_ms: int | float | None


class StepTrend(TypedDict):
    """One item of ``GET /api/steps``: a step's figures now and in the window before."""

    project: str
    job: str
    step: str
    runs: int
    failures: int
    failure_rate: float | None
    flaky: int
    p50_ms: int | float | None
    p95_ms: int | float | None
    previous: Figures
    regressed: bool


class _Tally:
    __slots__ = ("durations", "failures", "flaky", "runs")

    def __init__(self) -> None:
        self.runs = 0
        self.failures = 0
        self.flaky = 0
        self.durations: list[int] = []

    def figures(self) -> Figures:
        ordered = sorted(self.durations)
        return {
            "runs": self.runs,
            "failures": self.failures,
            "failure_rate": round(self.failures / self.runs, 4) if self.runs else None,
            "flaky": self.flaky,
            "p50_ms": percentile(ordered, 50),
            "p95_ms": percentile(ordered, 95),
        }


#: A finished step as trends read it: ``(job, step, status, failed_before, duration_ms)``;
#: ``status`` is ``success`` or ``failure``, ``failed_before`` says it failed at least once
#: before (a re-run of the same deployment passed it).
StepRun = tuple[str, str, str, bool, int | None]


class StepRuns(NamedTuple):
    """A deployment's finished steps: all that step trends read of it.

    The fields begin with the order trends take deployments in: when they
    started, then appeared, then by id.
    """

    #: Where the deployment sorts (:meth:`~ledger.fold.Fold.sort_ts`): which window it is in.
    started: str
    #: When the deployment first appeared: places deployments that started at once.
    created: str
    deployment_id: str
    project: str
    commit: str | None
    steps: tuple[StepRun, ...]


def step_runs(deployment_id: str, fold: Fold) -> StepRuns | None:
    """What a deployment contributes to step trends (``None``: no step of it finished)."""
    steps = tuple(
        (
            step.job,
            step.name,
            step.status,
            step.failed_runs > 0,
            duration(step.started_at, step.completed_at, step.duration_ms),  # ended: step_view's
        )
        for step in fold.steps.values()
        if step.status in FINISHED
    )
    if not steps:
        return None
    return StepRuns(
        fold.sort_ts(),
        fold.created_ts or "",
        deployment_id,
        fold.project,
        fold.metadata.get("commit"),
        steps,
    )


def step_trends(
    runs: Iterable[StepRuns], *, start: str, middle: str, end: str | None = None
) -> list[StepTrend]:
    """Figures per ``(project, job, step)`` for deployments started in ``[middle, end]``,
    compared with ``[start, middle)``; ordered by project, job and step.

    ``runs`` may hold deployments outside both windows; they are ignored (an
    earlier failure of a commit still makes a later success flaky).  Deployments
    are taken in the order they started, then appeared, then by id.
    """
    tallies: dict[tuple[str, str, str], tuple[_Tally, _Tally]] = {}
    last_outcome: dict[tuple[str, str, str, str], str] = {}  # (project, job, step, commit)
    for started, _, _, project, commit, steps in sorted(runs, key=_ORDER):
        if started >= middle:
            window: int | None = 1 if end is None or started <= end else None
        else:
            window = 0 if start <= started else None
        for job, name, status, failed_before, took in steps:
            earlier = None
            if commit:
                outcome_key = (project, job, name, commit)
                earlier = last_outcome.get(outcome_key)
                last_outcome[outcome_key] = status
            if window is None:
                continue
            pair = tallies.get((project, job, name))
            if pair is None:
                pair = tallies[project, job, name] = (_Tally(), _Tally())
            tally = pair[window]
            tally.runs += 1
            if status == "failure":
                tally.failures += 1
            elif failed_before or earlier == "failure":
                tally.flaky += 1
            if took is not None:
                tally.durations.append(took)
    return trends_of(tallies)


def trends_of(tallies: dict[tuple[str, str, str], tuple[_Tally, _Tally]]) -> list[StepTrend]:
    """The items of ``GET /api/steps`` from each step's tallies ``(previous, current)``,
    ordered by project, job and step."""
    result: list[StepTrend] = []
    for (project, job, name), (previous, current) in sorted(tallies.items()):
        now, before = current.figures(), previous.figures()
        p50, p50_before = now["p50_ms"], before["p50_ms"]
        result.append(
            {
                "project": project,
                "job": job,
                "step": name,
                **now,
                "previous": before,
                "regressed": bool(
                    p50 is not None and p50_before and p50 > p50_before * REGRESSION_FACTOR
                ),
            }
        )
    return result


def window_bounds(now: datetime, days: int) -> tuple[str, str]:
    """``(start, middle)``: the previous window's start and the current window's start."""
    return (
        format_timestamp(now - timedelta(days=2 * days)),
        format_timestamp(now - timedelta(days=days)),
    )


# -- the ETA of a running deployment --------------------------------------------------------


class Eta(TypedDict):
    """``eta`` of ``GET /api/deployments/<id>`` while it runs."""

    remaining_ms: int
    finish_at: str
    basis: int
    progress: float


def step_p50s(history: Sequence[Fold]) -> tuple[dict[tuple[str, str], int | float], int]:
    """The p50 duration of each ``(job, step)`` over successful runs in ``history``, and how
    many deployments gave any."""
    durations: dict[tuple[str, str], list[int]] = {}
    basis = 0
    for fold in history:
        counted = False
        for step in fold.steps.values():
            duration = step_view(step)["duration_ms"] if step.status == "success" else None
            if duration is not None:
                durations.setdefault((step.job, step.name), []).append(duration)
                counted = True
        basis += counted
    p50s = {key: percentile(sorted(values), 50) or 0 for key, values in durations.items()}
    return p50s, basis


def eta(view: DeploymentView, history: Sequence[Fold], now: datetime) -> Eta | None:
    """When a running deployment should finish, from its project's recent successful runs.

    ``None`` when it is not running or nothing in ``history`` says how long its
    steps take.
    """
    if view["status"] not in ("running", "pending"):
        return None
    p50s, basis = step_p50s(history)
    if not p50s:
        return None
    steps = {(job["name"], step["name"]): step for job in view["jobs"] for step in job["steps"]}
    remaining = done = 0.0
    for key, p50 in p50s.items():
        step = steps.get(key)
        if step is None or step["status"] == "pending":
            remaining += p50
        elif step["status"] == "running":
            elapsed = _elapsed(step["started_at"], now)
            remaining += max(0.0, p50 - elapsed)
            done += min(float(p50), elapsed)
        else:
            done += p50
    total = remaining + done
    return {
        "remaining_ms": round(remaining),
        "finish_at": format_timestamp(now + timedelta(milliseconds=round(remaining))),
        "basis": basis,
        "progress": round(done / total, 4) if total else 1.0,
    }


def _elapsed(started_at: str | None, now: datetime) -> float:
    if not started_at:
        return 0.0
    return max(0.0, (now - parse_timestamp(started_at)).total_seconds() * 1000)
