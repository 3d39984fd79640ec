"""Step runs in the SQLite store: each deployment's finished steps, kept beside its fold.

``GET /api/steps`` counts the finished steps of up to
:data:`app.analysis.MAX_TREND_DEPLOYMENTS` deployments.  Decoding that many
folds for every answer cost most of its time, so the store keeps what trends
read of each deployment (:func:`ledger.trends.step_runs`) as a narrow row,
and the route reads those instead.

Kept apart from ``storage/sqlite_store.py``, which mixes these methods in: its
write calls :meth:`SqliteStepRuns._keep_step_runs` inside the transaction that
writes the deployment rows, and its pruning
:meth:`SqliteStepRuns._prune_step_runs`, so the rows never lag a fold.

* ``step_runs``: one row per deployment with a finished step, keyed by its
  start, its creation and its id (the order trends take them in, so that a
  window is one range of the table), its steps packed as a JSON array of
  :data:`ledger.trends.StepRun`; indexed by deployment (a write replaces the
  row when it changed) and by project and start (one project's window).

Files from before this table (or of another :data:`STEP_RUNS_VERSION`) get it
at open, filled from the deployment rows they hold (once; ``meta`` remembers
it).
"""

from __future__ import annotations

import logging
import sqlite3
from typing import Any

import orjson

from ledger.recorder import Recorder
from ledger.trends import StepRuns, step_runs
from storage.sqlite_analysis import _fold
from storage.sqlite_errors import read_errors

log = logging.getLogger(__name__)

#: The table's layout; a file of another is filled again when opened.
STEP_RUNS_VERSION = "1"
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS step_runs ("
    " started TEXT NOT NULL, created TEXT NOT NULL, deployment_id TEXT NOT NULL,"
    " project TEXT NOT NULL, commit_sha TEXT, steps BLOB NOT NULL,"
    " PRIMARY KEY (started, created, deployment_id)) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS step_runs_by_deployment ON step_runs (deployment_id)",
    "CREATE INDEX IF NOT EXISTS step_runs_by_project ON step_runs (project, started)",
)
#: The columns in :class:`~ledger.trends.StepRuns`'s order.
_COLUMNS = "started, created, deployment_id, project, commit_sha, steps"
#: A row of the table.
_Row = tuple[str, str, str, str, str | None, bytes]


class SqliteStepRuns:
    """Step runs of :class:`~storage.sqlite_store.SqliteStore` (see the module docstring)."""

    _db: sqlite3.Connection

    # -- opening -----------------------------------------------------------------------

    def _build_step_runs(self) -> None:
        """The table, filled from the deployment rows when the file has none of this layout
        yet.  Runs in one write transaction, so that processes opening the file together
        fill it once."""
        row = self._db.execute("SELECT value FROM meta WHERE key = 'step_runs'").fetchone()
        if row is not None and row[0] == STEP_RUNS_VERSION:
            return
        self._db.execute("DROP TABLE IF EXISTS step_runs")
        self._db.execute("DELETE FROM meta WHERE key = 'step_runs'")
        for statement in _SCHEMA:
            self._db.execute(statement)
        rows = self._db.execute("SELECT deployment_id, project, fold FROM deployments").fetchall()
        for deployment_id, project, raw in rows:
            self._replace_step_runs(deployment_id, step_runs(deployment_id, _fold(project, raw)))
        if rows:
            log.info("kept the step runs of %d stored deployments", len(rows))
        self._db.execute("INSERT INTO meta VALUES ('step_runs', ?)", (STEP_RUNS_VERSION,))

    # -- writing, inside the store's transaction ------------------------------------------

    def _keep_step_runs(self, recorder: Recorder) -> None:
        """Replace the step runs of each deployment this write created or refolded."""
        for touched in recorder.deployments():
            if touched.created or touched.refolded:
                runs = step_runs(touched.key, touched.fold)
                self._replace_step_runs(touched.key, runs, new=touched.created)

    def _replace_step_runs(
        self, deployment_id: str, runs: StepRuns | None, *, new: bool = False
    ) -> None:
        """Make ``deployment_id``'s row ``runs`` (``None``: none), written only when it
        changed (a deployment ``new`` to the store has none yet)."""
        wanted = _row(runs) if runs is not None else None
        kept = None
        if not new:
            kept = self._db.execute(
                f"SELECT {_COLUMNS} FROM step_runs WHERE deployment_id = ?", (deployment_id,)
            ).fetchone()
        if kept == wanted:
            return
        if kept is not None:
            self._prune_step_runs(deployment_id)
        if wanted is not None:
            self._db.execute(
                f"INSERT INTO step_runs ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)", wanted
            )

    def _prune_step_runs(self, deployment_id: str) -> None:
        self._db.execute("DELETE FROM step_runs WHERE deployment_id = ?", (deployment_id,))

    # -- reading -------------------------------------------------------------------------

    @read_errors
    def step_runs(
        self, *, project: str | None, since: str, limit: int
    ) -> tuple[list[StepRuns], bool]:
        """The rows of the newest ``limit`` deployments sorting at or after ``since``: the
        oldest of them is found in the listing's index, the rows are one range from it."""
        clause, params = ("AND project = ?", [project]) if project is not None else ("", [])
        edge = self._db.execute(
            f"SELECT sort_ts, deployment_id FROM deployments WHERE sort_ts >= ? {clause} "
            "ORDER BY sort_ts DESC, deployment_id DESC LIMIT 2 OFFSET ?",
            (since, *params, max(limit - 1, 0)),
        ).fetchall()
        more = len(edge) == 2
        low, first = edge[0] if more else (since, "")
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM step_runs WHERE started >= ? "
            f"AND (started > ? OR deployment_id >= ?) {clause}",
            (low, low, first, *params),
        ).fetchall()
        return [_runs(row) for row in rows], more

    def kept_step_runs(self) -> set[StepRuns]:
        """Every row, for the operator check to compare with :meth:`folded_step_runs`."""
        return {_runs(row) for row in self._db.execute(f"SELECT {_COLUMNS} FROM step_runs")}

    def folded_step_runs(self) -> set[StepRuns]:
        """The step runs every stored fold gives now: what the rows must equal."""
        found = (
            step_runs(deployment_id, _fold(project, raw))
            for deployment_id, project, raw in self._db.execute(
                "SELECT deployment_id, project, fold FROM deployments"
            )
        )
        return {runs for runs in found if runs is not None}


def _row(runs: StepRuns) -> _Row:
    started, created, deployment_id, project, commit, steps = runs
    return started, created, deployment_id, project, commit, orjson.dumps(steps)


def _runs(row: Any) -> StepRuns:
    started, created, deployment_id, project, commit, steps = row
    return StepRuns(
        started, created, deployment_id, project, commit, tuple(map(tuple, orjson.loads(steps)))
    )
