"""A shields.io-style README badge with the status of a project's latest deployment."""

from __future__ import annotations

import math
import re
import time
import unicodedata
from html import escape

from flask import Blueprint, Response, request

from app.auth import check_read_token
from app.context import current_context
from app.query import bounded, param
from ledger.staleness import mark_stale

badge_routes = Blueprint("badge", __name__)

BADGE_COLOURS = {
    "success": "#2e7d32",
    "failure": "#c62828",
    "running": "#1565c0",
    "pending": "#616161",
    "cancelled": "#616161",
    "skipped": "#616161",
    "stale": "#9e6a03",
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


@badge_routes.get("/api/projects/<path:project>/badge.svg")
def badge(project: str) -> Response:
    """The status of ``project``'s latest deployment, as an image for a README."""
    settings = current_context().settings
    check_read_token(request.headers, request.args.get("token"), settings.read_tokens)
    bounded("project", "project", project)
    label = param("label") or project
    page = current_context().store.list_deployments(
        project=project, status=None, branch=None, limit=1, cursor=None
    )
    if page.items:
        latest = mark_stale(page.items[0], time.time(), settings.stale_after)
        status = "stale" if latest["stale"] else latest["status"]
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
