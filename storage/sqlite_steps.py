"""Step runs in the SQLite store: each deployment's finished steps, kept beside its fold.

``GET /api/steps`` counts the finished steps of up to
:data:`app.analysis.MAX_TREND_DEPLOYMENTS` deployments.  Decoding that many
folds for every answer cost most of its time, so the store keeps what trends
read of each one (:func:`ledger.trends.step_runs`) as narrow rows, and the
route reads those instead.

Kept apart from ``storage/sqlite_store.py``, which mixes these methods in: its
write calls :meth:`SqliteStepRuns._keep_step_runs` inside the transaction that
writes the deployment rows, and its pruning
:meth:`SqliteStepRuns._prune_step_runs`, so the rows never lag a fold.

* ``step_runs``: one row per finished step of a deployment, keyed by the
  deployment's start, its id, the job and the step (so that a window is one
  range of the table), indexed by deployment (a write replaces what changed)
  and by project and start (one project's window).

Files from before this table (or of another :data:`STEP_RUNS_VERSION`) get it
at open, filled from the deployment rows they hold (once; ``meta`` remembers
it).
"""

from __future__ import annotations

import logging
import sqlite3

from ledger.recorder import Recorder
from ledger.trends import StepRun, step_runs
from storage.sqlite_analysis import _fold
from storage.sqlite_errors import read_errors

log = logging.getLogger(__name__)

#: The table's layout; a file of another is filled again when opened.
STEP_RUNS_VERSION = "1"
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS step_runs ("
    " started TEXT NOT NULL, created TEXT NOT NULL, deployment_id TEXT NOT NULL,"
    " job TEXT NOT NULL, step TEXT NOT NULL, project TEXT NOT NULL, commit_sha TEXT,"
    " status TEXT NOT NULL, failed_before INTEGER NOT NULL, duration_ms INTEGER,"
    " PRIMARY KEY (started, created, deployment_id, job, step)) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS step_runs_by_deployment ON step_runs (deployment_id)",
    "CREATE INDEX IF NOT EXISTS step_runs_by_project "
    "ON step_runs (project, started, deployment_id)",
)
#: The columns in :class:`~ledger.trends.StepRun`'s order.
_COLUMNS = (
    "started, created, deployment_id, job, step, project, commit_sha, status, failed_before, "
    "duration_ms"
)


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
        rows = self._db.execute("SELECT deployment_id, project, fold FROM deployments")
        filled = 0
        for deployment_id, project, raw in rows.fetchall():
            self._replace_step_runs(deployment_id, step_runs(deployment_id, _fold(project, raw)))
            filled += 1
        if filled:
            log.info("kept the step runs of %d stored deployments", filled)
        self._db.execute("INSERT INTO meta VALUES ('step_runs', ?)", (STEP_RUNS_VERSION,))

    # -- writing, inside the store's transaction ------------------------------------------

    def _keep_step_runs(self, recorder: Recorder) -> None:
        """Replace the step runs of each deployment this write created or refolded."""
        for touched in recorder.deployments():
            if touched.created or touched.refolded:
                runs = step_runs(touched.key, touched.fold)
                self._replace_step_runs(touched.key, runs, new=touched.created)

    def _replace_step_runs(
        self, deployment_id: str, runs: tuple[StepRun, ...], *, new: bool = False
    ) -> None:
        """Make ``deployment_id``'s rows ``runs``, touching only those that changed (a
        deployment ``new`` to the store has none yet)."""
        kept: set[StepRun] = set()
        if not new:
            kept = {
                StepRun(*row)
                for row in self._db.execute(
                    f"SELECT {_COLUMNS} FROM step_runs WHERE deployment_id = ?", (deployment_id,)
                )
            }
        wanted = set(runs)
        gone = [run[:5] for run in kept - wanted]
        if gone:
            self._db.executemany(
                "DELETE FROM step_runs WHERE started = ? AND created = ? AND deployment_id = ? "
                "AND job = ? AND step = ?",
                gone,
            )
        added = wanted - kept
        if added:
            self._db.executemany(
                f"INSERT OR REPLACE INTO step_runs ({_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                added,
            )

    def _prune_step_runs(self, deployment_id: str) -> None:
        self._db.execute("DELETE FROM step_runs WHERE deployment_id = ?", (deployment_id,))

    # -- reading -------------------------------------------------------------------------

    @read_errors
    def step_runs(
        self, *, project: str | None, since: str, limit: int
    ) -> tuple[list[StepRun], bool]:
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
        return [StepRun(*row) for row in rows], more

    def kept_step_runs(self) -> set[StepRun]:
        """Every row, for the operator check to compare with :meth:`folded_step_runs`."""
        return {StepRun(*row) for row in self._db.execute(f"SELECT {_COLUMNS} FROM step_runs")}

    def folded_step_runs(self) -> set[StepRun]:
        """The step runs every stored fold gives now: what the rows must equal."""
        return {
            run
            for deployment_id, project, raw in self._db.execute(
                "SELECT deployment_id, project, fold FROM deployments"
            )
            for run in step_runs(deployment_id, _fold(project, raw))
        }
