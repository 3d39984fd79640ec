"""Recording a write: every decision that turns a batch of events into stored rows.

A store opens its transaction (SQLite) or takes its snapshot (Redis), hands
the ledger a :class:`Source` to look deployments up in, and feeds each event
of the write to one :class:`Recorder`.  The recorder decides, and the store
only persists what it decided:

* which deployment an event belongs to: the one it names, or for a legacy
  body that names none (:class:`~ledger.events.Join`), a new deployment or
  the project's newest open one, as the write so far leaves them;
* which project: a sender's ``unknown`` or ``""`` gives way to the
  deployment's real project, and a deployment the hub has never seen must
  be named by its first event (:class:`~ledger.errors.Invalid` otherwise:
  the hub never makes up a project called ``unknown``);
* the deployment's new state: its lifecycle events folded in fold order,
  folding again from the stored events when a late one sorts earlier than
  what is folded (:mod:`ledger.fold`);
* the log lines it carries, and whether its metrics replace the stored ones.

No I/O, no clock and no store here: the store's :class:`Source` answers the
few questions the rules need, inside the store's transaction.

Event sequence numbers are the store's.  SQLite knows them before it writes
(``next_seq``); Redis gives them inside its append script, so there a new
deployment is named after its first event's seq by the script, and the
recorder refers to it by that event's place in the write (:attr:`Entry.new`,
:attr:`Entry.joins`).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from ledger.errors import Invalid
from ledger.events import LIFECYCLE_TYPES, OPEN_STATUSES, PROJECT_ONLY_TYPES, Event, Join
from ledger.fold import Fold, SortKey, content_key, sort_key
from ledger.ids import make_event_id
from ledger.logs import LogLine, log_lines_of
from ledger.metrics import metrics_key, metrics_value
from ledger.projects import is_named


def auto_deployment_id(project: str, seq: int) -> str:
    """The id of a deployment a legacy body started: named after its first event."""
    return f"{project}-auto-{seq}"


class Stored(NamedTuple):
    """A deployment as the store holds it when the write begins.

    ``version`` is whatever the store uses to tell that the stored fold is
    still current when it writes the new one (Redis: the seq of the newest
    lifecycle event it holds); the recorder only hands it back.
    """

    fold: Fold
    metrics_key: bytes | None = None
    version: int = 0


class Source(Protocol):
    """What the rules need to know of the store, read where the write happens."""

    def deployment(self, deployment_id: str) -> Stored | None:
        """The deployment as stored, or ``None`` when the store has never seen it."""

    def open_deployments(self, project: str, limit: int) -> list[tuple[str, str]]:
        """``(sort_ts, deployment_id)`` of up to ``limit`` of the project's open
        deployments, newest first, as stored before this write."""

    def lifecycle(self, deployment_id: str) -> list[Event]:
        """The deployment's lifecycle events stored before this write, in any order."""


@dataclass(slots=True)
class Entry:
    """One event of the write as it is to be stored.

    ``event`` has its deployment and project resolved (and its id, when the
    seq is known).  With seqs given by the store, ``new`` says that this event
    starts a deployment named after its own seq, and ``joins`` that it belongs
    to the deployment event number ``joins`` of the write started; both are
    ``None``/``False`` otherwise.
    """

    event: Event
    seq: int | None
    lines: list[LogLine]
    new: bool = False
    joins: int | None = None


@dataclass(slots=True)
class Touched:
    """A deployment as the write leaves it: what the store writes into its row.

    ``refolded`` says the lifecycle changed (status, times, the fold itself);
    otherwise only its newest seq moved.  ``metrics`` is ``(key, value)`` when a
    newer report than the stored one arrived.
    """

    key: str  # the deployment id, or "#<n>" for one event n of the write started
    fold: Fold
    stored: Stored | None
    last_seq: int | None = None
    refolded: bool = False
    metrics: tuple[bytes, bytes] | None = None
    started_by: int | None = None  # the entry that created it, if this write did
    _events: list[tuple[SortKey, bytes, Event]] | None = None  # once it had to be read
    added: list[Event] = field(default_factory=list)  # its lifecycle events in this write
    logged: bool = False  # the write adds log lines to it

    @property
    def created(self) -> bool:
        return self.stored is None

    @property
    def project(self) -> str:
        return self.fold.project

    @property
    def status(self) -> str:
        return self.fold.headline()[0]

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def was_failed(self) -> bool:
        """Whether the deployment was failed before this write."""
        return self.stored is not None and self.stored.fold.headline()[0] == "failure"

    def own_fold(self) -> Fold:
        """The fold, to change: the stored one is shared until a lifecycle event changes it,
        since most writes only log to a deployment and copying a fold costs more than
        storing a line; :attr:`stored` keeps the state before the write either way."""
        if self.stored is not None and self.fold is self.stored.fold:
            self.fold = self.fold.copy()
        return self.fold


def record_in_batch(recorder: Recorder, event: Event, index: int, size: int) -> Entry:
    """``recorder.record(event)``; a refusal of event ``index`` of a batch of ``size`` names
    its index as a refused body does, since the whole batch is refused with it."""
    try:
        return recorder.record(event)
    except Invalid as error:
        if size == 1:
            raise
        raise Invalid(
            f"event {index} of the batch is invalid: {error.message}; nothing was stored",
            {"index": index, "events": {str(index): error.details}},
        ) from None


def _joining(touched: Touched) -> tuple[Touched, bool, int | None]:
    """``_route``'s answer for an event joining ``touched``: the entry that started it
    when this write did (Redis names it only inside its script)."""
    return touched, False, touched.started_by if touched.key.startswith("#") else None


class Recorder:
    """Decides one write; see the module docstring.  One per transaction (or snapshot).

    ``next_seq`` is the seq the store gives the write's first event, or
    ``None`` when the store gives seqs only as it appends (Redis).
    """

    def __init__(self, source: Source, *, epoch: int, next_seq: int | None) -> None:
        self.source = source
        self.epoch = epoch
        self.next_seq = next_seq
        self.touched: dict[str, Touched] = {}
        self._count = 0  # events entered so far
        self._preceding: Touched | None = None  # where the last deployment event went

    # -- entering events ---------------------------------------------------------------

    def record(self, event: Event) -> Entry:
        """Enter ``event``; return how it is to be stored."""
        index = self._count
        self._count += 1
        seq = self.next_seq
        if self.next_seq is not None:
            self.next_seq += 1
        if event.type in PROJECT_ONLY_TYPES:
            return Entry(self._stamped(event, seq), seq, [])
        touched, new, joins = self._route(event, index, seq)
        self._preceding = touched
        if touched.created and not touched.fold.projects and not is_named(event.project):
            raise Invalid(
                f"deployment {touched.key!r} is new to the hub: its first event must name "
                "its project",
                {"project": ["Required for a deployment the hub has not seen yet."]},
            )
        if not is_named(event.project) and event.project != touched.project:
            event = event.with_(project=touched.project)  # the real name, else "unknown"
        deployment_id = None if touched.key.startswith("#") else touched.key
        if event.deployment_id != deployment_id:
            event = event.with_(deployment_id=deployment_id)
        saved = self._stamped(event, seq)
        if seq is not None:
            touched.last_seq = seq
        if event.type in LIFECYCLE_TYPES:
            self._fold_in(touched, saved)
        else:
            if touched.created and not touched.fold.projects:
                touched.fold.note(saved)  # the event that created it names its project too
            if event.type == "metrics_update":
                self._offer_metrics(touched, saved)
        lines = log_lines_of(saved)
        if lines:
            touched.logged = True
        return Entry(saved, seq, lines, new, joins)

    def _stamped(self, event: Event, seq: int | None) -> Event:
        return event if seq is None else event.with_id(make_event_id(self.epoch, seq))

    def deployments(self) -> Iterator[Touched]:
        """Every deployment the write touched, in the order it first touched them."""
        return iter(self.touched.values())

    # -- which deployment ----------------------------------------------------------------

    def _route(self, event: Event, index: int, seq: int | None) -> tuple[Touched, bool, int | None]:
        """The deployment ``event`` goes to, whether it starts it, and which entry did."""
        if event.deployment_id is not None:
            return self._deployment(event.deployment_id), False, None
        if event.join is Join.PRECEDING and self._preceding is not None:
            return _joining(self._preceding)
        if event.join is not Join.NEW:
            newest = self._newest_open(event.project)
            if newest is not None:
                return _joining(newest)
        key = f"#{index}" if seq is None else auto_deployment_id(event.project, seq)
        touched = self.touched[key] = Touched(key, Fold(), None, started_by=index)
        return touched, True, None

    def _deployment(self, deployment_id: str) -> Touched:
        touched = self.touched.get(deployment_id)
        if touched is None:
            stored = self.source.deployment(deployment_id)
            fold = Fold() if stored is None else stored.fold  # copied once changed: own_fold
            touched = self.touched[deployment_id] = Touched(deployment_id, fold, stored)
        return touched

    def _newest_open(self, project: str) -> Touched | None:
        """The project's newest open deployment as the write so far leaves it.

        The store lists what it holds; deployments this write already touched
        are judged by their state now, not by their stored rows.
        """
        candidates: list[tuple[str, str, Touched | None]] = [
            (t.fold.sort_ts(), t.key, t)
            for t in self.touched.values()
            if t.project == project and t.is_open
        ]
        for sort_ts, deployment_id in self.source.open_deployments(project, len(self.touched) + 1):
            if deployment_id not in self.touched:
                candidates.append((sort_ts, deployment_id, None))
                break
        if not candidates:
            return None
        _, key, touched = max(candidates, key=lambda c: (c[0], c[1]))
        return touched if touched is not None else self._deployment(key)

    # -- folding ---------------------------------------------------------------------------

    def _fold_in(self, touched: Touched, event: Event) -> None:
        """Fold ``event`` into the deployment: applied when it sorts after everything
        folded, else folded again with the deployment's other lifecycle events (read
        from the source once, then kept for the rest of the write)."""
        key = content_key(event)
        touched.refolded = True
        touched.added.append(event)
        if touched.fold.follows(event, key):
            touched.own_fold().apply(event, key)
            if touched._events is not None:
                touched._events.append((sort_key(event, key), key, event))
            return
        if touched._events is None:
            stored = [] if touched.created else self.source.lifecycle(touched.key)
            touched._events = []
            for earlier in [*stored, *touched.added]:
                self._insert(touched, earlier, content_key(earlier))
        else:
            self._insert(touched, event, key)
        fresh = Fold()
        fresh.projects = list(touched.fold.projects)  # names and creation time of any type
        fresh.created_ts = touched.fold.created_ts
        for _, known, earlier in touched._events:
            fresh.apply(earlier, known)
        touched.fold = fresh

    @staticmethod
    def _insert(touched: Touched, event: Event, key: bytes) -> None:
        """Keep the deployment's lifecycle events sorted, each content once."""
        events = touched._events
        assert events is not None  # noqa: S101 - callers set it
        order = sort_key(event, key)
        at = bisect.bisect_left(events, (order,), key=lambda item: (item[0],))
        if at == len(events) or events[at][0] != order:  # else: that content is folded already
            events.insert(at, (order, key, event))

    def _offer_metrics(self, touched: Touched, event: Event) -> None:
        key = metrics_key(event)
        current = (
            touched.metrics[0]
            if touched.metrics
            else touched.stored.metrics_key
            if touched.stored
            else None
        )
        if current is None or key > current:
            touched.metrics = (key, metrics_value(event))
