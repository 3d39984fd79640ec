"""Environments from deployment rows: current, in progress, latest, in any order."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.delivery import delivery_of_rows
from ledger.environments import (
    environment_names,
    environments,
    stage_rank,
    summary,
)
from ledger.view import ListRow


def row(
    deployment_id: str,
    status: str,
    started: str,
    completed: str | None = None,
    *,
    project: str = "shop",
    environment: str | None = "production",
    **extra: Any,
) -> ListRow:
    base: dict[str, Any] = {
        "deployment_id": deployment_id,
        "project": project,
        "status": status,
        "started_at": f"2025-08-12T{started}:00.000Z",
        "completed_at": None if completed is None else f"2025-08-12T{completed}:00.000Z",
        "environment": environment,
        "branch": "main",
        "commit": f"{deployment_id}abc",
        "version": None,
        "actor": "alice",
        "run_url": None,
        "environment_url": None,
        **extra,
    }
    return base  # type: ignore[return-value]


ROWS = [
    row("d1", "success", "10:00", "10:05", version="1.0.0"),
    row("d2", "success", "11:00", "11:04", version="1.1.0", environment_url="https://shop.example"),
    row("d3", "failure", "12:00", "12:02"),
    row("d4", "running", "13:00"),
    row("d0", "running", "09:00"),  # never said it ended; older than the current one
    row("s1", "success", "10:30", "10:31", environment="staging"),
    row("x1", "success", "10:30", "10:31", environment=None),
    row("w1", "pending", "08:00", project="web", environment="production"),
]


def test_current_in_progress_and_latest_per_project_and_environment() -> None:
    states = environments(ROWS)
    assert [(s["project"], s["environment"]) for s in states] == [
        ("shop", "staging"),
        ("shop", "production"),
        ("web", "production"),
    ]
    production = states[1]
    assert production["current"] is not None
    assert (production["current"]["deployment_id"], production["current"]["version"]) == (
        "d2",
        "1.1.0",
    )
    assert production["current"]["environment_url"] == "https://shop.example"
    assert production["since"] == "2025-08-12T11:04:00.000Z"
    assert production["in_progress"] is not None
    assert production["in_progress"]["deployment_id"] == "d4"
    assert production["latest"]["deployment_id"] == "d4"
    assert production["deployments"] == 5
    web = states[2]
    assert (web["current"], web["since"]) == (None, None)
    assert web["in_progress"] is not None  # nothing succeeded yet: the open one is in progress
    assert web["in_progress"]["deployment_id"] == "w1"


def test_the_current_deployment_is_the_one_that_completed_last() -> None:
    rows = [row("a", "success", "10:00", "10:50"), row("b", "success", "10:10", "10:20")]
    (state,) = environments(rows)
    assert state["current"] is not None
    assert state["current"]["deployment_id"] == "a"
    assert state["latest"]["deployment_id"] == "b"


def test_rows_without_an_environment_belong_to_none() -> None:
    assert environments([row("x", "success", "10:00", "10:01", environment=None)]) == []
    assert summary([]) == {"environments": [], "projects": [], "environment_names": []}


@settings(max_examples=50, deadline=None)
@given(st.permutations(ROWS))
def test_any_order_of_rows_gives_the_same_answer(rows: list[ListRow]) -> None:
    assert environments(rows) == environments(ROWS)


def test_environments_sort_from_development_to_production() -> None:
    names = ["production", "qa", "staging", "dev", "preprod", "eu-west", "prod-eu", "live"]
    assert sorted(names, key=stage_rank) == [
        "dev",
        "qa",
        "eu-west",
        "preprod",
        "staging",
        "live",
        "prod-eu",
        "production",
    ]
    assert environment_names(environments(ROWS)) == ["staging", "production"]


def test_delivery_figures_default_to_production_when_the_data_has_it() -> None:
    named = delivery_of_rows(ROWS, None, truncated=False)
    assert named.environment == "production"
    assert set(named.environments) == {"staging", "production"}
    staging = [row("s", "success", "10:00", environment="staging")]
    assert delivery_of_rows(staging, None, truncated=False).environment is None
    assert delivery_of_rows([], None, truncated=False).environment is None
    only = delivery_of_rows(ROWS, "staging", truncated=False).window
    assert sum(only.statuses.values()) == 1
    assert sum(delivery_of_rows(ROWS, "*", truncated=False).window.statuses.values()) == len(ROWS)
