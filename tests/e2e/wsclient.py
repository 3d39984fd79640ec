"""WebSocket and SSE clients for the end-to-end tests, over real sockets.

``websocket-client`` serves most tests: it exposes raw frames, so tests can
send what a well-behaved client never would.  It cannot negotiate
permessage-deflate, so :class:`DeflateClient` is a small wsproto client for
that.  The raw helpers at the end (a handshake and an unmasked-frame parser)
let the scale test and bench/fanout.py hold thousands of connections without
a thread each.

Every frame these clients receive from the hub is held to
``docs/frames.schema.json`` (:func:`decode`): a frame it does not describe fails
the test.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import selectors
import socket
import struct
import time
from collections import deque
from typing import Any

import websocket
from websocket import ABNF
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Message,
    Ping,
    Request,
    TextMessage,
)
from wsproto.extensions import PerMessageDeflate

from tests.conftest import TIMEOUT_FACTOR
from tests.contract import check_frame
from tests.e2e.server import HubServer

#: How long a test waits for any one frame before calling the hub stuck.
WAIT = 15 * TIMEOUT_FACTOR


def ws_url(server: HubServer, path: str = "/ws") -> str:
    return "ws" + server.url.removeprefix("http") + path


def connect(server: HubServer, path: str = "/ws", **options: Any) -> websocket.WebSocket:
    """An open connection whose welcome frame has been read."""
    return connect_to_worker(server, path, **options)[0]


def connect_to_worker(
    server: HubServer, path: str = "/ws", **options: Any
) -> tuple[websocket.WebSocket, int]:
    """An open connection whose welcome frame has been read, and the pid of its worker."""
    ws = websocket.create_connection(ws_url(server, path), timeout=WAIT, **options)
    return ws, worker_pid(receive(ws))


def worker_pid(welcome: dict[str, Any]) -> int:
    """The pid of the worker that sent ``welcome``: its ``connection_id`` is ``<pid>-<n>``."""
    assert welcome["type"] == "welcome", welcome
    return int(welcome["connection_id"].split("-")[0])


def send(ws: websocket.WebSocket, frame: Any) -> None:
    ws.send(json.dumps(frame))


def decode(data: str | bytes) -> dict[str, Any]:
    """One text frame of the hub, parsed, once it is checked against the frame schema."""
    frame: dict[str, Any] = json.loads(data)
    check_frame(frame)
    return frame


def receive(ws: websocket.WebSocket) -> dict[str, Any]:
    return decode(ws.recv())


def subscribe(
    ws: websocket.WebSocket, frame: Any
) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    """Send a subscribe frame; return ``subscribed``, the replayed events, ``replay_complete``."""
    send(ws, frame)
    subscribed = receive(ws)
    assert subscribed["type"] == "subscribed", subscribed
    events = []
    while (item := receive(ws))["type"] == "event":
        events.append(item["event"])
    assert item["type"] == "replay_complete", item
    assert item["replayed"] == subscribed["replayed"] == len(events)
    return subscribed, events, item


def close_code(ws: websocket.WebSocket) -> int | None:
    """Read past data and pings to the hub's close frame and answer it: its code, ``None`` at EOF.

    Pings are not answered, so this also serves as a client that went silent.
    """
    while True:
        try:
            frame = ws.recv_frame()
        except (websocket.WebSocketConnectionClosedException, ConnectionError):
            return None
        if frame is None:
            return None
        if frame.opcode == ABNF.OPCODE_CLOSE:
            code: int = struct.unpack("!H", frame.data[:2])[0] if len(frame.data) >= 2 else 1005
            with contextlib.suppress(websocket.WebSocketException, OSError):
                ws.send_close(code)
            ws.shutdown()
            return code


def log_event(project: str, deployment_id: str, message: str = "line") -> dict[str, Any]:
    return {
        "type": "log_entry",
        "project": project,
        "deployment_id": deployment_id,
        "message": message,
    }


def post(server: HubServer, *events: dict[str, Any]) -> list[str]:
    """Ingest ``events`` in one request; their ids."""
    body = events[0] if len(events) == 1 else {"events": list(events)}
    status, answer = server.post_json("/api/webhooks/deployment", body)
    assert status == 200, answer
    ids: list[str] = answer["ids"]
    return ids


def metric(server: HubServer, name: str) -> float:
    """The sum of one Prometheus metric's samples whose line starts with ``name``."""
    status, text = server.request("GET", "/metrics")
    assert status == 200
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in str(text).splitlines() if line.startswith(name)
    )


def wait_for(condition: Any, what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class DeflateClient:
    """A WebSocket client that negotiates permessage-deflate (wsproto over a socket)."""

    def __init__(self, server: HubServer, path: str = "/ws") -> None:
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=WAIT)
        self.conn = WSConnection(ConnectionType.CLIENT)
        self.pending: deque[Any] = deque()
        self.sock.sendall(
            self.conn.send(Request(host="127.0.0.1", target=path, extensions=[PerMessageDeflate()]))
        )
        accepted = self._next()
        assert isinstance(accepted, AcceptConnection), accepted
        self.extensions = accepted.extensions

    def _next(self) -> Any:
        while not self.pending:
            data = self.sock.recv(1 << 20)
            if not data:
                raise ConnectionError("hub closed the connection")
            self.conn.receive_data(data)
            self.pending.extend(self.conn.events())
        return self.pending.popleft()

    def send(self, frame: Any) -> None:
        self.sock.sendall(self.conn.send(TextMessage(data=json.dumps(frame))))

    def send_text(self, text: str) -> None:
        """Any text message, compressed as the extension negotiated."""
        self.sock.sendall(self.conn.send(TextMessage(data=text)))

    def close_code(self) -> int:
        """Read until the hub closes; the close code it sent."""
        while True:
            event = self._next()
            if isinstance(event, CloseConnection):
                return int(event.code)

    def receive(self) -> dict[str, Any]:
        parts: list[str] = []
        while True:
            event = self._next()
            if isinstance(event, Ping):
                self.sock.sendall(self.conn.send(event.response()))
            elif isinstance(event, Message):
                assert isinstance(event, TextMessage), event
                parts.append(event.data)
                if event.message_finished:
                    return decode("".join(parts))
            else:
                raise AssertionError(f"unexpected {event!r}")

    def close(self) -> None:
        self.sock.close()


# -- raw frames, for clients that must stay cheap ----------------------------------------


def handshake(port: int, path: str = "/ws", extra: str = "") -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        f"Sec-WebSocket-Version: 13\r\n{extra}\r\n"
    ).encode()


def masked(payload: str | bytes, opcode: int = 0x1) -> bytes:
    """One client frame (masked, as RFC 6455 requires of clients); text unless ``opcode`` says."""
    data = payload.encode() if isinstance(payload, str) else payload
    mask = os.urandom(4)
    length = len(data)
    if length < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
    elif length < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
    return head + mask + body


def split_frames(buffer: bytearray) -> list[tuple[int, bytes]]:
    """Take every complete unmasked server frame off ``buffer``: ``(opcode, payload)``.

    The hub sends each message as one frame (no fragmentation), which is all
    these cheap clients need to handle.
    """
    frames = []
    offset, end = 0, len(buffer)
    while end - offset >= 2:
        opcode, length = buffer[offset] & 0x0F, buffer[offset + 1] & 0x7F
        start = offset + 2
        if length == 126:
            if end - offset < 4:
                break
            length, start = struct.unpack_from("!H", buffer, offset + 2)[0], offset + 4
        elif length == 127:
            if end - offset < 10:
                break
            length, start = struct.unpack_from("!Q", buffer, offset + 2)[0], offset + 10
        if end < start + length:
            break
        frames.append((opcode, bytes(buffer[start : start + length])))
        offset = start + length
    del buffer[:offset]
    return frames


class Crowd:
    """Many WebSocket clients on one selector, cheap enough for thousands in one thread.

    Each client answers pings and keeps every JSON frame it receives in
    ``frames[i]``; ``close_codes[i]`` is set when the hub closes it.
    """

    def __init__(
        self, server: HubServer, count: int, path: str = "/ws", batch: int = 250, query: str = ""
    ) -> None:
        self.selector = selectors.DefaultSelector()
        self.socks: list[socket.socket] = []
        self.buffers: list[bytearray] = []
        self.frames: list[list[dict[str, Any]]] = []
        self.close_codes: list[int | None] = []
        for start in range(0, count, batch):  # handshakes in flight together, within the backlog
            group = []
            for _ in range(min(batch, count - start)):
                sock = socket.create_connection(("127.0.0.1", server.port), timeout=WAIT)
                sock.sendall(handshake(server.port, path + query))
                group.append(sock)
            for sock in group:
                self._accepted(sock)

    def _accepted(self, sock: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("hub closed the connection during the handshake")
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head[:200]
        index = len(self.socks)
        sock.setblocking(False)
        self.socks.append(sock)
        self.buffers.append(bytearray(rest))
        self.frames.append([])
        self.close_codes.append(None)
        self.selector.register(sock, selectors.EVENT_READ, index)
        self._parse(index)

    def __len__(self) -> int:
        return len(self.socks)

    def _parse(self, index: int) -> None:
        for opcode, payload in split_frames(self.buffers[index]):
            if opcode == 0x1:
                self.frames[index].append(decode(payload))
            elif opcode == 0x9:
                self.socks[index].sendall(masked(payload, 0xA))
            elif opcode == 0x8:
                self.close_codes[index] = int.from_bytes(payload[:2], "big")

    def send_all(self, frame: Any) -> None:
        text = json.dumps(frame)
        for sock in self.socks:
            sock.sendall(masked(text))

    def wait(self, satisfied: Any, what: str, timeout: float = WAIT) -> None:
        """Read until ``satisfied(frames)`` holds for every client."""
        pending = {i for i, frames in enumerate(self.frames) if not satisfied(frames)}
        deadline = time.monotonic() + timeout
        while pending:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(pending)} of {len(self)} clients still wait for {what}")
            for key, _ in self.selector.select(timeout=0.1):
                index = key.data
                try:
                    data = self.socks[index].recv(1 << 16)
                except BlockingIOError:
                    continue
                if not data:
                    self.selector.unregister(self.socks[index])
                    continue
                self.buffers[index] += data
                self._parse(index)
                if index in pending and satisfied(self.frames[index]):
                    pending.discard(index)

    def close(self) -> None:
        for sock in self.socks:
            sock.close()
        self.selector.close()
