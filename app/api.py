"""The read-only JSON API of CONTRACT.md "Read API".

Query strings are parsed strictly: a bad ``limit``, ``status`` or cursor is a
400 that names the parameter, never a silently different answer.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from app.auth import check_read_token
from app.context import current_hub
from app.errors import BadRequest, NotFound
from ledger.events import STATUSES

api = Blueprint("api", __name__)


@api.before_request
def _read_access() -> None:
    check_read_token(request.headers, request.args.get("token"), current_hub().settings.read_tokens)


MAX_LIMIT = 1000
MAX_PARAM_LENGTH = 200


def _param(name: str) -> str | None:
    value = request.args.get(name)
    if value is None or value == "":
        return None
    if len(value) > MAX_PARAM_LENGTH:
        raise BadRequest(
            f"query parameter {name!r} is too long",
            {name: [f"At most {MAX_PARAM_LENGTH} characters."]},
        )
    return value


def _limit(default: int) -> int:
    raw = _param("limit")
    if raw is None:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise BadRequest(
            f"query parameter 'limit' must be a whole number from 1 to {MAX_LIMIT}",
            {"limit": [f"Must be between 1 and {MAX_LIMIT}."]},
        )
    return int(raw)


@api.get("/deployments")
def list_deployments() -> Response:
    status = _param("status")
    if status is not None and status not in STATUSES:
        raise BadRequest(
            f"unknown status {status!r}", {"status": [f"Must be one of: {', '.join(STATUSES)}."]}
        )
    try:
        page = current_hub().store.list_deployments(
            project=_param("project"),
            status=status,
            branch=_param("branch"),
            limit=_limit(50),
            cursor=_param("cursor"),
        )
    except ValueError as exc:
        raise BadRequest(str(exc), {"cursor": [str(exc)]}) from None
    return jsonify({"deployments": page.items, "next_cursor": page.next_cursor})


@api.get("/deployments/<path:deployment_id>")
def get_deployment(deployment_id: str) -> Response:
    view = current_hub().store.get_deployment(deployment_id)
    if view is None:
        raise NotFound(f"no deployment {deployment_id!r}")
    return jsonify(view)


@api.get("/deployments/<path:deployment_id>/logs")
def deployment_logs(deployment_id: str) -> Response:
    store = current_hub().store
    after = _param("after")
    if after is not None and not after.isdigit():
        raise BadRequest(
            "query parameter 'after' must be a log line id", {"after": ["Not a log line id."]}
        )
    if store.get_deployment(deployment_id) is None:
        raise NotFound(f"no deployment {deployment_id!r}")
    page = store.logs(
        deployment_id, job=_param("job"), step=_param("step"), after=after, limit=_limit(500)
    )
    return jsonify({"lines": page.items, "next_cursor": page.next_cursor})


@api.get("/projects")
def list_projects() -> Response:
    return jsonify({"projects": current_hub().store.projects()})


@api.get("/events")
def list_events() -> Response:
    page = current_hub().store.events(
        project=_param("project"),
        deployment_id=_param("deployment_id"),
        since=_param("since"),
        limit=_limit(100),
    )
    return jsonify({"events": page.items, "next_cursor": page.next_cursor})
