"""The hub with its log search index switched off, for ``bench/logs.py`` only.

The same app as ``server.app:create_app()`` except that SQLite's write leaves
the FTS5 index alone, so the cost of keeping it in the write can be measured
against the same code without it.
"""

from __future__ import annotations

from flask import Flask

from server.app import create_app
from storage.sqlite_analysis import SqliteLogAnalysis


def app_without_search_index() -> Flask:
    SqliteLogAnalysis._index_lines = lambda self, first_line, recorder: None  # type: ignore[method-assign]
    return create_app()
