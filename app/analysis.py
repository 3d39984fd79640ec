"""Log analysis routes: failures by signature, log search, step trends.

``GET /api/deployments/<id>`` carries a deployment's own ``failure`` and
``eta`` (``app/api.py``, with :func:`deployment_extras`); these routes look
across deployments.  Parameters are parsed strictly (``app/query.py``); a log
search query that cannot be run is a 422 ``invalid_query`` whose message says
what to change.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Blueprint, Response, jsonify, request

from app.auth import check_read_token
from app.context import current_context
from app.errors import BadRequest, InvalidQuery
from app.query import one_of, param, timestamp, whole_number
from ledger.events import LOG_LEVELS
from ledger.failures import FailureView
from ledger.links import line_link
from ledger.search import MAX_QUERY_LENGTH, LogSearch, QueryError, parse_query
from ledger.timestamps import format_timestamp
from ledger.trends import ETA_HISTORY, eta, step_trends, window_bounds
from ledger.view import DeploymentView
from storage.store import Store

analysis = Blueprint("analysis", __name__)

MAX_WINDOW_DAYS = 365
DEFAULT_WINDOW_DAYS = 30
#: Most search results per page.
MAX_SEARCH_LIMIT = 200
#: At most this many deployments are read for one trends answer (``truncated`` says when
#: more were left).
MAX_TREND_DEPLOYMENTS = 5000


@analysis.before_request
def _read_access() -> None:
    settings = current_context().settings
    check_read_token(request.headers, request.args.get("token"), settings.read_tokens)


def _days() -> int:
    return whole_number("days", default=DEFAULT_WINDOW_DAYS, low=1, high=MAX_WINDOW_DAYS)


def _limit(default: int, high: int) -> int:
    return whole_number("limit", default=default, low=1, high=high)


@analysis.get("/failures")
def failures() -> Response:
    """Failed deployments of the window grouped by signature, most frequent first."""
    since = format_timestamp(datetime.now(UTC) - timedelta(days=_days()))
    try:
        page = current_context().store.failures(
            project=param("project"), since=since, limit=_limit(50, 500), cursor=param("cursor")
        )
    except ValueError as exc:
        raise BadRequest(str(exc), {"cursor": [str(exc)]}) from None
    return jsonify({"items": page.items, "next_cursor": page.next_cursor})


@analysis.get("/logs/search")
def search_logs() -> Response:
    """Log lines matching ``q`` (words, "phrases", prefix*), newest first."""
    raw = request.args.get("q", "")
    if not raw.strip():
        raise InvalidQuery(
            "give a query in 'q': words, \"quoted phrases\" or prefix*",
            {"q": ["Missing or empty."]},
        )
    if len(raw) > MAX_QUERY_LENGTH:
        message = f"the query is longer than {MAX_QUERY_LENGTH} characters"
        raise InvalidQuery(message, {"q": [message]})
    try:
        query = parse_query(raw)
    except QueryError as exc:
        raise InvalidQuery(f"cannot search for {raw!r}: {exc}", {"q": [str(exc)]}) from None
    search = LogSearch(
        query,
        project=param("project"),
        deployment_id=param("deployment_id"),
        job=param("job"),
        step=param("step"),
        level=one_of("level", LOG_LEVELS),
        since=timestamp("since"),
        until=timestamp("until"),
    )
    try:
        page = current_context().store.search_logs(
            search, limit=_limit(50, MAX_SEARCH_LIMIT), cursor=param("cursor")
        )
    except ValueError as exc:
        raise BadRequest(str(exc), {"cursor": [str(exc)]}) from None
    items = [
        {**item, "link": line_link(item["deployment_id"], item["job"], item["step"], item["id"])}
        for item in page.items
    ]
    return jsonify({"items": items, "next_cursor": page.next_cursor, "truncated": page.truncated})


@analysis.get("/steps")
def steps() -> Response:
    """Each step's runs, failures, flaky runs and durations, against the window before."""
    days = _days()
    now = datetime.now(UTC)
    start, middle = window_bounds(now, days)
    runs, truncated = current_context().store.step_runs(
        project=param("project"), since=start, limit=MAX_TREND_DEPLOYMENTS
    )
    return jsonify(
        {
            "window": {"from": middle, "to": format_timestamp(now), "days": days},
            "previous_window": {"from": start, "to": middle, "days": days},
            "steps": step_trends(runs, start=start, middle=middle),
            "truncated": truncated,
        }
    )


def deployment_extras(store: Store, view: DeploymentView) -> dict[str, Any]:
    """``failure`` (with a link to its line) and ``eta`` of a deployment's view."""
    failure: FailureView | None = None
    if view["status"] == "failure":
        failure = store.failure(view["deployment_id"])
    answer: dict[str, Any] = {"failure": failure, "eta": None}
    if failure is not None:
        deployment_id = view["deployment_id"]
        answer["failure"] = {
            **_linked(deployment_id, failure),
            "steps": [_linked(deployment_id, step) for step in failure["steps"]],
        }
    if view["status"] in ("running", "pending"):
        history, _ = store.recent_folds(
            project=view["project"], status="success", since="", limit=ETA_HISTORY
        )
        answer["eta"] = eta(view, history, datetime.now(UTC))
    return answer


def _linked(deployment_id: str, part: Any) -> dict[str, Any]:
    """A failure (or one of its steps) whose line carries its link."""
    line = part["line"]
    if line is None:
        return dict(part)
    link = line_link(deployment_id, line["job"], line["step"], line["id"])
    return {**part, "line": {**line, "link": link}}
