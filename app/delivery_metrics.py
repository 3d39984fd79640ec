"""``GET /api/delivery-metrics``: the delivery figures of ``ledger/delivery.py`` over a window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flask import Blueprint, Response, jsonify, request

from app.auth import check_read_token
from app.context import current_context
from app.query import param, time_zone, whole_number
from ledger.delivery import summarise_window
from ledger.environments import stage_rank
from ledger.timestamps import format_timestamp

delivery_routes = Blueprint("delivery_metrics", __name__)

MAX_WINDOW_DAYS = 365
DEFAULT_WINDOW_DAYS = 30


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
    answer = context.store.delivery_window(
        project=param("project"),
        since=format_timestamp(start),
        zone=zone,
        asked=param("environment"),
    )
    summary = summarise_window(answer.window, start=start, end=end, zone=zone, zone_name=zone_name)
    return jsonify(
        {
            **summary,
            "environment": answer.environment,
            "environments": sorted(answer.environments, key=stage_rank),
            "truncated": answer.truncated,
        }
    )
