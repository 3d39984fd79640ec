"""Liveness and readiness, for load balancers and process managers."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from app.auth import check_read_token
from app.context import current_context
from app.errors import BackendUnavailable
from app.metrics import exposition
from ledger import version
from storage.store import StoreUnavailable

health = Blueprint("health", __name__)


@health.get("/healthz")
def healthz() -> Response:
    """The process answers, with the hub's version; says nothing about the store."""
    return jsonify({"status": "ok", "version": version()})


@health.get("/readyz")
def readyz() -> Response:
    """Ready only while the store answers, so a balancer stops sending when it does not."""
    try:
        current_context().store.ping()
    except StoreUnavailable as exc:
        raise BackendUnavailable(f"store unreachable: {exc}") from None
    return jsonify({"status": "ready", "store": "ok"})


@health.get("/metrics")
def metrics() -> Response:
    """Every worker's samples added up (``app.metrics.exposition``), to those who may read.

    Metrics name projects, senders' failure counts and the hub's load: they need
    ``HUB_METRICS_TOKENS``, else a read token whenever reads need one.
    """
    settings = current_context().settings
    check_read_token(
        request.headers,
        request.args.get("token"),
        settings.metrics_tokens or settings.read_tokens,
    )
    body, content_type = exposition()
    return Response(body, content_type=content_type)
