"""One WebSocket connection, served by one greenlet: it reads, writes, pings and closes.

Why one greenlet: what an idle connection costs a worker is mostly its
greenlets (each keeps a saved stack).
simple-websocket runs a reader thread beside the request's greenlet, and a
separate writer would make three; here the request's own greenlet does
everything, waiting on one event that the socket's readiness, the
subscriber's queue and :meth:`Connection.end` set.  docs/BENCHMARKS.md
("What the design choices save") has the figures.

flask-sock still performs the handshake through simple-websocket's
``Server`` (its reader thread is never started: ``ws.init_app`` passes
:class:`Unstarted` as its thread class).  From then on the connection
speaks to wsproto's frame-level ``Connection`` directly and writes to the
socket itself, which is also what makes the write path correct:
simple-websocket 1.1.0 writes a frame with one ``send`` (a large frame can be
cut short and the stream corrupted), lets two greenlets write at once and has
no send timeout.  Here frames are written whole, by one greenlet, without
blocking it, and a peer that takes no data for ``HUB_WS_SEND_TIMEOUT`` is
dropped.

The rules a client meets:

* the hub pings every ``HUB_WS_PING_INTERVAL`` and closes (1008) a peer that
  did not answer the previous ping;
* a message over ``HUB_WS_MAX_FRAME_BYTES`` is closed with 1009, invalid
  UTF-8 with 1007 (wsproto), any other protocol error with its code;
* a client frame is handled only while the answers already queued fit in the
  send queue; frames keep being read meanwhile (a close must be seen), and a
  client with more than ``MAX_PENDING_FRAMES`` of them waiting is closed with
  1008;
* a client too slow for its events fills only its own queue: the hub's
  fan-out marks it overflowed without waiting, and it is closed with 1013
  once the frames in flight are out.
"""

from __future__ import annotations

import _socket
import contextlib
import logging
import socket
import time
from collections.abc import Callable
from typing import Any

import gevent
import gevent.event
from wsproto.connection import Connection as Protocol
from wsproto.connection import ConnectionState
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Ping,
    Pong,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError

from app.metrics import DISCONNECTS, SLOW_DISCONNECTS, SUBSCRIPTIONS
from broadcaster.codes import CloseCode
from broadcaster.framing import FrameCache
from broadcaster.hub import Envelope, Fifo, Hub, Subscriber
from broadcaster.limits import Limits
from broadcaster.session import Output, Session, Subscribe, replay
from storage.store import StoreUnavailable

log = logging.getLogger(__name__)

#: Seconds the hub waits for the client's answer to its close frame before dropping it.
CLOSE_TIMEOUT = 5.0
#: Seconds a closing connection keeps reading (and dropping) what the peer still sends.
LINGER_SECONDS = 2.0
#: Client frames read but not yet handled before the client counts as flooding (1008).
MAX_PENDING_FRAMES = 1000
#: What one read of the socket takes at most.
RECV_BYTES = 65536
#: Queued frames are joined into one write of about this many bytes at most.
WRITE_BATCH_BYTES = 262144
#: Frames taken off the queue at a time while filling a write.
TAKE_ITEMS = 64

_READ, _WRITE = 1, 2  # libev/libuv watcher event masks


class Unstarted:
    """Stands in for simple-websocket's reader thread: :class:`Connection` reads instead."""

    name = "websocket"

    def __init__(self, target: Callable[[], None]) -> None:
        del target  # simple-websocket's reader loop, which this connection replaces

    def start(self) -> None:
        """Nothing to start (simple-websocket calls it after the handshake)."""


class SendTimeout(TimeoutError):
    """The peer took no data for ``HUB_WS_SEND_TIMEOUT``; the stream is abandoned."""


class Connection:
    """One WebSocket client: its session, its queue, its socket; see the module docstring.

    Slotted, like :class:`Subscriber`: thousands of these sit idle in a worker.
    """

    __slots__ = (
        "__weakref__",
        "_awaiting_pong",
        "_inbox",
        "_message",
        "_message_bytes",
        "_out",
        "_out_at",
        "_progress_at",
        "_readable",
        "_reply",
        "_writer",
        "broken",
        "close_code",
        "close_reason",
        "ending",
        "frames",
        "hub",
        "id",
        "label",
        "limits",
        "protocol",
        "request_id",
        "session",
        "sock",
        "subscriber",
        "wake",
    )

    def __init__(
        self,
        sock: _socket.socket,
        protocol: Protocol,
        session: Session,
        hub: Hub,
        limits: Limits,
        *,
        connection_id: str,
        request_id: str,
        frames: FrameCache | None,
    ) -> None:
        self.id = connection_id
        self.request_id = request_id  # for lines logged from other greenlets
        self.session = session
        self.hub = hub
        self.limits = limits
        self.frames = frames  # None: wsproto deflates, with a context per connection
        self.sock = sock
        self.protocol = protocol
        self.wake = gevent.event.Event()
        self.subscriber = Subscriber(
            limits.send_queue,
            on_overflow=self._overflowed,
            on_put=self.wake.set,
            send_now=None if frames is None else self._send_now,
        )
        self.ending = False
        self.close_code: CloseCode | None = None
        self.close_reason = ""
        self.label = ""
        self.broken = False  # a write was cut short: nothing more may be sent
        self._reply: bytes | None = None  # the answer to the peer's close frame
        self._readable = False
        self._writer: Any = None  # the socket's write watcher, while output waits
        self._inbox: Fifo[str | bytes] = Fifo()  # client messages not yet handled
        self._message: list[Any] = []  # the fragments (all str or all bytes) read so far
        self._message_bytes = 0
        self._out = b""  # frames being written, from ``_out_at`` on
        self._out_at = 0
        self._progress_at = 0.0  # when the peer last took data (or output began to wait)
        self._awaiting_pong = False

    # -- called from any greenlet ------------------------------------------------------

    def end(self, code: CloseCode | None, reason: str, label: str) -> None:
        """Stop serving and send close ``code`` (``None``: no close frame is due)."""
        if self.ending:
            return
        self.ending = True
        self.close_code, self.close_reason, self.label = code, reason, label
        self.wake.set()

    def go_away(self) -> None:
        self.end(CloseCode.GOING_AWAY, "server shutting down", "shutdown")

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
            "slow",
        )

    def _send_now(self, envelopes: list[Envelope]) -> bool:
        """Write live events from the fan-out's greenlet, if nothing else is being written.

        Only while the connection is served and its output is empty (its queue
        is, too: :meth:`Subscriber.offer` asks only then, for runs the queue
        would hold), so frames go out in order and whole; and only up to one
        write batch, so that what a slow client keeps of its own is bounded as
        on the queue's path.  What the socket does not take at once stays as
        output that this connection's greenlet finishes, under its send timeout.
        """
        if self.ending or self._out or self.frames is None:
            return False
        frames = self.frames
        if len(envelopes) == 1:  # one event after a quiet spell, at one dictionary lookup
            frame = frames.get(envelopes[0])
            data = frame if len(frame) <= WRITE_BATCH_BYTES else None
        else:
            data = frames.joined(envelopes, WRITE_BATCH_BYTES)
        if data is None:
            return False  # queued: a slow client holds the shared frames, not a copy
        try:
            sent = self.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            return False  # queued instead: the connection's own write finds the peer gone
        if sent < len(data):
            self._begin_output(data)
            self._out_at = sent
            self.wake.set()
        return True

    def _on_readable(self) -> None:
        self._readable = True
        self.wake.set()

    # -- the connection's greenlet -----------------------------------------------------

    def run(self) -> None:
        """Serve until either side ends the connection, then close it properly."""
        self.sock.settimeout(0.0)  # every read and write below returns at once
        reader = gevent.get_hub().loop.io(self.sock.fileno(), _READ)
        reader.start(self._on_readable)
        self.subscriber.push(self.session.welcome())
        try:
            self._serve()
            self._close()
        finally:
            reader.close()
            self._stop_writing()
            self.hub.drop(self.subscriber)
            self.subscriber.clear()
            SUBSCRIPTIONS.dec(len(self.session.subscriptions))
            with contextlib.suppress(OSError):
                self.sock.close()

    def _serve(self) -> None:
        interval = self.limits.heartbeat_interval
        next_ping = time.monotonic() + interval if interval else float("inf")
        while not self.ending:
            self._wait(next_ping)
            try:
                if self._readable:
                    self._read()
                self._handle_inbox()
                self._write()
                if time.monotonic() >= next_ping and not self.ending:
                    next_ping = time.monotonic() + interval
                    self._ping()
            except SendTimeout:
                self._timed_out()
            except (OSError, LocalProtocolError):
                self.end(None, "peer gone", "peer_gone")
            if not self._out and len(self.subscriber) and not self.ending:
                self.wake.set()  # more queued than one write takes: go round again

    def _wait(self, deadline: float) -> None:
        """Until something happened or ``deadline``; always lets other greenlets run."""
        if self._out:
            deadline = min(deadline, self._progress_at + self.limits.send_timeout)
        if self.wake.is_set():
            gevent.sleep(0)  # a client that never stops sending must not starve the worker
        else:
            self.wake.wait(max(0.0, deadline - time.monotonic()))
        self.wake.clear()

    def _recv(self) -> bytes | None:
        """What the socket holds (``b""`` at end of stream); ``None`` if nothing after all."""
        self._readable = False
        try:
            return self.sock.recv(RECV_BYTES)
        except BlockingIOError:
            return None

    def _read(self) -> None:
        """Take what the socket holds and act on its frames."""
        data = self._recv()
        if data is None:
            return
        if not data:
            self.end(None, "peer gone", "peer_gone")
            return
        self.protocol.receive_data(data)
        for event in self.protocol.events():
            if isinstance(event, (TextMessage, BytesMessage)):
                self._take_message(event)
            elif isinstance(event, Ping):
                self._send_control(self.protocol.send(event.response()))
            elif isinstance(event, Pong):
                self._awaiting_pong = False
            elif isinstance(event, CloseConnection):
                self._peer_closed(event)
            if self.ending:
                return

    def _take_message(self, event: TextMessage | BytesMessage) -> None:
        self._message_bytes += len(event.data)
        if self._message_bytes > self.limits.max_frame_bytes:
            self.end(CloseCode.MESSAGE_TOO_BIG, "message too big", "protocol_error")
            return
        self._message.append(event.data)
        if not event.message_finished:
            return
        parts = self._message
        self._inbox.append("".join(parts) if isinstance(event, TextMessage) else b"".join(parts))
        self._message, self._message_bytes = [], 0
        if len(self._inbox) > MAX_PENDING_FRAMES:
            self.end(
                CloseCode.POLICY_VIOLATION,
                "sending frames faster than it reads the answers",
                "flood",
            )

    def _peer_closed(self, event: CloseConnection) -> None:
        """The peer's close, or wsproto's verdict on a frame it could not parse (1007, 1002)."""
        reply = event.response()
        if self.protocol.state is ConnectionState.REMOTE_CLOSING:  # the peer sent a close frame
            self._reply = self.protocol.send(reply)
            self.end(None, "peer closed", "peer_closed")
        else:
            self.end(CloseCode(reply.code), reply.reason or "protocol error", "protocol_error")

    def _handle_inbox(self) -> None:
        """Answer client frames while their answers still fit in the send queue.

        This bounds what a client can make the hub queue by asking (replays,
        pongs) without reading; ``_take_message`` bounds what it can leave
        waiting here.
        """
        while self._inbox and not self.ending and len(self.subscriber) <= self.subscriber.maxsize:
            data = self._inbox.popleft()
            before = len(self.session.subscriptions)
            try:
                for output in self.session.feed(data):
                    self._carry_out(output)
            except Exception:  # a bug must end this connection, not leave it half-served
                log.exception(
                    "websocket session failed",
                    extra={"conn_id": self.id, "request_id": self.request_id},
                )
                self.end(CloseCode.INTERNAL_ERROR, "internal error", "error")
            SUBSCRIPTIONS.inc(len(self.session.subscriptions) - before)

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
                # A connection left without the subscription its client asked for would
                # wait for events forever; closing makes every client reconnect with since.
                log.warning(
                    "subscription failed, store unavailable: %s",
                    exc,
                    extra={"conn_id": self.id, "request_id": self.request_id},
                )
                self.subscriber.push(self.session.failed(output, str(exc)))
                self.end(
                    CloseCode.TRY_AGAIN_LATER,
                    "store unavailable: reconnect and subscribe with since",
                    "unavailable",
                )
                return
            for item in replay(output, history):  # no yield since add_filter: gapless
                self.subscriber.push(item)
        else:
            self.hub.remove_filter(self.subscriber, output.match)

    def _write(self) -> None:
        """Move queued frames into the output (whole frames only) and write what the peer takes."""
        if (
            not self.ending  # queued frames are dropped; those in flight are finished
            and len(self._out) - self._out_at < WRITE_BATCH_BYTES
            and len(self.subscriber)
        ):
            frames = [self._out[self._out_at :]] if self._out_at < len(self._out) else []
            size = len(frames[0]) if frames else 0
            while size < WRITE_BATCH_BYTES and (items := self.subscriber.take(TAKE_ITEMS)):
                for item in items:
                    frames.append(self._encode(item))
                    size += len(frames[-1])
            self._begin_output(b"".join(frames))
        self._flush()

    def _send_control(self, frame: bytes) -> None:
        """Queue a ping, pong or close after the frames already being written."""
        self._begin_output(self._out[self._out_at :] + frame)
        self._flush()

    def _begin_output(self, data: bytes) -> None:
        if not self._out:
            self._progress_at = time.monotonic()
        self._out, self._out_at = data, 0

    def _flush(self) -> None:
        """Write without waiting; past the send timeout without progress, give up."""
        view = memoryview(self._out)
        while self._out_at < len(view):
            try:
                sent = self.sock.send(view[self._out_at :])
            except BlockingIOError:
                break
            self._out_at += sent
            self._progress_at = time.monotonic()
        if self._out_at < len(view):
            if time.monotonic() - self._progress_at >= self.limits.send_timeout:
                raise SendTimeout(f"peer took no data for {self.limits.send_timeout} s")
            if self._writer is None:
                self._writer = gevent.get_hub().loop.io(self.sock.fileno(), _WRITE)
                self._writer.start(self.wake.set)
            return
        self._out, self._out_at = b"", 0
        self._stop_writing()

    def _stop_writing(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _ping(self) -> None:
        if self._awaiting_pong:
            self.end(CloseCode.POLICY_VIOLATION, "Ping/Pong timeout", "ping_timeout")
            return
        self._awaiting_pong = True
        self._send_control(self.protocol.send(Ping()))

    def _encode(self, item: Envelope | str) -> bytes:
        frames = self.frames
        if frames is None:  # the deflate context lives in wsproto: every frame goes through it
            text = item.frame.decode() if isinstance(item, Envelope) else item
            frame: bytes = self.protocol.send(TextMessage(data=text))
            return frame
        if isinstance(item, Envelope):
            return frames.get(item)
        return frames.build(item.encode())

    def _timed_out(self) -> None:
        SLOW_DISCONNECTS.inc()
        log.info("websocket send timed out", extra={"conn_id": self.id})
        self.broken = True
        self.end(None, "send timeout", "send_timeout")

    # -- closing -------------------------------------------------------------------------

    def _close(self) -> None:
        """Finish the frames in flight, send the close frame, hear the answer, then let go.

        Closing a socket with unread input makes the kernel answer with a
        reset, which can destroy what the peer has not read yet: a client
        closed for a flood or an oversize frame would never learn why.  So
        the sending side is shut first and the input drained (for at most
        ``LINGER_SECONDS``) until the peer closes too.
        """
        DISCONNECTS.labels(self.label or "peer_closed").inc()
        log.info(
            "websocket closing",
            extra={"conn_id": self.id, "code": self.close_code, "reason": self.close_reason},
        )
        self.hub.drop(self.subscriber)
        self.subscriber.clear()
        try:
            if not self.broken and self._reply is not None:
                self._send_control(self._reply)
                self._until(lambda: not self._out, CLOSE_TIMEOUT)
            elif not self.broken and self.close_code is not None:
                with contextlib.suppress(LocalProtocolError):
                    code, reason = int(self.close_code), self.close_reason
                    self._send_control(self.protocol.send(CloseConnection(code, reason)))
                self._until(lambda: self.protocol.state is ConnectionState.CLOSED, CLOSE_TIMEOUT)
            if not self.broken and not self._out:
                self.sock.shutdown(socket.SHUT_WR)
                self._until(lambda: False, LINGER_SECONDS)
        except (OSError, SendTimeout):
            pass
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    def _until(self, done: Callable[[], bool], seconds: float) -> None:
        """Keep writing and reading (dropping client messages) until ``done`` or EOF."""
        deadline = time.monotonic() + seconds
        while not done() and time.monotonic() < deadline:
            self._wait(deadline)
            self._flush()
            if self._readable:
                data = self._recv()
                if data is None:
                    continue
                if not data:
                    return
                if self.protocol.state is not ConnectionState.CLOSED:
                    self.protocol.receive_data(data)
                    for _ in self.protocol.events():
                        pass  # only the state matters now: did the peer answer the close?
