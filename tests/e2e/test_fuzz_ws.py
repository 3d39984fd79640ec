"""Arbitrary WebSocket frames and raw bytes against the real hub under gunicorn.

Any sequence of frames (text of any content, binary, invalid UTF-8, control
frames, reserved opcodes and bits, fragments, unmasked frames, length fields
that lie) may get error frames or a close, but never crashes a worker, never
hangs it, and never disturbs the next client.  Every example checks its own
outcome: its connection got only frames of the protocol (error frames with a
code of broadcaster/codes.py) and then a close with an expected code, the
worker that served it still answers a ping, and the log holds no traceback.
"""

from __future__ import annotations

import json
import os
import re
import socket
import struct
from collections.abc import Callable, Iterator

import pytest
import websocket
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from broadcaster.codes import CloseCode, ErrorCode
from tests.e2e.server import HubServer
from tests.e2e.wsclient import (
    WAIT,
    connect,
    connect_to_worker,
    decode,
    handshake,
    masked,
    post,
    receive,
    send,
    split_frames,
    subscribe,
    worker_pid,
)

pytestmark = pytest.mark.e2e

#: The hub's frame limit in this module (it closes a longer message with 1009).
MAX_FRAME_BYTES = 4096
#: Sent after each example's frames: ends whatever frame or message they left open.
PADDING = bytes(2 * MAX_FRAME_BYTES)
WORKERS = 2
#: The close codes fuzzed frames may earn, besides the echo of a close the client sent.
PROTOCOL_CLOSES: set[int | None] = {
    CloseCode.PROTOCOL_ERROR,
    CloseCode.INVALID_PAYLOAD,
    CloseCode.MESSAGE_TOO_BIG,
}
#: Subscribed to after each example's frames (a longer name than the fuzz makes up).
BARRIER = "barrier-after-the-fuzzed-frames"
#: A server frame: its opcode and payload.
Frame = tuple[int, bytes]
#: The ``type`` of every frame the hub may answer a client's frame with.
ANSWER_TYPES = {
    "subscribed",
    "replay_complete",
    "event",
    "unsubscribed",
    "pong",
    "heartbeat:ack",
    "error",
}


def frame(fin: bool, rsv: int, opcode: int, payload: bytes, mask: bool) -> bytes:
    """One client frame with every header bit under the test's control."""
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    length = len(payload)
    if length < 126:
        head = struct.pack("!BB", first, (0x80 if mask else 0) | length)
    elif length < 65536:
        head = struct.pack("!BBH", first, (0x80 if mask else 0) | 126, length)
    else:
        head = struct.pack("!BBQ", first, (0x80 if mask else 0) | 127, length)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


json_frames = st.builds(
    lambda name, fields: json.dumps({"type": name, **fields}).encode(),
    st.sampled_from(
        [
            "subscribe_project",
            "subscribe_deployment",
            "unsubscribe_project",
            "ping",
            "heartbeat",
            "subscribe:project",
            "x",
        ]
    ),
    st.dictionaries(
        st.sampled_from(["project", "deployment_id", "since", "types", "limit"]),
        st.none()
        | st.integers()
        | st.text(max_size=20)
        | st.lists(st.text(max_size=5), max_size=3),
        max_size=4,
    ),
)
payloads = st.binary(max_size=300) | st.text(max_size=200).map(str.encode) | json_frames
well_formed = st.builds(lambda p: frame(True, 0, 0x1, p, True), payloads)
any_frame = st.builds(
    frame,
    fin=st.booleans(),
    rsv=st.integers(0, 7),
    opcode=st.sampled_from([0x0, 0x1, 0x2, 0x3, 0x8, 0x9, 0xA, 0xB, 0xF]),
    payload=payloads,
    mask=st.booleans(),
)
lying_length = st.builds(
    lambda claimed, sent: struct.pack("!BBQ", 0x81, 0xFF, claimed) + os.urandom(4) + sent,
    st.integers(70000, 2**63 - 1),
    st.binary(max_size=100),
)
streams = st.lists(
    well_formed | any_frame | lying_length | st.binary(min_size=1, max_size=64),
    min_size=1,
    max_size=8,
).map(b"".join)


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubServer]:
    server = HubServer(
        tmp_path_factory.mktemp("fuzz-ws"),
        env={"HUB_WS_MAX_FRAME_BYTES": str(MAX_FRAME_BYTES)},
        workers=WORKERS,
    ).start()
    yield server
    server.stop()


class Witnesses:
    """One idle, well-behaved connection on each worker, to ask after the worker's health.

    Each example learns which worker served it (the welcome's ``connection_id`` is
    ``<pid>-<n>``) and then pings that worker's witness: a pong proves the very
    worker that took the fuzz still serves; a pid with no witness is a worker
    gunicorn had to start afresh, which means one died.
    """

    def __init__(self, server: HubServer) -> None:
        self.server = server
        self.by_pid: dict[int, websocket.WebSocket] = {}
        self.log_offset = 0
        for _ in range(200):  # connections land on either worker, about evenly
            ws, pid = connect_to_worker(server)
            if pid in self.by_pid:
                ws.close()
            else:
                self.by_pid[pid] = ws
            if len(self.by_pid) == WORKERS:
                break
        assert len(self.by_pid) == WORKERS, f"connections reached only workers {self.by_pid}"
        self.new_log()

    def check(self, pid: int | None = None) -> None:
        """Worker ``pid`` (every worker if ``None``) answers a ping; nothing was logged amiss."""
        if pid is not None:
            assert pid in self.by_pid, f"worker {pid} is new, so one died:\n{self.server.log()}"
        for ws in [self.by_pid[pid]] if pid is not None else list(self.by_pid.values()):
            send(ws, {"type": "ping"})
            assert receive(ws) == {"type": "pong"}
        log = self.new_log()
        assert "Traceback" not in log, log

    def new_log(self) -> str:
        """What the hub logged since the previous call."""
        with self.server.log_path.open("rb") as file:
            file.seek(self.log_offset)
            data = file.read()
        self.log_offset += len(data)
        return data.decode(errors="replace")

    def close(self) -> None:
        for ws in self.by_pid.values():
            ws.close()


@pytest.fixture(scope="module")
def witnesses(hub: HubServer) -> Iterator[Witnesses]:
    found = Witnesses(hub)
    yield found
    found.close()


def parse_client_frames(stream: bytes) -> tuple[set[int | None], bool]:
    """What the hub will make of ``stream``'s framing, read as RFC 6455 frames.

    Returns the codes of its close frames (``None``: a close with no code; the
    hub echoes a client's valid close code, which need not be one of its own)
    and whether the stream ends exactly where a frame ends.
    """
    codes: set[int | None] = set()
    at = 0
    while at < len(stream):
        if at + 2 > len(stream):
            return codes, False
        opcode, has_mask, length = stream[at] & 0x0F, stream[at + 1] & 0x80, stream[at + 1] & 0x7F
        at += 2
        if length >= 126:
            size = 2 if length == 126 else 8
            length, at = int.from_bytes(stream[at : at + size], "big"), at + size
        key, at = (stream[at : at + 4], at + 4) if has_mask else (bytes(4), at)
        if at + length > len(stream):
            return codes, False
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(stream[at : at + length]))
        at += length
        if opcode == 0x8:
            codes.add(int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None)
    return codes, True


def read_frames(
    sock: socket.socket,
    buffer: bytearray,
    frames: list[Frame],
    done: Callable[[list[Frame]], bool],
) -> None:
    """Add server frames to ``frames`` until a close frame or ``done(frames)``."""
    while not (frames and (frames[-1][0] == 0x8 or done(frames))):
        if not buffer or not (more := split_frames(buffer)):
            data = sock.recv(65536)
            assert data, f"the hub hung up without a close frame after {frames}"
            buffer += data
            continue
        for item in more:
            frames.append(item)
            if item[0] == 0x8 or done(frames):
                assert not buffer, f"{buffer!r} after {item}"
                break


def answered_barrier(frames: list[Frame]) -> bool:
    opcode, payload = frames[-1]
    if opcode != 0x1:
        return False
    answer = decode(payload)
    return bool(answer["type"] == "replay_complete" and answer.get("project") == BARRIER)


def check_answers(frames: list[Frame], allowed_closes: set[int | None]) -> None:
    """Only frames of the protocol's vocabulary, ending with an expected close."""
    *answers, (opcode, close) = frames
    assert opcode == 0x8, frames
    code = int.from_bytes(close[:2], "big") if len(close) >= 2 else None
    assert code in allowed_closes, f"close {code} {close[2:]!r}, expected one of {allowed_closes}"
    event(f"closed with {code}")
    for opcode, payload in answers:
        if opcode == 0x1:
            answer = decode(payload)  # held to docs/frames.schema.json too
            assert answer["type"] in ANSWER_TYPES, answer
            if answer["type"] == "error":
                assert answer["code"] in set(ErrorCode), answer
            event(f"answered {answer.get('code', answer['type'])}")
        else:
            assert opcode in (0x9, 0xA), (opcode, payload)  # the hub's ping, or a pong


def exchange(server: HubServer, data: bytes) -> int:
    """Open a connection, send ``data``, check every answer to the close; the worker's pid.

    When ``data`` is whole frames, a subscription to :data:`BARRIER` follows
    it: the hub answers that after everything ``data`` asked for, unless
    ``data`` made it close the connection.  Then (or at once, when ``data``
    leaves a frame unfinished, which would swallow the barrier) comes the
    padding, which ends any frame still open past ``HUB_WS_MAX_FRAME_BYTES``
    (1009, or 1007 when the frame's mask makes its text invalid UTF-8) and
    whose zero bytes otherwise start an unmasked frame (1002).  So every
    example ends with a close frame, and none has to wait for silence.
    """
    whole = parse_client_frames(data)[1]
    event("whole frames" if whole else "a frame left open")
    with socket.create_connection(("127.0.0.1", server.port), timeout=WAIT) as sock:
        sock.sendall(handshake(server.port))
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(65536)
            assert chunk, head
            head += chunk
        head, _, rest = head.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        buffer, frames = bytearray(rest), list[Frame]()
        read_frames(sock, buffer, frames, lambda frames: True)
        assert frames[0][0] == 0x1, frames
        pid = worker_pid(decode(frames.pop()[1]))
        if whole:
            sock.sendall(
                data + masked(json.dumps({"type": "subscribe_project", "project": BARRIER}))
            )
            read_frames(sock, buffer, frames, answered_barrier)
            if answered_barrier(frames):
                event("the barrier was answered")
                sock.sendall(PADDING)
        else:
            sock.sendall(data + PADDING)
        read_frames(sock, buffer, frames, lambda frames: False)
    check_answers(frames, PROTOCOL_CLOSES | parse_client_frames(data + PADDING)[0])
    return pid


@settings(
    max_examples=500,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=streams)
def test_any_frames_leave_the_hub_serving(
    hub: HubServer, witnesses: Witnesses, data: bytes
) -> None:
    witnesses.check(exchange(hub, data))


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    request=st.binary(max_size=400)
    | st.builds(
        lambda line, headers: line + b"\r\n" + headers + b"\r\n\r\n",
        st.sampled_from(
            [
                b"GET /ws HTTP/1.1",
                b"GET /ws HTTP/1.0",
                b"POST /ws HTTP/1.1",
                b"GET /project-dashboard/ws/ HTTP/1.1",
                b"GET /ws?token=\x00 HTTP/1.1",
            ]
        ),
        st.binary(max_size=200),
    )
)
def test_any_handshake_bytes_leave_the_hub_serving(
    hub: HubServer, witnesses: Witnesses, request: bytes
) -> None:
    """Bytes that are no good request get a 4xx, or nothing at all; never a 5xx."""
    with socket.create_connection(("127.0.0.1", hub.port), timeout=WAIT) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)  # the end of the request: nothing waits for more
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    if answer:
        status = re.match(rb"HTTP/1\.[01] (\d{3}) ", answer)
        assert status, answer[:200]
        assert int(status[1]) < 500, answer[:500]
        event(f"status {int(status[1])}")
    else:
        event("no answer")
    witnesses.check()


def test_after_the_fuzzing_a_plain_client_is_served(hub: HubServer) -> None:
    """Runs after the fuzzing: a new event still reaches a subscriber, and no worker exited."""
    ws = connect(hub)
    try:
        subscribe(ws, {"type": "subscribe_project", "project": "after-fuzz"})
        ids = post(
            hub, {"type": "deployment_started", "project": "after-fuzz", "deployment_id": "d-af"}
        )
        assert receive(ws)["event"]["id"] == ids[0]
        send(ws, {"type": "ping"})
        assert receive(ws) == {"type": "pong"}
    finally:
        ws.close()
    assert hub.request("GET", "/healthz")[0] == 200
    log = hub.log()
    assert "Traceback" not in log
    assert "Worker exiting" not in log
    assert "WORKER TIMEOUT" not in log
