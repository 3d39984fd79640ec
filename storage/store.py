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
from typing import Any, Protocol, runtime_checkable

from ledger.events import Event
from ledger.filters import Filter


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


@dataclass(frozen=True, slots=True)
class Batch:
    """Events of one request, stored all together or not at all.

    ``delivery_key`` is the request's idempotency header (``X-GitHub-Delivery``,
    ``Idempotency-Key`` or ``webhook-id``), already namespaced by its header.
    """

    events: list[Event]
    delivery_key: str | None = None


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
class Page:
    """One page of a listing; ``next_cursor`` is ``None`` on the last page."""

    items: list[dict[str, Any]]
    next_cursor: str | None


class Store(Protocol):
    """Durable event log plus the deployment view derived from it."""

    epoch: int

    def append(self, batch: Batch) -> Accepted: ...

    def last_seq(self) -> int: ...

    def read_after(self, seq: int, limit: int) -> list[tuple[int, Event]]: ...

    def history(self, match: Filter, since: str | None, upto: int, limit: int) -> History: ...

    def list_deployments(
        self,
        *,
        project: str | None,
        status: str | None,
        branch: str | None,
        limit: int,
        cursor: str | None,
    ) -> Page: ...

    def get_deployment(self, deployment_id: str) -> dict[str, Any] | None: ...

    def logs(
        self,
        deployment_id: str,
        *,
        job: str | None,
        step: str | None,
        after: str | None,
        limit: int,
    ) -> Page: ...

    def projects(self) -> list[dict[str, Any]]: ...

    def events(
        self, *, project: str | None, deployment_id: str | None, since: str | None, limit: int
    ) -> Page: ...

    def prune(self) -> int: ...

    def ping(self) -> None: ...

    def close(self) -> None: ...


@runtime_checkable
class Notifier(Protocol):
    """A store shared by several processes that can wake this one when another appends.

    The hub polls the log every ``tail_interval`` regardless; a listener only
    cuts the wait for events other processes stored.
    """

    def start_listener(self, notify: Callable[[], None]) -> None: ...
