"""Prometheus metrics the hub exports at ``/metrics``.

Under gunicorn every worker keeps its own samples; ``server/gunicorn_conf.py`` sets
``PROMETHEUS_MULTIPROC_DIR`` so that :func:`exposition` adds them up, whichever
worker answers the scrape.  Gauges therefore say how to combine workers
(``livesum``: the sum over workers still alive).
"""

from __future__ import annotations

import os

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


#: EVENTS_ACCEPTED's sample of each event type (a bounded set), looked up once: finding
#: it by ``labels`` costs more than the increment itself.
_ACCEPTED_BY_TYPE: dict[str, Counter] = {}


def count_accepted(kind: str, count: int) -> None:
    """Add ``count`` stored events of type ``kind`` to EVENTS_ACCEPTED."""
    sample = _ACCEPTED_BY_TYPE.get(kind)
    if sample is None:
        sample = _ACCEPTED_BY_TYPE[kind] = EVENTS_ACCEPTED.labels(kind)
    sample.inc(count)


def exposition() -> tuple[bytes, str]:
    """The text a scrape gets: every worker's samples under gunicorn, this process's otherwise."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # untyped __init__ upstream
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
