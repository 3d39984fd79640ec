"""The read-only JSON API of CONTRACT.md "Read API".

Query strings are parsed strictly: a bad ``limit``, ``status`` or cursor is a
400 that names the parameter, never a silently different answer.
"""

from __future__ import annotations

import time

from flask import Blueprint, Response, jsonify, request

from app.analysis import deployment_extras
from app.auth import check_read_token
from app.context import current_context
from app.errors import BadRequest, NotFound
from app.query import MAX_SEQ, limit, param, whole_number
from ledger.events import STATUSES
from ledger.ids import parse_event_id
from ledger.staleness import mark_stale

api = Blueprint("api", __name__)


@api.before_request
def _read_access() -> None:
    settings = current_context().settings
    check_read_token(request.headers, request.args.get("token"), settings.read_tokens)


@api.get("/deployments")
def list_deployments() -> Response:
    status = param("status")
    if status is not None and status not in STATUSES:
        raise BadRequest(
            f"unknown status {status!r}", {"status": [f"Must be one of: {', '.join(STATUSES)}."]}
        )
    try:
        page = current_context().store.list_deployments(
            project=param("project"),
            status=status,
            branch=param("branch"),
            environment=param("environment"),
            limit=limit(50),
            cursor=param("cursor"),
        )
    except ValueError as exc:
        raise BadRequest(str(exc), {"cursor": [str(exc)]}) from None
    now, after = time.time(), current_context().settings.stale_after
    rows = [mark_stale(row, now, after) for row in page.items]
    return jsonify({"deployments": rows, "next_cursor": page.next_cursor})


@api.get("/deployments/<path:deployment_id>")
def get_deployment(deployment_id: str) -> Response:
    """The view, with why it failed (``failure``) or when it should end (``eta``)."""
    context = current_context()
    view = context.store.get_deployment(deployment_id)
    if view is None:
        raise NotFound(f"no deployment {deployment_id!r}")
    extras = deployment_extras(context.store, view)
    return jsonify(mark_stale({**view, **extras}, time.time(), context.settings.stale_after))


@api.get("/deployments/<path:deployment_id>/logs")
def deployment_logs(deployment_id: str) -> Response:
    store = current_context().store
    after = whole_number("after", default=None, low=0, high=MAX_SEQ)
    if store.get_deployment(deployment_id) is None:
        raise NotFound(f"no deployment {deployment_id!r}")
    page = store.logs(
        deployment_id,
        job=param("job"),
        step=param("step"),
        after=None if after is None else str(after),
        limit=limit(500),
    )
    return jsonify({"lines": page.items, "next_cursor": page.next_cursor})


@api.get("/projects")
def list_projects() -> Response:
    context = current_context()
    now, after = time.time(), context.settings.stale_after
    projects = context.store.projects()
    for project in projects:
        mark_stale(project["latest_deployment"], now, after)
    return jsonify({"projects": projects})


@api.get("/events")
def list_events() -> Response:
    """The event log after ``since``; ``recovered: false`` says it could not continue from
    there (another epoch, or pruned) and starts over, as the WebSocket's ``subscribed`` does."""
    since = param("since")
    if since is not None and parse_event_id(since) is None:
        raise BadRequest(
            "query parameter 'since' must be an event id this hub gave out",
            {"since": ["Not an event id."]},
        )
    page = current_context().store.events(
        project=param("project"),
        deployment_id=param("deployment_id"),
        since=since,
        limit=limit(100),
    )
    return jsonify(
        {"events": page.items, "next_cursor": page.next_cursor, "recovered": page.recovered}
    )
