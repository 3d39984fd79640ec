"""``GET /api/delivery-metrics``: the delivery figures of ``ledger/delivery.py`` over a window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flask import Blueprint, Response, jsonify, request

from app.auth import check_read_token
from app.context import current_context
from app.query import param, time_zone, whole_number
from ledger.delivery import summarise
from ledger.environments import default_environment, in_environment, stage_rank
from ledger.timestamps import format_timestamp
from ledger.view import ListRow
from storage import paging
from storage.store import Store

delivery_routes = Blueprint("delivery_metrics", __name__)

MAX_WINDOW_DAYS = 365
DEFAULT_WINDOW_DAYS = 30
#: At most this many deployments are read for one answer (``truncated`` says when more).
MAX_DEPLOYMENTS = 5000
#: ``environment=*``: every deployment counts, whatever its environment.
ALL_ENVIRONMENTS = "*"


@delivery_routes.get("/api/delivery-metrics")
def delivery_metrics() -> Response:
    """Deployment frequency, change failure rate, time to restore and durations, per project.

    ``environment=`` restricts them to the deployments to one environment; without it,
    to ``production`` when the window has deployments there, else none is left out
    (``environment=*``: every deployment, whatever its environment).  ``daily`` counts
    the days of the time zone ``tz`` or ``utc_offset`` names (UTC by default).
    """
    context = current_context()
    check_read_token(request.headers, request.args.get("token"), context.settings.read_tokens)
    days = whole_number("days", default=DEFAULT_WINDOW_DAYS, low=1, high=MAX_WINDOW_DAYS)
    zone, zone_name = time_zone()
    end = datetime.now(UTC)
    start = end - timedelta(days=days)
    rows, truncated = deployments_since(context.store, param("project"), format_timestamp(start))
    asked = param("environment")
    environment = (
        None if asked == ALL_ENVIRONMENTS else asked if asked else default_environment(rows)
    )
    names = sorted({e for row in rows if (e := row.get("environment"))}, key=stage_rank)
    summary = summarise(
        in_environment(rows, environment), start=start, end=end, zone=zone, zone_name=zone_name
    )
    return jsonify(
        {
            **summary,
            "environment": environment,
            "environments": names,
            "truncated": truncated,
        }
    )


def deployments_since(store: Store, project: str | None, start: str) -> tuple[list[ListRow], bool]:
    """Deployments started at or after ``start``, newest first, and whether more were left."""
    rows: list[ListRow] = []
    for row in paging.deployments(store, project=project, most=MAX_DEPLOYMENTS + 1):
        if (row.get("started_at") or "") < start:
            return rows, False
        if len(rows) == MAX_DEPLOYMENTS:
            return rows, True
        rows.append(row)
    return rows, False
