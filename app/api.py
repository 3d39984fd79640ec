"""The read-only JSON API of CONTRACT.md "Read API".

Query strings are parsed strictly: a bad ``limit``, ``status`` or cursor is a
400 that names the parameter, never a silently different answer.
"""

from __future__ import annotations

import re
import time
from collections import deque
from collections.abc import Iterator

import gevent
from flask import Blueprint, Response, jsonify, request

from app.analysis import deployment_extras
from app.auth import check_read_token
from app.context import current_context
from app.errors import BadRequest, NotFound
from app.query import MAX_SEQ, limit, param, whole_number
from ledger.events import STATUSES
from ledger.ids import parse_event_id
from ledger.logs import LogRow, plain_line
from ledger.staleness import mark_stale
from storage.store import Store

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


#: Lines read from the store at a time by a route that walks a whole log (``logs.txt``,
#: ``logs?before=``): what one answer holds in memory.
READ_PAGE = 1000


def _between_pages() -> None:
    """Let the worker's other greenlets run (live fan-out, other requests) between two
    pages of a long walk: SQLite's reads never yield, and a client that keeps up never
    makes a write wait."""
    gevent.sleep(0)


@api.get("/deployments/<path:deployment_id>/logs")
def deployment_logs(deployment_id: str) -> Response:
    """A page of lines after ``after``, or (``before``) the page that ends just before a line,
    with the number of its first line in the log (``first_number``)."""
    store = current_context().store
    after = whole_number("after", default=None, low=0, high=MAX_SEQ)
    before = whole_number("before", default=None, low=1, high=MAX_SEQ)
    if after is not None and before is not None:
        raise BadRequest(
            "give 'after' or 'before', not both", {"before": ["Not together with after."]}
        )
    if store.get_deployment(deployment_id) is None:
        raise NotFound(f"no deployment {deployment_id!r}")
    job, step, size = param("job"), param("step"), limit(500)
    if before is not None:
        lines, first_number, more = lines_before(store, deployment_id, job, step, before, size)
        next_cursor = str(before - 1) if more else None
        return jsonify({"lines": lines, "next_cursor": next_cursor, "first_number": first_number})
    page = store.logs(
        deployment_id,
        job=job,
        step=step,
        after=None if after is None else str(after),
        limit=size,
    )
    return jsonify({"lines": page.items, "next_cursor": page.next_cursor})


def lines_before(
    store: Store, deployment_id: str, job: str | None, step: str | None, before: int, size: int
) -> tuple[list[LogRow], int, bool]:
    """The last ``size`` lines with ids below ``before``, the number (from 1) of the first of
    them in the log, and whether lines follow.

    Lines carry ids, not numbers, so they are counted from the first, read
    :data:`READ_PAGE` at a time and only ``size`` of them kept: a link to a line
    far into a long log is answered by the hub's one walk through the store rather
    than the page's hundreds of requests, in memory bounded by the page sizes.
    """
    kept: deque[LogRow] = deque(maxlen=size)
    counted = 0
    after: str | None = None
    while True:
        page = store.logs(deployment_id, job=job, step=step, after=after, limit=READ_PAGE)
        for row in page.items:
            if int(row["id"]) >= before:
                return list(kept), counted - len(kept) + 1, True
            kept.append(row)
            counted += 1
        if page.next_cursor is None:
            return list(kept), counted - len(kept) + 1, False
        after = page.next_cursor
        _between_pages()


#: Longest file name the plain-text log suggests (before ``.log``).
MAX_FILE_NAME = 120


@api.get("/deployments/<path:deployment_id>/logs.txt")
def deployment_log_file(deployment_id: str) -> Response:
    """Every log line (of a job or step, when named) as plain text, for saving to a file.

    Streamed a page of :data:`READ_PAGE` lines at a time, so a log of a million
    lines is never held whole.  The first page is read before the answer starts: an
    unknown deployment or a store that does not answer is still a JSON error; past
    that, a store that stops answering cuts the transfer short (no last chunk), which
    a browser reports as a failed download rather than saving part of the log.
    """
    store = current_context().store
    job, step = param("job"), param("step")
    if store.get_deployment(deployment_id) is None:
        raise NotFound(f"no deployment {deployment_id!r}")
    first = store.logs(deployment_id, job=job, step=step, after=None, limit=READ_PAGE)

    def pages() -> Iterator[bytes]:
        page = first
        while True:
            yield "".join(f"{plain_line(row)}\n" for row in page.items).encode()
            if page.next_cursor is None:
                return
            _between_pages()
            page = store.logs(
                deployment_id, job=job, step=step, after=page.next_cursor, limit=READ_PAGE
            )

    response = Response(pages(), mimetype="text/plain")
    response.headers["Content-Disposition"] = (
        f'attachment; filename="{log_file_name(deployment_id, job, step)}"'
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def log_file_name(deployment_id: str, job: str | None, step: str | None) -> str:
    """``<deployment>[-<job>][-<step>].log`` in letters, digits, ``.``, ``_`` and ``-`` only,
    so the name needs no quoting in the header and is safe on every file system."""
    named = "-".join(part for part in (deployment_id, job, step) if part is not None)
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", named).strip("._-")[:MAX_FILE_NAME]
    return f"{safe or 'deployment'}.log"


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
