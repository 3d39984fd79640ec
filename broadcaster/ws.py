"""The WebSocket routes: admit before the upgrade, then serve one :class:`Connection`.

Refusals happen before the upgrade, as plain HTTP errors: 426 for a
WebSocket version other than 13, 401 for a missing or wrong read token, 403
for an Origin not allowed, 503 when the worker is full or shutting down.
After the upgrade the request ends, and broadcaster/connection.py serves
the client on a greenlet of its own, with a socket of its own (a duplicate
of the request's, which gunicorn closes).  The request's greenlet would
otherwise sit under gunicorn's, the middlewares' and Flask's frames for as
long as the client stays, holding their request objects and a deep saved
stack: most of what an idle connection cost (``docs/BENCHMARKS.md``).  On
SIGTERM (gunicorn's graceful shutdown) every connection is closed with 1001,
and the worker waits for those closes before it exits (:func:`drain`).
"""

from __future__ import annotations

import _socket
import contextvars
import itertools
import logging
import os
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any, Protocol

import gevent
import gevent.event
import gevent.lock
import gevent.pool
from flask import Blueprint, Flask, current_app, g, request
from flask_sock import Sock

from app.address_caps import HOLD
from app.auth import check_read_token
from app.config import Settings
from app.errors import (
    BadRequest,
    OriginNotAllowed,
    TooManyConnections,
    Unauthorized,
    UpgradeRequired,
)
from app.metrics import (
    CONNECTIONS,
    REFUSED,
)
from app.ratelimit import current_limits
from app.requestlog import REQUEST_ID
from broadcaster import deflate
from broadcaster.connection import Connection, Unstarted
from broadcaster.framing import FRAMES, FrameCache, deflated_frames
from broadcaster.hub import Hub
from broadcaster.limits import Limits
from broadcaster.session import Session
from ledger import version

log = logging.getLogger(__name__)

websocket = Blueprint("websocket", __name__)
sock = Sock()
#: This worker's connections, each on its own greenlet once its request has ended.
SERVING = gevent.pool.Group()


def drain(timeout: float) -> None:
    """Wait up to ``timeout`` seconds for every connection to finish (the worker is exiting)."""
    SERVING.join(timeout=timeout)


class Closable(Protocol):
    def go_away(self) -> None: ...


class Connections:
    """This worker's WebSocket and SSE clients: the hub they follow, their limits,
    admission and shutdown.

    Admission is counted from before the upgrade to the end of the request,
    so ``HUB_WS_MAX_CONNECTIONS`` holds even while handshakes are in flight.
    """

    def __init__(self, settings: Settings, hub: Hub) -> None:
        self.settings = settings
        self.hub = hub
        self.limits = Limits.from_settings(settings)
        self.limit = self.limits.max_connections
        self.admitted = 0
        self.open: set[Closable] = set()
        self.closing = False
        self._ids = itertools.count(1)

    def admit(self) -> None:
        if self.closing or self.admitted >= self.limit:
            why = "shutting down" if self.closing else f"at its limit of {self.limit} connections"
            REFUSED.labels(TooManyConnections.code).inc()
            raise TooManyConnections(
                f"this worker is {why}; try again shortly",
                {"limit": self.limit},
                headers={"Retry-After": "5"},
            )
        self.admitted += 1
        CONNECTIONS.inc()

    def release(self) -> None:
        self.admitted -= 1
        CONNECTIONS.dec()

    def next_id(self) -> str:
        return f"{os.getpid()}-{next(self._ids)}"

    def shutdown(self) -> None:
        """Refuse new connections and close the open ones (1001 / end of stream)."""
        self.closing = True
        if self.open:
            log.info("closing %d connections for shutdown", len(self.open))
        for connection in list(self.open):
            connection.go_away()


def current_connections() -> Connections:
    connections = current_app.extensions["connections"]
    assert isinstance(connections, Connections)  # noqa: S101 - init_app always sets it
    return connections


def check_access(settings: Settings, *, check_origin: bool) -> None:
    """Refuse a reader without a valid read token, or (WebSocket) from a foreign Origin.

    Browsers cannot set headers on a WebSocket, hence ``?token=``; a missing
    Origin is a non-browser client, which the Origin check does not concern.
    """
    try:
        check_read_token(request.headers, request.args.get("token"), settings.read_tokens)
    except Unauthorized:
        REFUSED.labels(Unauthorized.code).inc()
        raise
    origin = request.headers.get("Origin")
    if check_origin and settings.allowed_origins and origin is not None:
        allowed = {o.rstrip("/").lower() for o in settings.allowed_origins}
        if origin.rstrip("/").lower() not in allowed:
            REFUSED.labels(OriginNotAllowed.code).inc()
            raise OriginNotAllowed(f"origin {origin[:100]!r} may not open a WebSocket here")


@websocket.before_request
def _admit() -> None:
    """Everything that can refuse a client, done while it can still get an HTTP status."""
    if request.headers.get("Sec-WebSocket-Version") != "13":
        raise UpgradeRequired(
            "only WebSocket version 13 is supported", headers={"Sec-WebSocket-Version": "13"}
        )
    if not request.headers.get("Sec-WebSocket-Key"):
        raise BadRequest("missing Sec-WebSocket-Key")
    current_limits().check_ws_connect(request.remote_addr)
    connections = current_connections()
    check_access(connections.settings, check_origin=True)
    _offer_deflate(request.environ, connections.settings.ws_deflate)
    connections.admit()
    g.websocket_admitted = True


def _offer_deflate(environ: dict[str, Any], mode: str) -> None:
    """What the handshake (simple-websocket's) sees of the client's extension offer."""
    offers = environ.pop("HTTP_SEC_WEBSOCKET_EXTENSIONS", None)
    if offers is None or mode == "OFF":  # never negotiated
        return
    if mode == "SHARED":
        offers = deflate.shared_offer(offers)
    if offers is not None:
        environ["HTTP_SEC_WEBSOCKET_EXTENSIONS"] = offers


@websocket.teardown_request
def _release(_: BaseException | None) -> None:
    if g.pop("websocket_admitted", False):
        current_connections().release()


def _serve(ws: Any) -> None:
    """Take the upgraded connection from simple-websocket and serve it (see connection.py)."""
    connections = current_connections()
    connection_id = connections.next_id()
    protocol = ws.ws.connection
    window_bits = deflate.bound(protocol, connections.limits.max_frame_bytes)
    if window_bits is None:
        frames: FrameCache | None = FRAMES
    elif connections.settings.ws_deflate == "SHARED":
        frames = deflated_frames(window_bits)
    else:
        frames = None  # wsproto's per-connection context
    ws.ws = None  # the handshake's HTTP parser is not needed again, and idles on every connection
    ws.connected = False  # so that flask-sock's own close afterwards sends nothing
    request_id = REQUEST_ID.get() or "-"
    connection = Connection(
        # The C socket, not gevent's: the connection waits with its own watchers, so the
        # cooperative wrapper would only add a Python call to every write.  gunicorn closes
        # the request's own socket.
        _socket.socket(fileno=os.dup(ws.sock.fileno())),
        protocol,
        Session(connections.limits, version=version(), connection_id=connection_id),
        connections.hub,
        connections.limits,
        connection_id=connection_id,
        request_id=request_id,
        frames=frames,
    )
    hold = request.environ.get(HOLD)
    release_address = hold() if hold is not None else None
    connections.open.add(connection)
    g.pop("websocket_admitted")  # released when the connection ends, not with the request
    context = contextvars.Context()  # the request id for its log lines, nothing of Flask's
    context.run(REQUEST_ID.set, request_id)
    SERVING.spawn(context.run, _serve_detached, connections, connection, release_address)
    log.info("websocket open", extra={"conn_id": connection_id})


def _serve_detached(
    connections: Connections, connection: Connection, release_address: Callable[[], None] | None
) -> None:
    try:
        connection.run()
    finally:
        connections.open.discard(connection)
        connections.release()
        if release_address is not None:
            release_address()


for _path, _endpoint in (("/ws", "connect"), ("/ws/", "connect_slash")):
    sock.route(_path, bp=websocket, endpoint=_endpoint)(_serve)


def init_app(app: Flask, settings: Settings, hub: Hub) -> None:
    """Per-worker state for the routes of this module and of ``sse.py``."""
    connections = Connections(settings, hub)
    app.extensions["connections"] = connections
    # simple-websocket only performs the handshake: its reader thread is never started and
    # its event never waited on, since connection.py serves the socket on one greenlet.
    app.config["SOCK_SERVER_OPTIONS"] = {"thread_class": Unstarted, "event_class": object}
    _close_on_sigterm(connections)


def _close_on_sigterm(connections: Connections) -> None:
    """Chain a SIGTERM handler that closes every connection before the worker's own runs.

    gunicorn's worker installs its handler before loading the app; it only
    stops accepting and waits ``graceful_timeout`` for requests to end, which
    WebSockets never do on their own.  Elsewhere (tests, scripts) SIGTERM has
    no Python handler and is left alone.
    """
    previous = signal.getsignal(signal.SIGTERM)
    if not callable(previous) or threading.current_thread() is not threading.main_thread():
        return

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        gevent.spawn(connections.shutdown)
        previous(signum, frame)

    signal.signal(signal.SIGTERM, on_sigterm)
    signal.siginterrupt(signal.SIGTERM, False)  # as gunicorn set it: no EINTR mid-request
