"""Rate limits on ingest (per sender identity and per client address) and on new WebSockets.

A runaway CI loop or a flood of connections must not take the hub from
everyone else.  Each limit is a token bucket per key: ``burst`` requests at
once, refilled at ``rate`` per second; a refused caller gets ``429`` with
``Retry-After`` (the seconds until a token is back) and the usual error body.

Buckets live in the worker process, so with ``HUB_WORKERS=N`` a client may
get up to N times the configured rate (gunicorn spreads connections over the
workers); shared limits would need a round trip to the store on every
request.  The ``limits`` library was considered; its in-memory storage
expires keys with a background timer thread, which under gevent becomes a
greenlet waking many times a second per storage, for what is a few lines of
arithmetic here.  Loopback clients (tools on the host, tests, a local proxy
that does not pass the client's address on) are exempt unless
``HUB_RATE_LIMIT_LOOPBACK`` is set.  At most :data:`MAX_KEYS` buckets are kept
per limit; the least recently used goes first, which forgets only a client
that has been quiet the longest.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable

from flask import Flask, current_app

from app.config import Settings
from app.errors import RateLimited
from app.metrics import RATE_LIMITED
from app.validation import is_loopback

#: Buckets kept per limit, so that memory stays bounded however many senders appear.
MAX_KEYS = 10000


class TokenBuckets:
    """One token bucket per key, ``burst`` deep, refilled at ``rate`` tokens per second."""

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        max_keys: int = MAX_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, when

    def take(self, key: str) -> float:
        """Take one token: ``0.0`` if there was one, else the seconds until there will be."""
        if self.rate <= 0:
            return 0.0
        now = self._clock()
        tokens, then = self._buckets.pop(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - then) * self.rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return wait


class RateLimits:
    """The hub's three limits, built from settings; each check raises :class:`RateLimited`."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit_loopback = settings.rate_limit_loopback
        self.ingest_identity = TokenBuckets(
            settings.ingest_rate, settings.ingest_burst, clock=clock
        )
        self.ingest_address = TokenBuckets(
            settings.ingest_address_rate, settings.ingest_address_burst, clock=clock
        )
        self.ws_connect = TokenBuckets(
            settings.ws_connect_rate, settings.ws_connect_burst, clock=clock
        )

    def _exempt(self, address: str | None) -> bool:
        return not self.limit_loopback and (address is None or is_loopback(address))

    def check_ingest_address(self, address: str | None) -> None:
        if not self._exempt(address):
            _check(self.ingest_address, "ingest_address", str(address), "ingest from this address")

    def check_ingest_identity(self, identity: str, address: str | None) -> None:
        """Per secret or token; anonymous senders are covered by the address limit alone."""
        if identity != "anonymous" and not self._exempt(address):
            _check(self.ingest_identity, "ingest_identity", identity, "ingest with this credential")

    def check_ws_connect(self, address: str | None) -> None:
        if not self._exempt(address):
            _check(self.ws_connect, "ws_connect", str(address), "new WebSockets from this address")


def _check(buckets: TokenBuckets, limit: str, key: str, what: str) -> None:
    wait = buckets.take(key)
    if wait <= 0:
        return
    RATE_LIMITED.labels(limit).inc()
    retry_after = max(1, math.ceil(wait))
    raise RateLimited(
        f"too many requests: {what} is limited to {buckets.rate:g}/s "
        f"(bursts of {buckets.burst}); retry after {retry_after} s",
        {
            "limit": limit,
            "rate_per_second": buckets.rate,
            "burst": buckets.burst,
            "retry_after": retry_after,
        },
        headers={"Retry-After": str(retry_after)},
    )


def init_app(app: Flask, settings: Settings) -> None:
    app.extensions["rate_limits"] = RateLimits(settings)


def current_limits() -> RateLimits:
    limits = current_app.extensions["rate_limits"]
    assert isinstance(limits, RateLimits)  # noqa: S101 - create_app always sets it
    return limits
