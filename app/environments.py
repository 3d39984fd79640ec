"""``GET /api/environments``: each project's state per environment (``ledger/environments.py``)."""

from __future__ import annotations

import time

from flask import Blueprint, Response, jsonify, request

from app.auth import check_read_token
from app.context import current_context
from app.query import param
from ledger.environments import environments, summary
from ledger.staleness import mark_stale
from ledger.view import ListRow
from storage import paging
from storage.store import Store

environment_routes = Blueprint("environments", __name__)

#: At most this many deployments are read for one answer (``truncated`` says when more).
MAX_DEPLOYMENTS = 5000


@environment_routes.get("/api/environments")
def list_environments() -> Response:
    """Per project and environment: the current deployment, the one in progress, the latest."""
    context = current_context()
    check_read_token(request.headers, request.args.get("token"), context.settings.read_tokens)
    rows, truncated = newest_deployments(context.store, param("project"))
    states = environments(rows)
    now, after = time.time(), context.settings.stale_after
    for state in states:
        for ref in (state["current"], state["in_progress"], state["latest"]):
            if ref is not None:
                mark_stale(ref, now, after)
    return jsonify({**summary(states), "scanned": len(rows), "truncated": truncated})


def newest_deployments(store: Store, project: str | None) -> tuple[list[ListRow], bool]:
    """The newest :data:`MAX_DEPLOYMENTS` deployment rows, and whether there were more."""
    rows = list(paging.deployments(store, project=project, most=MAX_DEPLOYMENTS + 1))
    return rows[:MAX_DEPLOYMENTS], len(rows) > MAX_DEPLOYMENTS
