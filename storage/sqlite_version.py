"""Which schema an SQLite file has, and whether this code may open it.

Apart from ``storage/sqlite_store.py`` so that the start-up checks, which run
in gunicorn's master before any worker, can refuse a newer hub's file without
loading the store.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from urllib.parse import quote

#: The schema this code writes; :meth:`SqliteStore._upgrade` brings older files to it.
SCHEMA_VERSION = 3


def stamped_schema(db: sqlite3.Connection) -> int | None:
    """The schema version a file says it has (``None``: a new file, or one from before
    versions were stamped)."""
    try:
        row = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
    except sqlite3.OperationalError:  # no meta table yet
        return None
    if row is None:
        return None
    if not str(row[0]).isdigit():
        raise sqlite3.DatabaseError(f"its schema version {row[0]!r} is not a number")
    return int(row[0])


def newer_schema(path: str, found: int | None) -> str | None:
    """Why a file of schema ``found`` is refused (a newer hub wrote it), or ``None``."""
    if found is None or found <= SCHEMA_VERSION:
        return None
    return (
        f"{path} has schema {found}, written by a newer hub; this one reads schema "
        f"{SCHEMA_VERSION} and older: run the newer hub (the file was not changed)"
    )


def newer_file(path: str) -> str | None:
    """:func:`newer_schema` of the file at ``path``, read without writing; ``None`` for a
    file that does not exist or cannot be read (the store's own open says why)."""
    if not Path(path).is_file():
        return None
    try:
        with contextlib.closing(sqlite3.connect(f"file:{quote(path)}?mode=ro", uri=True)) as db:
            return newer_schema(path, stamped_schema(db))
    except sqlite3.Error:
        return None
