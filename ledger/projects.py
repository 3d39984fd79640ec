"""Which project a deployment belongs to, and how a project's deployments are counted.

Senders may name a deployment's project ``"unknown"`` or ``""`` while its id
is known (LEGACY.md §1); the real name any event gave wins, and where several
real names were given, the first in byte order, so that every store and
every arrival order agree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TypedDict

from ledger.events import OPEN_STATUSES

#: What a deployment's project is called while no event has named it.
UNKNOWN_PROJECT = "unknown"


def is_named(project: str | None) -> bool:
    """Whether ``project`` is a real name rather than a sender's "don't know"."""
    return bool(project) and project != UNKNOWN_PROJECT


def resolve_project(projects: Iterable[str | None]) -> str:
    """A deployment's project: the first real name in byte order, else ``unknown``."""
    return min((p for p in projects if p and is_named(p)), default=UNKNOWN_PROJECT)


class ProjectCounts(TypedDict):
    total: int
    success: int
    failure: int
    running: int
    cancelled: int


def project_counts(statuses: Mapping[str, int]) -> ProjectCounts:
    """A project's deployments counted by status; ``running`` counts every open one."""
    return {
        "total": sum(statuses.values()),
        "success": statuses.get("success", 0),
        "failure": statuses.get("failure", 0),
        "running": sum(statuses.get(status, 0) for status in OPEN_STATUSES),
        "cancelled": statuses.get("cancelled", 0),
    }
