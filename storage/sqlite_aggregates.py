"""Aggregates in the SQLite store: counters kept in the writer's transaction.

Kept apart from ``storage/sqlite_store.py``, which mixes these methods in: its
write calls :meth:`SqliteAggregates._aggregate` inside the transaction that
writes the deployment rows, and its pruning
:meth:`SqliteAggregates._prune_aggregates`, so the counters never lag a row.

* ``deployment_facts``: one narrow row per deployment, its
  :class:`ledger.aggregates.Facts` and the cells it counts in, indexed by
  start (a window's first, partial day is read deployment by deployment).
* ``aggregates``: the counters, ``(grp, field) → n``
  (:func:`ledger.aggregates.cells`); a counter that falls to 0 is deleted.

Files from before these tables get them at open, filled from the deployment
rows they hold (once; ``meta`` remembers it).
"""

from __future__ import annotations

import logging
import sqlite3
from datetime import UTC, datetime, timedelta, tzinfo

from ledger.aggregates import (
    DAY,
    DURATION,
    HOUR,
    PROJECT_HOUR,
    PROJECTS,
    Cell,
    Facts,
    cells,
    change,
    decode_cells,
    encode_cells,
    facts,
    split,
)
from ledger.delivery import DeliveryWindow, Window, choose_environment, count
from ledger.recorder import Recorder
from ledger.timestamps import format_timestamp, parse_timestamp
from storage.sqlite_analysis import _fold

log = logging.getLogger(__name__)

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS deployment_facts ("
    " deployment_id TEXT PRIMARY KEY, project TEXT NOT NULL, environment TEXT,"
    " status TEXT NOT NULL, started_at TEXT, completed_at TEXT, duration_ms INTEGER,"
    " cells BLOB NOT NULL)",
    "CREATE INDEX IF NOT EXISTS facts_by_start ON deployment_facts (started_at)",
    "CREATE TABLE IF NOT EXISTS aggregates ("
    " grp TEXT NOT NULL, field TEXT NOT NULL, n INTEGER NOT NULL, PRIMARY KEY (grp, field))"
    " WITHOUT ROWID",
)
_FACTS = "project, status, environment, started_at, completed_at, duration_ms"


class SqliteAggregates:
    """Counters of :class:`~storage.sqlite_store.SqliteStore` (see the module docstring)."""

    _db: sqlite3.Connection

    # -- opening -----------------------------------------------------------------------

    def _create_aggregates(self) -> None:
        for statement in _SCHEMA:
            self._db.execute(statement)

    def _fill_aggregates(self) -> None:
        """Count the deployments a file held before these tables (once)."""
        if self._db.execute("SELECT 1 FROM meta WHERE key = 'aggregates_built'").fetchone():
            return
        rows = self._db.execute(
            "SELECT deployment_id, project, fold FROM deployments "
            "WHERE deployment_id NOT IN (SELECT deployment_id FROM deployment_facts)"
        ).fetchall()
        for deployment_id, project, raw in rows:
            self._count(deployment_id, facts(_fold(project, raw)))
        if rows:
            log.info("counted %d stored deployments into the aggregates", len(rows))
        self._db.execute("INSERT OR IGNORE INTO meta VALUES ('aggregates_built', '1')")

    # -- writing, inside the store's transaction ------------------------------------------

    def _aggregate(self, recorder: Recorder) -> None:
        """Count the deployments this write created or changed."""
        for touched in recorder.deployments():
            if touched.created or touched.refolded:
                self._count(touched.key, facts(touched.fold))

    def _count(self, deployment_id: str, item: Facts | None) -> None:
        """Move ``deployment_id``'s counts to ``item``'s (``None``: it is gone)."""
        row = self._db.execute(
            "SELECT cells FROM deployment_facts WHERE deployment_id = ?", (deployment_id,)
        ).fetchone()
        old = decode_cells(row[0]) if row else []
        new = cells(item) if item is not None else []
        self._add(change(old, new))
        if item is None:
            self._db.execute(
                "DELETE FROM deployment_facts WHERE deployment_id = ?", (deployment_id,)
            )
        else:
            self._db.execute(
                f"INSERT OR REPLACE INTO deployment_facts (deployment_id, {_FACTS}, cells) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (deployment_id, *item, encode_cells(new)),
            )

    def _add(self, delta: dict[Cell, int]) -> None:
        if not delta:
            return
        rows = [(group, field, n) for (group, field), n in delta.items()]
        self._db.executemany(
            "INSERT INTO aggregates (grp, field, n) VALUES (?, ?, ?) "
            "ON CONFLICT (grp, field) DO UPDATE SET n = n + excluded.n",
            rows,
        )
        self._db.executemany(
            "DELETE FROM aggregates WHERE grp = ? AND field = ? AND n = 0",
            [(group, field) for group, field, _ in rows],
        )

    def _prune_aggregates(self, deployment_id: str) -> None:
        self._count(deployment_id, None)

    # -- reading -----------------------------------------------------------------------

    def _project_counts(self) -> dict[str, dict[str, int]]:
        """Each project's deployments by status."""
        counts: dict[str, dict[str, int]] = {}
        for field, n in self._db.execute(
            "SELECT field, n FROM aggregates WHERE grp = ?", (PROJECTS,)
        ):
            project, status = split(field)
            counts.setdefault(project, {})[status] = n
        return counts

    def aggregate_cells(self) -> dict[Cell, int]:
        """Every counter, for the operator check to compare with a recomputation."""
        return {(g, f): n for g, f, n in self._db.execute("SELECT grp, field, n FROM aggregates")}

    def delivery_window(
        self, *, project: str | None, since: str, zone: tzinfo, asked: str | None
    ) -> DeliveryWindow:
        """The deployments started at or after ``since``, counted (``ledger/delivery.py``):
        whole UTC days from the counters, the first day's part deployment by deployment,
        and the hours a day of ``zone`` begins in (when not on the hour) likewise."""
        first_day = parse_timestamp(since).astimezone(UTC).replace(
            hour=0, minute=0, second=0, microsecond=0
        ) + timedelta(days=1)
        whole_from = format_timestamp(first_day)
        window = Window()
        for item in self._facts_between(project, since, whole_from):
            count(window, item, ended=False)
        for _, field, n in self._groups(DAY, whole_from[:10], project):
            name, environment, status = split(field)
            window.statuses[name, environment, status] += n
        for _, field, n in self._groups(DURATION, whole_from[:10], project):
            name, environment, duration = split(field)
            window.durations[name, environment, int(duration)] += n
        split_hours: set[str] = set()
        for hour, environment, status, n in self._hours(project, whole_from):
            moment = f"{hour}:00:00.000Z"
            if _splits_a_day(moment, zone):
                split_hours.add(hour)
            else:
                window.starts[environment, moment, status] += n
        for hour in split_hours:
            for item in self._facts_between(project, f"{hour}:00:00.000Z", _next_hour(hour)):
                if started_at := item.started_at:
                    window.starts[item.environment or "", started_at, item.status] += 1
        named = window.environments()
        picked = choose_environment(asked, named)
        chosen = window.only(picked)
        chosen.ended = self._completions(project, picked, since)
        return DeliveryWindow(chosen, picked, named, truncated=False)

    def _facts_between(self, project: str | None, low: str, high: str) -> list[Facts]:
        clause, params = ("AND project = ?", [project]) if project is not None else ("", [])
        return [
            Facts(*row)
            for row in self._db.execute(
                f"SELECT {_FACTS} FROM deployment_facts "
                f"WHERE started_at >= ? AND started_at < ? {clause}",
                (low, high, *params),
            )
        ]

    def _groups(
        self, prefix: str, first_day: str, project: str | None
    ) -> list[tuple[str, str, int]]:
        """The counters of the groups ``prefix<day>`` from ``first_day`` on, of ``project``."""
        clauses, params = ["grp >= ?", "grp < ?"], [prefix + first_day, prefix + "\U0010ffff"]
        if project is not None:
            clauses += ["field >= ?", "field < ?"]
            params += [project + "\x1f", project + "\x20"]
        return self._db.execute(
            f"SELECT grp, field, n FROM aggregates WHERE {' AND '.join(clauses)}", params
        ).fetchall()

    def _hours(self, project: str | None, whole_from: str) -> list[tuple[str, str, str, int]]:
        """``(YYYY-MM-DDTHH, environment, status, n)``: starts per UTC hour from ``whole_from``."""
        found: list[tuple[str, str, str, int]] = []
        if project is None:
            for group, field, n in self._groups(HOUR, whole_from[:10], None):
                environment, hour, status = split(field)
                found.append((f"{group[len(HOUR) :]}T{hour}", environment, status, n))
            return found
        for field, n in self._db.execute(
            "SELECT field, n FROM aggregates WHERE grp = ? AND field >= ?",
            (PROJECT_HOUR + project, whole_from[:13]),
        ):
            hour, environment, status = split(field)
            found.append((hour, environment, status, n))
        return found

    def _completions(
        self, project: str | None, environment: str | None, since: str
    ) -> list[tuple[str, str, str, str]]:
        clauses, params = ["started_at >= ?", "status IN ('success', 'failure')"], [since]
        for column, value in (("project", project), ("environment", environment)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        return [
            (name, env or "", completed_at, status)
            for name, env, completed_at, status in self._db.execute(
                "SELECT project, environment, completed_at, status FROM deployment_facts "
                f"WHERE completed_at IS NOT NULL AND {' AND '.join(clauses)}",
                params,
            )
        ]


def _splits_a_day(moment: str, zone: tzinfo) -> bool:
    """Whether a day of ``zone`` begins inside the UTC hour starting at ``moment``."""
    start = parse_timestamp(moment)
    last = start + timedelta(minutes=59, seconds=59, milliseconds=999)
    return start.astimezone(zone).date() != last.astimezone(zone).date()


def _next_hour(hour: str) -> str:
    return format_timestamp(datetime.fromisoformat(f"{hour}:00+00:00") + timedelta(hours=1))
