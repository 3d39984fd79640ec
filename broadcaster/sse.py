"""``GET /api/stream``: the WebSocket feed as Server-Sent Events, for curl and plain browsers.

One subscription per request, chosen by the query (``project=``, ``all=true`` or
``deployment_id=``, optionally ``types=a,b``).  Each ``data:`` line is the
same JSON frame a WebSocket client gets (``subscribed``, ``event``,
``replay_complete``, ``error``), so one parser serves both; event frames
carry ``id: <event id>``, which is what a browser's ``EventSource`` sends back
as ``Last-Event-ID`` when it reconnects, and resumption then follows the
WebSocket's ``since`` rules exactly.  A comment line every
``HUB_WS_PING_INTERVAL`` keeps proxies from timing the stream out and finds
dead peers.

The stream shares the WebSocket limits: it counts against
``HUB_WS_MAX_CONNECTIONS``, owns a :class:`Subscriber` of
``HUB_WS_SEND_QUEUE`` frames (a client too slow for it gets a last
``too_slow`` error frame and the stream ends) and each write must finish
within ``HUB_WS_SEND_TIMEOUT``.  gunicorn writes the response, so the timeout
is a ``gevent.Timeout`` around each chunk that surfaces as a broken pipe,
which gunicorn already treats as a client gone.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator

import gevent
from flask import Blueprint, Response, request

from app.errors import BackendUnavailable, BadRequest
from app.metrics import DISCONNECTS, SLOW_DISCONNECTS
from broadcaster.codes import ErrorCode
from broadcaster.hub import Envelope, Hub, Subscriber
from broadcaster.limits import Limits
from broadcaster.session import (
    FrameError,
    Subscribe,
    error_frame,
    make_filter,
    parse_identifier,
    parse_since,
    parse_types,
    replay,
)
from broadcaster.ws import Connections, check_access, current_connections
from ledger.filters import Filter
from storage.store import StoreUnavailable

stream = Blueprint("stream", __name__)

#: Milliseconds a browser waits before reconnecting (the SSE ``retry:`` field).
RETRY_MS = 2000
#: Queued frames are written together up to about this many bytes per chunk.
CHUNK_BYTES = 65536
KEEPALIVE = b": keep-alive\n\n"
#: Queued only to wake the stream so it notices that it is ending; never sent.
WAKE = ""


def _query() -> tuple[Filter, str | None]:
    """The subscription a stream request asks for; 400 naming the parameter otherwise."""
    args = request.args
    given = [name for name in ("project", "deployment_id", "all") if args.get(name)]
    if len(given) != 1 or (given == ["all"] and args["all"] != "true"):
        raise BadRequest(
            "give exactly one of 'project', 'deployment_id' and 'all=true'",
            {"project": ["Exactly one of project, deployment_id and all=true."]},
        )
    name: str | None = None if given == ["all"] else given[0]
    header = request.headers.get("Last-Event-ID")
    since_name = "Last-Event-ID" if header is not None else "last_event_id"
    try:
        target = "" if name is None else parse_identifier(args[name], name)
    except FrameError as error:
        raise BadRequest(error.message, {str(name): [error.message]}) from None
    try:
        raw_types = args.get("types")
        types = parse_types([t.strip() for t in raw_types.split(",")]) if raw_types else None
    except FrameError as error:
        raise BadRequest(error.message, {"types": [error.message]}) from None
    try:
        since = parse_since(header if header is not None else args.get("last_event_id"))
    except FrameError as error:
        raise BadRequest(error.message, {since_name: [error.message]}) from None
    return make_filter(name, target, types), since


class EventStream:
    """One SSE client: its queue, and the generator gunicorn writes out."""

    def __init__(self, connections: Connections, hub: Hub, limits: Limits) -> None:
        self.connections = connections
        self.hub = hub
        self.subscriber = Subscriber(limits.send_queue, on_overflow=self._overflowed)
        self.keepalive = limits.heartbeat_interval
        self.send_timeout = limits.send_timeout
        self.ending: ErrorCode | None = None
        self.id = connections.next_id()

    def go_away(self) -> None:
        self._end(ErrorCode.GOING_AWAY)

    def _overflowed(self, subscriber: Subscriber) -> None:
        SLOW_DISCONNECTS.inc()
        self.hub.drop(subscriber)
        self._end(ErrorCode.TOO_SLOW)

    def _end(self, code: ErrorCode) -> None:
        if self.ending is None:
            self.ending = code
            self.subscriber.push(WAKE)

    def close(self) -> None:
        """The response is finished (written, failed or abandoned): give everything back."""
        self.hub.drop(self.subscriber)
        self.connections.open.discard(self)
        self.connections.release()
        DISCONNECTS.labels(
            {None: "peer_gone", ErrorCode.TOO_SLOW: "slow", ErrorCode.GOING_AWAY: "shutdown"}[
                self.ending
            ]
        ).inc()

    def body(self) -> Iterator[bytes]:
        """The chunks to write, each under the send timeout."""
        for chunk in self._chunks():
            timer = gevent.Timeout.start_new(
                self.send_timeout, BrokenPipeError(errno.EPIPE, "SSE write timed out")
            )
            try:
                yield chunk
            finally:
                timer.close()

    def _chunks(self) -> Iterator[bytes]:
        yield f"retry: {RETRY_MS}\n\n".encode()
        while self.ending is None:
            item = self.subscriber.get(timeout=self.keepalive)
            if item is None:
                yield KEEPALIVE
                continue
            parts = [_encode(item)]
            size = len(parts[0])
            while size < CHUNK_BYTES and self.ending is None:
                more = self.subscriber.get_nowait()
                if more is None:
                    break
                parts.append(_encode(more))
                size += len(parts[-1])
            if self.ending is None:
                yield b"".join(parts)
        message = (
            "too slow: reconnect with Last-Event-ID"
            if self.ending is ErrorCode.TOO_SLOW
            else "server shutting down: reconnect with Last-Event-ID"
        )
        yield f"data: {error_frame(self.ending, message)}\n\n".encode()


def _encode(item: Envelope | str) -> bytes:
    if isinstance(item, Envelope):
        return b"id: %s\ndata: %s\n\n" % (item.event.id.encode(), item.frame)
    return f"data: {item}\n\n".encode() if item else b""


@stream.get("/stream")
def event_stream() -> Response:
    """Replay, then live events, as ``text/event-stream``; see the module docstring."""
    connections = current_connections()
    check_access(connections.settings, check_origin=False)
    match, since = _query()
    limits = connections.limits
    connections.admit()
    events = EventStream(connections, connections.hub, limits)
    connections.open.add(events)
    wanted = Subscribe(match, since, limits.replay_limit(match, since))
    registered = False
    try:
        history = connections.hub.add_filter(events.subscriber, match, since, wanted.limit)
        registered = True
    except StoreUnavailable as exc:
        raise BackendUnavailable(
            f"event store unavailable: {exc}", headers={"Retry-After": "5"}
        ) from None
    finally:
        if not registered:
            events.close()
    for item in replay(wanted, history):  # no yield since add_filter: gapless
        events.subscriber.push(item)
    response = Response(
        events.body(),
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
    response.call_on_close(events.close)
    return response
