"""Prometheus metrics the hub exports at ``/metrics``.

Under gunicorn every worker keeps its own samples; ``gunicorn.conf.py`` sets
``PROMETHEUS_MULTIPROC_DIR`` so that :func:`exposition` adds them up, whichever
worker answers the scrape.  Gauges therefore say how to combine workers
(``livesum``: the sum over workers still alive).
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

if TYPE_CHECKING:
    from broadcaster.hub import Envelope

EVENTS_ACCEPTED = Counter("hub_events_accepted_total", "Events stored, by type.", ["type"])
REQUESTS_REJECTED = Counter(
    "hub_ingest_rejected_total", "Ingest requests refused, by reason.", ["reason"]
)
DUPLICATES = Counter("hub_ingest_duplicates_total", "Redelivered requests or events ignored.")
INGEST_SECONDS = Histogram("hub_ingest_seconds", "Time to validate and store one request.")
CONNECTIONS = Gauge(
    "hub_ws_connections", "Open WebSocket and SSE connections.", multiprocess_mode="livesum"
)
DELIVERIES = Counter(
    "hub_deliveries_total", "Live event frames queued to WebSocket and SSE clients."
)
SUBSCRIPTIONS = Gauge(
    "hub_ws_subscriptions",
    "Subscriptions held by open WebSocket connections.",
    multiprocess_mode="livesum",
)
DISCONNECTS = Counter(
    "hub_stream_disconnects_total", "WebSocket and SSE connections ended, by reason.", ["reason"]
)
REFUSED = Counter(
    "hub_stream_refused_total", "WebSocket and SSE connections refused, by error code.", ["code"]
)
SLOW_DISCONNECTS = Counter(
    "hub_slow_client_disconnects_total", "Clients closed for not keeping up."
)
STORE_SECONDS = Histogram(
    "hub_store_seconds", "Time to store one accepted request's events, its commit included."
)
STORE_GROUP_BATCHES = Histogram(
    "hub_store_group_batches",
    "Ingest requests written in one SQLite transaction (group commit under gevent).",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)
#: From 1 ms to 10 s: local wake-ups take about a millisecond, polls up to HUB_TAIL_INTERVAL.
FANOUT_LAG_SECONDS = Histogram(
    "hub_fanout_lag_seconds",
    "From an event stored by this worker to its frames queued for subscribers.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
REDIS_RECONNECTS = Counter(
    "hub_redis_reconnects_total", "Times the Redis store reconnected after losing Redis."
)
RATE_LIMITED = Counter(
    "hub_rate_limited_total",
    "Requests and connections refused by a rate limit, by limit.",
    ["limit"],
)
ALERTS_SENT = Counter(
    "hub_alerts_sent_total", "Alerts delivered, by target kind and cause.", ["kind", "cause"]
)
ALERTS_FAILED = Counter(
    "hub_alerts_failed_total",
    "Alerts not delivered after every retry, by target kind and cause.",
    ["kind", "cause"],
)


class FanoutClock:
    """When this worker stored its recent events, so the hub can time their fan-out.

    Ingest records each stored sequence number with the time of its commit;
    the hub's dispatch callback observes the time since then once for each
    commit time among a run of events that reached a subscriber (so one
    sample per request, not one per event of a batch).  Only this worker's
    own events are timed (another worker's commit time is not known here),
    which with several workers is a sample of the traffic.  Both ends run in
    order of sequence number, so a bounded deque is enough; while nobody
    subscribes, old entries simply fall off its left end.
    """

    def __init__(self, capacity: int = 10000) -> None:
        self._stored: deque[tuple[int, float]] = deque(maxlen=capacity)

    def stored(self, seqs: Iterable[int]) -> None:
        now = time.monotonic()
        self._stored.extend((seq, now) for seq in seqs)

    def dispatched(self, run: list[Envelope], delivered: int) -> None:
        """``run``: envelopes in order of seq; ``delivered``: frames queued for them."""
        if delivered:  # counted here, once per run, not by each connection's writer
            DELIVERIES.inc(delivered)
        stored, first, last = self._stored, run[0].seq, run[-1].seq
        while stored and stored[0][0] < first:
            stored.popleft()
        timed = None
        while stored and stored[0][0] <= last:
            _, at = stored.popleft()
            if delivered and at != timed:
                FANOUT_LAG_SECONDS.observe(time.monotonic() - at)
                timed = at


#: This process's clock; the app passes it to its Hub and ingest feeds it.
FANOUT_CLOCK = FanoutClock()


def exposition() -> tuple[bytes, str]:
    """The text a scrape gets: every worker's samples under gunicorn, this process's otherwise."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # untyped __init__ upstream
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
