"""Alerts to chat and webhooks when a deployment fails, runs too long, or a step stalls.

People do not watch a dashboard all day; they watch a chat channel.  Three
causes raise an alert, each at most once per deployment (per step for a
stall), remembered in a small SQLite table so that a restart sends nothing
twice:

* ``failed``: a ``deployment_completed`` event with status ``failure``;
* ``long_running``: still running after ``HUB_ALERT_LONG_RUNNING_SECONDS``,
  or after ``HUB_ALERT_LONG_RUNNING_P95_FACTOR`` times the p95 duration of the
  project's recent successful deployments (whichever is reached first);
* ``stalled``: a step running while its deployment has had no news (no event
  of any type) for ``HUB_ALERT_STALLED_STEP_SECONDS``.

Failures are seen live by a :class:`~broadcaster.hub.Subscriber` of this
process's hub, whose only work is to classify events (no I/O), so it never
holds up ingest or fan-out; a periodic check reads the store for
long-running and stalled deployments, and also catches up with failures that
the subscriber could have missed (a restart, an overflow).  Delivery runs in
its own greenlets, to a generic JSON webhook and in the payload shapes of
Slack, Feishu/Lark and DingTalk incoming webhooks, with bounded retries and
exponential backoff (``tenacity``).  A target that refuses the message
(4xx, or the chat service's own error code) is not retried.

Only one process may send.  ``HUB_ALERTS=true`` belongs on one host; the
workers of that host's gunicorn elect one sender among themselves with an
exclusive ``flock`` on ``<HUB_ALERT_STATE_PATH>.lock``, which the kernel
releases when the holder dies, so another worker takes over at its next try.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import sqlite3
import time
import urllib.error
import urllib.request
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import gevent
import gevent.pool
import gevent.queue
import orjson
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from app.config import Settings
from app.metrics import ALERTS_FAILED, ALERTS_SENT
from broadcaster.hub import Envelope, Hub, Subscriber
from ledger.events import Event, now_timestamp, parse_timestamp
from storage.store import Store

log = logging.getLogger(__name__)

KINDS = ("webhook", "slack", "feishu", "dingtalk")
#: Events waiting for the rules, and alerts waiting to be sent.
QUEUE_SIZE = 10000
#: Failures completed this long ago are still alerted by the periodic catch-up.
CATCH_UP_SECONDS = 900.0
#: Recent successful deployments of a project that its p95 duration is taken over.
P95_SAMPLE = 50
P95_MIN_SAMPLES = 5
#: Running deployments looked at per check, newest first (pages of 200).
MAX_RUNNING_CHECKED = 2000
#: Deployments whose last news is remembered (the least recently heard from go first).
MAX_NEWS = 20000
#: Alerts kept in the state table, for deduplication, before they are forgotten.
STATE_RETENTION_SECONDS = 30 * 86400.0
HTTP_TIMEOUT = 10.0
MAX_TEXT = 3000
CONCURRENT_DELIVERIES = 8


@dataclass(frozen=True)
class Alert:
    """One alert: what happened to which deployment, and the text people read."""

    cause: str
    project: str
    deployment_id: str
    summary: str
    details: dict[str, Any] = field(default_factory=dict)
    step: str | None = None  # "job / step" for a stall

    @property
    def key(self) -> str:
        """What makes two alerts the same one: once per deployment and cause (and step)."""
        return f"{self.cause}:{self.deployment_id}" + (f":{self.step}" if self.step else "")

    def text(self) -> str:
        lines = [self.summary]
        for name in ("branch", "commit", "actor", "error", "run_url"):
            value = self.details.get(name)
            if value:
                lines.append(f"{name}: {str(value)[:500]}")
        return "\n".join(lines)[:MAX_TEXT]


def payload_for(kind: str, alert: Alert, sent_at: str) -> dict[str, Any]:
    """The body a target of ``kind`` expects (each service's documented text message)."""
    text = alert.text()
    if kind == "slack":
        return {"text": text}
    if kind == "feishu":
        return {"msg_type": "text", "content": {"text": text}}
    if kind == "dingtalk":
        return {"msgtype": "text", "text": {"content": text}}
    return {
        "type": "deployment_alert",
        "cause": alert.cause,
        "project": alert.project,
        "deployment_id": alert.deployment_id,
        "step": alert.step,
        "summary": alert.summary,
        "text": text,
        "details": alert.details,
        "sent_at": sent_at,
    }


# -- rules -------------------------------------------------------------------------------------


def _context(row: dict[str, Any]) -> dict[str, Any]:
    names = (
        "status",
        "started_at",
        "completed_at",
        "duration_ms",
        "branch",
        "commit",
        "actor",
        "environment",
        "error",
        "run_url",
        "workflow_name",
    )
    return {name: row.get(name) for name in names}


def failure_alert(event: Event) -> Alert | None:
    """An alert for a failed deployment's completion event, else ``None``."""
    payload = event.payload
    if event.type != "deployment_completed" or payload.get("status") != "failure":
        return None
    details = {
        name: payload.get(name)
        for name in ("branch", "commit", "actor", "error", "run_url", "duration_ms")
    }
    return Alert(
        "failed",
        event.project,
        event.deployment_id or "",
        f"Deployment failed: {event.project} {event.deployment_id}",
        details,
    )


def failure_alert_of_row(row: dict[str, Any]) -> Alert:
    return Alert(
        "failed",
        row["project"],
        row["deployment_id"],
        f"Deployment failed: {row['project']} {row['deployment_id']}",
        _context(row),
    )


def p95(values: list[float]) -> float | None:
    """Nearest-rank 95th percentile, or ``None`` with too few values to mean anything."""
    if len(values) < P95_MIN_SAMPLES:
        return None
    ordered = sorted(values)
    return ordered[max(0, -(-95 * len(ordered) // 100) - 1)]


def long_running_alert(
    row: dict[str, Any], now: float, absolute: float, factor: float, project_p95: float | None
) -> Alert | None:
    """An alert when a running deployment's age passes the lower of its two thresholds."""
    if not row.get("started_at"):
        return None
    elapsed = now - parse_timestamp(row["started_at"]).timestamp()
    limits = []
    if absolute > 0:
        limits.append((absolute, f"the {absolute:g} s limit"))
    if factor > 0 and project_p95:
        limits.append(
            (factor * project_p95, f"{factor:g} x the project's p95 of {project_p95:.0f} s")
        )
    if not limits:
        return None
    threshold, reason = min(limits)
    if elapsed <= threshold:
        return None
    details = {**_context(row), "elapsed_seconds": round(elapsed), "threshold_seconds": threshold}
    return Alert(
        "long_running",
        row["project"],
        row["deployment_id"],
        f"Deployment running for {elapsed / 60:.1f} min, over {reason}: "
        f"{row['project']} {row['deployment_id']}",
        details,
    )


def stalled_alerts(view: dict[str, Any], quiet_seconds: float) -> list[Alert]:
    """One alert per running step of a deployment that has been quiet for ``quiet_seconds``."""
    alerts = []
    for job in view.get("jobs") or []:
        for step in job.get("steps") or []:
            if step.get("status") != "running":
                continue
            name = f"{job['name']} / {step['name']}"
            details = {
                **_context(view),
                "job": job["name"],
                "step": step["name"],
                "step_started_at": step.get("started_at"),
                "quiet_seconds": round(quiet_seconds),
            }
            alerts.append(
                Alert(
                    "stalled",
                    view["project"],
                    view["deployment_id"],
                    f"Step {name} has had no news for {quiet_seconds / 60:.1f} min: "
                    f"{view['project']} {view['deployment_id']}",
                    details,
                    step=name,
                )
            )
    return alerts


# -- state -------------------------------------------------------------------------------------


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


# -- delivery ----------------------------------------------------------------------------------


class TargetError(Exception):
    """A target did not take the alert; ``retry`` says whether trying again may help."""

    def __init__(self, message: str, *, retry: bool) -> None:
        super().__init__(message)
        self.retry = retry


class Sender:
    """Posts alerts to every configured target, each with its own bounded retries."""

    def __init__(
        self, targets: list[tuple[str, str]], *, attempts: int, backoff: float = 1.0
    ) -> None:
        self.targets = targets
        self.attempts = attempts
        self.backoff = backoff

    @classmethod
    def from_settings(cls, settings: Settings, backoff: float = 1.0) -> Sender:
        urls = {
            "webhook": settings.alert_webhook_urls,
            "slack": settings.alert_slack_urls,
            "feishu": settings.alert_feishu_urls,
            "dingtalk": settings.alert_dingtalk_urls,
        }
        targets = [(kind, url) for kind in KINDS for url in urls[kind]]
        return cls(targets, attempts=settings.alert_retries, backoff=backoff)

    def deliver(self, alert: Alert) -> bool:
        """Send to every target; ``True`` when at least one took it."""
        sent_at = now_timestamp()
        delivered = False
        for index, (kind, url) in enumerate(self.targets):
            try:
                self._retrying(kind, index, url, payload_for(kind, alert, sent_at))
            except TargetError as error:
                ALERTS_FAILED.labels(kind, alert.cause).inc()
                # Never the URL: chat webhooks carry their credentials in it.
                log.warning(
                    "alert %s not delivered to %s target #%d: %s", alert.key, kind, index, error
                )
                continue
            ALERTS_SENT.labels(kind, alert.cause).inc()
            delivered = True
        return delivered

    def _retrying(self, kind: str, index: int, url: str, body: dict[str, Any]) -> None:
        retrying = Retrying(
            stop=stop_after_attempt(self.attempts),
            wait=wait_exponential(multiplier=self.backoff, max=60 * self.backoff),
            retry=retry_if_exception(lambda error: isinstance(error, TargetError) and error.retry),
            sleep=gevent.sleep,
            reraise=True,
        )
        for attempt in retrying:
            with attempt:
                post_alert(kind, url, body)


def post_alert(kind: str, url: str, body: dict[str, Any]) -> None:
    """One POST; raise :class:`TargetError` unless the target took it."""
    request = urllib.request.Request(  # noqa: S310 - http(s) only, checked at start-up
        url,
        data=orjson.dumps(body),
        method="POST",
        headers={
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "deploy-dashboard-hub-alerts",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as response:  # noqa: S310
            answer = response.read(65536)
    except urllib.error.HTTPError as error:
        error.close()  # it holds the connection
        retry = error.code >= 500 or error.code == 429
        raise TargetError(f"HTTP {error.code}", retry=retry) from None
    except (OSError, TimeoutError) as error:
        raise TargetError(f"unreachable: {type(error).__name__}", retry=True) from None
    if kind in ("feishu", "dingtalk"):
        _check_service_code(kind, answer)


def _check_service_code(kind: str, answer: bytes) -> None:
    """Feishu and DingTalk answer 200 with their own error code in the body."""
    try:
        reply = orjson.loads(answer)
    except orjson.JSONDecodeError:
        return
    if not isinstance(reply, dict):
        return
    code = reply.get("code", reply.get("StatusCode")) if kind == "feishu" else reply.get("errcode")
    if code not in (None, 0):
        message = reply.get("msg") or reply.get("errmsg") or ""
        raise TargetError(f"{kind} refused it: code {code} {str(message)[:200]}", retry=False)


# -- the engine --------------------------------------------------------------------------------


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
        self.news: OrderedDict[str, float] = OrderedDict()
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
        """Note news of the event's deployment; raise an alert if it is a failure."""
        if event.deployment_id is None:
            return
        self.news[event.deployment_id] = self.clock()
        self.news.move_to_end(event.deployment_id)
        if len(self.news) > MAX_NEWS:
            self.news.popitem(last=False)
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
        for row in self._running():
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

    def _running(self) -> Iterator[dict[str, Any]]:
        cursor = None
        seen = 0
        while seen < MAX_RUNNING_CHECKED:
            page = self.store.list_deployments(
                project=None, status="running", branch=None, limit=200, cursor=cursor
            )
            yield from page.items
            seen += len(page.items)
            cursor = page.next_cursor
            if cursor is None:
                return

    def _p95(self, project: str) -> float | None:
        page = self.store.list_deployments(
            project=project, status="success", branch=None, limit=P95_SAMPLE, cursor=None
        )
        return p95(
            [
                row["duration_ms"] / 1000
                for row in page.items
                if isinstance(row.get("duration_ms"), int | float)
            ]
        )

    def _check_stalled(self, row: dict[str, Any], now: float) -> None:
        heard = [self.news.get(row["deployment_id"], 0.0)]
        if row.get("updated_at"):
            heard.append(parse_timestamp(row["updated_at"]).timestamp())
        quiet = now - max(heard)
        if quiet <= self.settings.alert_stalled_step_seconds:
            return
        view = self.store.get_deployment(row["deployment_id"])
        if view is not None:
            for alert in stalled_alerts(view, quiet):
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

    def _send(self, alert: Alert) -> None:
        with _logged("alert delivery failed"):
            delivered = self.sender.deliver(alert)
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
