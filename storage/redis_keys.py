"""Small helpers every module of the Redis store uses on its keys and locks."""

from __future__ import annotations

import contextlib
from typing import Any

import redis


def glob(text: str) -> str:
    """``text`` matched literally by a ``SCAN MATCH`` pattern."""
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)


def release(lock: Any) -> None:
    """Release a lock that may have expired meanwhile (then it is already free)."""
    with contextlib.suppress(redis.exceptions.LockError):
        lock.release()
