"""Aggregates in the SQLite store: counters kept in the writer's transaction.

Kept apart from ``storage/sqlite_store.py``, which mixes these methods in: its
write calls :meth:`SqliteAggregates._aggregate` inside the transaction that
writes the deployment rows, and its pruning
:meth:`SqliteAggregates._prune_aggregates`, so the counters never lag a row.

* ``deployment_facts``: one narrow row per deployment, its
  :class:`ledger.aggregates.Facts` (the cells it counts in are those of its
  facts, so a change subtracts the stored facts' cells), indexed by start.
* ``aggregates``: the counters, ``(grp, field) → n``
  (:func:`ledger.aggregates.cells`); a counter that falls to 0 is deleted.
* ``outage_days``: per project, environment (``scope`` ``env``) or all of
  them (``scope`` ``all``) and UTC day, the :class:`ledger.delivery.Outages`
  of the decided deployments that completed that day, summed up again from
  their facts whenever one of them changes.

Files from before these tables (or of another :data:`AGGREGATES_VERSION`) get
them at open, filled from the deployment rows they hold (once; ``meta``
remembers it).  ``deployment_facts`` also keeps where each row sorts in the
listing, so that the listing of one environment walks an index of its own.
"""

from __future__ import annotations

import logging
import sqlite3
from datetime import datetime, timedelta, tzinfo
from typing import Any

from ledger.aggregates import (
    DAY,
    DURATION,
    ENVIRONMENTS,
    HOUR,
    PROJECT_HOUR,
    PROJECTS,
    Cell,
    Facts,
    cells,
    change,
    counted,
    facts,
    next_hour,
    split,
    splits_a_day,
    whole_days_from,
)
from ledger.delivery import (
    DeliveryWindow,
    OutageKey,
    Outages,
    Window,
    choose_environment,
    count_start,
    outage_keys,
    outages_by_project,
)
from ledger.environments import Pick
from ledger.events import OPEN_STATUSES
from ledger.recorder import Recorder
from storage.sqlite_analysis import _fold

log = logging.getLogger(__name__)

#: The tables' layout; a file of another is counted again when opened.
AGGREGATES_VERSION = "3"
_ACROSS_DAYS = "(started_at IS NULL OR substr(started_at, 1, 10) <> substr(completed_at, 1, 10))"
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS deployment_facts ("
    " deployment_id TEXT PRIMARY KEY, project TEXT NOT NULL, environment TEXT,"
    " status TEXT NOT NULL, started_at TEXT, completed_at TEXT, duration_ms INTEGER,"
    " sort_ts TEXT NOT NULL)",
    # the deployments listing of one environment, in the listing's order
    "CREATE INDEX IF NOT EXISTS facts_by_environment_time "
    "ON deployment_facts (environment, sort_ts, deployment_id)",
    "CREATE INDEX IF NOT EXISTS facts_by_start ON deployment_facts (started_at)",
    "CREATE TABLE IF NOT EXISTS aggregates ("
    " grp TEXT NOT NULL, field TEXT NOT NULL, n INTEGER NOT NULL, PRIMARY KEY (grp, field))"
    " WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS facts_by_completion "
    "ON deployment_facts (project, environment, completed_at)",
    "CREATE INDEX IF NOT EXISTS facts_by_environment "
    "ON deployment_facts (project, environment, started_at, deployment_id)",
    "CREATE INDEX IF NOT EXISTS facts_by_outcome "
    "ON deployment_facts (project, environment, status, completed_at, deployment_id)",
    # deployments that completed on another UTC day than they started (either way round)
    # or with no known start: the only ones a window's outages must look at one by one
    f"CREATE INDEX IF NOT EXISTS facts_across_days ON deployment_facts (completed_at) "
    f"WHERE {_ACROSS_DAYS}",
    # deployments that completed before they started (a sender's clock): a window counts
    # them by their start, though they complete before it
    "CREATE INDEX IF NOT EXISTS facts_ended_before_start ON deployment_facts (started_at) "
    "WHERE completed_at < started_at",
    "CREATE TABLE IF NOT EXISTS outage_days ("
    " scope TEXT NOT NULL, environment TEXT NOT NULL, project TEXT NOT NULL, day TEXT NOT NULL,"
    " summary BLOB NOT NULL, PRIMARY KEY (scope, environment, project, day)) WITHOUT ROWID",
)
_DECIDED_SQL = "status IN ('success', 'failure') AND completed_at IS NOT NULL"
_OPEN_SQL = ",".join(f"'{s}'" for s in sorted(OPEN_STATUSES))
_FACTS = "project, status, environment, started_at, completed_at, duration_ms"


class SqliteAggregates:
    """Counters of :class:`~storage.sqlite_store.SqliteStore` (see the module docstring)."""

    _db: sqlite3.Connection

    # -- opening -----------------------------------------------------------------------

    def _build_aggregates(self) -> None:
        """The tables, counted from the deployment rows when the file has none of this
        layout yet (tables of another are dropped first).  Runs in one write transaction,
        so that processes opening the file together build them once."""
        row = self._db.execute("SELECT value FROM meta WHERE key = 'aggregates'").fetchone()
        if row is not None and row[0] == AGGREGATES_VERSION:
            return
        for table in ("deployment_facts", "aggregates", "outage_days"):
            self._db.execute(f"DROP TABLE IF EXISTS {table}")
        self._db.execute("DELETE FROM meta WHERE key IN ('aggregates', 'aggregates_built')")
        for statement in _SCHEMA:
            self._db.execute(statement)
        rows = self._db.execute(
            "SELECT deployment_id, project, fold, sort_ts FROM deployments"
        ).fetchall()
        for deployment_id, project, raw, sort_ts in rows:
            self._count(deployment_id, facts(_fold(project, raw)), sort_ts)
        if rows:
            log.info("counted %d stored deployments into the aggregates", len(rows))
        self._db.execute("INSERT INTO meta VALUES ('aggregates', ?)", (AGGREGATES_VERSION,))

    # -- writing, inside the store's transaction ------------------------------------------

    def _aggregate(self, recorder: Recorder) -> None:
        """Count the deployments this write created or changed."""
        for touched in recorder.deployments():
            if touched.created or touched.refolded:
                self._count(touched.key, facts(touched.fold), touched.fold.sort_ts())

    def _count(self, deployment_id: str, item: Facts | None, sort_ts: str = "") -> None:
        """Move ``deployment_id``'s counts to ``item``'s (``None``: it is gone); ``sort_ts``
        is where its row sorts in the listing."""
        row = self._db.execute(
            f"SELECT {_FACTS} FROM deployment_facts WHERE deployment_id = ?", (deployment_id,)
        ).fetchone()
        before = Facts(*row) if row else None
        self._add(change(cells(before) if before else [], cells(item) if item is not None else []))
        if item is None:
            self._db.execute(
                "DELETE FROM deployment_facts WHERE deployment_id = ?", (deployment_id,)
            )
        else:
            self._db.execute(
                f"INSERT OR REPLACE INTO deployment_facts (deployment_id, {_FACTS}, sort_ts) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (deployment_id, *item, sort_ts),
            )
        if before != item:
            for key in {*outage_keys(before), *outage_keys(item)}:
                self._sum_outages(*key)

    def _sum_outages(self, project: str, environment: str | None, day: str) -> None:
        """Sum up again the outages of ``project`` (in ``environment``; ``None``: in all)
        over the deployments that completed on ``day``."""
        scope, name = ("all", "") if environment is None else ("env", environment)
        clause, params = ("", []) if environment is None else ("AND environment = ?", [name])
        ends = self._db.execute(
            "SELECT completed_at, status FROM deployment_facts "
            f"WHERE project = ? {clause} AND completed_at >= ? AND completed_at < ? "
            f"AND {_DECIDED_SQL}",
            (project, *params, day, _next_day(day)),
        ).fetchall()
        if ends:
            self._db.execute(
                "INSERT OR REPLACE INTO outage_days VALUES (?, ?, ?, ?, ?)",
                (scope, name, project, day, Outages.of(ends).encode()),
            )
        else:
            self._db.execute(
                "DELETE FROM outage_days WHERE scope = ? AND environment = ? AND project = ? "
                "AND day = ?",
                (scope, name, project, day),
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
            [(group, field) for group, field, n in rows if n < 0],
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

    def _environment_picks(self, project: str | None) -> tuple[list[Pick], int]:
        """Per project and environment: its deployments, and the ids of the latest, current
        and in-progress one (:func:`ledger.environments.pick`'s rule, through indexes);
        and how many deployments the project (or every project) has."""
        picks: list[Pick] = []
        for field, n in self._db.execute(
            "SELECT field, n FROM aggregates WHERE grp = ?", (ENVIRONMENTS,)
        ):
            name, environment = split(field)
            if not environment or (project is not None and name != project):
                continue
            group = (name, environment)
            latest = self._db.execute(
                "SELECT deployment_id FROM deployment_facts WHERE project = ? "
                "AND environment = ? ORDER BY started_at DESC, deployment_id DESC LIMIT 1",
                group,
            ).fetchone()
            current = self._db.execute(
                "SELECT deployment_id, started_at FROM deployment_facts WHERE project = ? "
                "AND environment = ? AND status = 'success' "
                "ORDER BY completed_at DESC, deployment_id DESC LIMIT 1",
                group,
            ).fetchone()
            after = (current[1] or "") if current else None
            in_progress = self._db.execute(  # the few open ones, not every one by start
                "SELECT deployment_id FROM deployment_facts INDEXED BY facts_by_outcome "
                "WHERE project = ? "
                f"AND environment = ? AND status IN ({_OPEN_SQL}) "
                "AND (? IS NULL OR coalesce(started_at, '') > ?) "
                "ORDER BY started_at DESC, deployment_id DESC LIMIT 1",
                (*group, after, after),
            ).fetchone()
            picks.append(
                (
                    name,
                    environment,
                    n,
                    latest[0],
                    current[0] if current else None,
                    in_progress[0] if in_progress else None,
                )
            )
        return picks, counted(self._project_counts(), project)

    def aggregate_cells(self) -> dict[Cell, int]:
        """Every counter, for the operator check to compare with a recomputation."""
        return {(g, f): n for g, f, n in self._db.execute("SELECT grp, field, n FROM aggregates")}

    def outage_days(self) -> dict[OutageKey, Outages]:
        """Every day summary of outages, for the check to compare with a recomputation."""
        return {
            (project, environment or None, day): Outages.decode(raw)
            for _, environment, project, day, raw in self._db.execute(
                "SELECT scope, environment, project, day, summary FROM outage_days"
            )
        }

    def delivery_window(
        self, *, project: str | None, since: str, zone: tzinfo, asked: str | None
    ) -> DeliveryWindow:
        """The deployments started at or after ``since``, counted (``ledger/delivery.py``):
        whole UTC days from the counters, the first day's part deployment by deployment,
        and the hours a day of ``zone`` begins in (when not on the hour) likewise."""
        whole_from = whole_days_from(since)
        window = Window()
        splits: dict[str, bool] = {}  # UTC hour -> whether a day of the zone begins in it

        def split_hour(hour: str) -> bool:
            if hour not in splits:
                splits[hour] = splits_a_day(hour, zone)
            return splits[hour]

        # the first, partial day, counted by SQLite as the counters count whole days
        for name, environment, status, n in self._first_day(
            "project, coalesce(environment, ''), status", project, since, whole_from
        ):
            window.statuses[name, environment, status] += n
        for name, environment, duration, n in self._first_day(
            "project, coalesce(environment, ''), duration_ms",
            project,
            since,
            whole_from,
            f"AND {_DECIDED_SQL.replace('completed_at', 'duration_ms')}",
        ):
            window.durations[name, environment, duration] += n
        refine: set[str] = set()
        for environment, hour, status, n in self._first_day(
            "coalesce(environment, ''), substr(started_at, 1, 13), status",
            project,
            since,
            whole_from,
        ):
            if split_hour(hour):
                refine.add(hour)
            else:
                window.starts[environment, f"{hour}:00:00.000Z", status] += n
        for field, n in self._summed(DAY, whole_from[:10], project):
            name, environment, status = split(field)
            window.statuses[name, environment, status] += n
        for field, n in self._summed(DURATION, whole_from[:10], project):
            name, environment, duration = split(field)
            window.durations[name, environment, int(duration)] += n
        for hour, environment, status, n in self._hours(project, whole_from):
            if split_hour(hour):
                refine.add(hour)
            else:
                window.starts[environment, f"{hour}:00:00.000Z", status] += n
        for hour in refine:
            low = max(since, f"{hour}:00:00.000Z")
            for item in self._facts_between(project, low, next_hour(hour)):
                count_start(window, item)
        named = window.environments()
        picked = choose_environment(asked, named)
        chosen = window.only(picked)
        chosen.outages = self._outages(project, picked, since, whole_from)
        return DeliveryWindow(chosen, picked, named, truncated=False)

    def _first_day(
        self, columns: str, project: str | None, low: str, high: str, where: str = ""
    ) -> list[tuple[Any, ...]]:
        """``columns`` and how many deployments started from ``low`` to ``high`` have them."""
        clause, params = ("AND project = ?", [project]) if project is not None else ("", [])
        return self._db.execute(
            f"SELECT {columns}, count(*) FROM deployment_facts "
            f"WHERE started_at >= ? AND started_at < ? {clause} {where} GROUP BY {columns}",
            (low, high, *params),
        ).fetchall()

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

    def _summed(self, prefix: str, first_day: str, project: str | None) -> list[tuple[str, int]]:
        """Each field of the groups ``prefix<day>`` from ``first_day`` on (of ``project``),
        summed over the days by SQLite rather than row by row here."""
        clauses, params = ["grp >= ?", "grp < ?"], [prefix + first_day, prefix + "\U0010ffff"]
        if project is not None:
            clauses += ["field >= ?", "field < ?"]
            params += [project + "\x1f", project + "\x20"]
        return self._db.execute(
            f"SELECT field, sum(n) FROM aggregates WHERE {' AND '.join(clauses)} GROUP BY field",
            params,
        ).fetchall()

    def _hours(self, project: str | None, whole_from: str) -> list[tuple[str, str, str, int]]:
        """``(YYYY-MM-DDTHH, environment, status, n)``: starts per UTC hour from ``whole_from``."""
        found: list[tuple[str, str, str, int]] = []
        if project is None:
            for group, field, n in self._db.execute(
                "SELECT grp, field, n FROM aggregates WHERE grp >= ? AND grp < ?",
                (HOUR + whole_from[:10], HOUR + "\U0010ffff"),
            ):
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

    def _outages(
        self,
        project: str | None,
        environment: str | None,
        since: str,
        whole_from: str,
    ) -> dict[str, Outages]:
        """Each project's outages over the window's decided deployments (to ``environment``).

        Those that completed before ``whole_from`` are taken one by one (the first day's,
        and any that completed before they started); after it, the kept day summaries
        are joined in order, except on a day where a deployment that started before
        ``since`` (so outside the window) completed: that day is summed up again from
        the window's deployments alone.
        """
        outside: list[tuple[str, str]] = []  # (project, day) with a deployment from before
        for name, env, started_at, completed_at in self._db.execute(
            "SELECT project, environment, started_at, completed_at FROM deployment_facts "
            f"INDEXED BY facts_across_days WHERE {_ACROSS_DAYS} AND completed_at >= ?",
            (whole_from,),
        ):
            if (
                (started_at is None or started_at < since)
                and (project is None or name == project)
                and (environment is None or env == environment)
            ):
                outside.append((name, completed_at[:10]))
        asked, values = "", []
        for column, value in (("project", project), ("environment", environment)):
            if value is not None:
                asked += f" AND {column} = ?"
                values.append(value)
        early = self._db.execute(  # by start: the environment's index would walk history
            "SELECT project, completed_at, status FROM deployment_facts "
            "INDEXED BY facts_by_start WHERE started_at >= ? "
            f"AND started_at < ? AND completed_at < ? AND {_DECIDED_SQL}{asked}",
            (since, whole_from, whole_from, *values),
        ).fetchall()
        early += self._db.execute(
            "SELECT project, completed_at, status FROM deployment_facts "
            "INDEXED BY facts_ended_before_start WHERE completed_at < started_at "
            f"AND started_at >= ? AND completed_at < ? AND {_DECIDED_SQL}{asked}",
            (whole_from, whole_from, *values),
        ).fetchall()
        found = outages_by_project(early)
        scope, name = ("all", "") if environment is None else ("env", environment)
        day_clause, day_params = ("AND project = ?", [project]) if project is not None else ("", [])
        skip = set(outside)
        for owner, day, raw in self._db.execute(
            "SELECT project, day, summary FROM outage_days WHERE scope = ? AND environment = ? "
            f"AND day >= ? {day_clause} ORDER BY project, day",
            (scope, name, whole_from[:10], *day_params),
        ):
            if (owner, day) in skip:
                summary = self._window_day(owner, environment, day, since)
            else:
                summary = Outages.decode(raw)
            found[owner] = found[owner].then(summary) if owner in found else summary
        return found

    def _window_day(self, project: str, environment: str | None, day: str, since: str) -> Outages:
        """The outages of the deployments that started at or after ``since`` and completed
        on ``day``."""
        clause, params = ("", []) if environment is None else ("AND environment = ?", [environment])
        return Outages.of(
            self._db.execute(
                "SELECT completed_at, status FROM deployment_facts "
                f"WHERE project = ? {clause} AND completed_at >= ? AND completed_at < ? "
                f"AND started_at >= ? AND {_DECIDED_SQL}",
                (project, *params, day, _next_day(day), since),
            ).fetchall()
        )


def _next_day(day: str) -> str:
    return (datetime.fromisoformat(day) + timedelta(days=1)).date().isoformat()
