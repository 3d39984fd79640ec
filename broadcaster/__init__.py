"""Everything fan-out: the store interface, the in-process hub, WebSocket and SSE."""

from broadcaster.backend import (
    Accepted,
    Batch,
    History,
    Page,
    Store,
    StoreUnavailable,
    create_store,
)
from ledger.filters import Filter

__all__ = [
    "Accepted",
    "Batch",
    "Filter",
    "History",
    "Page",
    "Store",
    "StoreUnavailable",
    "create_store",
]
