"""How SQLite's failures on reads reach the web layer: as the store's own error."""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from storage.store import StoreUnavailable

P = ParamSpec("P")
T = TypeVar("T")


def read_errors(method: Callable[P, T]) -> Callable[P, T]:
    """SQLite failures on reads surface as :class:`StoreUnavailable` (503), as on writes."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return method(*args, **kwargs)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"read failed: {exc}") from exc

    return wrapper
