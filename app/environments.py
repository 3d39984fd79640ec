"""``GET /api/environments``: each project's state per environment (``ledger/environments.py``)."""

from __future__ import annotations

import time

from flask import Blueprint, Response, jsonify, request

from app.auth import check_read_token
from app.context import current_context
from app.query import param
from ledger.environments import summary
from ledger.staleness import mark_stale

environment_routes = Blueprint("environments", __name__)


@environment_routes.get("/api/environments")
def list_environments() -> Response:
    """Per project and environment: the current deployment, the one in progress, the latest."""
    context = current_context()
    check_read_token(request.headers, request.args.get("token"), context.settings.read_tokens)
    states, scanned, truncated = context.store.environment_states(project=param("project"))
    now, after = time.time(), context.settings.stale_after
    for state in states:
        for ref in (state["current"], state["in_progress"], state["latest"]):
            if ref is not None:
                mark_stale(ref, now, after)
    return jsonify({**summary(states), "scanned": scanned, "truncated": truncated})
