"""The Flask app factory: wiring only, no behaviour of its own.

``create_app`` puts the layers together: a store (``storage/``), the fan-out
hub (``broadcaster/``), the receiver and read API (``app/``) and alerts
(``alerts/``).  gunicorn loads it as ``server.app:create_app()`` with the settings
of ``server/gunicorn_conf.py``.
"""

from __future__ import annotations

import logging

import gevent
from flask import Flask
from flask_compress import Compress

from alerts.runner import start_alerts
from app import ratelimit
from app.address_caps import AddressCaps
from app.config import Settings
from app.context import HubContext
from app.encodings import RefusedCodings
from app.errors import register_error_handlers
from app.lean_ingest import LeanIngest
from app.logconfig import configure_logging
from app.metrics import REDIS_RECONNECTS, STORE_GROUP_BATCHES
from app.proxy import TrustedProxyFix
from app.requestlog import RequestLog
from app.validation import check_settings, load_settings
from broadcaster import ws
from broadcaster.fanout_clock import FanoutClock
from broadcaster.hub import Hub
from ledger.retention import Retention
from storage.factory import create_store
from storage.store import Notifier, Store, StoreHooks

log = logging.getLogger(__name__)

#: Where the public paths of CONTRACT.md live; each is also served without the prefix.
PUBLIC_PREFIX = "/project-dashboard"
PRUNE_INTERVAL_SECONDS = 300.0
#: Responses smaller than this are sent as they are: compressing them saves nothing.
COMPRESS_MIN_BYTES = 500


def create_app(settings: Settings | None = None) -> Flask:
    if settings is None:
        settings = load_settings()
    else:
        check_settings(settings)
    configure_logging(settings)
    app = Flask(__name__, static_folder=None)  # app/static is served by app.dashboard
    # Paths match as sent: "/api/deployments/%2F/logs" is a deployment nobody has (404),
    # not a redirect to "/api/deployments/logs", which is another resource entirely.
    app.url_map.merge_slashes = False
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    # JSON and static files over half a kilobyte go out compressed when the client takes
    # it (users run the hub without nginx too); event streams are never held back for it.
    app.config.update(COMPRESS_ALGORITHM=["br", "gzip"], COMPRESS_MIN_SIZE=COMPRESS_MIN_BYTES)
    compress = Compress(app)
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    store = create_store(
        settings.store,
        synchronous=settings.sqlite_synchronous,
        retention=Retention(settings.retention_days, settings.retention_max_events),
        hooks=StoreHooks(on_group=STORE_GROUP_BATCHES.observe, on_reconnect=REDIS_RECONNECTS.inc),
    )
    clock = FanoutClock()
    hub = Hub(
        store,
        tail_interval=settings.tail_interval,
        fanout_delay=settings.fanout_delay,
        on_stored=clock.stored,
        on_dispatch=clock.dispatched,
    )
    if settings.role != "INGEST":  # an ingest-only process fans nothing out
        hub.start()
        if isinstance(store, Notifier):
            store.start_listener(hub.notify)
    app.extensions["hub_context"] = HubContext(settings=settings, store=store, notify=hub.notify)
    app.extensions["hub"] = hub
    app.extensions["alerts"] = start_alerts(settings, store, hub)
    _register_routes(app, settings.role)
    if settings.role != "INGEST":
        ws.init_app(app, settings, hub)
    register_error_handlers(app, settings.max_body_bytes)
    ratelimit.init_app(app, settings)
    routed = app.wsgi_app
    if settings.role != "STREAM":  # the hot ingest routes skip Flask's request machinery
        routed = LeanIngest(
            routed,
            app.extensions["hub_context"],
            app.extensions["rate_limits"],
            (f"{prefix}/api" for prefix in ("", PUBLIC_PREFIX)),
            flask=app,
            compress=compress,
        )
    app.wsgi_app = TrustedProxyFix(  # type: ignore[method-assign]
        RequestLog(
            AddressCaps(
                RefusedCodings(routed),
                settings.max_connections_per_address,
                limit_loopback=settings.rate_limit_loopback,
            )
        ),
        settings.trusted_proxies,
    )
    gevent.spawn(_prune_forever, store)
    if not settings.auth_required:
        log.warning("no HUB_WEBHOOK_SECRETS or HUB_WEBHOOK_TOKENS set: unsigned posts are accepted")
    return app


def _register_routes(app: Flask, role: str) -> None:
    """Read API, health, dashboard and the OpenAPI document everywhere; webhooks unless
    stream; WS/SSE unless ingest."""
    from app.analysis import analysis
    from app.api import api
    from app.badge import badge_routes
    from app.dashboard import dashboard
    from app.delivery_metrics import delivery_routes
    from app.environments import environment_routes
    from app.health import health
    from app.openapi import openapi_routes
    from app.webhooks import webhooks
    from broadcaster.sse import stream

    for prefix, suffix in (("", ""), (PUBLIC_PREFIX, "_public")):
        if role != "STREAM":
            app.register_blueprint(webhooks, url_prefix=f"{prefix}/api", name=f"webhooks{suffix}")
        app.register_blueprint(api, url_prefix=f"{prefix}/api", name=f"api{suffix}")
        app.register_blueprint(analysis, url_prefix=f"{prefix}/api", name=f"analysis{suffix}")
        app.register_blueprint(health, url_prefix=prefix or None, name=f"health{suffix}")
        for pages in (dashboard, badge_routes, delivery_routes, environment_routes, openapi_routes):
            app.register_blueprint(pages, url_prefix=prefix or None, name=f"{pages.name}{suffix}")
        if role != "INGEST":
            app.register_blueprint(stream, url_prefix=f"{prefix}/api", name=f"stream{suffix}")
            app.register_blueprint(
                ws.websocket, url_prefix=prefix or None, name=f"websocket{suffix}"
            )


def _prune_forever(store: Store) -> None:
    while True:
        try:
            store.prune()
        except Exception:  # retention must never take the hub down; try again later
            log.exception("pruning failed")
        gevent.sleep(PRUNE_INTERVAL_SECONDS)
