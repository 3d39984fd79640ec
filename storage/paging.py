"""Reading a long deployment listing page by page, through any store."""

from __future__ import annotations

from collections.abc import Iterator

from ledger.view import ListRow
from storage.store import Page, Store

#: Rows asked for per page.
PAGE_SIZE = 500
#: Most deployments a store that reads a window row by row reads for one answer.
MAX_WINDOW_DEPLOYMENTS = 5000
#: Rows one ``environment=`` listing filtered row by row reads at most, and how many per read.
MAX_ENVIRONMENT_SCAN = 5000
ENVIRONMENT_SCAN_PAGE = 200


def deployments(
    store: Store,
    *,
    project: str | None = None,
    status: str | None = None,
    most: int,
    page_size: int | None = None,
) -> Iterator[ListRow]:
    """Deployment rows newest first, as ``list_deployments`` gives them, at most ``most``."""
    size = page_size or PAGE_SIZE
    cursor = None
    seen = 0
    while seen < most:
        page = store.list_deployments(
            project=project,
            status=status,
            branch=None,
            limit=min(size, most - seen),
            cursor=cursor,
        )
        yield from page.items
        seen += len(page.items)
        cursor = page.next_cursor
        if cursor is None:
            return


def deployments_since(store: Store, project: str | None, start: str) -> tuple[list[ListRow], bool]:
    """Deployments started at or after ``start``, newest first, at most
    :data:`MAX_WINDOW_DEPLOYMENTS`, and whether more were left."""
    most = MAX_WINDOW_DEPLOYMENTS
    rows: list[ListRow] = []
    for row in deployments(store, project=project, most=most + 1):
        if (row.get("started_at") or "") < start:
            return rows, False
        if len(rows) == most:
            return rows, True
        rows.append(row)
    return rows, False


def newest_deployments(store: Store, project: str | None) -> tuple[list[ListRow], bool]:
    """The newest :data:`MAX_WINDOW_DEPLOYMENTS` deployment rows, and whether there were
    more."""
    rows = list(deployments(store, project=project, most=MAX_WINDOW_DEPLOYMENTS + 1))
    return rows[:MAX_WINDOW_DEPLOYMENTS], len(rows) > MAX_WINDOW_DEPLOYMENTS


def in_environment(
    store: Store,
    environment: str,
    *,
    project: str | None,
    status: str | None,
    branch: str | None,
    limit: int,
    cursor: str | None,
) -> Page[ListRow]:
    """A page of the deployments to ``environment``, filtered from the unfiltered listing:
    for a store without an index by environment.

    Reads the store's listing newest first, :data:`ENVIRONMENT_SCAN_PAGE` rows at a
    time, and at most :data:`MAX_ENVIRONMENT_SCAN` rows for one answer: when it
    stops there, the page holds fewer than ``limit`` rows and ``next_cursor``
    goes on from where it stopped.  When a read holds more matches than fit,
    the read is repeated up to the last row that fits, so the cursor the store
    hands out continues right after it.
    """
    found: list[ListRow] = []
    scanned = 0
    while True:
        page = store.list_deployments(
            project=project,
            status=status,
            branch=branch,
            limit=ENVIRONMENT_SCAN_PAGE,
            cursor=cursor,
        )
        matches = [i for i, row in enumerate(page.items) if row.get("environment") == environment]
        need = limit - len(found)
        if len(matches) >= need:
            last = matches[need - 1]
            if last + 1 < len(page.items):
                page = store.list_deployments(
                    project=project, status=status, branch=branch, limit=last + 1, cursor=cursor
                )
            found += [row for row in page.items if row.get("environment") == environment]
            return Page(found[:limit], page.next_cursor)
        found += [page.items[i] for i in matches]
        scanned += len(page.items)
        cursor = page.next_cursor
        if cursor is None or scanned >= MAX_ENVIRONMENT_SCAN:
            return Page(found, cursor)
