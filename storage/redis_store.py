"""The shared store for running many hub processes on many hosts: Redis.

SQLite serves one host; when one process is not enough, every process (any
worker of any instance, ingest or stream role) writes and reads one Redis, so
a client may be served by any of them and nothing needs sticky sessions.  It
is the same :class:`~storage.store.Store` as the embedded default and
runs the same contract tests.

* Each request is one atomic Lua script (``storage/redis_scripts.py``):
  repeat checks, the next seqs, the event log stream (entry id ``<seq>-0``,
  which the hub tails with XRANGE), per-project and per-deployment replay
  streams, log lines, metrics and a ``PUBLISH`` that wakes the other
  processes.  A retried call carries the same token and gets the first
  answer back, so a connection lost after Redis executed it stores nothing twice.
* The deployment view is re-folded in Python (:func:`ledger.view.build_view`)
  from the deployment's lifecycle events after the write, and stored by a
  compare-and-set that keeps the view folded from the most events: workers
  folding the same deployment at once converge on the same view.
* An epoch per store, created when missing: a Redis that lost its data gets a
  newer epoch, so ids keep increasing and old ids are told apart
  (``recovered: false``), never silently mapped onto new events.
* One listener greenlet per process turns the ``PUBLISH`` into
  :meth:`Hub.notify <broadcaster.hub.Hub.notify>`; what was published is read
  from the log, so order and exactly-once come from the log, not pub/sub.
"""

from __future__ import annotations

import contextlib
import logging
import math
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import gevent
import gevent.monkey
import orjson
import redis
from redis.backoff import ExponentialBackoff, ExponentialWithJitterBackoff
from redis.retry import Retry

from ledger.events import PROJECT_ONLY_TYPES, Event
from ledger.filters import Filter
from ledger.ids import parse_event_id
from ledger.view import (
    LIFECYCLE_TYPES,
    build_view,
    content_key,
    decode_cursor,
    encode_cursor,
    list_row,
    log_lines_of,
    resolve_project,
)
from storage import redis_scripts
from storage.store import Accepted, Batch, History, Page, StoreHooks, StoreUnavailable

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "hub"
#: A retried append within this many seconds gets its first answer back.
TOKEN_TTL_SECONDS = 60
#: Redis calls wait at most this long; an unreachable Redis is a 503, not a hang.
SOCKET_TIMEOUT = 5.0
CONNECT_TIMEOUT = 2.0
#: Connections per process; a greenlet waits for a free one at most POOL_TIMEOUT.
POOL_SIZE = 64
POOL_TIMEOUT = 5.0
#: The listener reconnects after 1, 2, 4 ... 60 s, and starts over at 1 s once it is back.
LISTEN_BACKOFF = ExponentialBackoff(cap=60.0, base=1.0)
#: Seconds the listener waits for a message before checking its connection.
LISTEN_POLL = 15.0
#: Entries read per round trip when a filter must skip some.
SCAN_CHUNK = 500
#: Seconds one batch may wait for another batch joining legacy bodies of its project.
JOIN_LOCK_SECONDS = 10.0

_OPEN = ("running", "pending")
#: A stream entry as redis-py returns it (bytes, since responses are not decoded).
Entry = tuple[bytes, dict[bytes, bytes]]
#: Redis errors that mean "not available now", as opposed to a bug.
_UNAVAILABLE_REPLIES = ("MISCONF", "MASTERDOWN", "NOREPLICAS")


@contextlib.contextmanager
def _available(closed: bool = False) -> Iterator[None]:
    """Turn Redis being away (or refusing writes) into :class:`StoreUnavailable`."""
    if closed:
        raise StoreUnavailable("the store is closed")
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise StoreUnavailable(f"Redis unreachable: {exc}") from exc
    except (redis.exceptions.OutOfMemoryError, redis.exceptions.ReadOnlyError) as exc:
        raise StoreUnavailable(f"Redis refused: {type(exc).__name__}: {exc}") from exc
    except redis.ResponseError as exc:
        if str(exc).startswith(_UNAVAILABLE_REPLIES):
            raise StoreUnavailable(f"Redis refused: {exc}") from exc
        raise


def _split_url(url: str) -> tuple[str, str]:
    """The Redis URL without our ``prefix`` query parameter, and that prefix."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefix = next((value for name, value in query if name == "prefix"), DEFAULT_PREFIX)
    rest = urlencode([(name, value) for name, value in query if name != "prefix"])
    return urlunsplit(parts._replace(query=rest)), prefix or DEFAULT_PREFIX


def _part(value: str | None) -> str:
    """One filter of a listing key, as the Lua ``part`` spells it."""
    return "*" if value is None else f"{len(value.encode())}:{value}"


def _seq(entry_id: bytes) -> int:
    return int(entry_id.split(b"-", 1)[0])


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@dataclass
class _Draft:
    """A deployment as a batch of legacy bodies will leave it (see ``_join``)."""

    project: str | None
    status: str | None = None
    sort: tuple[str, str] | None = None
    ts0: str | None = None
    lifecycle: list[Event] = field(default_factory=list)


class RedisStore:
    """Event log and deployment view in one Redis (see module docstring)."""

    def __init__(
        self,
        url: str,
        *,
        retention_days: float = 0.0,
        retention_max_events: int = 0,
        hooks: StoreHooks | None = None,
    ) -> None:
        plain_url, prefix = _split_url(url)
        self.prefix = f"{prefix}:"
        self.retention_days = retention_days
        self.retention_max_events = retention_max_events
        self.hooks = hooks or StoreHooks()
        retention_seconds = retention_days * 86400
        self._dedup_ttl = math.ceil(retention_seconds) if retention_days else 0
        self._stream_ttl_ms = math.ceil(retention_seconds * 1000) if retention_days else 0
        try:
            self._pool = redis.BlockingConnectionPool.from_url(
                plain_url,
                max_connections=POOL_SIZE,
                timeout=POOL_TIMEOUT,
                socket_timeout=SOCKET_TIMEOUT,
                socket_connect_timeout=CONNECT_TIMEOUT,
                health_check_interval=30,
                retry=Retry(ExponentialWithJitterBackoff(cap=0.5, base=0.05), 2),
            )
            # An unknown option in the URL fails here, not at the first command.
            self._pool.connection_class(**self._pool.connection_kwargs)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"bad Redis URL {plain_url!r}: {exc}") from None
        self._redis = redis.Redis(connection_pool=self._pool)
        self._init = self._redis.register_script(redis_scripts.INIT)
        self._append = self._redis.register_script(redis_scripts.APPEND)
        self._set_view = self._redis.register_script(redis_scripts.SET_VIEW)
        self._drop = self._redis.register_script(redis_scripts.DROP_DEPLOYMENT)
        self._raise_pruned = self._redis.register_script(redis_scripts.RAISE_PRUNED)
        self._listener: gevent.Greenlet | None = None
        self._closed = False
        self.epoch = 0
        self._high = 0  # the newest seq of ``epoch`` this process has seen
        with _available(self._closed):
            self.epoch = int(self._init(args=[self.prefix, self._known()]))
        self._tail_epoch = self.epoch

    def _key(self, *parts: str) -> str:
        return self.prefix + "".join(parts)

    def _known(self) -> str:
        """What the scripts compare with Redis to notice that it lost recent writes."""
        return f"{self.epoch}:{self._high}"

    def _saw(self, epoch: int, seq: int) -> None:
        if epoch > self.epoch:
            self.epoch, self._high = epoch, 0
        if epoch == self.epoch:
            self._high = max(self._high, seq)

    # -- writing -----------------------------------------------------------------

    def append(self, batch: Batch) -> Accepted:
        """Store the batch whole in one script call, then bring its views up to date."""
        projects = sorted(
            {
                e.project
                for e in batch.events
                if e.deployment_id is None and e.type not in PROJECT_ONLY_TYPES
                if e.join != "new"
            }
        )
        with _available(self._closed), self._join_locks(projects):
            routes = self._join(batch.events) if projects else [_route(e) for e in batch.events]
            answer = orjson.loads(self._append(args=self._append_args(batch, routes)))
            self._saw(int(answer["epoch"]), max(map(_event_seq, answer["ids"]), default=0))
            self._refresh_views(answer.get("views", []))
        stored = [
            batch.events[index - 1].with_(id=event_id, project=project, deployment_id=deployment)
            for index, event_id, project, deployment in answer.get("stored", [])
        ]
        return Accepted(ids=answer["ids"], duplicate=answer["duplicate"], stored=stored)

    def _append_args(self, batch: Batch, routes: list[tuple[str, str]]) -> list[Any]:
        args: list[Any] = [
            self.prefix,
            self._known(),
            uuid.uuid4().hex,
            batch.delivery_key or "",
            self._dedup_ttl,
            self.retention_max_events,
            self._stream_ttl_ms,
            TOKEN_TTL_SECONDS,
            len(batch.events),
        ]
        for event, (mode, deployment) in zip(batch.events, routes, strict=True):
            metrics_key = metrics = b""
            if event.type == "metrics_update" and mode != "p":
                metrics_key = event.timestamp.encode() + content_key(event)
                metrics = orjson.dumps({**event.payload["metrics"], "_at": event.timestamp})
            lines = b""
            if mode != "n" and mode != "p":
                lines = b"\n".join(orjson.dumps(line) for line in log_lines_of(event))
            args += [
                event.type,
                event.project,
                mode,
                deployment,
                f"event_id:{event.dedup_key}" if event.dedup_key else "",
                "1" if event.type in LIFECYCLE_TYPES else "0",
                orjson.dumps({"timestamp": event.timestamp, "payload": event.payload}),
                event.timestamp,
                lines,
                metrics_key,
                metrics,
            ]
        return args

    def _refresh_views(self, deployment_ids: list[str]) -> None:
        """Re-fold views after a write; if Redis goes away now, the events are stored anyway.

        Such a deployment stays in the ``dirty`` set until a fold catches up
        with it: :meth:`repair_views` runs when the listener reconnects and
        on every prune.
        """
        try:
            for deployment_id in deployment_ids:
                self._refresh_view(deployment_id)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            log.warning("events stored; views of %s wait for Redis (%s)", deployment_ids, exc)

    def repair_views(self) -> int:
        """Re-fold every view that may lag its events; return how many were looked at."""
        with _available(self._closed):
            dirty = [_text(d) for d in cast(set[bytes], self._redis.smembers(self._key("dirty")))]
            self._refresh_views(dirty)
        return len(dirty)

    def _refresh_view(self, deployment_id: str) -> None:
        """Re-fold the deployment and store the view unless a fuller fold is already stored."""
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.hmget(self._key("dep:", deployment_id), "project", "ts0")
            pipe.lrange(self._key("life:", deployment_id), 0, -1)
            (project, ts0), entries = pipe.execute()
        if project is None:
            return  # pruned in the meantime
        lifecycle = [self._life_event(deployment_id, raw) for raw in entries]
        view = {**build_view(deployment_id, lifecycle), "project": project.decode()}
        sort_ts = view["started_at"] or (ts0.decode() if ts0 else "")
        view_seq = max((_event_seq(e.id) for e in lifecycle), default=0)
        branch = "0" if view["branch"] is None else f"1{view['branch']}"
        self._set_view(
            args=[
                self.prefix,
                deployment_id,
                view_seq,
                view["project"],
                view["status"],
                branch,
                f"{sort_ts}\0{deployment_id}",
                orjson.dumps(view),
            ]
        )

    @contextlib.contextmanager
    def _join_locks(self, projects: list[str]) -> Iterator[None]:
        """Serialise batches that join legacy bodies to a project's open deployment.

        Such a body names no deployment; it joins the project's newest running
        one, as SQLite's single writer would pick it, so two of them for the
        same project must not decide from the same snapshot.
        """
        with contextlib.ExitStack() as stack:
            for project in projects:
                lock = self._redis.lock(
                    self._key("lock:join:", project),
                    timeout=JOIN_LOCK_SECONDS,
                    blocking_timeout=JOIN_LOCK_SECONDS,
                )
                if not lock.acquire():
                    raise StoreUnavailable(f"project {project!r} is busy joining deployments")
                stack.callback(_release, lock)
            yield

    def _join(self, events: list[Event]) -> list[tuple[str, str]]:
        """Routes for a batch with legacy bodies, decided as SQLite's ``_resolve`` would.

        Reads the projects' open deployments and the batch's deployments, then
        plays the batch forward in Python, folding views with ``build_view``,
        so that a body joins the deployment an earlier body of the same batch
        opened.
        """
        drafts = self._drafts(events)
        routes: list[tuple[str, str]] = []
        for index, event in enumerate(events, start=1):
            route = _route(event)
            if route[0] == "a" and event.join != "new":
                route = _newest_open(drafts, event.project) or route
            routes.append(route)
            if route[0] in ("n", "p"):
                continue
            key = _draft_key(route, index)
            draft = drafts.get(key)
            if draft is None:
                draft = drafts[key] = _Draft(project=None)
            project = event.project
            if project in ("", "unknown"):
                project = draft.project or "unknown"
            created = draft.ts0 is None and draft.status is None
            if not (created or event.type in LIFECYCLE_TYPES):
                continue
            draft.project = resolve_project([draft.project or "", project])
            if created:
                draft.ts0 = event.timestamp
            if event.type in LIFECYCLE_TYPES:
                draft.lifecycle.append(event.with_(project=project))
            view = build_view(key[1], draft.lifecycle)
            draft.status = view["status"]
            draft.sort = (view["started_at"] or draft.ts0 or "", key[1])
        return routes

    def _drafts(self, events: list[Event]) -> dict[tuple[str, str], _Draft]:
        """Snapshot of the deployments a batch of legacy bodies may join or touch."""
        named = {e.deployment_id for e in events if e.deployment_id is not None}
        projects = {
            e.project
            for e in events
            if e.deployment_id is None and e.type not in PROJECT_ONLY_TYPES
        }
        with self._redis.pipeline(transaction=True) as pipe:
            for name in sorted(projects):
                for open_status in _OPEN:
                    pipe.zrevrangebylex(
                        self._list_key(name, open_status, None), "+", "-", 0, len(events) + 1
                    )
            candidates = {
                _text(member).split("\0", 1)[1] for members in pipe.execute() for member in members
            }
        ids = sorted(named | candidates)
        with self._redis.pipeline(transaction=True) as pipe:
            for deployment_id in ids:
                pipe.hmget(
                    self._key("dep:", deployment_id), "project", "ts0", "ix_status", "ix_member"
                )
                pipe.lrange(self._key("life:", deployment_id), 0, -1)
            replies = pipe.execute()
        drafts: dict[tuple[str, str], _Draft] = {}
        for deployment_id, (row, entries) in zip(
            ids, zip(replies[::2], replies[1::2], strict=True), strict=True
        ):
            project, ts0, status, member = (None if v is None else str(v.decode()) for v in row)
            if project is None:
                continue
            sort_ts = (member or "").partition("\0")[0]
            drafts["d", deployment_id] = _Draft(
                project=project,
                status=status,
                sort=(sort_ts, deployment_id) if member else None,
                ts0=ts0,
                lifecycle=[self._life_event(deployment_id, raw) for raw in entries],
            )
        return drafts

    # -- the event log -----------------------------------------------------------------

    def _entry(self, fields: dict[bytes, bytes]) -> Event:
        body = orjson.loads(fields[b"b"])
        deployment = fields.get(b"d")
        return Event(
            type=fields[b"t"].decode(),
            project=fields[b"p"].decode(),
            deployment_id=None if deployment is None else deployment.decode(),
            timestamp=body["timestamp"],
            payload=body["payload"],
            id=fields[b"i"].decode(),
        )

    def _life_event(self, deployment_id: str, raw: bytes) -> Event:
        event_id, event_type, project, body = orjson.loads(raw)
        return Event(
            type=event_type,
            project=project,
            deployment_id=deployment_id,
            timestamp=body["timestamp"],
            payload=body["payload"],
            id=event_id,
        )

    def _range(
        self, key: str, start: str, end: str, count: int, *, newest_first: bool = False
    ) -> list[Entry]:
        """Stream entries from ``start`` to ``end`` (``newest_first``: from ``end`` down)."""
        if newest_first:
            rows = self._redis.xrevrange(key, end, start, count=count)
        else:
            rows = self._redis.xrange(key, start, end, count=count)
        return cast(list[Entry], rows or [])

    def last_seq(self) -> int:
        """The log's newest seq; like :meth:`read_after`, it positions the tail in the epoch."""
        with _available(self._closed), self._redis.pipeline(transaction=True) as pipe:
            pipe.hget(self._key("meta"), "epoch")
            pipe.xrevrange(self._key("log"), "+", "-", count=1)
            epoch, rows = pipe.execute()
        top = _seq(rows[0][0]) if rows else 0
        if epoch is not None:
            self._tail_epoch = int(epoch)
            self._saw(int(epoch), top)
        return top

    def read_after(self, seq: int, limit: int) -> list[tuple[int, Event]]:
        """Events past ``seq`` in order; after a new epoch, the new epoch's events from its start.

        The caller's position belongs to the old epoch then, and the new
        epoch's seqs may be lower, so the tail starts over where it begins.
        """
        with _available(self._closed):
            with self._redis.pipeline(transaction=True) as pipe:
                pipe.hmget(self._key("meta"), "epoch", "floor")
                pipe.xrange(self._key("log"), f"({seq}-0", "+", count=limit)
                (epoch, floor), rows = pipe.execute()
            if epoch is not None and int(epoch) != self._tail_epoch:
                log.warning("store epoch changed from %s to %s", self._tail_epoch, int(epoch))
                self._tail_epoch = int(epoch)
                rows = self._range(self._key("log"), f"({int(floor)}-0", "+", limit)
            if rows:
                self._saw(self._tail_epoch, _seq(rows[-1][0]))
        return [(_seq(entry_id), self._entry(fields)) for entry_id, fields in rows]

    def _meta(self) -> tuple[int, int]:
        """The current epoch and the newest seq pruning removed."""
        epoch, pruned = cast(
            list[bytes | None], self._redis.hmget(self._key("meta"), "epoch", "pruned_upto")
        )
        if epoch is None:  # Redis lost everything since we last wrote: recreate the epoch
            return int(self._init(args=[self.prefix, self._known()])), 0
        return int(epoch), int(pruned or 0)

    def _reaches_back(self, key: str, after: int) -> bool:
        """Whether a replay stream still holds every entry it got after seq ``after``.

        Pruning deletes entries (Redis records the newest deleted id); the
        ``MAXLEN ~`` cap trims the oldest, so a point before the first entry
        kept, in a stream that lost entries, is out of reach.
        """
        try:
            info = self._redis.xinfo_stream(key)
        except redis.ResponseError:  # no such stream: nothing kept yet, or it expired
            return True
        if after < _seq(info.get("max-deleted-entry-id") or b"0-0"):
            return False
        if info["entries-added"] > info["length"]:
            first = info.get("recorded-first-entry-id") or b"0-0"
            return after >= _seq(first) or info["length"] == 0
        return True

    def _scan(
        self,
        key: str,
        *,
        newest_first: bool,
        start: str,
        end: str,
        keep: Callable[[Event], bool] | None,
        want: int,
    ) -> list[tuple[int, Event]]:
        """Up to ``want`` entries between ``start`` and ``end`` that ``keep`` accepts."""
        found: list[tuple[int, Event]] = []
        while len(found) < want:
            count = want - len(found) if keep is None else max(want - len(found), SCAN_CHUNK)
            rows = self._range(key, start, end, count, newest_first=newest_first)
            for entry_id, fields in rows:
                event = self._entry(fields)
                if keep is None or keep(event):
                    found.append((_seq(entry_id), event))
            if len(rows) < count:
                break
            if newest_first:
                end = f"({rows[-1][0].decode()}"
            else:
                start = f"({rows[-1][0].decode()}"
        return found[:want]

    def history(self, match: Filter, since: str | None, upto: int, limit: int) -> History:
        """Events for ``match`` up to ``upto``; ``recovered`` tells if they reach ``since``."""
        with _available(self._closed):
            epoch, pruned_upto = self._meta()
            after, recovered = 0, True
            key = (
                self._key("ps:", match.project)
                if match.project is not None
                else self._key("ds:", str(match.deployment_id))
            )
            if since is not None:
                position = parse_event_id(since)
                if position is None or position[0] != epoch or position[1] > upto:
                    recovered = False  # another epoch, not ours, or from the future
                else:
                    after = position[1]
                    recovered = after >= pruned_upto and self._reaches_back(key, after)
            types = match.types
            rows = self._scan(
                key,
                newest_first=True,
                start=f"({after}-0",
                end=f"{upto}-0",
                keep=None if types is None else (lambda e: e.type in types),
                want=limit + 1,
            )
        if len(rows) > limit:
            rows = rows[:limit]
            recovered = recovered and since is None
        rows.reverse()
        return History([event for _, event in rows], recovered)

    def events(
        self, *, project: str | None, deployment_id: str | None, since: str | None, limit: int
    ) -> Page:
        with _available(self._closed):
            after = 0
            if since is not None:
                position = parse_event_id(since)
                if position is not None and position[0] == self._meta()[0]:
                    after = position[1]
            if deployment_id is not None:
                key = self._key("ds:", deployment_id)
            elif project is not None:
                key = self._key("ps:", project)
            else:
                key = self._key("log")
            keep = None
            if deployment_id is not None and project is not None:
                keep = lambda e: e.project == project  # noqa: E731 - a one-line filter
            rows = self._scan(
                key, newest_first=False, start=f"({after}-0", end="+", keep=keep, want=limit + 1
            )
        items = [event.to_dict() for _, event in rows[:limit]]
        return Page(items, items[-1]["id"] if len(rows) > limit and items else None)

    # -- the deployment view -------------------------------------------------------------

    def _list_key(self, project: str | None, status: str | None, branch: str | None) -> str:
        return self._key("dl:", f"{_part(project)}|{_part(status)}|{_part(branch)}")

    def _rows(self, deployment_ids: list[str]) -> list[tuple[str, bytes, bytes | None]]:
        """``(id, view, metrics)`` of each deployment that still has a view."""
        with self._redis.pipeline(transaction=False) as pipe:
            for deployment_id in deployment_ids:
                pipe.hmget(self._key("dep:", deployment_id), "view", "metrics")
            replies = pipe.execute()
        return [
            (deployment_id, view, metrics)
            for deployment_id, (view, metrics) in zip(deployment_ids, replies, strict=True)
            if view is not None
        ]

    def list_deployments(
        self,
        *,
        project: str | None,
        status: str | None,
        branch: str | None,
        limit: int,
        cursor: str | None,
    ) -> Page:
        top = "+"
        if cursor is not None:
            sort_ts, deployment_id = decode_cursor(cursor)
            top = f"({sort_ts}\0{deployment_id}"
        with _available(self._closed):
            members = self._redis.zrevrangebylex(
                self._list_key(project, status, branch), top, "-", 0, limit + 1
            )
            keys = [_text(member).split("\0", 1) for member in members]
            rows = self._rows([deployment_id for _, deployment_id in keys[:limit]])
        items = [list_row(orjson.loads(view), metrics) for _, view, metrics in rows]
        next_cursor = encode_cursor(*keys[limit - 1]) if len(keys) > limit else None
        return Page(items, next_cursor)

    def get_deployment(self, deployment_id: str) -> dict[str, Any] | None:
        with _available(self._closed), self._redis.pipeline(transaction=True) as pipe:
            pipe.hmget(self._key("dep:", deployment_id), "view", "metrics", "last_id")
            pipe.xlen(self._key("logs:", deployment_id))
            (raw, metrics, last_id), lines = pipe.execute()
        if raw is None:
            return None
        view: dict[str, Any] = orjson.loads(raw)
        view["metrics"] = orjson.loads(metrics) if metrics else None
        view["last_event_id"] = last_id.decode()
        view["log_lines"] = lines
        return view

    def logs(
        self,
        deployment_id: str,
        *,
        job: str | None,
        step: str | None,
        after: str | None,
        limit: int,
    ) -> Page:
        key = self._key("logs:", deployment_id)
        start = f"({int(after)}-0" if after is not None else "-"
        found: list[dict[str, Any]] = []
        with _available(self._closed):
            while len(found) <= limit:
                count = max(limit + 1 - len(found), SCAN_CHUNK if job or step else 0)
                rows = self._range(key, start, "+", count)
                for entry_id, fields in rows:
                    j, s, level, ts, message = orjson.loads(fields[b"l"])
                    if (job is None or j == job) and (step is None or s == step):
                        found.append(
                            {
                                "id": str(_seq(entry_id)),
                                "job": j,
                                "step": s,
                                "level": level,
                                "timestamp": ts,
                                "message": message,
                                "event_id": fields[b"e"].decode(),
                            }
                        )
                if len(rows) < count:
                    break
                start = f"({rows[-1][0].decode()}"
        items = found[:limit]
        return Page(items, items[-1]["id"] if len(found) > limit else None)

    def projects(self) -> list[dict[str, Any]]:
        counted = ("success", "failure", "running", "pending", "cancelled")
        with _available(self._closed):
            members = cast(set[bytes], self._redis.smembers(self._key("projects")))
            names = sorted(member.decode() for member in members)
            with self._redis.pipeline(transaction=True) as pipe:
                for project in names:
                    pipe.zcard(self._list_key(project, None, None))
                    for status in counted:
                        pipe.zcard(self._list_key(project, status, None))
                    pipe.zrevrangebylex(self._list_key(project, None, None), "+", "-", 0, 1)
                replies = pipe.execute()
            width = len(counted) + 2
            latest_ids = [
                _text(replies[i * width + width - 1][0]).split("\0", 1)[1]
                for i in range(len(names))
                if replies[i * width]
            ]
            latest = {deployment_id: (v, m) for deployment_id, v, m in self._rows(latest_ids)}
        result = []
        for i, project in enumerate(names):
            total, success, failure, running, pending, cancelled, top = replies[
                i * width : (i + 1) * width
            ]
            if not total:
                continue
            deployment_id = _text(top[0]).split("\0", 1)[1]
            if deployment_id not in latest:
                continue
            view, metrics = latest[deployment_id]
            result.append(
                {
                    "project": project,
                    "latest_deployment": list_row(orjson.loads(view), metrics),
                    "counts": {
                        "total": total,
                        "success": success,
                        "failure": failure,
                        "running": running + pending,
                        "cancelled": cancelled,
                    },
                }
            )
        return result

    # -- upkeep ------------------------------------------------------------------------

    def prune(self) -> int:
        """Drop whole deployments (and project notes) past the age or count limit.

        As in SQLite: whole deployments go, never part of one, and
        ``pruned_upto`` remembers the newest seq removed.  One process prunes
        at a time (a lock); the others skip their turn.  Every call also
        re-folds views that a write cut short by an outage left behind.
        """
        with _available(self._closed):
            self.repair_views()
            if not (self.retention_days or self.retention_max_events):
                return 0
            lock = self._redis.lock(self._key("lock:prune"), timeout=300, blocking=False)
            if not lock.acquire():
                return 0
            try:
                return self._prune()
            finally:
                _release(lock)

    def _prune(self) -> int:
        seconds, micros = self._redis.time()
        cutoff = (
            seconds + micros / 1e6 - self.retention_days * 86400 if self.retention_days else None
        )
        doomed: set[str] = set()
        if cutoff is not None:
            doomed.update(self._members(self._key("activity"), "-inf", f"({cutoff}"))
        limit_seq = 0
        total = self._redis.xlen(self._key("log"))
        if self.retention_max_events and total > self.retention_max_events:
            excess = self._range(self._key("log"), "-", "+", total - self.retention_max_events)
            limit_seq = _seq(excess[-1][0])
            doomed.update(self._members(self._key("lastseq"), "-inf", str(limit_seq)))
        dropped: set[str] = set()
        max_seq = 0
        age = "" if cutoff is None else f"{cutoff:.6f}"
        for deployment_id in sorted(doomed):
            top = self._drop(args=[self.prefix, deployment_id, age, limit_seq])
            if top is not None:
                dropped.add(deployment_id)
                max_seq = max(max_seq, int(top))
        removed, top_removed = self._drop_entries(dropped, cutoff, limit_seq)
        max_seq = max(max_seq, top_removed)
        if max_seq:
            self._raise_pruned(args=[self.prefix, max_seq])
        if removed:
            log.info("pruned %d events of %d deployments", removed, len(dropped))
        return removed

    def _members(self, key: str, low: str, high: str) -> list[str]:
        members = cast(list[bytes], self._redis.zrangebyscore(key, low, high))
        return [member.decode() for member in members]

    def _drop_entries(
        self, dropped: set[str], cutoff: float | None, limit_seq: int
    ) -> tuple[int, int]:
        """Delete the log entries of dropped deployments and old project notes.

        Everything prunable is in the log's oldest stretch (seq up to the count
        limit, or received before the age cutoff), so only that stretch is read.
        """
        removed = top = 0
        start = "-"
        while True:
            rows = self._range(self._key("log"), start, "+", SCAN_CHUNK)
            doomed: list[tuple[bytes, bytes]] = []
            stop = False
            for entry_id, fields in rows:
                seq = _seq(entry_id)
                if not ((cutoff is not None and float(fields[b"r"]) < cutoff) or seq <= limit_seq):
                    stop = True
                    break
                deployment = fields.get(b"d")
                loose = deployment is None or fields[b"t"].decode() in PROJECT_ONLY_TYPES
                if loose or (deployment is not None and deployment.decode() in dropped):
                    doomed.append((entry_id, fields[b"p"]))
                    top = max(top, seq)
            if doomed:
                with self._redis.pipeline(transaction=True) as pipe:
                    pipe.xdel(self._key("log"), *(entry_id for entry_id, _ in doomed))
                    for entry_id, project in doomed:
                        pipe.xdel(self._key("ps:", project.decode()), entry_id)
                    removed += int(pipe.execute()[0])
            if stop or len(rows) < SCAN_CHUNK:
                return removed, top
            start = f"({rows[-1][0].decode()}"

    def ping(self) -> None:
        with _available(self._closed):
            self._redis.ping()

    # -- cross-process wake-ups ------------------------------------------------------------

    def start_listener(self, notify: Callable[[], None]) -> None:
        """Call ``notify`` whenever any process appends (and after each reconnect).

        Needs gevent's patched sockets (gunicorn's gevent worker); without them
        a blocking read would stall the process, and the hub's poll alone
        carries other processes' events.
        """
        if self._listener is not None:
            return
        if not gevent.monkey.is_module_patched("socket"):
            log.info("sockets are not patched by gevent: no Redis listener, polling only")
            return
        self._listener = gevent.spawn(self._listen, notify)

    def _listen(self, notify: Callable[[], None]) -> None:
        failures = 0
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call,unused-ignore]  # redis-py leaves it unannotated
            try:
                pubsub.subscribe(self._key("notify"))
                if failures:
                    log.info("Redis listener reconnected")
                    self.hooks.on_reconnect()
                    with contextlib.suppress(StoreUnavailable):
                        self.repair_views()  # writes cut short by the outage
                failures = 0
                notify()  # whatever was appended while we were away is in the log
                while True:
                    if pubsub.get_message(timeout=LISTEN_POLL) is not None:
                        notify()
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                delay = LISTEN_BACKOFF.compute(failures)
                failures += 1
                log.warning("Redis listener disconnected (%s); retrying in %.0f s", exc, delay)
                gevent.sleep(delay)
            finally:
                with contextlib.suppress(redis.RedisError, OSError):
                    pubsub.close()

    def close(self) -> None:
        self._closed = True
        if self._listener is not None:
            self._listener.kill()
            self._listener = None
        self._pool.disconnect()


def _route(event: Event) -> tuple[str, str]:
    """How the append script places an event that needs no lookup (see APPEND's modes)."""
    if event.type in PROJECT_ONLY_TYPES:
        return ("n", "") if event.deployment_id is None else ("p", event.deployment_id)
    if event.deployment_id is not None:
        return "d", event.deployment_id
    return "a", ""


def _draft_key(route: tuple[str, str], index: int) -> tuple[str, str]:
    """A draft's key: ``("d", id)`` for a named deployment, ``("r", n)`` for event n's new one."""
    if route[0] == "d":
        return route
    return "r", route[1] if route[0] == "r" else str(index)


def _newest_open(drafts: dict[tuple[str, str], _Draft], project: str) -> tuple[str, str] | None:
    """The route to the project's newest running or pending deployment, if any."""
    open_ = [
        (draft.sort, key)
        for key, draft in drafts.items()
        if draft.project == project and draft.status in _OPEN and draft.sort is not None
    ]
    return max(open_)[1] if open_ else None


def _event_seq(event_id: str) -> int:
    position = parse_event_id(event_id)
    return 0 if position is None else position[1]


def _release(lock: Any) -> None:
    """Release a lock that may have expired meanwhile (then it is already free)."""
    with contextlib.suppress(redis.exceptions.LockError):
        lock.release()
