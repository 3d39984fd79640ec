"""Prometheus metrics the hub exports at ``/metrics``."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS_ACCEPTED = Counter("hub_events_accepted_total", "Events stored, by type.", ["type"])
REQUESTS_REJECTED = Counter(
    "hub_ingest_rejected_total", "Ingest requests refused, by reason.", ["reason"]
)
DUPLICATES = Counter("hub_ingest_duplicates_total", "Redelivered requests or events ignored.")
INGEST_SECONDS = Histogram("hub_ingest_seconds", "Time to validate and store one request.")
CONNECTIONS = Gauge("hub_ws_connections", "Open WebSocket and SSE connections.")
DELIVERIES = Counter("hub_deliveries_total", "Event frames written to WebSocket and SSE clients.")
SUBSCRIPTIONS = Gauge("hub_ws_subscriptions", "Subscriptions held by open WebSocket connections.")
DISCONNECTS = Counter(
    "hub_stream_disconnects_total", "WebSocket and SSE connections ended, by reason.", ["reason"]
)
REFUSED = Counter(
    "hub_stream_refused_total", "WebSocket and SSE connections refused, by error code.", ["code"]
)
SLOW_DISCONNECTS = Counter(
    "hub_slow_client_disconnects_total", "Clients closed for not keeping up."
)
