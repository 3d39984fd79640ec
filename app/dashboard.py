"""The web dashboard: its page and its static files.

The page is plain files under ``app/static`` (no build step): it reads the JSON
API and listens on ``/ws`` like any other client, so the hub needs nothing
page-specific beyond what is here.  Files are served under a path that holds
a hash of their content (``static/<version>/js/main.js``), so browsers may keep
them for a year and still never run a stale file after an upgrade; relative
imports between modules stay inside that versioned path by themselves.  The
page itself is never cached without revalidation and carries a
Content-Security-Policy that runs only this origin's scripts and no inline
code, so a log line that smuggles markup can at worst be shown as text.

The README badge is ``app/badge.py``; the delivery metrics the page charts
are ``app/delivery_metrics.py``.
"""

from __future__ import annotations

import functools
import hashlib
import re
from pathlib import Path

from flask import Blueprint, Response, request, send_from_directory

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
