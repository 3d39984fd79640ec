"""The web dashboard: its page, its static files, a README badge and delivery metrics.

The page is plain files under ``app/static`` (no build step): it reads the JSON
API and listens on ``/ws`` like any other client, so the hub needs nothing
page-specific beyond what is here.  Files are served under a path that holds
a hash of their content (``static/<version>/js/main.js``), so browsers may keep
them for a year and still never run a stale file after an upgrade; relative
imports between modules stay inside that versioned path by themselves.  The
page itself is never cached without revalidation and carries a
Content-Security-Policy that runs only this origin's scripts and no inline
code, so a log line that smuggles markup can at worst be shown as text.

Delivery metrics (deployment frequency, change failure rate, time to restore,
duration percentiles) are computed here rather than in the browser so that the
page makes one bounded request instead of paging through every deployment.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
import statistics
import unicodedata
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from html import escape
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, jsonify, request, send_from_directory

from app.api import MAX_PARAM_LENGTH, _param
from app.auth import check_read_token
from app.context import current_hub
from app.errors import BadRequest
from ledger.events import format_timestamp, parse_timestamp
from storage.store import Store

dashboard = Blueprint("dashboard", __name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
#: What the page may load: its own scripts, styles and connections (``/ws`` included).
PAGE_CSP = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
IMMUTABLE_MAX_AGE = 365 * 86400
_VERSION_RE = re.compile(r"[0-9a-f]{12}")


@functools.cache
def asset_version() -> str:
    """A hash of every static file: it changes whenever any of them does."""
    digest = hashlib.sha256()
    for path in sorted(p for p in STATIC_DIR.rglob("*") if p.is_file()):
        digest.update(path.relative_to(STATIC_DIR).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


@functools.cache
def _page_body() -> bytes:
    html = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    return html.replace("{{assets}}", f"static/{asset_version()}").encode()


@dashboard.get("/")
def page() -> Response:
    """The single page; it routes by the URL fragment, so one path serves every view."""
    response = Response(_page_body(), mimetype="text/html")
    response.headers["Content-Security-Policy"] = PAGE_CSP
    response.headers["Cross-Origin-Opener-Policy"] = "same-origin"
    response.cache_control.no_cache = True
    response.add_etag()
    response.make_conditional(request)
    return response


@dashboard.get("/static/<path:filename>")
def asset(filename: str) -> Response:
    """A static file; under the current version prefix it may be cached for good."""
    version, _, rest = filename.partition("/")
    immutable = False
    if rest and _VERSION_RE.fullmatch(version):
        filename, immutable = rest, version == asset_version()
    response = send_from_directory(STATIC_DIR, filename, max_age=IMMUTABLE_MAX_AGE)
    if immutable:
        response.cache_control.immutable = True
    else:  # unversioned, or a page from before an upgrade: always revalidate
        response.cache_control.max_age = None
        response.cache_control.public = False
        response.cache_control.no_cache = True
    return response


# -- the README badge ----------------------------------------------------------------------

BADGE_COLOURS = {
    "success": "#2e7d32",
    "failure": "#c62828",
    "running": "#1565c0",
    "pending": "#616161",
    "cancelled": "#616161",
    "skipped": "#616161",
}
BADGE_NO_DEPLOYMENT = ("no deployments", "#616161")
MAX_BADGE_LABEL = 40
BADGE_MAX_AGE = 30
#: Characters XML 1.0 does not allow (ANSI escapes in a project name would break the SVG).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _text_width(text: str) -> int:
    """About how wide Verdana 11px draws ``text``; wide East Asian characters count double."""
    width = 0.0
    for char in text:
        if unicodedata.east_asian_width(char) in ("W", "F"):
            width += 11
        elif char in "ijlI.,:;!|'()[] ":
            width += 3.7
        elif char.isupper() or char in "mwMW@%":
            width += 8.2
        else:
            width += 6.6
    return math.ceil(width)


def badge_svg(label: str, message: str, colour: str) -> str:
    """A shields.io-style "flat" badge; both texts are cleaned and escaped."""
    label, message = (_NOT_XML.sub("", text) for text in (label, message))
    if len(label) > MAX_BADGE_LABEL:
        label = label[: MAX_BADGE_LABEL - 1] + "…"
    left, right = _text_width(label) + 12, _text_width(message) + 12
    total = left + right
    title = escape(f"{label}: {message}")
    label, message = escape(label), escape(message)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{total}" height="20" role="img" '
        f'aria-label="{title}"><title>{title}</title>'
        '<linearGradient id="s" x2="0" y2="100%"><stop offset="0" stop-color="#bbb" '
        'stop-opacity=".1"/><stop offset="1" stop-opacity=".1"/></linearGradient>'
        f'<clipPath id="r"><rect width="{total}" height="20" rx="3" fill="#fff"/></clipPath>'
        f'<g clip-path="url(#r)"><rect width="{left}" height="20" fill="#555"/>'
        f'<rect x="{left}" width="{right}" height="20" fill="{colour}"/>'
        f'<rect width="{total}" height="20" fill="url(#s)"/></g>'
        '<g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif" '
        'text-rendering="geometricPrecision" font-size="11">'
        f'<text x="{left / 2}" y="15" fill="#010101" fill-opacity=".3">{label}</text>'
        f'<text x="{left / 2}" y="14">{label}</text>'
        f'<text x="{left + right / 2}" y="15" fill="#010101" fill-opacity=".3">{message}</text>'
        f'<text x="{left + right / 2}" y="14">{message}</text></g></svg>'
    )


@dashboard.get("/api/projects/<path:project>/badge.svg")
def badge(project: str) -> Response:
    """The status of ``project``'s latest deployment, as an image for a README."""
    settings = current_hub().settings
    check_read_token(request.headers, request.args.get("token"), settings.read_tokens)
    _check_length("project", project)
    label = _param("label") or project
    page = current_hub().store.list_deployments(
        project=project, status=None, branch=None, limit=1, cursor=None
    )
    if page.items:
        status = page.items[0]["status"]
        message, colour = status, BADGE_COLOURS.get(status, "#616161")
    else:
        message, colour = BADGE_NO_DEPLOYMENT
    response = Response(badge_svg(label, message, colour), mimetype="image/svg+xml")
    response.cache_control.max_age = BADGE_MAX_AGE
    if settings.read_tokens:
        response.cache_control.private = True
    else:
        response.cache_control.public = True
    response.add_etag()
    response.make_conditional(request)
    return response


def _check_length(name: str, value: str) -> None:
    if len(value) > MAX_PARAM_LENGTH:
        raise BadRequest(f"{name} is too long", {name: [f"At most {MAX_PARAM_LENGTH} characters."]})


# -- delivery metrics ------------------------------------------------------------------------

MAX_WINDOW_DAYS = 365
DEFAULT_WINDOW_DAYS = 30
#: At most this many deployments are read for one answer (``truncated`` says when more).
MAX_DEPLOYMENTS = 5000
_PAGE_SIZE = 500


@dashboard.get("/api/delivery-metrics")
def delivery_metrics() -> Response:
    """Deployment frequency, change failure rate, time to restore and durations, per project."""
    hub = current_hub()
    check_read_token(request.headers, request.args.get("token"), hub.settings.read_tokens)
    raw_days = _param("days")
    if raw_days is None:
        days = DEFAULT_WINDOW_DAYS
    elif raw_days.isdigit() and 1 <= int(raw_days) <= MAX_WINDOW_DAYS:
        days = int(raw_days)
    else:
        raise BadRequest(
            f"query parameter 'days' must be a whole number from 1 to {MAX_WINDOW_DAYS}",
            {"days": [f"Must be between 1 and {MAX_WINDOW_DAYS}."]},
        )
    end = datetime.now(UTC)
    start = end - timedelta(days=days)
    rows, truncated = deployments_since(hub.store, _param("project"), format_timestamp(start))
    return jsonify({**summarise(rows, start=start, end=end), "truncated": truncated})


def deployments_since(
    store: Store, project: str | None, start: str
) -> tuple[list[dict[str, Any]], bool]:
    """Deployments started at or after ``start``, newest first, and whether more were left."""
    rows: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = store.list_deployments(
            project=project, status=None, branch=None, limit=_PAGE_SIZE, cursor=cursor
        )
        for row in page.items:
            if (row.get("started_at") or "") < start:
                return rows, False
            if len(rows) == MAX_DEPLOYMENTS:
                return rows, True
            rows.append(row)
        if page.next_cursor is None:
            return rows, False
        cursor = page.next_cursor


def summarise(rows: list[dict[str, Any]], *, start: datetime, end: datetime) -> dict[str, Any]:
    """The metrics of deployment rows (as the list API gives them) over ``start..end``."""
    days = max((end - start).total_seconds() / 86400, 1e-9)
    by_project: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_project.setdefault(row["project"], []).append(row)
    return {
        "window": {
            "from": format_timestamp(start),
            "to": format_timestamp(end),
            "days": round(days, 3),
        },
        "daily": _daily(rows, start, end),
        "overall": _project_metrics(rows, days),
        "projects": [
            {"project": name, **_project_metrics(members, days)}
            for name, members in sorted(by_project.items())
        ],
    }


def _daily(rows: Iterable[dict[str, Any]], start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Deployments started on each UTC day of the window, by outcome."""
    counts: dict[str, Counter[str]] = {}
    day = start.date()
    while day <= end.date():
        counts[day.isoformat()] = Counter()
        day += timedelta(days=1)
    for row in rows:
        bucket = counts.get(str(row.get("started_at") or "")[:10])
        if bucket is not None:
            bucket[_outcome(row["status"])] += 1
    return [
        {"date": date, **{o: c[o] for o in ("success", "failure", "other")}}
        for date, c in counts.items()
    ]


def _outcome(status: str) -> str:
    return status if status in ("success", "failure") else "other"


def _project_metrics(rows: list[dict[str, Any]], days: float) -> dict[str, Any]:
    statuses = Counter(row["status"] for row in rows)
    decided = statuses["success"] + statuses["failure"]
    restores, open_since = _restores(rows)
    durations = sorted(
        row["duration_ms"]
        for row in rows
        if row["status"] in ("success", "failure") and row.get("duration_ms") is not None
    )
    return {
        "deployments": len(rows),
        "per_day": round(len(rows) / days, 3),
        "statuses": {status: statuses[status] for status in sorted(statuses)},
        "change_failure_rate": round(statuses["failure"] / decided, 4) if decided else None,
        "time_to_restore_ms": {
            "count": len(restores),
            "median": round(statistics.median(restores)) if restores else None,
            "mean": round(statistics.fmean(restores)) if restores else None,
            "max": max(restores) if restores else None,
        },
        "failing_since": open_since,
        "duration_ms": {
            "count": len(durations),
            **{f"p{p}": _percentile(durations, p) for p in (50, 90, 95)},
        },
    }


def _restores(rows: list[dict[str, Any]]) -> tuple[list[int], str | None]:
    """Milliseconds from each first failure to the next success, and the oldest open failure.

    Each project's deployments are taken in completion order; a run of failures
    counts once, from its first failure, as the one outage it is.
    """
    ended = sorted(
        (row["project"], row["completed_at"], row["status"])
        for row in rows
        if row["status"] in ("success", "failure") and row.get("completed_at")
    )
    restores: list[int] = []
    still_failing: list[str] = []
    failing_since: str | None = None
    for index, (project, completed_at, status) in enumerate(ended):
        if status == "failure" and failing_since is None:
            failing_since = completed_at
        elif status == "success" and failing_since is not None:
            delta = parse_timestamp(completed_at) - parse_timestamp(failing_since)
            restores.append(round(delta.total_seconds() * 1000))
            failing_since = None
        last_of_project = index + 1 == len(ended) or ended[index + 1][0] != project
        if last_of_project and failing_since is not None:
            still_failing.append(failing_since)
        if last_of_project:
            failing_since = None
    return restores, min(still_failing, default=None)


def _percentile(ordered: list[int], percent: int) -> int | None:
    """Nearest-rank percentile: always one of the measured values."""
    if not ordered:
        return None
    return ordered[max(0, math.ceil(percent / 100 * len(ordered)) - 1)]
