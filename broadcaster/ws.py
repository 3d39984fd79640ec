"""The WebSocket routes: admit before the upgrade, then run one :class:`Session` per connection.

flask-sock hands each connection to us as a simple-websocket ``Server``.  Its
version 1.1.0 writes a frame with one ``socket.send`` (a large frame can be cut
short and the stream corrupted), lets its reader greenlet (pongs, pings, close
replies) write while another greenlet writes, and has no send timeout.  So
the first thing a connection does is put a :class:`FrameSocket` in place of
the server's socket: every write, whoever makes it, then goes out whole (a
``send`` loop), alone (a lock), and with ``HUB_WS_SEND_TIMEOUT`` as the
longest the peer may take no data; a write that misses it abandons the
connection, since the stream can no longer be trusted.  The deflate context
of permessage-deflate stays in order because data frames are only ever
written by one greenlet.

The writer does not go through wsproto for a client that did not offer
permessage-deflate: a server's uncompressed frame is the same bytes for every
client, so each event is framed once per worker (:class:`FrameCache`) and
whatever is queued goes out in one write.  That is what lets one worker keep
up with a thousand subscribers (docs/BENCHMARKS.md).

Each connection runs three greenlets:

* simple-websocket's reader: reads the socket, answers pings, sends the hub's
  pings every ``HUB_WS_PING_INTERVAL`` and closes (1008) a peer that missed
  the last pong, closes 1009 on a frame over ``HUB_WS_MAX_FRAME_BYTES`` and
  1007 on invalid UTF-8 (wsproto);
* the session greenlet: feeds client frames to the :class:`Session` and
  carries out its subscriptions on the :class:`Hub`;
* the request's own greenlet, the one writer: it drains the connection's
  :class:`Subscriber` queue onto the socket.

A client too slow for its events fills only its own queue: the hub marks it
overflowed without waiting, and the writer closes it with 1013 once the frame
in flight is out.  Refusals happen before the upgrade, as plain HTTP errors:
426 for a WebSocket version other than 13, 401 for a missing or wrong read
token, 403 for an Origin not allowed, 503 when the worker is full or
shutting down.  On SIGTERM (gunicorn's graceful shutdown) every connection is
closed with 1001 so the worker can exit at once.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import signal
import socket
import struct
import threading
import time
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from types import FrameType
from typing import Any, Protocol

import gevent
import gevent.event
import gevent.lock
from flask import Blueprint, Flask, current_app, g, request
from flask_sock import Sock
from simple_websocket import ConnectionClosed
from wsproto.events import TextMessage
from wsproto.utilities import LocalProtocolError

from app.auth import check_read_token
from app.config import Settings
from app.context import current_hub
from app.errors import (
    BadRequest,
    OriginNotAllowed,
    TooManyConnections,
    Unauthorized,
    UpgradeRequired,
)
from app.metrics import (
    CONNECTIONS,
    DISCONNECTS,
    REFUSED,
    SLOW_DISCONNECTS,
    SUBSCRIPTIONS,
)
from app.ratelimit import current_limits
from app.requestlog import REQUEST_ID
from broadcaster.backend import StoreUnavailable
from broadcaster.codes import CloseCode
from broadcaster.hub import Envelope, Hub, Subscriber
from broadcaster.session import Limits, Output, Session, Subscribe, replay

log = logging.getLogger(__name__)

try:
    VERSION = package_version("deploy-dashboard-hub")
except PackageNotFoundError:  # pragma: no cover - running from a tree that was never installed
    VERSION = "unknown"

#: Seconds the writer waits for the client's answer to a close frame before dropping it.
CLOSE_TIMEOUT = 5.0
#: Seconds a closing connection keeps reading (and dropping) what the peer still sends.
LINGER_SECONDS = 2.0
#: Client frames read but not yet handled before the client counts as flooding (1008).
MAX_PENDING_FRAMES = 1000
#: Queued in a :class:`Subscriber` only to wake its writer; never sent.
WAKE = ""
#: The writer sends what is queued in one write, up to about this many bytes.
WRITE_BATCH_BYTES = 262144

websocket = Blueprint("websocket", __name__)
sock = Sock()


class Closable(Protocol):
    def go_away(self) -> None: ...


class Connections:
    """This worker's open WebSocket and SSE connections: admission and shutdown.

    Admission is counted from before the upgrade to the end of the request,
    so ``HUB_WS_MAX_CONNECTIONS`` holds even while handshakes are in flight.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
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


class SendTimeout(TimeoutError):
    """A frame was not written within ``HUB_WS_SEND_TIMEOUT``; the stream is abandoned."""


class FrameSocket:
    """Takes the place of the socket inside simple-websocket (see the module docstring).

    It offers exactly what simple-websocket uses of a socket: ``send``,
    ``recv``, ``fileno`` and ``close``.  The send timeout is the raw socket's
    own timeout, which gevent applies to each wait for the peer to make
    room: it costs nothing while the peer keeps up.
    """

    def __init__(
        self, raw: socket.socket, send_timeout: float, before_read: Callable[[], None]
    ) -> None:
        self._raw = raw
        self._lock = gevent.lock.Semaphore()
        self.send_timeout = send_timeout
        self.broken = False
        self._before_read = before_read
        raw.settimeout(send_timeout)

    def send(self, data: bytes) -> int:
        """Write whole frames, alone, or raise :class:`SendTimeout`."""
        if self.broken:
            raise SendTimeout("an earlier frame was not written in time")
        view = memoryview(data)
        with self._lock:
            try:
                while view:
                    view = view[self._raw.send(view) :]
            except TimeoutError:
                self.broken = True
                raise SendTimeout(f"peer took no data for {self.send_timeout} s") from None
        return len(data)

    def recv(self, size: int) -> bytes:
        # gevent's recv returns without yielding while data is waiting, so a
        # client that never stops sending would otherwise starve the worker.
        gevent.sleep(0)
        self._before_read()
        while True:
            try:
                return self._raw.recv(size)
            except TimeoutError:  # the socket's timeout is meant for sends: keep waiting
                continue

    def fileno(self) -> int:
        return self._raw.fileno()

    def close(self) -> None:
        """Close so that the peer reads everything sent, the close frame above all.

        Closing a socket with unread input makes the kernel answer with a
        reset, which can destroy what the peer has not read yet: a client
        closed for a flood or an oversize frame would never learn why.  So
        the sending side is shut first and the input drained (for at most
        ``LINGER_SECONDS``) until the peer closes too.
        """
        with contextlib.suppress(OSError):
            self._raw.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + LINGER_SECONDS
            while (left := deadline - time.monotonic()) > 0:
                self._raw.settimeout(left)
                if not self._raw.recv(65536):
                    break
        self._raw.close()

    def abort(self) -> None:
        """Drop the connection without a close frame; the reader sees EOF and ends."""
        self.broken = True
        with contextlib.suppress(OSError):
            self._raw.shutdown(socket.SHUT_RDWR)


def text_frame(payload: bytes) -> bytes:
    """An unfragmented text frame as a server sends it (unmasked; RFC 6455 section 5.2)."""
    length = len(payload)
    if length < 126:
        return bytes((0x81, length)) + payload
    if length < 65536:
        return struct.pack("!BBH", 0x81, 126, length) + payload
    return struct.pack("!BBQ", 0x81, 127, length) + payload


class FrameCache:
    """Each event's frame bytes, built once for every connection that sends it.

    Without compression a server's frame is the same bytes for every client,
    so fan-out to K clients encodes an event once, not K times (wsproto would
    rebuild it per client).  Bounded in bytes; the oldest go first.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._frames: dict[int, bytes] = {}
        self._bytes = 0

    def get(self, envelope: Envelope) -> bytes:
        frame = self._frames.get(envelope.seq)
        if frame is not None:
            return frame
        frame = text_frame(envelope.frame.encode())
        if envelope.seq and len(frame) <= self.max_bytes:
            self._frames[envelope.seq] = frame
            self._bytes += len(frame)
            while self._bytes > self.max_bytes:
                self._bytes -= len(self._frames.pop(next(iter(self._frames))))
        return frame


#: This worker's frames; an event's seq names it within the worker's store.  A frame is
#: only needed while connections still have its event queued, so 2 MiB (some thousands of
#: events) suffices and keeps a long-running worker's memory flat (the soak run measures it).
FRAMES = FrameCache(2 * 1024 * 1024)


class Connection:
    """One WebSocket client: its session, its queue, and the greenlets serving it."""

    def __init__(
        self, ws: Any, connections: Connections, settings: Settings, hub: Hub, *, deflate: bool
    ) -> None:
        self.ws = ws
        self.deflate = deflate
        self.sock = FrameSocket(ws.sock, settings.ws_send_timeout, self._check_backlog)
        # The reader has only reached its first wait (Thread.start waits for it): every
        # write from here on, its own included, goes through the FrameSocket.
        ws.sock = self.sock
        self.connections = connections
        self.hub = hub
        self.id = connections.next_id()
        self.request_id = REQUEST_ID.get() or "-"  # for lines logged by the other greenlets
        self.session = Session(
            Limits.from_settings(settings), version=VERSION, connection_id=self.id
        )
        self.subscriber = Subscriber(settings.ws_send_queue, on_overflow=self._overflowed)
        self.ending = False
        self.close_code: CloseCode | None = None
        self.close_reason = ""
        self._room = gevent.event.Event()

    def run(self) -> None:
        """Serve until either side ends the connection; the calling greenlet is the writer."""
        self.connections.open.add(self)
        log.info("websocket open", extra={"conn_id": self.id})
        self.subscriber.push(self.session.welcome())
        reader = gevent.spawn(self._read)
        try:
            self._write()
            self._close()
        finally:
            reader.kill()
            self.hub.drop(self.subscriber)
            SUBSCRIPTIONS.dec(len(self.session.subscriptions))
            self.connections.open.discard(self)

    def end(self, code: CloseCode | None, reason: str = "") -> None:
        """Ask the writer to stop and send close ``code`` (``None``: the peer is gone)."""
        if self.ending:
            return
        self.ending = True
        self.close_code, self.close_reason = code, reason
        self.subscriber.push(WAKE)
        self._room.set()

    def go_away(self) -> None:
        self.end(CloseCode.GOING_AWAY, "server shutting down")

    def _overflowed(self, subscriber: Subscriber) -> None:
        """Called by the hub's fan-out with this client's queue full: never blocks."""
        SLOW_DISCONNECTS.inc()
        self.hub.drop(subscriber)
        log.info(
            "websocket client too slow", extra={"conn_id": self.id, "request_id": self.request_id}
        )
        self.end(
            CloseCode.TRY_AGAIN_LATER,
            f"too slow: more than {subscriber.maxsize} frames queued; reconnect with since",
        )

    # -- the session greenlet ----------------------------------------------------------

    def _read(self) -> None:
        try:
            while not self.ending:
                data = self.ws.receive()
                before = len(self.session.subscriptions)
                for output in self.session.feed(data):
                    self._carry_out(output)
                SUBSCRIPTIONS.inc(len(self.session.subscriptions) - before)
                self._wait_for_room()
        except ConnectionClosed:
            self.end(None)
        except Exception:  # a bug must end this connection, not leave it half-served
            log.exception(
                "websocket session failed",
                extra={"conn_id": self.id, "request_id": self.request_id},
            )
            self.end(CloseCode.INTERNAL_ERROR, "internal error")

    def _carry_out(self, output: Output) -> None:
        if isinstance(output, str):
            self.subscriber.push(output)
        elif isinstance(output, Subscribe):
            if output.replaces is not None:
                self.hub.remove_filter(self.subscriber, output.replaces)
            try:
                history = self.hub.add_filter(
                    self.subscriber, output.match, output.since, output.limit
                )
            except StoreUnavailable as exc:
                self.subscriber.push(self.session.failed(output, str(exc)))
                return
            for item in replay(output, history):  # no yield since add_filter: gapless
                self.subscriber.push(item)
        else:
            self.hub.remove_filter(self.subscriber, output.match)

    def _wait_for_room(self) -> None:
        """Read no further frame while the answers to this one overfill the send queue.

        This bounds what a client can make the hub queue by asking (replays,
        pongs) without reading; meanwhile simple-websocket keeps reading, and
        :meth:`_check_backlog` bounds that.
        """
        while not self.ending and self.subscriber.queue.qsize() > self.subscriber.maxsize:
            self._room.clear()
            self._room.wait()

    def _check_backlog(self) -> None:
        """Before each read of the socket: refuse to buffer frames the session cannot keep up with.

        simple-websocket reads on while the session waits (above), queueing
        every frame; past ``MAX_PENDING_FRAMES`` the client is closed with 1008
        and the read fails, which ends simple-websocket's reader.
        """
        if len(self.ws.input_buffer) <= MAX_PENDING_FRAMES:
            return
        reason = "sending frames faster than it reads the answers"
        self.end(CloseCode.POLICY_VIOLATION, reason)
        with contextlib.suppress(ConnectionClosed, LocalProtocolError, OSError):
            self.ws.close(int(CloseCode.POLICY_VIOLATION), reason)
        raise ConnectionAbortedError(reason)

    # -- the writer (the request's greenlet) -----------------------------------------

    def _write(self) -> None:
        """Drain the queue onto the socket, whatever is ready in one write (up to a bound)."""
        queue = self.subscriber.queue
        try:
            while not self.ending:
                item = self.subscriber.get()
                frames: list[bytes] = []
                size = 0
                while not self.ending:
                    if item:
                        frames.append(self._encode(item))
                        size += len(frames[-1])
                    if size >= WRITE_BATCH_BYTES:
                        break
                    item = self.subscriber.get_nowait()
                    if item is None:
                        break
                if self.ending:
                    break
                if frames:
                    if not self.ws.connected:  # the reader saw the peer's close
                        raise ConnectionClosed()
                    self.sock.send(frames[0] if len(frames) == 1 else b"".join(frames))
                if not self._room.is_set() and queue.qsize() <= self.subscriber.maxsize:
                    self._room.set()
        except SendTimeout:
            SLOW_DISCONNECTS.inc()
            log.info("websocket send timed out", extra={"conn_id": self.id})
            self.end(None, "send timeout")
        except (ConnectionClosed, LocalProtocolError, OSError):
            self.end(None, "peer gone")

    def _encode(self, item: Envelope | str) -> bytes:
        if self.deflate:  # the deflate context lives in wsproto: every frame goes through it
            text = item.frame if isinstance(item, Envelope) else item
            frame: bytes = self.ws.ws.send(TextMessage(data=text))
            return frame
        if isinstance(item, Envelope):
            return FRAMES.get(item)
        return text_frame(item.encode())

    def _close(self) -> None:
        """Send the close frame if one is due, let the reader see the answer, then let go.

        The reader (simple-websocket's) ends at the peer's close reply or at
        EOF, and closes the socket so the peer can still read the close frame
        (:meth:`FrameSocket.close`); only a broken or silent peer is aborted.
        """
        code = self.close_code
        DISCONNECTS.labels(_label(code, self.close_reason)).inc()
        log.info(
            "websocket closing",
            extra={"conn_id": self.id, "code": code, "reason": self.close_reason},
        )
        if not self.sock.broken:
            if code is not None:
                with contextlib.suppress(ConnectionClosed, LocalProtocolError, OSError):
                    self.ws.close(int(code), self.close_reason)
            self.ws.thread.join(CLOSE_TIMEOUT)
        self.sock.abort()


def _label(code: CloseCode | None, reason: str) -> str:
    if code is None:
        return reason.replace(" ", "_") or "peer_closed"
    return {
        CloseCode.GOING_AWAY: "shutdown",
        CloseCode.TRY_AGAIN_LATER: "slow",
        CloseCode.POLICY_VIOLATION: "flood",
    }.get(code, "error")


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
    check_access(current_hub().settings, check_origin=True)
    current_connections().admit()
    g.websocket_admitted = True


@websocket.teardown_request
def _release(_: BaseException | None) -> None:
    if g.pop("websocket_admitted", False):
        current_connections().release()


def _serve(ws: Any) -> None:
    context = current_hub()
    offered = request.headers.get("Sec-WebSocket-Extensions", "").lower()
    Connection(
        ws,
        current_connections(),
        context.settings,
        context.hub,
        deflate="permessage-deflate" in offered,
    ).run()


for _path, _endpoint in (("/ws", "connect"), ("/ws/", "connect_slash")):
    sock.route(_path, bp=websocket, endpoint=_endpoint)(_serve)


def init_app(app: Flask) -> None:
    """Per-worker state for the routes of this module and of ``sse.py``."""
    settings: Settings = app.extensions["hub"].settings
    connections = Connections(settings.ws_max_connections)
    app.extensions["connections"] = connections
    app.config["SOCK_SERVER_OPTIONS"] = {
        "ping_interval": settings.ws_ping_interval,
        "max_message_size": settings.ws_max_frame_bytes,
    }
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
