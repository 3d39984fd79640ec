"""The alerting engine: rules, state and delivery wired to a store and a hub.

Failures are seen live by a :class:`~broadcaster.hub.Subscriber` of this
process's hub, whose only work is to classify events (no I/O), so it never
holds up ingest or fan-out; a periodic check reads the store for
long-running and stalled deployments, and also catches up with failures that
the subscriber could have missed (a restart, an overflow).  Delivery runs in
its own greenlets.

Only one process may send.  ``HUB_ALERTS=true`` belongs on one host; the
workers of that host's gunicorn elect one sender among themselves with an
exclusive ``flock`` on ``<HUB_ALERT_STATE_PATH>.lock``, which the kernel
releases when the holder dies, so another worker takes over at its next try.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import gevent
import gevent.pool
import gevent.queue

from alerts.delivery import Sender
from alerts.rules import (
    Alert,
    failure_alert,
    failure_alert_of_row,
    long_running_alert,
    p95,
    stalled_alerts,
    with_failure,
)
from alerts.state import AlertState
from app.config import Settings
from broadcaster.hub import Envelope, Hub, Subscriber
from ledger.events import Event
from ledger.staleness import is_stale, quiet_for
from ledger.timestamps import parse_timestamp
from ledger.view import ListRow
from storage import paging
from storage.store import Store, StoreUnavailable

log = logging.getLogger(__name__)

#: Events waiting for the rules, and alerts waiting to be sent.
QUEUE_SIZE = 10000
#: Failures completed this long ago are still alerted by the periodic catch-up.
CATCH_UP_SECONDS = 900.0
#: Recent successful deployments of a project that its p95 duration is taken over.
P95_SAMPLE = 50
#: Running deployments looked at per check, newest first (pages of 200).
MAX_RUNNING_CHECKED = 2000
#: Alerts kept in the state table, for deduplication, before they are forgotten.
STATE_RETENTION_SECONDS = 30 * 86400.0
CONCURRENT_DELIVERIES = 8


class _Watcher(Subscriber):
    """A hub subscriber for every project's events (no per-project filter needed)."""

    def wants(self, event: Event) -> bool:
        return event.deployment_id is not None


class Alerter:
    """Rules, state and delivery wired to a store and a hub; see the module docstring."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        hub: Hub,
        *,
        clock: Callable[[], float] = time.time,
        sender: Sender | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.hub = hub
        self.clock = clock
        self.sender = sender or Sender.from_settings(settings)
        self.state: AlertState | None = None
        self.queue: gevent.queue.Queue[Alert] = gevent.queue.Queue(QUEUE_SIZE)
        self.in_flight: set[str] = set()
        self.watcher = _Watcher(QUEUE_SIZE, on_overflow=self._overflowed)
        self._lock_file: IO[bytes] | None = None
        self._greenlets: list[gevent.Greenlet] = []

    # life cycle

    def start(self) -> None:
        """Try to become this host's sender now and, failing that, at every check interval."""
        self._greenlets.append(gevent.spawn(self._elect))

    def stop(self) -> None:
        gevent.killall(self._greenlets)
        self._greenlets.clear()
        self.hub.drop(self.watcher)
        if self.state is not None:
            self.state.close()
            self.state = None
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def _elect(self) -> None:
        while not self.take_lead():
            gevent.sleep(self.settings.alert_check_interval)
        log.info("this process sends the alerts", extra={"targets": len(self.sender.targets)})
        pool = gevent.pool.Pool(CONCURRENT_DELIVERIES)
        self._greenlets += [
            gevent.spawn(self._consume),
            gevent.spawn(self._check_forever),
            gevent.spawn(self._send_forever, pool),
        ]

    def take_lead(self) -> bool:
        """Hold the sender's lock and open the state; ``False`` while another process holds it."""
        lock = Path(self.settings.alert_state_path + ".lock")
        lock.parent.mkdir(parents=True, exist_ok=True)
        handle = lock.open("ab")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        self._lock_file = handle
        self.state = AlertState(self.settings.alert_state_path)
        self.hub.watch_everything(self.watcher)
        for alert in self.state.pending():  # raised before a restart, never sent
            self._enqueue(alert)
        return True

    # the live path: classify only, never block

    def _consume(self) -> None:
        while True:
            item = self.watcher.get()
            if isinstance(item, Envelope):
                with _logged("alert rules failed"):
                    self.observe(item.event)

    def observe(self, event: Event) -> None:
        """Raise an alert if the event is a deployment's failure."""
        alert = failure_alert(event)
        if alert is not None:
            self.raise_alert(alert)

    def _overflowed(self, watcher: Subscriber) -> None:
        """Events came faster than rules ran: start again; the periodic catch-up fills the gap."""
        log.warning("alert watcher fell behind; failures are caught up by the periodic check")
        self.hub.drop(watcher)
        gevent.spawn(self._rejoin)

    def _rejoin(self) -> None:
        while self.watcher.get_nowait() is not None:
            pass
        self.watcher.overflowed = False
        self.hub.watch_everything(self.watcher)

    # the periodic path

    def _check_forever(self) -> None:
        while True:
            gevent.sleep(self.settings.alert_check_interval)
            with _logged("alert check failed"):
                self.check()

    def check(self) -> None:
        """Long-running and stalled deployments, missed failures, and unsent alerts."""
        now = self.clock()
        settings = self.settings
        p95s: dict[str, float | None] = {}
        for row in paging.deployments(
            self.store, status="running", most=MAX_RUNNING_CHECKED, page_size=200
        ):
            if settings.alert_long_running_seconds or settings.alert_long_running_p95_factor:
                project = row["project"]
                if project not in p95s and settings.alert_long_running_p95_factor:
                    p95s[project] = self._p95(project)
                alert = long_running_alert(
                    row,
                    now,
                    settings.alert_long_running_seconds,
                    settings.alert_long_running_p95_factor,
                    p95s.get(project),
                )
                if alert is not None:
                    self.raise_alert(alert)
            if settings.alert_stalled_step_seconds and row["steps"].get("running"):
                self._check_stalled(row, now)
        for row in self.store.list_deployments(
            project=None, status="failure", branch=None, limit=100, cursor=None
        ).items:
            ended = row.get("completed_at") or row.get("updated_at")
            if ended and now - parse_timestamp(ended).timestamp() <= CATCH_UP_SECONDS:
                self.raise_alert(failure_alert_of_row(row))
        if self.state is not None:
            for alert in self.state.pending():
                self._enqueue(alert)
            self.state.forget_before(now - STATE_RETENTION_SECONDS)

    def _p95(self, project: str) -> float | None:
        page = self.store.list_deployments(
            project=project, status="success", branch=None, limit=P95_SAMPLE, cursor=None
        )
        return p95([row["duration_ms"] / 1000 for row in page.items if row["duration_ms"]])

    def _check_stalled(self, row: ListRow, now: float) -> None:
        """The rule of stale runs (``ledger.staleness``), at the alert's own threshold."""
        last_news = row.get("last_news_at")
        if not is_stale(row["status"], last_news, now, self.settings.alert_stalled_step_seconds):
            return
        view = self.store.get_deployment(row["deployment_id"])
        if view is not None:
            for alert in stalled_alerts(view, quiet_for(last_news, now)):
                self.raise_alert(alert)

    # raising and sending

    def raise_alert(self, alert: Alert) -> None:
        """Queue ``alert`` unless it was raised before (here or before a restart)."""
        if self.state is None or not self.state.claim(alert, self.clock()):
            return
        log.info(
            "alert raised: %s",
            alert.summary,
            extra={"cause": alert.cause, "deployment_id": alert.deployment_id},
        )
        self._enqueue(alert)

    def _enqueue(self, alert: Alert) -> None:
        if alert.key in self.in_flight:
            return
        try:
            self.queue.put_nowait(alert)
        except gevent.queue.Full:  # stays pending in the table; the next check queues it
            return
        self.in_flight.add(alert.key)

    def _send_forever(self, pool: gevent.pool.Pool) -> None:
        while True:
            alert = self.queue.get()
            pool.spawn(self._send, alert)

    def explained(self, alert: Alert) -> Alert:
        """A failure alert with its failing line, read from the store as it is sent (the
        write that failed the deployment stored the line before the event was seen)."""
        if alert.cause != "failed" or "failing_line" in alert.details:
            return alert
        try:
            failure = self.store.failure(alert.deployment_id)
        except StoreUnavailable:  # the alert goes out without its line rather than late
            log.warning("failing line of %s unavailable: store unreachable", alert.deployment_id)
            return alert
        return with_failure(alert, failure, self.settings.public_url)

    def _send(self, alert: Alert) -> None:
        with _logged("alert delivery failed"):
            delivered = self.sender.deliver(self.explained(alert))
            if self.state is not None:
                self.state.finish(alert, "sent" if delivered else "failed")
        self.in_flight.discard(alert.key)


@contextlib.contextmanager
def _logged(what: str) -> Iterator[None]:
    """Greenlet boundary: a bug in one round must not end the alerting."""
    try:
        yield
    except Exception:  # logged with its traceback; the loop goes on
        log.exception(what)


def start_alerts(settings: Settings, store: Store, hub: Hub) -> Alerter | None:
    """Start alerting in this process when ``HUB_ALERTS`` is set."""
    if not settings.alerts:
        return None
    alerter = Alerter(settings, store, hub)
    alerter.start()
    return alerter
