"""Which alerts were raised and whether they went out, in SQLite, so a restart sends none twice."""

from __future__ import annotations

import sqlite3
from dataclasses import asdict
from pathlib import Path

import orjson

from alerts.rules import Alert


class AlertState:
    """Which alerts were raised, and whether they went out: the deduplication that survives."""

    def __init__(self, path: str) -> None:
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS alerts (key TEXT PRIMARY KEY, body BLOB NOT NULL, "
            "state TEXT NOT NULL, raised REAL NOT NULL)"
        )

    def claim(self, alert: Alert, now: float) -> bool:
        """Record ``alert`` as pending; ``False`` when it was raised before."""
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO alerts (key, body, state, raised) VALUES (?, ?, 'pending', ?)",
            (alert.key, orjson.dumps(asdict(alert)), now),
        )
        return cursor.rowcount == 1

    def finish(self, alert: Alert, state: str) -> None:
        self._db.execute("UPDATE alerts SET state = ? WHERE key = ?", (state, alert.key))

    def pending(self) -> list[Alert]:
        """Alerts raised but not yet out (the process stopped while sending them)."""
        rows = self._db.execute(
            "SELECT body FROM alerts WHERE state = 'pending' ORDER BY raised"
        ).fetchall()
        return [Alert(**orjson.loads(body)) for (body,) in rows]

    def states(self) -> dict[str, str]:
        return dict(self._db.execute("SELECT key, state FROM alerts").fetchall())

    def forget_before(self, moment: float) -> None:
        self._db.execute("DELETE FROM alerts WHERE raised < ? AND state != 'pending'", (moment,))

    def close(self) -> None:
        self._db.close()
