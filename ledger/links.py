"""Links into the dashboard: one spelling, shared by the API, alerts and the command line.

The dashboard routes by URL fragment (``app/static/js/main.js``), so a link
is relative to the page, whatever prefix it is served under.  A log line's
link opens its deployment with the line's step expanded, scrolled to the
line and highlighted; the line id alone would do, the job and step only save
the page a lookup.
"""

from __future__ import annotations

from urllib.parse import quote, urlencode


def deployment_link(deployment_id: str) -> str:
    """The dashboard's page of a deployment."""
    return f"#/deployments/{quote(deployment_id, safe='')}"


def line_link(deployment_id: str, job: str | None, step: str | None, line_id: str) -> str:
    """The dashboard's page of a deployment, opened at one log line."""
    query = {key: value for key, value in (("job", job), ("step", step)) if value is not None}
    query["line"] = line_id
    return f"{deployment_link(deployment_id)}?{urlencode(query, quote_via=quote)}"


def absolute(base: str, link: str) -> str:
    """``link`` under the dashboard's public address ``base`` (as is when ``base`` is empty):
    ``https://ci.example.com/project-dashboard/`` + ``#/deployments/...``."""
    if not base:
        return link
    return base.split("#", 1)[0] + link
