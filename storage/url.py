"""The store URL, parsed once into the one value that everything else reads.

Start-up validation, the store factory and the Redis client all used to take
the URL apart on their own, with three wordings of the same error; now
:meth:`StoreURL.parse` is the only place that knows the syntax.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

#: Redis keys of a store start with this unless the URL says ``?prefix=``.
DEFAULT_REDIS_PREFIX = "hub"
SUPPORTED = "sqlite:///relative/path, sqlite:////absolute/path, memory:// or redis://host:port/db"


class BadStoreURL(ValueError):
    """The URL names no store the hub can open; the message says what is wrong."""


@dataclass(frozen=True, slots=True)
class StoreURL:
    """Which store, and where.

    ``kind`` is ``sqlite`` (``path`` is the database file), ``memory`` (an
    in-memory SQLite database, one process only) or ``redis`` (``redis_url``
    without the hub's own ``prefix`` parameter, which is ``prefix``).
    """

    kind: Literal["sqlite", "memory", "redis"]
    raw: str
    path: str = ""
    redis_url: str = ""
    prefix: str = DEFAULT_REDIS_PREFIX

    @classmethod
    def parse(cls, url: str) -> StoreURL:
        """Raise :class:`BadStoreURL` saying what is wrong (passwords never shown)."""
        if url == "memory://":
            return cls("memory", url, path=":memory:")
        if url.startswith("sqlite:///"):
            path = url.removeprefix("sqlite:///")
            if not path or path.endswith("/"):
                raise BadStoreURL(f"{url!r} names no database file")
            return cls("sqlite", url, path=path)
        if url.startswith(("redis://", "rediss://")):
            return cls._redis(url)
        raise BadStoreURL(f"{redacted(url)!r} is not supported: use {SUPPORTED}")

    @classmethod
    def _redis(cls, url: str) -> StoreURL:
        parts = urlsplit(url)
        shown = redacted(url)
        if not parts.hostname:
            raise BadStoreURL(f"{shown!r} names no Redis host")
        try:
            parts.port  # noqa: B018 - reading it is the check: a bad port raises
        except ValueError:
            raise BadStoreURL(
                f"{shown!r} has a port that is not a number from 0 to 65535"
            ) from None
        database = parts.path.strip("/")
        if database and not database.isdigit():
            raise BadStoreURL(f"{shown!r}: the Redis database must be a number, not {database!r}")
        query = parse_qsl(parts.query, keep_blank_values=True)
        prefix = next((value for name, value in query if name == "prefix"), "")
        rest = urlencode([(name, value) for name, value in query if name != "prefix"])
        return cls(
            "redis",
            url,
            redis_url=urlunsplit(parts._replace(query=rest)),
            prefix=prefix or DEFAULT_REDIS_PREFIX,
        )

    @property
    def shared(self) -> bool:
        """Whether several processes can use the store (``memory://`` is one process's)."""
        return self.kind != "memory"

    def __str__(self) -> str:
        return redacted(self.raw)


def redacted(url: str) -> str:
    """``url`` fit for a message or a log line: credentials replaced by ``***``."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc=f"***@{parts.netloc.rpartition('@')[2]}").geturl()
