"""Which store a URL names: the one place a store is made."""

from __future__ import annotations

from typing import Any

from storage.store import Store


def create_store(url: str, **options: Any) -> Store:
    """A store for ``sqlite:///path`` (relative), ``sqlite:////abs/path``, ``memory://``
    or ``redis://host:port/db[?prefix=name]`` (``rediss://`` for TLS).
    """
    from storage.sqlite_store import SqliteStore

    if url.startswith("sqlite:///"):
        return SqliteStore(url.removeprefix("sqlite:///"), **options)
    if url == "memory://":
        return SqliteStore(":memory:", **options)
    if url.startswith(("redis://", "rediss://")):
        from storage.redis_store import RedisStore

        options.pop("synchronous", None)  # SQLite's; Redis persistence is its own config
        return RedisStore(url, **options)
    raise ValueError(
        f"unsupported store URL {url!r}: use sqlite:///path, memory:// or redis://host:port/db"
    )
