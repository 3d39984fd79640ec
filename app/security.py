"""Browser-facing safety headers on every response the hub sends.

The API answers JSON that no browser should sniff as HTML, frame, or run
scripts from, so JSON, text and event streams get a deny-everything
``Content-Security-Policy``.  An HTML page (the dashboard) sets its own policy
for what it loads; it is never overridden, and a page without one still gets
``frame-ancestors 'none'`` so that it cannot be framed for clickjacking.
"""

from __future__ import annotations

#: Added to every response that does not already carry them.
BASE_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
)
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
PAGE_CSP = "frame-ancestors 'none'"


def add_security_headers(headers: list[tuple[str, str]]) -> None:
    """Add the missing safety headers to a WSGI header list, in place."""
    present = {name.lower() for name, _ in headers}
    for name, value in BASE_HEADERS:
        if name.lower() not in present:
            headers.append((name, value))
    if "content-security-policy" not in present:
        content_type = next((v for k, v in headers if k.lower() == "content-type"), "")
        html = content_type.lower().startswith("text/html")
        headers.append(("Content-Security-Policy", PAGE_CSP if html else API_CSP))
