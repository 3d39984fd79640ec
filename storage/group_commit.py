"""Group commit: the writes of concurrent requests share one SQLite transaction.

A ``COMMIT`` costs more than storing one event, so under gevent (gunicorn's
worker) the requests that reach the store while it is busy are written by one
writer greenlet in one ``BEGIN IMMEDIATE`` ... ``COMMIT`` (at most
``max_size`` events).  Nobody is answered before the ``COMMIT`` that holds
their writes, so an answer still means stored durably.

What a write is belongs to the store: this component is given a function that
writes a list of requests inside an open transaction and returns one answer
per request.  It first writes the whole group in one go (the store may then
write each deployment's row once, however many of the group's events touch
it).  Should anything fail before the ``COMMIT``, that attempt is rolled back
whole and the group written again carefully: each request in its own
``SAVEPOINT``, so that only a request that fails is rolled back and only its
caller gets its error, while the others commit.  A failed ``COMMIT`` fails
every request of the group.

Without gevent's patching (plain threads, scripts) each request is its own
transaction.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import gevent
import gevent.event

from storage.store import StoreUnavailable

log = logging.getLogger(__name__)

Request = TypeVar("Request")
Answer = TypeVar("Answer")
Result = TypeVar("Result")


@dataclass(slots=True)
class _Queued(Generic[Request]):
    """A caller's request waiting for the writer greenlet, and where its answer goes."""

    request: Request
    answer: Any = field(default_factory=gevent.event.AsyncResult)


class GroupCommit(Generic[Request, Answer]):
    """Writes requests with ``write`` in transactions of ``db``; see the module docstring.

    Args:
        db: the connection, in autocommit mode (``isolation_level=None``).
        write: stores requests inside an open transaction, one answer each, in order.
        size: how much of the group's bound a request uses (its events).
        order: the order to write a group's requests in (any order is true: they
            are concurrent and none is answered yet).
        max_size: the most a group holds; a larger request is a group of its own.
        grouped: whether to share transactions at all (needs gevent's patching).
        on_group: told the number of requests of each group written.
    """

    def __init__(
        self,
        db: sqlite3.Connection,
        write: Callable[[list[Request]], list[Answer]],
        *,
        size: Callable[[Request], int],
        order: Callable[[Request], Any],
        max_size: int,
        grouped: bool,
        on_group: Callable[[int], None],
    ) -> None:
        self.db = db
        self.write = write
        self.size = size
        self.order = order
        self.max_size = max_size
        self.grouped = grouped
        self.on_group = on_group
        self._queue: deque[_Queued[Request]] = deque()
        self._work = gevent.event.Event()
        self._writer: gevent.Greenlet | None = None  # started by the first grouped request

    def submit(self, request: Request) -> Answer:
        """Store ``request``; return its answer once its transaction committed.

        Raises:
            StoreUnavailable: SQLite failed (busy, full, read-only) or the store closed.
            Exception: whatever ``write`` raised for this request alone.
        """
        if not self.grouped:
            return self._alone(request)
        if self._writer is None or self._writer.dead:
            self._writer = gevent.spawn(self._write_forever)
        queued = _Queued(request)
        self._queue.append(queued)
        self._work.set()
        answer: Answer = queued.answer.get()
        return answer

    def run(self, work: Callable[[], Result]) -> Result:
        """``work()`` in a transaction of its own (set-up, pruning), committed before returning.

        It never waits for the writer: neither yields to another greenlet
        between ``BEGIN`` and ``COMMIT``, so the two cannot interleave.
        """
        self._begin()
        try:
            result = work()
        except sqlite3.Error as exc:
            self._rollback()
            raise _unavailable(exc) from exc
        except BaseException:  # rolled back, then raised to the caller as it is
            self._rollback()
            raise
        try:
            self.db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            raise StoreUnavailable(f"commit failed: {exc}") from exc
        return result

    def close(self) -> None:
        """Stop the writer; callers still waiting get :class:`StoreUnavailable`."""
        if self._writer is not None:
            self._writer.kill()  # a writer that never ran is dropped without its finally
        self._fail_queued()

    # -- one request, one transaction ------------------------------------------------------

    def _alone(self, request: Request) -> Answer:
        [answer] = self.run(lambda: self.write([request]))
        return answer

    # -- the writer greenlet ---------------------------------------------------------------

    def _write_forever(self) -> None:
        """Each pass stores everything queued, in groups.

        Waking it is a callback of gevent's loop, so every request that became
        ready in the same turn of the loop has queued by then; one
        ``gevent.sleep(0)`` lets the greenlets already scheduled queue theirs
        too.  No yield happens between ``BEGIN`` and ``COMMIT``: the readers
        that share this connection never see a group half written.
        """
        try:
            while True:
                self._work.wait()
                gevent.sleep(0)
                self._work.clear()
                while self._queue:
                    group = self._take_group()
                    try:
                        self._write_group(group)
                    except Exception as exc:  # the writer outlives a bug; this group gets 503s
                        log.exception("group commit failed")
                        self._fail(group, exc)
        finally:  # however the writer ends, nobody may wait forever for an answer
            self._fail_queued()

    def _take_group(self) -> list[_Queued[Request]]:
        """The oldest queued requests, up to :attr:`max_size` (at least one)."""
        group = [self._queue.popleft()]
        size = self.size(group[0].request)
        while self._queue and size + self.size(self._queue[0].request) <= self.max_size:
            size += self.size(self._queue[0].request)
            group.append(self._queue.popleft())
        return group

    def _write_group(self, group: list[_Queued[Request]]) -> None:
        self.on_group(len(group))
        group.sort(key=lambda queued: self.order(queued.request))
        try:
            self._begin()
        except StoreUnavailable as exc:
            self._fail(group, exc)
            return
        try:
            answers = self.write([queued.request for queued in group])
        except Exception:  # noqa: BLE001 - written again carefully, which names the culprit
            self._rollback()
            self._write_carefully(group)
            return
        self._commit(list(zip(group, answers, strict=True)), group)

    def _write_carefully(self, group: list[_Queued[Request]]) -> None:
        """One savepoint per request: a request that fails is rolled back alone."""
        try:
            self._begin()
        except StoreUnavailable as exc:
            self._fail(group, exc)
            return
        done: list[tuple[_Queued[Request], Answer]] = []
        for queued in group:
            self.db.execute("SAVEPOINT request")
            try:
                [answer] = self.write([queued.request])
            except Exception as exc:  # noqa: BLE001 - raised to the request's own caller
                if not self.db.in_transaction:  # SQLite gave up the whole transaction
                    self._fail(group, exc)
                    return
                self.db.execute("ROLLBACK TO request")
                self.db.execute("RELEASE request")
                queued.answer.set_exception(
                    _unavailable(exc) if isinstance(exc, sqlite3.Error) else exc
                )
                continue
            self.db.execute("RELEASE request")
            done.append((queued, answer))
        self._commit(done, group)

    def _commit(
        self, done: list[tuple[_Queued[Request], Answer]], group: list[_Queued[Request]]
    ) -> None:
        """``COMMIT``, then answer; a failed ``COMMIT`` fails every caller of the group."""
        try:
            self.db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._fail(group, StoreUnavailable(f"commit failed: {exc}"))
            return
        for queued, answer in done:
            queued.answer.set(answer)

    # -- transactions and failures ---------------------------------------------------------

    def _begin(self) -> None:
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"store busy or unavailable: {exc}") from exc

    def _rollback(self) -> None:
        if self.db.in_transaction:
            with contextlib.suppress(sqlite3.Error):  # nothing was committed either way
                self.db.execute("ROLLBACK")

    def _fail(self, group: list[_Queued[Request]], exc: BaseException) -> None:
        """Every caller not yet answered gets a 503; what is left is rolled back."""
        log.error("group commit of %d requests failed: %s", len(group), exc)
        for queued in group:
            if not queued.answer.ready():
                queued.answer.set_exception(_unavailable(exc))
        self._rollback()

    def _fail_queued(self) -> None:
        while self._queue:
            self._queue.popleft().answer.set_exception(StoreUnavailable("store closed"))


def _unavailable(exc: BaseException) -> StoreUnavailable:
    """The error a caller gets for ``exc``: a new one each, since each raises it."""
    if isinstance(exc, StoreUnavailable):
        error = StoreUnavailable(str(exc))
        error.__cause__ = exc.__cause__
    else:
        error = StoreUnavailable(f"write failed: {exc}")
        error.__cause__ = exc
    return error
