"""Log analysis in the Redis store: failure records and log search.

:class:`RedisLogAnalysis` works beside :class:`~storage.redis_store.RedisStore`
on the same Redis and prefix; the store calls it after each append, when it
prunes a deployment, and for the read API.  Keys, under the store's prefix ``P``::

    P fail:<id>       hash: record (the ledger's FailureRecord, JSON), row (what
                      grouping needs, JSON), signature, failed_at
    P failures        sorted set: failed deployment -> failed_at (ms since the epoch)
    P fsig:<sig>      sorted set: failed deployment -> failed_at, one per signature
    P sxb:<id>        string: the deployment's word filter (a Bloom filter of 2^16 bits)
    P sxu             hash: deployment -> the newest log line its word filter covers

**Failures** are explained right after the append that failed a deployment
(or logged to it after it failed), from its stored fold and log lines, by the
same ledger function SQLite uses, and written by one script (record, time
index, signature index together).  A process that dies between the append and
that write leaves a failed deployment without its record, or a record of a
deployment a re-run turned around; :meth:`RedisLogAnalysis.reconcile` (run
with every prune) finds both and puts them right, which is also how a store
from before these keys gets its records.

**Search** reads log streams, which Redis cannot search by content; scanning
every stream for every query would read every line.  So each deployment gets
a *word filter*: a Bloom filter of the words of its lines (and of each word's
first three characters, for ``prefix*`` terms), built from its stream the
first time a search needs it (or by :meth:`RedisLogAnalysis.warm`, with every
prune) and extended from the line it covers to the stream's newest before it
is asked, so it is never out of date and costs the write path nothing.  A
search asks each candidate deployment's filter (``BITFIELD GET``, pipelined)
whether it may hold every word; only those that may are scanned, newest line
first, merged across deployments by line id, and every line is decided by
:func:`ledger.search.hit` as on SQLite.  Reading is bounded: past
:data:`MAX_SCAN_LINES` scanned (or :data:`MAX_INDEX_LINES` indexed) in one
search the answer is ``truncated`` with a cursor to go on from.
``docs/SCALING.md`` has the design and its measured figures.
"""

from __future__ import annotations

import contextlib
import hashlib
import heapq
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, cast

import orjson
import redis

from ledger.failures import (
    MAX_EXPLAIN_LINES,
    RECENT_DEPLOYMENTS,
    FailureGroup,
    FailureRecord,
    FailureRow,
    FailureView,
    action_for,
    explain,
    failure_view,
    group_failures,
    row_of,
    seen_of,
)
from ledger.fold import Fold
from ledger.logs import LogLine, LogRow, log_row
from ledger.recorder import Recorder, Stored
from ledger.search import (
    LogSearch,
    Query,
    SearchHit,
    SearchPage,
    decode_search_cursor,
    encode_search_cursor,
    hit,
    plain,
    words,
)
from ledger.timestamps import parse_timestamp
from storage import redis_scripts
from storage.store import Page

log = logging.getLogger(__name__)

#: Bits of one deployment's word filter (8 KiB) and hashes per word.
FILTER_BITS = 1 << 16
FILTER_HASHES = 4
#: Characters of a word also kept as a prefix key, so ``migr*`` can be asked for ``mig``.
PREFIX_KEY = 3
#: Stream entries read per round trip.
CHUNK = 1000
#: Lines one search scans (matching) and indexes (building filters) before it answers
#: ``truncated``.
MAX_SCAN_LINES = 100000
MAX_INDEX_LINES = 200000
#: Lines one prune pass indexes ahead of searches.
WARM_LINES = 200000
#: Positions set per script call (a long catch-up is split so Redis is not held long).
POSITIONS_PER_CALL = 20000

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

#: ARGV: prefix, deployment, signature, failed_at ms, failed_at, record JSON, row JSON.
_SET_FAILURE = r"""
local P, d, sig, score = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local key = P .. 'fail:' .. d
local old = redis.call('HGET', key, 'signature')
if old and old ~= sig then redis.call('ZREM', P .. 'fsig:' .. old, d) end
redis.call('HSET', key, 'signature', sig, 'failed_at', ARGV[5], 'record', ARGV[6], 'row', ARGV[7])
redis.call('ZADD', P .. 'failures', score, d)
redis.call('ZADD', P .. 'fsig:' .. sig, score, d)
return 1
"""

#: ARGV: prefix, deployment, "1" to drop its word filter too.
_CLEAR = r"""
local P, d = ARGV[1], ARGV[2]
local key = P .. 'fail:' .. d
local old = redis.call('HGET', key, 'signature')
if old then redis.call('ZREM', P .. 'fsig:' .. old, d) end
redis.call('ZREM', P .. 'failures', d)
redis.call('DEL', key)
if ARGV[3] == '1' then
  redis.call('DEL', P .. 'sxb:' .. d)
  redis.call('HDEL', P .. 'sxu', d)
end
return 1
"""

#: ARGV: prefix, deployment, covered before, covered after, positions...  Sets the
#: positions and moves the coverage on, unless another search moved it meanwhile (0) or
#: the deployment is gone (-1).
_EXTEND_FILTER = r"""
local P, d = ARGV[1], ARGV[2]
if redis.call('EXISTS', P .. 'dep:' .. d) == 0 then
  redis.call('DEL', P .. 'sxb:' .. d)
  redis.call('HDEL', P .. 'sxu', d)
  return -1
end
local cur = tonumber(redis.call('HGET', P .. 'sxu', d) or '0')
if cur ~= tonumber(ARGV[3]) then return 0 end
local key = P .. 'sxb:' .. d
for i = 5, #ARGV do redis.call('SETBIT', key, ARGV[i], 1) end
redis.call('HSET', P .. 'sxu', d, ARGV[4])
return 1
"""


class Host(Protocol):
    """What :class:`RedisLogAnalysis` uses of the store it works beside."""

    _redis: redis.Redis

    def _key(self, *parts: str) -> str: ...

    def _list_key(self, project: str | None, status: str | None, branch: str | None) -> str: ...

    def _pipe_deployment(self, pipe: Any, deployment_id: str) -> None: ...

    def _stored(self, deployment_id: str, row: list[bytes | None]) -> Stored | None: ...


def millis(timestamp: str) -> int:
    """A normalised timestamp as milliseconds since the epoch (0 for none)."""
    if not timestamp:
        return 0
    return (parse_timestamp(timestamp) - _EPOCH) // timedelta(milliseconds=1)


def _keys_of(text: str) -> set[str]:
    """What a line puts in its deployment's word filter: its words and their prefixes."""
    found = set(words(plain(text)))
    return found | {"\0" + word[:PREFIX_KEY] for word in found if len(word) >= PREFIX_KEY}


def _needed(query: Query) -> set[str]:
    """The filter keys a line must have put there to match ``query``."""
    keys: set[str] = set()
    for term in query.terms:
        *whole, last = term.words
        keys.update(whole)
        if not term.prefix:
            keys.add(last)
        elif len(last) >= PREFIX_KEY:
            keys.add("\0" + last[:PREFIX_KEY])
    return keys


def parse_line(raw: bytes) -> tuple[int, str, LogLine]:
    """``(line id, event id, line)`` of an entry of a deployment's ``ln:`` list."""
    line_id, event_id, job, step, level, timestamp, text = orjson.loads(raw)
    return int(line_id), event_id, LogLine(job, step, level, timestamp, text)


def positions(key: str) -> list[int]:
    """The filter bits of one key (double hashing over one 64-bit digest)."""
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    low = int.from_bytes(digest[:4], "little")
    high = int.from_bytes(digest[4:], "little") | 1
    return [(low + i * high) % FILTER_BITS for i in range(FILTER_HASHES)]


class RedisLogAnalysis:
    """Failure records and log search on the store's Redis; see the module docstring."""

    def __init__(self, host: Host, prefix: str) -> None:
        self.host = host
        self.prefix = prefix
        client = host._redis
        self._set_failure = client.register_script(_SET_FAILURE)
        self._clear = client.register_script(_CLEAR)
        self._extend = client.register_script(_EXTEND_FILTER)
        self._lines = client.register_script(redis_scripts.LINES)

    @property
    def _redis(self) -> redis.Redis:
        return self.host._redis

    def _key(self, *parts: str) -> str:
        return self.host._key(*parts)

    # -- failures: written after each append --------------------------------------------

    def after_append(self, recorder: Recorder, answer: dict[str, Any]) -> None:
        """Explain the deployments the append failed or logged to after they failed;
        clear those a re-run turned around."""
        named = {f"#{index - 1}": deployment for index, _, deployment in answer["stored"]}
        explain_ids: list[str] = []
        for touched in recorder.deployments():
            deployment_id = named.get(touched.key, touched.key)
            if deployment_id.startswith("#"):
                continue  # nothing of it was stored (every event a repeat)
            action = action_for(touched)
            if action == "explain":
                explain_ids.append(deployment_id)
            elif action == "clear":
                self._clear(args=[self.prefix, deployment_id, "0"])
        if explain_ids:
            self.explain(explain_ids)

    def explain(self, deployment_ids: Sequence[str]) -> None:
        """Explain each deployment from its fold as stored now (cleared if not failed, or
        gone)."""
        for deployment_id, fold in self._folds(deployment_ids).items():
            if fold is None:  # pruned meanwhile, or never stored: nothing of it may stay
                self._clear(args=[self.prefix, deployment_id, "1"])
                continue
            if fold.headline()[0] != "failure":
                self._clear(args=[self.prefix, deployment_id, "0"])
                continue
            record = explain(deployment_id, fold, self._explained_lines(deployment_id), None)
            self._write(record)

    def _folds(self, deployment_ids: Sequence[str]) -> dict[str, Fold | None]:
        with self._redis.pipeline(transaction=False) as pipe:
            for deployment_id in deployment_ids:
                self.host._pipe_deployment(pipe, deployment_id)
            rows = pipe.execute()
        result: dict[str, Fold | None] = {}
        for deployment_id, row in zip(deployment_ids, rows, strict=True):
            stored = self.host._stored(deployment_id, row)
            result[deployment_id] = None if stored is None else stored.fold
        return result

    def lines(
        self, deployment_id: str, *, after: int = 0, upto: int | None = None, count: int
    ) -> list[tuple[int, str, LogLine]]:
        """The deployment's first ``count`` lines after line ``after``, or (``upto``) its last
        ``count`` up to that line; oldest first."""
        key = self._key("ln:", deployment_id)
        if upto is None:
            raws = self._lines(args=[key, after, count, "after"])
        else:
            raws = self._lines(args=[key, upto, count, "upto"])
        return [parse_line(raw) for raw in cast(list[bytes], raws)]

    def _explained_lines(self, deployment_id: str) -> list[LogRow]:
        raws = self._redis.lrange(self._key("ln:", deployment_id), -MAX_EXPLAIN_LINES, -1)
        return [
            log_row(line_id, line, event_id)
            for line_id, event_id, line in map(parse_line, cast(list[bytes], raws))
        ]

    def _write(self, record: FailureRecord) -> None:
        row = row_of(record)
        self._set_failure(
            args=[
                self.prefix,
                record["deployment_id"],
                record["signature"],
                millis(record["failed_at"]),
                record["failed_at"],
                orjson.dumps(record),
                orjson.dumps(list(row)),
            ]
        )

    def drop(self, deployment_id: str) -> None:
        """Forget a pruned deployment's failure and word filter."""
        self._clear(args=[self.prefix, deployment_id, "1"])

    def reconcile(self) -> int:
        """Explain failed deployments that have no record and clear records of deployments
        that are no longer failed (after a crash between an append and its failure write,
        and for stores from before these keys); return how many were put right."""
        failed_key = self.host._list_key(None, "failure", None)
        failed = {
            member.decode().split("\0", 1)[1]
            for member in cast(list[bytes], self._redis.zrange(failed_key, 0, -1))
        }
        members = cast(list[bytes], self._redis.zrange(self._key("failures"), 0, -1))
        recorded = {member.decode() for member in members}
        missing = sorted(failed - recorded)
        stale = sorted(recorded - failed)
        if missing or stale:
            self.explain([*missing, *stale])  # a stale one is cleared unless it failed again
            log.info("failure records: %d explained, %d looked at again", len(missing), len(stale))
        return len(missing) + len(stale)

    # -- failures: reads ------------------------------------------------------------------

    def failure(self, deployment_id: str) -> FailureView | None:
        key = self._key("fail:", deployment_id)
        raw, signature = cast(list[bytes | None], self._redis.hmget(key, "record", "signature"))
        if raw is None or signature is None:
            return None
        index = self._key("fsig:", signature.decode())
        count = int(cast(int | None, self._redis.zrank(index, deployment_id)) or 0)
        first_seen: str | None = None
        recent: list[tuple[str, str]] = []
        if count:  # the earlier ones: the oldest, and the newest few (zset order = failed_at, id)
            with self._redis.pipeline(transaction=False) as pipe:
                pipe.zrange(index, 0, 0)
                pipe.zrange(index, max(0, count - RECENT_DEPLOYMENTS), count - 1)
                first, newest = pipe.execute()
            ids = [first[0].decode(), *(member.decode() for member in reversed(newest))]
            times = self._failed_at(ids)
            first_seen = times[0]
            recent = list(zip(times[1:], ids[1:], strict=True))
        record: FailureRecord = orjson.loads(raw)
        return failure_view(record, seen_of(count, first_seen, recent))

    def _failed_at(self, deployment_ids: list[str]) -> list[str]:
        if not deployment_ids:
            return []
        with self._redis.pipeline(transaction=False) as pipe:
            for deployment_id in deployment_ids:
                pipe.hget(self._key("fail:", deployment_id), "failed_at")
            return [(value or b"").decode() for value in pipe.execute()]

    def failures(
        self, *, project: str | None, since: str, limit: int, cursor: str | None
    ) -> Page[FailureGroup]:
        low = str(millis(since)) if since else "-inf"
        members = cast(list[bytes], self._redis.zrangebyscore(self._key("failures"), low, "+inf"))
        rows: list[FailureRow] = []
        for start in range(0, len(members), CHUNK):
            with self._redis.pipeline(transaction=False) as pipe:
                for member in members[start : start + CHUNK]:
                    pipe.hget(self._key("fail:", member.decode()), "row")
                for raw in pipe.execute():
                    if raw is not None:
                        row = FailureRow(*orjson.loads(raw))
                        if (project is None or row.project == project) and row.failed_at >= since:
                            rows.append(row)
        items, next_cursor = group_failures(rows, limit=limit, cursor=cursor)
        return Page(items, next_cursor)

    # -- search -------------------------------------------------------------------------

    def search(self, search: LogSearch, *, limit: int, cursor: str | None) -> SearchPage:
        below = decode_search_cursor(cursor) if cursor is not None else 1 << 62
        candidates = self._candidates(search)
        if not candidates:
            return SearchPage([], None)
        newest, covered, projects = self._state(candidates)
        budget = _Budget()
        unindexed = self._catch_up(
            [d for d in candidates if newest[d] > covered[d]], newest, covered, budget
        )
        maybe = self._filtered([d for d in candidates if d not in unindexed and newest[d]], search)
        scan = [d for d in candidates if newest[d] and (d in unindexed or d in maybe)]
        return self._merge(search, scan, newest, projects, below, limit, budget)

    def warm(self, budget: int = WARM_LINES) -> int:
        """Extend the word filters of deployments that logged since they were built, the most
        recently active first, up to ``budget`` lines; return how many lines were read.

        Run with every prune (one process at a time), so searches find filters ready
        instead of building them; a search still extends whatever is left.
        """
        lock = self._redis.lock(self._key("lock:filters"), timeout=300, blocking=False)
        if not lock.acquire():
            return 0
        try:
            members = cast(list[bytes], self._redis.zrevrange(self._key("activity"), 0, -1))
            candidates = [member.decode() for member in members]
            if not candidates:
                return 0
            newest, covered, _ = self._state(candidates)
            spent = _Budget()
            behind = [d for d in candidates if newest[d] > covered[d]]
            self._catch_up(behind, newest, covered, spent, limit=budget)
            return spent.indexed
        finally:
            with contextlib.suppress(redis.exceptions.LockError):
                lock.release()

    def _candidates(self, search: LogSearch) -> list[str]:
        if search.deployment_id is not None:
            exists = self._redis.exists(self._key("dep:", search.deployment_id))
            return [search.deployment_id] if exists else []
        if search.project is not None:
            key = self.host._list_key(search.project, None, None)
            members = cast(list[bytes], self._redis.zrange(key, 0, -1))
            return [member.decode().split("\0", 1)[1] for member in members]
        members = cast(list[bytes], self._redis.zrange(self._key("activity"), 0, -1))
        return [member.decode() for member in members]

    def _state(
        self, candidates: list[str]
    ) -> tuple[dict[str, int], dict[str, int], dict[str, str]]:
        """Each candidate's newest line, the line its filter covers, and its project."""
        newest: dict[str, int] = {}
        covered: dict[str, int] = {}
        projects: dict[str, str] = {}
        for start in range(0, len(candidates), CHUNK):
            part = candidates[start : start + CHUNK]
            with self._redis.pipeline(transaction=False) as pipe:
                for deployment_id in part:
                    pipe.lindex(self._key("ln:", deployment_id), -1)
                    pipe.hget(self._key("dep:", deployment_id), "project")
                pipe.hmget(self._key("sxu"), part)
                replies = pipe.execute()
            marks = replies[-1]
            for i, deployment_id in enumerate(part):
                last, project = replies[2 * i], replies[2 * i + 1]
                newest[deployment_id] = parse_line(last)[0] if last else 0
                covered[deployment_id] = int(marks[i] or 0)
                projects[deployment_id] = (project or b"").decode()
        return newest, covered, projects

    def _catch_up(
        self,
        behind: list[str],
        newest: dict[str, int],
        covered: dict[str, int],
        budget: _Budget,
        limit: int | None = None,
    ) -> set[str]:
        """Extend the filters of ``behind`` to their newest line, newest deployments first,
        until ``limit`` lines (default :data:`MAX_INDEX_LINES`) were read; those not
        reached are returned (a search scans them instead)."""
        limit = MAX_INDEX_LINES if limit is None else limit
        left = set(behind)
        for deployment_id in sorted(behind, key=lambda d: -newest[d]):
            if budget.indexed >= limit:
                break
            start = covered[deployment_id]
            while start < newest[deployment_id]:
                entries = self.lines(deployment_id, after=start, count=CHUNK)
                if not entries:
                    break
                keys: set[str] = set()
                for _, _, line in entries:
                    keys |= _keys_of(line.text)
                end = entries[-1][0]
                budget.indexed += len(entries)
                bits = sorted({p for key in keys for p in positions(key)})
                if not self._extend_filter(deployment_id, start, end, bits):
                    break  # another search extended it meanwhile: scan it this time
                start = end
            if start >= newest[deployment_id]:
                left.discard(deployment_id)
        return left

    def _extend_filter(self, deployment_id: str, start: int, end: int, bits: list[int]) -> bool:
        for at in range(0, max(len(bits), 1), POSITIONS_PER_CALL):
            part = bits[at : at + POSITIONS_PER_CALL]
            last = at + POSITIONS_PER_CALL >= len(bits)
            if not last:  # set these bits, keep the coverage where it was
                answer = self._extend(args=[self.prefix, deployment_id, start, start, *part])
            else:
                answer = self._extend(args=[self.prefix, deployment_id, start, end, *part])
            if int(answer) != 1:
                return False
        return True

    def _filtered(self, indexed: list[str], search: LogSearch) -> set[str]:
        """The deployments whose filters may hold every word the query needs."""
        needed = sorted({p for key in _needed(search.query) for p in positions(key)})
        if not needed:
            return set(indexed)
        found: set[str] = set()
        for start in range(0, len(indexed), CHUNK):
            part = indexed[start : start + CHUNK]
            with self._redis.pipeline(transaction=False) as pipe:
                for deployment_id in part:
                    field = pipe.bitfield(self._key("sxb:", deployment_id))
                    for position in needed:
                        field.get("u1", position)
                    field.execute()
                replies = pipe.execute()
            found.update(d for d, bits in zip(part, replies, strict=True) if all(bits))
        return found

    def _merge(
        self,
        search: LogSearch,
        scan: list[str],
        newest: dict[str, int],
        projects: dict[str, str],
        below: int,
        limit: int,
        budget: _Budget,
    ) -> SearchPage:
        """Scan ``scan`` newest line first, merged across deployments by line id."""
        heap = [(-min(newest[d], below - 1), d) for d in scan if min(newest[d], below - 1) > 0]
        heapq.heapify(heap)
        found: list[SearchHit] = []
        while heap:
            top = -heap[0][0]
            if len(found) > limit and int(found[limit]["id"]) > top:
                break  # nothing left unread can come before the page's last line
            if budget.scanned >= MAX_SCAN_LINES:  # answer what is certain: lines above top
                found = [h for h in found if int(h["id"]) > top]
                if len(found) > limit:
                    last = int(found[limit - 1]["id"])
                    return SearchPage(found[:limit], encode_search_cursor(last))
                return SearchPage(found, encode_search_cursor(top + 1), truncated=True)
            _, deployment_id = heapq.heappop(heap)
            entries = self.lines(deployment_id, upto=top, count=CHUNK)
            entries.reverse()
            budget.scanned += len(entries)
            for line_id, _, line in entries:
                result = hit(search, line_id, deployment_id, projects[deployment_id], line)
                if result is not None:
                    found.append(result)
            if len(entries) == CHUNK:
                rest = entries[-1][0] - 1
                if rest > 0:
                    heapq.heappush(heap, (-rest, deployment_id))
            found.sort(key=lambda h: -int(h["id"]))
        page = found[:limit]
        more = len(found) > limit
        return SearchPage(page, encode_search_cursor(int(page[-1]["id"])) if more else None)


class _Budget:
    """Lines one search has read so far, scanning and indexing."""

    __slots__ = ("indexed", "scanned")

    def __init__(self) -> None:
        self.scanned = 0
        self.indexed = 0
