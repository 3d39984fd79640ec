"""Aggregates in the Redis store: counters moved in the script that writes the fold.

Works beside :class:`~storage.redis_store.RedisStore` on the same Redis and prefix.  The
rules are the ledger's (``ledger/aggregates.py``, ``ledger/delivery.py``,
``ledger/environments.py``), as in ``storage/sqlite_aggregates.py``; what
differs is where the counts move.  SQLite moves them in the writer's
transaction; here the fold is written after the append by a compare-and-set
(``SET_VIEW``), and the counts move in that same script call, only when it
replaces the fold, so a fold and its counts are never seen apart.  Python
decides every change (:func:`moves`) from the facts counted before; the script
applies them only if the stored facts are still those (``-1`` otherwise:
another process moved them first, and the change is decided again from the
new ones).  ``DROP_DEPLOYMENT`` takes them back the same way when retention
drops the deployment.

Keys, under the store's prefix ``P`` (``storage/redis_scripts.py`` lists them all).
Facts are kept packed (:func:`pack_facts`: parts joined with ``␟``, timestamps as their
milliseconds where few are read at once), short enough that a small hash or sorted set
stays a listpack:

* ``P dep:<id>``, fields ``facts`` and ``times``: the facts counted for a deployment
  (``project␟status␟environment`` and ``started␟completed␟duration``), in the hash it
  already has rather than a key of their own (a key costs some 50 bytes by itself), in
  two fields so that each stays within a listpack's 64 bytes with long names.
* ``P agg:<group>``: one hash per group of :func:`ledger.aggregates.cells` (a
  project's statuses, a UTC day's starts, ...), so that each stays small.
* ``P starts``: every deployment with a known start, scored by it (milliseconds), its
  member its id and facts (timestamps as text: a whole day's are read at once): the
  window's first, partial day and the hours a day of the reader's zone begins in are
  counted from it deployment by deployment (one project's picked out in Redis), and
  the days that have starts are found by jumping through it.
* ``P ends:<project>``: the project's decided deployments by completion, members
  ``completed␟status␟started␟environment␟id``; ``P across`` those that completed on
  another UTC day than they started (or with no known start) and ``P backward``
  those that completed before they started, as SQLite's partial indexes (members as
  ``starts``').
* ``P outday:<project>␟<environment or "">``: each UTC day's outage summary
  (:class:`ledger.delivery.Outages`).  A write that changes a day's completions
  only marks the day ``""`` and moves the hash's ``#v``; the next reader sums the
  day up again from ``ends:`` and keeps it unless ``#v`` moved meanwhile, so the
  rule stays Python's and the write stays a few commands.
* ``P envs:``, ``envok:``, ``envopen:`` ``<project>␟<environment>``: lex-sorted sets
  ``<time>␟<id>`` of an environment's deployments by start, its successes by
  completion (their start after the id) and its open ones by start, so that
  :func:`ledger.environments.pick`'s three deployments are each one lookup.

A store from before these keys (or of another :data:`AGGREGATES_VERSION`) gets
them counted from its stored folds when first opened, by one process under a
lock while the others wait, as its layout upgrade is.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Protocol, cast

import redis

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
    join,
    next_hour,
    split,
    splits_a_day,
    utc_hour,
    whole_days_from,
)
from ledger.delivery import (
    DeliveryWindow,
    OutageKey,
    Outages,
    Window,
    choose_environment,
    count,
    count_start,
    ended,
    outage_keys,
    outages_by_project,
)
from ledger.environments import Pick
from ledger.events import OPEN_STATUSES
from ledger.fold import Fold
from ledger.timestamps import format_timestamp
from storage import redis_scripts
from storage.redis_analysis import millis
from storage.redis_keys import glob, release
from storage.store import StoreUnavailable

log = logging.getLogger(__name__)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)

#: The keys' layout; a store of another is counted again when opened (``2``: facts in keys
#: of their own and as JSON, starts also per project).
AGGREGATES_VERSION = b"3"
#: Seconds a process opening the store waits for another one counting the aggregates.
BUILD_LOCK_SECONDS = 600.0
#: Keys read per round trip when the aggregates are read whole or counted.
CHUNK = 500
#: The key families of the aggregates, dropped before they are counted again.
FAMILIES = (
    "end:",  # of the first layout
    "agg:",
    "facts:",  # of the second layout
    "starts",
    "pstarts:",  # of the second layout
    "ends:",
    "across",
    "backward",
    "outday:",
    "envs:",
    "envok:",
    "envopen:",
)

#: The fields of a deployment's hash that hold its counted facts.
FACT_FIELDS = ("facts", "times")


#: The hub's own spelling of a timestamp (:func:`ledger.timestamps.format_timestamp`).
_SPELLING = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def stamp(timestamp: str | None) -> str:
    """A timestamp as the facts kept in a hash or ``ends:`` hold it: its milliseconds when
    it is spelled as the hub spells them (then they spell it back exactly), else its text
    ("" for none)."""
    if not timestamp:
        return ""
    if _SPELLING.fullmatch(timestamp) and timestamp >= "1970":
        return str((datetime.fromisoformat(timestamp) - _EPOCH) // _MILLISECOND)
    return timestamp


def unstamp(text: str) -> str | None:
    """The timestamp :func:`stamp` kept as ``text``."""
    if not text.isdigit():
        return text or None
    seconds, rest = divmod(int(text), 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{rest:03d}Z"


def _text(timestamp: str | None) -> str:
    return timestamp or ""


def pack_facts(item: Facts, *, stamped: bool = True) -> str:
    """``project␟status␟environment␟started␟completed␟duration``: facts as short text,
    timestamps as :func:`stamp` keeps them (``stamped``) or as they are, quicker to read
    back where many are read at once."""
    spell = stamp if stamped else _text
    duration = "" if item.duration_ms is None else str(item.duration_ms)
    return join(
        item.project,
        item.status,
        item.environment or "",
        spell(item.started_at),
        spell(item.completed_at),
        duration,
    )


def unpack_facts(parts: list[str], *, stamped: bool = True) -> Facts:
    """The facts of :func:`pack_facts`'s parts."""
    project, status, environment, started, completed, duration = parts
    return Facts(
        project,
        status,
        environment or None,
        unstamp(started) if stamped else started or None,
        unstamp(completed) if stamped else completed or None,
        int(duration) if duration else None,
    )


def encode_facts(item: Facts | None) -> str:
    return "" if item is None else pack_facts(item)


def decode_facts(facts_field: bytes | None, times_field: bytes | None) -> Facts | None:
    """The facts the hash's :data:`FACT_FIELDS` hold (``None``: not counted)."""
    if facts_field is None or times_field is None:
        return None
    return unpack_facts(split(join(facts_field.decode(), times_field.decode())))


def _member(deployment_id: str, item: Facts) -> str:
    """A deployment in ``starts``, ``across`` and ``backward``: its id and facts."""
    return join(deployment_id, pack_facts(item, stamped=False))


def _of_member(member: bytes) -> Facts:
    return unpack_facts(split(member.decode())[1:], stamped=False)


def members(deployment_id: str, item: Facts | None) -> dict[tuple[str, str], int]:
    """The sorted-set members a deployment is kept as: ``(key, member) → score``."""
    if item is None:
        return {}
    found: dict[tuple[str, str], int] = {}
    whole = _member(deployment_id, item)
    if item.started_at:
        found["starts", whole] = millis(item.started_at)
    end = ended(item)
    if end is not None:
        completed_at, status = end
        member = join(stamp(completed_at), status, stamp(item.started_at), item.environment or "")
        found["ends:" + item.project, join(member, deployment_id)] = millis(completed_at)
        if not item.started_at or item.started_at[:10] != completed_at[:10]:
            found["across", whole] = millis(completed_at)
        if item.started_at and completed_at < item.started_at:
            found["backward", whole] = millis(item.started_at)
    if item.environment:
        group = join(item.project, item.environment)
        found["envs:" + group, join(item.started_at or "", deployment_id)] = 0
        if item.status == "success":
            member = join(item.completed_at or "", deployment_id, item.started_at or "")
            found["envok:" + group, member] = 0
        if item.status in OPEN_STATUSES:
            found["envopen:" + group, join(item.started_at or "", deployment_id)] = 0
    return found


def outday_key(project: str, environment: str | None) -> str:
    """The hash of a project's outage day summaries in ``environment`` (``None``: in all)."""
    return "outday:" + join(project, environment or "")


def moves(deployment_id: str, before: Facts | None, after: Facts | None) -> list[str]:
    """The changes (as ``_COUNT`` in ``storage/redis_scripts.py`` takes them) that move a
    deployment's counts from ``before``'s to ``after``'s (``None``: not counted)."""
    if before == after:
        return []
    ops: list[str] = []
    for (group, field), n in change(
        cells(before) if before else [], cells(after) if after else []
    ).items():
        ops += ["+", "agg:" + group, field, str(n)]
    old, new = members(deployment_id, before), members(deployment_id, after)
    for key, member in old.keys() - new.keys():
        ops += ["r", key, member, ""]
    for (key, member), score in new.items():
        if old.get((key, member)) != score:
            ops += ["z", key, member, str(score)]
    for project, environment, day in {*outage_keys(before), *outage_keys(after)}:
        key = outday_key(project, environment)
        ops += ["+", key, "#v", "1", "s", key, day, ""]  # to be summed up again when read
    return ops


class Host(Protocol):
    """What :class:`RedisAggregates` uses of the store it works beside."""

    _redis: redis.Redis

    def _key(self, *parts: str) -> str: ...

    def _folds(self, deployment_ids: list[str]) -> list[Fold | None]: ...


class RedisAggregates:
    """Counters of :class:`~storage.redis_store.RedisStore` (see the module docstring)."""

    def __init__(self, store: Host, prefix: str) -> None:
        self.store = store
        self.prefix = prefix
        self._redis = store._redis
        self._key = store._key
        self._count_script = self._redis.register_script(redis_scripts.COUNT)
        self._start_days = self._redis.register_script(redis_scripts.START_DAYS)
        self._started_members = self._redis.register_script(redis_scripts.STARTED)
        self._set_outage_days = self._redis.register_script(redis_scripts.SET_OUTAGE_DAYS)

    def _scan(self, family: str) -> Iterator[str]:
        """The keys of ``family`` (under the prefix), without the prefix."""
        pattern = glob(self._key(family)) + "*"
        for key in cast(Iterator[bytes], self._redis.scan_iter(match=pattern, count=1000)):
            yield key.decode()[len(self.prefix) :]

    # -- opening -----------------------------------------------------------------------

    def build(self) -> None:
        """Count every stored fold when the store has no aggregates of this layout yet (any
        it has are dropped first, the facts in the deployments' hashes too): the first
        process to open it does, the others wait."""
        meta = self._key("meta")
        if self._redis.hget(meta, "aggregates") == AGGREGATES_VERSION:
            return
        lock = self._redis.lock(
            self._key("lock:aggregates"),
            timeout=BUILD_LOCK_SECONDS,
            blocking_timeout=BUILD_LOCK_SECONDS,
        )
        if not lock.acquire():
            raise StoreUnavailable("another process is still counting the store's aggregates")
        try:
            if self._redis.hget(meta, "aggregates") == AGGREGATES_VERSION:
                return
            stale = [self._key(k) for family in FAMILIES for k in self._scan(family)]
            for start in range(0, len(stale), CHUNK):
                self._redis.delete(*stale[start : start + CHUNK])
            deployments = sorted(k[len("dep:") :] for k in self._scan("dep:"))
            for start in range(0, len(deployments), CHUNK):
                with self._redis.pipeline(transaction=False) as pipe:
                    for deployment_id in deployments[start : start + CHUNK]:
                        pipe.hdel(self._key("dep:", deployment_id), *FACT_FIELDS)
                    pipe.execute()
            for start in range(0, len(deployments), CHUNK):
                self._count_folds(deployments[start : start + CHUNK])
            self._redis.hset(meta, "aggregates", AGGREGATES_VERSION)
            if deployments:
                log.info("counted %d stored deployments into the aggregates", len(deployments))
        finally:
            release(lock)

    def _count_folds(self, deployment_ids: list[str]) -> None:
        folds = self.store._folds(deployment_ids)
        for deployment_id, fold in zip(deployment_ids, folds, strict=True):
            if fold is not None:
                self._recount(deployment_id, facts(fold))

    def _recount(self, deployment_id: str, item: Facts) -> None:
        while True:
            answer = self._count_script(
                args=[self.prefix, deployment_id, *self.count_args(deployment_id, item)]
            )
            if int(answer) != -1:
                return

    # -- writing -----------------------------------------------------------------------

    def counted(self, deployment_id: str) -> Facts | None:
        """The facts the deployment is counted with now."""
        found = cast(
            list[bytes | None], self._redis.hmget(self._key("dep:", deployment_id), *FACT_FIELDS)
        )
        return decode_facts(*found)

    def count_args(self, deployment_id: str, item: Facts | None) -> list[str]:
        """What ``SET_VIEW`` and ``DROP_DEPLOYMENT`` take to move the counts to ``item``'s,
        decided from the facts counted now."""
        before = self.counted(deployment_id)
        return [encode_facts(before), encode_facts(item), *moves(deployment_id, before, item)]

    # -- reading -----------------------------------------------------------------------

    def _hashes(self, keys: list[str]) -> Iterator[tuple[str, dict[bytes, bytes]]]:
        """Each hash of ``keys`` (under the prefix) whole, ``CHUNK`` per round trip."""
        for start in range(0, len(keys), CHUNK):
            part = keys[start : start + CHUNK]
            with self._redis.pipeline(transaction=False) as pipe:
                for key in part:
                    pipe.hgetall(self._key(key))
                yield from zip(part, pipe.execute(), strict=True)

    def _fields(self, group: str) -> list[tuple[str, int]]:
        found = cast(dict[bytes, bytes], self._redis.hgetall(self._key("agg:", group)))
        return [(field.decode(), int(n)) for field, n in found.items()]

    def aggregate_cells(self) -> dict[Cell, int]:
        """Every counter, for the operator check to compare with a recomputation."""
        return {
            (key[len("agg:") :], field.decode()): int(n)
            for key, found in self._hashes(list(self._scan("agg:")))
            for field, n in found.items()
        }

    def _ends(
        self, project: str, environment: str | None, low: str, high: str
    ) -> list[tuple[str, str, str]]:
        """``(completed_at, status, started_at)`` of the project's decided deployments (to
        ``environment``) that completed from ``low`` to ``high``."""
        found = cast(
            list[bytes],
            self._redis.zrangebyscore(self._key("ends:", project), millis(low), f"({millis(high)}"),
        )
        return [
            (cast(str, unstamp(completed_at)), status, unstamp(started_at) or "")
            for member in found
            for completed_at, status, started_at, env, _ in [split(member.decode())]
            if environment is None or env == environment
        ]

    def _outage_days(
        self, projects: list[str], environment: str | None, first_day: str = ""
    ) -> dict[str, dict[str, Outages]]:
        """Each project's outage summaries (in ``environment``) per UTC day from
        ``first_day`` on, the kept ones read in one round trip."""
        keys = [outday_key(project, environment) for project in projects]
        return {
            project: self._fresh_days(project, environment, key, found, first_day)
            for project, (key, found) in zip(projects, self._hashes(keys), strict=True)
        }

    def _fresh_days(
        self,
        project: str,
        environment: str | None,
        key: str,
        kept: dict[bytes, bytes],
        first_day: str,
    ) -> dict[str, Outages]:
        """The summaries of the hash ``key`` as read (``kept``); days a write changed since
        they were last read are summed up again from their completions and kept, unless
        another write came in between."""
        found = {day.decode(): raw for day, raw in kept.items()}
        version = found.pop("#v", b"").decode()
        summaries: dict[str, Outages] = {}
        fresh: list[str] = []
        for day, raw in sorted(found.items()):
            if day < first_day:
                continue
            if raw:
                summaries[day] = Outages.decode(raw)
                continue
            ends = self._ends(project, environment, f"{day}T00:00:00.000Z", _next_day(day))
            summary = Outages.of((completed_at, status) for completed_at, status, _ in ends)
            if ends:
                summaries[day] = summary
            fresh += [day, summary.encode().decode() if ends else ""]
        if fresh:
            self._set_outage_days(args=[self.prefix, key, version, *fresh])
        return summaries

    def outage_days(self) -> dict[OutageKey, Outages]:
        """Every day summary of outages, for the check to compare with a recomputation."""
        found: dict[OutageKey, Outages] = {}
        for key, kept in self._hashes(list(self._scan("outday:"))):
            project, environment = split(key[len("outday:") :])
            days = self._fresh_days(project, environment or None, key, kept, "")
            for day, summary in days.items():
                found[project, environment or None, day] = summary
        return found

    def project_counts(self) -> dict[str, dict[str, int]]:
        """Each project's deployments by status."""
        counts: dict[str, dict[str, int]] = {}
        for field, n in self._fields(PROJECTS):
            project, status = split(field)
            counts.setdefault(project, {})[status] = n
        return counts

    def _started(self, low: str, high: str, project: str | None) -> list[Facts]:
        """The facts of the deployments (of ``project``) started from ``low`` to ``high``."""
        named = [] if project is None else [project]
        found = self._started_members(args=[self.prefix, millis(low), millis(high), *named])
        return [_of_member(member) for member in cast(list[bytes], found)]

    def environment_picks(self, project: str | None) -> tuple[list[Pick], int]:
        """Per project and environment: its deployments, and the ids of the latest, current
        and in-progress one (:func:`ledger.environments.pick`'s rule, one lookup each); and
        how many deployments the project (or every project) has."""
        groups = [
            (name, environment, n)
            for field, n in self._fields(ENVIRONMENTS)
            for name, environment in [split(field)]
            if environment and (project is None or name == project)
        ]
        with self._redis.pipeline(transaction=False) as pipe:
            for name, environment, _ in groups:
                group = join(name, environment)
                for family in ("envs:", "envok:", "envopen:"):
                    pipe.zrevrangebylex(self._key(family, group), "+", "-", 0, 1)
            replies = pipe.execute()
        picks: list[Pick] = []
        for index, (name, environment, n) in enumerate(groups):
            latest, current, newest_open = (
                split(found[0].decode()) if found else None
                for found in replies[3 * index : 3 * index + 3]
            )
            assert latest is not None  # noqa: S101 - a counted environment has a deployment
            after = current[2] if current else None  # the current one's start
            in_progress = (
                newest_open if newest_open and (after is None or newest_open[0] > after) else None
            )
            picks.append(
                (
                    name,
                    environment,
                    n,
                    latest[1],
                    current[1] if current else None,
                    in_progress[1] if in_progress else None,
                )
            )
        return picks, counted(self.project_counts(), project)

    def delivery_window(
        self, *, project: str | None, since: str, zone: tzinfo, asked: str | None
    ) -> DeliveryWindow:
        """The deployments started at or after ``since``, counted (``ledger/delivery.py``) as
        SQLite counts them: whole UTC days from the counters, the first day's part and the
        hours a day of ``zone`` begins in (when not on the hour) deployment by deployment."""
        whole_from = whole_days_from(since)
        window = Window()
        splits: dict[str, bool] = {}  # UTC hour -> whether a day of the zone begins in it

        def split_hour(hour: str) -> bool:
            if hour not in splits:
                splits[hour] = splits_a_day(hour, zone)
            return splits[hour]

        for item in self._started(since, whole_from, project):
            hour = utc_hour(cast(str, item.started_at))
            count(window, item, None if split_hour(hour) else f"{hour}:00:00.000Z")
        days = [
            format_timestamp(datetime.fromtimestamp(int(ms) / 1000, UTC))[:10]
            for ms in self._start_days(args=[self.prefix, millis(whole_from)])
        ]
        groups = [DAY + day for day in days] + [DURATION + day for day in days]
        groups += [PROJECT_HOUR + project] if project is not None else [HOUR + d for d in days]
        found = dict(self._hashes(["agg:" + group for group in groups]))

        def fields(group: str) -> Iterator[tuple[list[str], int]]:
            for field, n in found["agg:" + group].items():
                yield split(field.decode()), int(n)

        refine: set[str] = set()
        for day in days:
            for (name, environment, status), n in fields(DAY + day):
                if project is None or name == project:
                    window.statuses[name, environment, status] += n
            for (name, environment, duration), n in fields(DURATION + day):
                if project is None or name == project:
                    window.durations[name, environment, int(duration)] += n
            if project is None:
                for (environment, hour, status), n in fields(HOUR + day):
                    self._count_hour(
                        window, refine, split_hour, f"{day}T{hour}", environment, status, n
                    )
        if project is not None:
            for (hour, environment, status), n in fields(PROJECT_HOUR + project):
                if hour >= whole_from[:13]:
                    self._count_hour(window, refine, split_hour, hour, environment, status, n)
        for hour in refine:
            for item in self._started(f"{hour}:00:00.000Z", next_hour(hour), project):
                count_start(window, item)
        named = window.environments()
        picked = choose_environment(asked, named)
        chosen = window.only(picked)
        chosen.outages = self._outages(project, picked, since, whole_from)
        return DeliveryWindow(chosen, picked, named, truncated=False)

    @staticmethod
    def _count_hour(
        window: Window,
        refine: set[str],
        split_hour: Callable[[str], bool],
        hour: str,
        environment: str,
        status: str,
        n: int,
    ) -> None:
        """Count an hour's starts at its beginning, or leave it to be read deployment by
        deployment when a day of the reader's zone begins inside it."""
        if split_hour(hour):
            refine.add(hour)
        else:
            window.starts[environment, f"{hour}:00:00.000Z", status] += n

    def _outages(
        self, project: str | None, environment: str | None, since: str, whole_from: str
    ) -> dict[str, Outages]:
        """Each project's outages over the window's decided deployments (to ``environment``),
        as SQLite sums them: those that completed before ``whole_from`` one by one (the
        first day's, and any that completed before they started); after it, the kept day
        summaries joined in order, except on a day where a deployment that started before
        ``since`` (so outside the window) completed: that day is summed up again from the
        window's deployments alone."""

        def asked(item: Facts) -> bool:
            return (project is None or item.project == project) and (
                environment is None or item.environment == environment
            )

        outside: set[tuple[str, str]] = set()
        for item in self._facts_in("across", whole_from, None):
            completed_at = cast(str, item.completed_at)
            if (item.started_at is None or item.started_at < since) and asked(item):
                outside.add((item.project, completed_at[:10]))
        early = [
            *self._started(since, whole_from, project),
            *self._facts_in("backward", whole_from, None),
        ]
        found = outages_by_project(
            (item.project, *end)
            for item in early
            if asked(item) and (end := ended(item)) is not None and end[0] < whole_from
        )
        if project is not None:
            names = [project]
        else:
            members = cast(set[bytes], self._redis.smembers(self._key("projects")))
            names = sorted(member.decode() for member in members)
        for name, days in self._outage_days(names, environment, whole_from[:10]).items():
            for day, kept in days.items():
                summary = (
                    Outages.of(
                        (completed_at, status)
                        for completed_at, status, started_at in self._ends(
                            name, environment, f"{day}T00:00:00.000Z", _next_day(day)
                        )
                        if started_at and started_at >= since
                    )
                    if (name, day) in outside
                    else kept
                )
                found[name] = found[name].then(summary) if name in found else summary
        return found

    def _facts_in(self, family: str, low: str, high: str | None) -> list[Facts]:
        """The facts kept in the sorted set ``family`` scored from ``low`` (to ``high``)."""
        top = "+inf" if high is None else f"({millis(high)}"
        found = cast(list[bytes], self._redis.zrangebyscore(self._key(family), millis(low), top))
        return [_of_member(member) for member in found]


def _next_day(day: str) -> str:
    """The first moment of the UTC day after ``day``."""
    return format_timestamp(datetime.fromisoformat(f"{day}T00:00:00+00:00") + timedelta(days=1))
