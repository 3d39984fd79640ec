"""Reading a long deployment listing page by page, through any store."""

from __future__ import annotations

from collections.abc import Iterator

from ledger.view import ListRow
from storage.store import Store

#: Rows asked for per page.
PAGE_SIZE = 500
#: Most deployments a store that reads a window row by row reads for one answer.
MAX_WINDOW_DEPLOYMENTS = 5000


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
