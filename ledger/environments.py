"""Environments: what each project runs in each environment, from its deployment rows.

A deployment may name the environment it went to (``environment``, run
metadata).  Per project and environment, the **current** deployment is the
last one that succeeded (the one that completed last): what the environment
runs, since when, from which ref, commit and version, deployed by whom.  A
deployment still open (``running`` or ``pending``) that started after it is the
one **in progress**; the newest deployment of any status is the **latest**
(a failed attempt after the current one shows there).

Everything is computed from deployment rows as ``GET /api/deployments`` gives
them, so that the read API reads a bounded number of rows (the route pages
the store newest first and says ``truncated`` when it stopped early) and a
later store may maintain the same figures as aggregates without another
definition.  Rows without an environment belong to none.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NotRequired, TypedDict

from ledger.events import OPEN_STATUSES
from ledger.view import ListRow

#: The environment the delivery figures are restricted to by default, when the data has it.
DEFAULT_ENVIRONMENT = "production"

#: Where an environment goes among its project's columns, by the words in its name:
#: development first, production last, the rest alphabetically between.
_STAGES = (
    (("dev", "local", "sandbox"), 0),
    (("test", "qa", "ci"), 1),
    (("preprod", "pre-prod", "stag", "uat", "preview", "canary"), 2),
    (("prod", "live"), 3),
)


class DeploymentRef(TypedDict):
    """One deployment as the environments listing names it."""

    deployment_id: str
    status: str
    branch: str | None
    commit: str | None
    version: str | None
    actor: str | None
    started_at: str | None
    completed_at: str | None
    run_url: str | None
    environment_url: str | None
    last_news_at: str | None
    stale: NotRequired[bool]


class EnvironmentState(TypedDict):
    """``GET /api/environments``: one project in one environment."""

    project: str
    environment: str
    current: DeploymentRef | None
    since: str | None
    in_progress: DeploymentRef | None
    latest: DeploymentRef
    deployments: int


def stage_rank(environment: str) -> tuple[int, str]:
    """Sort key of an environment name: its stage (dev … production), then its name."""
    name = environment.lower()
    for words, rank in _STAGES:
        if any(word in name for word in words):
            if rank == 3 and any(word in name for word in ("preprod", "pre-prod", "nonprod")):
                continue
            return rank, name
    return 2, name


def ref(row: ListRow) -> DeploymentRef:
    return {
        "deployment_id": row["deployment_id"],
        "status": row["status"],
        "branch": row.get("branch"),
        "commit": row.get("commit"),
        "version": row.get("version"),
        "actor": row.get("actor"),
        "started_at": row.get("started_at"),
        "completed_at": row.get("completed_at"),
        "run_url": row.get("run_url"),
        "environment_url": row.get("environment_url"),
        "last_news_at": row.get("last_news_at"),
    }


def _newer(row: ListRow, than: ListRow | None, key: str) -> bool:
    if than is None:
        return True
    mine, theirs = row.get(key) or "", than.get(key) or ""
    return (mine, row["deployment_id"]) > (theirs, than["deployment_id"])


def environments(rows: Iterable[ListRow]) -> list[EnvironmentState]:
    """Each project's state in each environment its rows name, sorted by project and stage.

    ``rows`` may come in any order; the answer depends only on which rows there are.
    """
    groups: dict[tuple[str, str], list[ListRow]] = {}
    for row in rows:
        environment = row.get("environment")
        if environment:
            groups.setdefault((row["project"], environment), []).append(row)
    return sort_states(
        state(project, environment, *pick(members), len(members))
        for (project, environment), members in groups.items()
    )


def pick(members: Iterable[ListRow]) -> tuple[ListRow, ListRow | None, ListRow | None]:
    """``(latest, current, in_progress)`` of one project's rows in one environment.

    The rule a store that keeps indexes follows too: the latest starts last, the
    current completed last of the successes, the one in progress is open and
    started after the current one (an older one never said it ended); each
    time ties are broken by the larger id, and an unknown time counts as earliest.
    """
    rows = list(members)
    current: ListRow | None = None
    latest: ListRow | None = None
    for row in rows:
        if _newer(row, latest, "started_at"):
            latest = row
        if row["status"] == "success" and _newer(row, current, "completed_at"):
            current = row
    in_progress: ListRow | None = None
    for row in rows:
        if row["status"] not in OPEN_STATUSES:
            continue
        if current is not None and (row.get("started_at") or "") <= (
            current.get("started_at") or ""
        ):
            continue  # an old deployment that never said it ended
        if _newer(row, in_progress, "started_at"):
            in_progress = row
    assert latest is not None  # noqa: S101 - every group has a row
    return latest, current, in_progress


def state(
    project: str,
    environment: str,
    latest: ListRow,
    current: ListRow | None,
    in_progress: ListRow | None,
    deployments: int,
) -> EnvironmentState:
    """One project's state in one environment, from the rows :func:`pick` picks."""
    return {
        "project": project,
        "environment": environment,
        "current": ref(current) if current else None,
        "since": (current.get("completed_at") or current.get("started_at")) if current else None,
        "in_progress": ref(in_progress) if in_progress else None,
        "latest": ref(latest),
        "deployments": deployments,
    }


def sort_states(states: Iterable[EnvironmentState]) -> list[EnvironmentState]:
    """By project, then environments in stage order."""
    return sorted(states, key=lambda s: (s["project"], stage_rank(s["environment"])))


#: What the stores' aggregates pick per project and environment: the project, the
#: environment, how many deployments it had, and the ids of its latest, current and
#: in-progress deployments.
Pick = tuple[str, str, int, str, str | None, str | None]


def picked_states(picks: Iterable[Pick], rows: Mapping[str, ListRow]) -> list[EnvironmentState]:
    """The sorted states of ``picks``, given the list rows of the deployments they name (a
    pick whose latest deployment has no row, pruned meanwhile, is left out)."""
    return sort_states(
        state(
            name,
            environment,
            rows[latest],
            rows.get(current) if current else None,
            rows.get(in_progress) if in_progress else None,
            n,
        )
        for name, environment, n, latest, current, in_progress in picks
        if latest in rows
    )


def environment_names(states: Iterable[EnvironmentState]) -> list[str]:
    """Every environment named, in stage order (the columns of the dashboard's matrix)."""
    return sorted({state["environment"] for state in states}, key=stage_rank)


def summary(states: list[EnvironmentState]) -> dict[str, Any]:
    """The listing's body: the states, and the projects and environments they span."""
    return {
        "environments": states,
        "projects": sorted({state["project"] for state in states}),
        "environment_names": environment_names(states),
    }
