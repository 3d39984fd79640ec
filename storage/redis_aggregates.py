"""Aggregates in the Redis store: counters moved in the script that writes the fold.

Works beside :class:`~storage.redis_store.RedisStore` on the same Redis and prefix.  The
rules are the ledger's (``ledger/aggregates.py``, ``ledger/delivery.py``), as
in ``storage/sqlite_aggregates.py``; what differs is where the counts move.
SQLite moves them in the writer's transaction; here the fold is written after
the append by a compare-and-set (``SET_VIEW``), and the counts move in that same
script call, only when it replaces the fold, so a fold and its counts are
never seen apart.  Python decides every change (:func:`moves`) from the facts
counted before; the script applies them only if the stored facts are still
those (``-1`` otherwise: another process moved them first, and the change is
decided again from the new ones).  ``DROP_DEPLOYMENT`` takes them back the same
way when retention drops the deployment.

Keys, under the store's prefix ``P`` (``storage/redis_scripts.py`` lists them all):
``P facts:<id>`` the facts counted for a deployment; ``P agg:<group>`` one
hash per group of :func:`ledger.aggregates.cells` (a project's statuses, a UTC
day's starts, ...), so that each stays small; ``P end:<key>`` the completions
an outage day summary (:data:`ledger.delivery.OutageKey`) is made of, summed
up by :meth:`Outages.of <ledger.delivery.Outages.of>` when read.

A store from before these keys (or of another :data:`AGGREGATES_VERSION`) gets
them counted from its stored folds when first opened, by one process under a
lock while the others wait, as its layout upgrade is.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Protocol, cast

import orjson
import redis

from ledger.aggregates import Cell, Facts, cells, change, facts, join, split
from ledger.delivery import OutageKey, Outages, ended, outage_keys
from ledger.fold import Fold
from storage import redis_scripts
from storage.redis_keys import glob, release
from storage.store import StoreUnavailable

log = logging.getLogger(__name__)

#: The keys' layout; a store of another is counted again when opened.
AGGREGATES_VERSION = b"1"
#: Seconds a process opening the store waits for another one counting the aggregates.
BUILD_LOCK_SECONDS = 600.0
#: Keys read per round trip when the aggregates are read whole or counted.
CHUNK = 500


def encode_facts(item: Facts | None) -> str:
    return "" if item is None else orjson.dumps(list(item)).decode()


def decode_facts(raw: bytes | None) -> Facts | None:
    return Facts(*orjson.loads(raw)) if raw else None


def end_key(key: OutageKey) -> str:
    """``end:<project>␟<day>`` (all environments) or ``end:<project>␟<day>␟<environment>``."""
    project, environment, day = key
    return "end:" + (join(project, day) if environment is None else join(project, day, environment))


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
    kept = outage_keys(after)
    for key in outage_keys(before):
        if key not in kept:
            ops += ["d", end_key(key), deployment_id, ""]
    end = ended(after) if after is not None else None
    for key in kept:
        ops += ["s", end_key(key), deployment_id, join(*cast(tuple[str, str], end))]
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

    def _scan(self, family: str) -> Iterator[str]:
        """The keys of ``family`` (under the prefix), without the prefix."""
        pattern = glob(self._key(family)) + "*"
        for key in cast(Iterator[bytes], self._redis.scan_iter(match=pattern, count=1000)):
            yield key.decode()[len(self.prefix) :]

    # -- opening -----------------------------------------------------------------------

    def build(self) -> None:
        """Count every stored fold when the store has no aggregates of this layout yet (any
        it has are dropped first): the first process to open it does, the others wait."""
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
            stale = [
                self._key(k) for family in ("agg:", "end:", "facts:") for k in self._scan(family)
            ]
            for start in range(0, len(stale), CHUNK):
                self._redis.delete(*stale[start : start + CHUNK])
            deployments = sorted(k[len("dep:") :] for k in self._scan("dep:"))
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
            before = self.counted(deployment_id)
            answer = self._count_script(
                args=[
                    self.prefix,
                    deployment_id,
                    encode_facts(before),
                    encode_facts(item),
                    *moves(deployment_id, before, item),
                ]
            )
            if int(answer) != -1:
                return

    # -- writing -----------------------------------------------------------------------

    def counted(self, deployment_id: str) -> Facts | None:
        """The facts the deployment is counted with now."""
        return decode_facts(cast(bytes | None, self._redis.get(self._key("facts:", deployment_id))))

    def count_args(self, deployment_id: str, item: Facts | None) -> list[str]:
        """What ``SET_VIEW`` and ``DROP_DEPLOYMENT`` take to move the counts to ``item``'s,
        decided from the facts counted now."""
        before = self.counted(deployment_id)
        return [encode_facts(before), encode_facts(item), *moves(deployment_id, before, item)]

    # -- reading -----------------------------------------------------------------------

    def _hashes(self, family: str) -> Iterator[tuple[str, dict[bytes, bytes]]]:
        keys = list(self._scan(family))
        for start in range(0, len(keys), CHUNK):
            part = keys[start : start + CHUNK]
            with self._redis.pipeline(transaction=False) as pipe:
                for key in part:
                    pipe.hgetall(self._key(key))
                yield from zip(part, pipe.execute(), strict=True)

    def aggregate_cells(self) -> dict[Cell, int]:
        """Every counter, for the operator check to compare with a recomputation."""
        return {
            (key[len("agg:") :], field.decode()): int(n)
            for key, found in self._hashes("agg:")
            for field, n in found.items()
        }

    def outage_days(self) -> dict[OutageKey, Outages]:
        """Every day summary of outages, for the check to compare with a recomputation."""
        found: dict[OutageKey, Outages] = {}
        for key, ends in self._hashes("end:"):
            project, day, *environment = split(key[len("end:") :])
            pairs = [cast(tuple[str, str], tuple(split(v.decode()))) for v in ends.values()]
            if pairs:
                found[project, environment[0] if environment else None, day] = Outages.of(pairs)
        return found
