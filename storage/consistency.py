"""Whether a store still keeps its promises: its log in order, its views its events' fold.

Any store, through the :class:`~storage.store.Store` protocol only: the log is
read from start to end (ids strictly increasing, every event counted), and each
deployment's stored view is compared with :func:`ledger.view.build_view` over
its events, the view's definition.  A store that keeps aggregates has them
compared with the ones recomputed from every view
(:func:`ledger.aggregates.tally`, :func:`ledger.delivery.outage_days`), and one
that keeps step runs has them compared with the ones its folds give now
(:func:`ledger.trends.step_runs`).  A difference means a write was cut short or
a bug changed a rule; it is reported, never repaired behind the operator's back.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, cast

from ledger.aggregates import SEP, row_facts, tally
from ledger.delivery import outage_days
from ledger.events import Event
from ledger.trends import StepRuns
from ledger.view import build_view
from storage import paging
from storage.store import Aggregated, KeepsStepRuns, Store

#: Keys of a stored view that are not part of the fold (kept beside it by the store).
STORE_KEYS = ("last_event_id", "log_lines", "metrics", "last_news_at")
#: Events read per call while walking the log.
READ_SIZE = 1000
#: Reads of a deployment that keeps changing before it counts as busy.
ATTEMPTS = 3
#: At most this many problems are described; the rest are only counted.
SHOWN_PROBLEMS = 20


@dataclass(slots=True)
class Report:
    """What a check read and what it found wrong."""

    events: int = 0
    deployments: int = 0
    problems: list[str] = field(default_factory=list)
    more_problems: int = 0
    busy: int = 0

    def problem(self, text: str) -> None:
        if len(self.problems) < SHOWN_PROBLEMS:
            self.problems.append(text)
        else:
            self.more_problems += 1

    @property
    def ok(self) -> bool:
        return not self.problems


def check(store: Store, *, most_deployments: int) -> Report:
    """Walk the whole log, then compare the newest ``most_deployments`` views with their fold."""
    report = Report()
    _check_log(store, report)
    for row in paging.deployments(store, most=most_deployments):
        report.deployments += 1
        _check_view(store, row["deployment_id"], report)
    if isinstance(store, Aggregated):
        _check_aggregates(store, report)
    if isinstance(store, KeepsStepRuns):
        _check_step_runs(store, report)
    return report


def _check_step_runs(store: KeepsStepRuns, report: Report) -> None:
    """Compare the kept step runs with the ones every fold gives now; read again on a
    difference, as a hub writing beside the check may change both in between."""
    for _ in range(ATTEMPTS):
        kept, folded = store.kept_step_runs(), store.folded_step_runs()
        if kept == folded:
            return
    differing = {runs.deployment_id for runs in kept ^ folded}
    was = {runs.deployment_id: runs for runs in kept if runs.deployment_id in differing}
    now = {runs.deployment_id: runs for runs in folded if runs.deployment_id in differing}
    for deployment_id in sorted(differing):
        report.problem(
            f"step runs of deployment {deployment_id!r} drifted from its fold: "
            f"kept {_steps(was.get(deployment_id))}, folded {_steps(now.get(deployment_id))}"
        )


def _steps(runs: StepRuns | None) -> str:
    """``job/step status, ...`` of a deployment's step runs."""
    if runs is None:
        return "none"
    return ", ".join(f"{job}/{step} {status}" for job, step, status, _, _ in runs.steps)


def _check_aggregates(store: Aggregated, report: Report) -> None:
    """Compare the kept aggregates with the ones every view gives now; a hub writing
    beside the check may change both in between, so a difference is read again."""
    for _ in range(ATTEMPTS):
        kept_cells, kept_outages = store.aggregate_cells(), store.outage_days()
        views = [row_facts(row) for row in paging.deployments(cast(Store, store), most=1 << 62)]
        cells, outages = tally(views), outage_days(views)
        if (kept_cells, kept_outages) == (cells, outages):
            return
    drifted = sorted(
        f"{group} {field.replace(SEP, '/')}: kept {kept_cells.get((group, field), 0)}, "
        f"counted {cells.get((group, field), 0)}"
        for group, field in {*kept_cells, *cells}
        if kept_cells.get((group, field)) != cells.get((group, field))
    )
    drifted += sorted(
        f"outages of {project!r} in {environment or 'all environments'} on {day}"
        for project, environment, day in {*kept_outages, *outages}
        if kept_outages.get((project, environment, day)) != outages.get((project, environment, day))
    )
    for text in drifted:
        report.problem(f"aggregate drifted from the views: {text}")


def _check_log(store: Store, report: Report) -> None:
    last_seq, top = 0, store.last_seq()
    while last_seq < top:
        rows = store.read_after(last_seq, READ_SIZE)
        if not rows:
            break
        for seq, _ in rows:
            if seq <= last_seq:
                report.problem(f"the log goes back from seq {last_seq} to {seq}")
            last_seq = seq
        report.events += len(rows)


def _check_view(store: Store, deployment_id: str, report: Report) -> None:
    """Compare one view with its fold; a deployment that changes while read is read again.

    The view is read first, its events after: they match when the newest event
    is the one the view names.  A hub serving beside the check may add events
    in between (or prune the deployment); after :data:`ATTEMPTS` tries such a
    deployment counts as busy, not as a problem.
    """
    for _ in range(ATTEMPTS):
        stored = store.get_deployment(deployment_id)
        if stored is None:
            break  # pruned since it was listed
        items = list(_events_of(store, deployment_id))
        if not items:
            report.problem(f"deployment {deployment_id!r} has a view but no events")
            return
        if items[-1]["id"] != stored.get("last_event_id"):
            continue
        view: dict[str, Any] = dict(stored)
        for key in STORE_KEYS:
            view.pop(key, None)
        expected: dict[str, Any] = dict(
            build_view(deployment_id, [Event.from_dict(item) for item in items])
        )
        if view != expected:
            differing = sorted(k for k in {*view, *expected} if view.get(k) != expected.get(k))
            report.problem(
                f"deployment {deployment_id!r}: the stored view differs from its "
                f"{len(items)} events in {', '.join(differing)}"
            )
        return
    report.busy += 1


def _events_of(store: Store, deployment_id: str) -> Iterator[dict[str, Any]]:
    since = None
    while True:
        page = store.events(project=None, deployment_id=deployment_id, since=since, limit=500)
        yield from page.items
        if page.next_cursor is None:
            return
        since = page.next_cursor
