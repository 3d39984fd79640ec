"""Which store a URL names: the one place a store is made."""

from __future__ import annotations

from ledger.retention import Retention
from storage.store import Store, StoreHooks
from storage.url import StoreURL


def create_store(
    url: StoreURL,
    *,
    synchronous: str = "NORMAL",
    retention: Retention | None = None,
    hooks: StoreHooks | None = None,
) -> Store:
    """The store ``url`` names: SQLite (a file, or ``memory://``) or Redis.

    ``synchronous`` is SQLite's; Redis persistence is Redis's own configuration.
    """
    if url.kind == "redis":
        from storage.redis_store import RedisStore

        return RedisStore(url, retention=retention, hooks=hooks)
    from storage.sqlite_store import SqliteStore

    return SqliteStore(url.path, synchronous=synchronous, retention=retention, hooks=hooks)
