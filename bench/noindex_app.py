"""The hub with its log search index switched off, for ``bench/logs.py`` only.

The same app as ``server.app:create_app()`` except that SQLite's write leaves
the FTS5 index alone (its lines wait above the mark for good, and searches read
them all from the lines' table), so the cost of keeping the index can be
measured against the same code without it.
"""

from __future__ import annotations

from flask import Flask

from server.app import create_app
from storage.sqlite_analysis import SqliteLogAnalysis


def app_without_search_index() -> Flask:
    SqliteLogAnalysis._index_waiting_lines = lambda self, newest: None  # type: ignore[method-assign]
    return create_app()
