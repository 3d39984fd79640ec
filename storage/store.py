"""The storage interface the web app and the broadcaster share.

``app/`` writes through :meth:`Store.append` and reads through the query
methods; ``broadcaster/`` tails :meth:`Store.read_after` to fan events out.
The embedded default (SQLite, also serving ``memory://`` as an in-memory
database) is one implementation; every implementation runs the same contract
tests in ``tests/integration/test_store_contract.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from ledger.aggregates import Cell
from ledger.delivery import DeliveryWindow, OutageKey, Outages
from ledger.environments import EnvironmentState
from ledger.events import Event
from ledger.failures import FailureGroup, FailureView
from ledger.filters import Filter
from ledger.fold import Fold
from ledger.logs import LogRow
from ledger.search import LogSearch, SearchPage
from ledger.trends import StepRuns
from ledger.view import DeploymentView, ListRow, ProjectSummary

Item = TypeVar("Item")


@dataclass(frozen=True, slots=True)
class StoreHooks:
    """What a store reports as it works, for whoever counts it (the web app's metrics).

    Stores never import metrics themselves: the layer that exports them
    passes these callbacks in.
    """

    #: A group commit wrote this many requests in one transaction.
    on_group: Callable[[int], None] = lambda size: None
    #: The store lost its server and reconnected.
    on_reconnect: Callable[[], None] = lambda: None


class StoreUnavailable(RuntimeError):
    """The store cannot be reached or written; ingest answers 503 and stores nothing."""


class StoreTooNew(StoreUnavailable):
    """A newer hub wrote the store in a layout this one cannot read; nothing was changed.

    Opening it anyway would misread its rows and stamp it with the older
    layout, so that the newer hub would not upgrade it again.
    """


class DeliveryConflict(Exception):
    """A delivery id already stored arrived with another body; nothing was stored."""


class BackupError(Exception):
    """A backup or restore that cannot be done; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class Batch:
    """Events of one request, stored all together or not at all.

    ``delivery_key`` is the request's delivery id as the web app scoped it
    (``app/idempotency.py``), and ``digest`` a hash of its body: a repeat of
    the key with another digest is a :class:`DeliveryConflict`.
    """

    events: list[Event]
    delivery_key: str | None = None
    digest: str | None = None


@dataclass(frozen=True, slots=True)
class Accepted:
    """What :meth:`Store.append` did: the ids in request order, and whether all were repeats."""

    ids: list[str]
    duplicate: bool
    stored: list[Event] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class History:
    """Events for a subscription and whether they reach back to where the client was."""

    events: list[Event]
    recovered: bool


@dataclass(frozen=True, slots=True)
class Page(Generic[Item]):
    """One page of a listing; ``next_cursor`` is ``None`` on the last page.

    ``recovered`` (the event log only) is false when the page could not start
    where the reader asked (``since`` from another epoch, the future, or pruned).
    """

    items: list[Item]
    next_cursor: str | None
    recovered: bool = True


class Store(Protocol):
    """Durable event log plus the deployment view derived from it.

    Every implementation runs ``tests/integration/test_store_contract.py``
    and keeps these promises, whatever it is built on.  The rules that decide
    what is stored (which deployment, which project, the fold, the log lines,
    what ``recovered`` means, what pruning removes) are the ledger's; a store
    persists and queries what the ledger decided.
    """

    #: The epoch of the store's history: ids of another epoch are not from this history.
    epoch: int

    def append(self, batch: Batch) -> Accepted:
        """Store ``batch`` whole or not at all, and answer once it is durable.

        Atomic: after a crash, either every event of the batch (with its log
        lines, deployment changes and idempotency records) is stored, or none
        is.  Idempotent: a batch whose ``delivery_key`` was stored with the
        same ``digest`` answers the first batch's ids with ``duplicate`` and
        stores nothing; an event whose ``dedup_key`` was stored is answered
        with the first one's id.
        Ordered: ids increase in the order events are stored, across every
        process sharing the store, and are never reused, pruning included.

        Raises:
            DeliveryConflict: the ``delivery_key`` was stored with another
                ``digest``; nothing of the batch was stored.
            StoreUnavailable: the store cannot be reached or written; nothing
                of the batch was stored.
        """

    def last_seq(self) -> int:
        """The seq of the newest event stored (0: none)."""

    def read_after(self, seq: int, limit: int) -> list[tuple[int, Event]]:
        """Up to ``limit`` events stored after ``seq``, in seq order, with their seqs.

        What the fan-out tails: every event stored, by any process, is read
        exactly once by a reader that follows the seqs it is given.  After the
        store lost its data (a new epoch), it reads on from the new epoch's
        start.
        """

    def history(self, match: Filter, since: str | None, upto: int, limit: int) -> History:
        """The events ``match`` wants after ``since`` up to seq ``upto``, oldest first.

        At most ``limit`` of them: the newest, when there are more.
        ``recovered`` is :func:`ledger.resume.resume_from`'s answer, false
        also when the limit cut the replay short of ``since``.
        """

    def list_deployments(
        self,
        *,
        project: str | None,
        status: str | None,
        branch: str | None,
        limit: int,
        cursor: str | None,
        environment: str | None = None,
    ) -> Page[ListRow]:
        """Deployment rows (:func:`ledger.view.list_row`), newest first by start, then id.

        With ``environment``, a store without an index by environment may stop after
        reading :data:`storage.paging.MAX_ENVIRONMENT_SCAN` rows: the page then holds
        fewer than ``limit`` rows and ``next_cursor`` goes on from where it stopped.

        Raises:
            ValueError: ``cursor`` is not one this store handed out.
        """

    def get_deployment(self, deployment_id: str) -> DeploymentView | None:
        """The rendered view with ``metrics``, ``last_event_id`` and ``log_lines``."""

    def logs(
        self,
        deployment_id: str,
        *,
        job: str | None,
        step: str | None,
        after: str | None,
        limit: int,
    ) -> Page[LogRow]:
        """Log lines (:func:`ledger.logs.log_row`) in the order they were stored."""

    def projects(self) -> list[ProjectSummary]:
        """Every project with deployments (:func:`ledger.projects.project_summary`)."""

    def events(
        self, *, project: str | None, deployment_id: str | None, since: str | None, limit: int
    ) -> Page[dict[str, Any]]:
        """The event log after ``since``; from the start, and not ``recovered``, when the
        log cannot continue from ``since`` (:func:`ledger.resume.resume_from`)."""

    def environment_states(
        self, *, project: str | None
    ) -> tuple[list[EnvironmentState], int, bool]:
        """Each project's state per environment (:func:`ledger.environments.environments`
        of every deployment row of ``project``, or of all), how many deployments that
        took into account, and whether the store stopped reading before the oldest."""

    def delivery_window(
        self, *, project: str | None, since: str, zone: tzinfo, asked: str | None
    ) -> DeliveryWindow:
        """The deployments (of ``project``) started at or after ``since``, counted as
        :func:`ledger.delivery.window_of_rows` counts their rows, restricted to the
        environment :func:`ledger.delivery.choose_environment` picks for ``asked``.

        ``zone`` is the time zone whose days the figures count: a store that counts
        starts by hour reads single deployments only where one of its days begins
        inside an hour.
        """

    def prune(self) -> int:
        """Remove what :class:`ledger.retention.Retention` says is past its limits.

        Whole deployments go, never part of one, and a resuming client whose
        point was pruned is told (``recovered: false``).  Returns the number
        of events removed.
        """

    # -- log analysis (``ledger/failures.py``, ``ledger/search.py``, ``ledger/trends.py``) --

    def failure(self, deployment_id: str) -> FailureView | None:
        """Why the deployment failed (``None``: it did not, or is unknown), with ``seen``:
        the earlier failures of the same signature.

        The record is the ledger's (:func:`ledger.failures.explain`), kept by
        the store and changed by the same write that failed the deployment,
        added lines to it, or turned it around (a re-run that passed).
        """

    def failures(
        self, *, project: str | None, since: str, limit: int, cursor: str | None
    ) -> Page[FailureGroup]:
        """Failed deployments since ``since`` grouped by signature, most frequent first
        (:func:`ledger.failures.failure_page`).

        Raises:
            ValueError: ``cursor`` is not one this store handed out.
        """

    def search_logs(self, search: LogSearch, *, limit: int, cursor: str | None) -> SearchPage:
        """Log lines matching ``search`` (:func:`ledger.search.hit` decides each), newest
        first; ``truncated`` when the store stopped at its bound before the oldest line.

        Raises:
            ValueError: ``cursor`` is not one this store handed out.
        """

    def recent_folds(
        self, *, project: str | None, status: str | None, since: str, limit: int
    ) -> tuple[list[Fold], bool]:
        """Folds of the deployments sorting at or after ``since`` (newest first, at most
        ``limit``), and whether more were left."""

    def step_runs(
        self, *, project: str | None, since: str, limit: int
    ) -> tuple[list[StepRuns], bool]:
        """The step runs (:func:`ledger.trends.step_runs`) of the newest ``limit``
        deployments (of ``project``) sorting at or after ``since`` (none of those with no
        step finished), and whether more deployments were left."""

    def ping(self) -> None:
        """Return when the store answers; raise :class:`StoreUnavailable` otherwise."""

    def close(self) -> None:
        """Release the store; callers still waiting get :class:`StoreUnavailable`."""


@runtime_checkable
class Aggregated(Protocol):
    """A store that keeps aggregates as it stores events (``ledger/aggregates.py``), read
    whole so that the operator check can compare them with a recomputation."""

    def aggregate_cells(self) -> dict[Cell, int]: ...

    def outage_days(self) -> dict[OutageKey, Outages]: ...


@runtime_checkable
class KeepsStepRuns(Protocol):
    """A store that keeps each deployment's step runs beside its fold, read whole so that
    the operator check can compare them with the runs its folds give now."""

    def kept_step_runs(self) -> set[StepRuns]: ...

    def folded_step_runs(self) -> set[StepRuns]: ...


@runtime_checkable
class Notifier(Protocol):
    """A store shared by several processes that can wake this one when another appends.

    The hub polls the log every ``tail_interval`` regardless; a listener only
    cuts the wait for events other processes stored.
    """

    def start_listener(self, notify: Callable[[], None]) -> None: ...
