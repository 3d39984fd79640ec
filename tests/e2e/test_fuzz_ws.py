"""Arbitrary WebSocket frames and raw bytes against the real hub under gunicorn.

Any sequence of frames (text of any content, binary, invalid UTF-8, control
frames, reserved opcodes and bits, fragments, unmasked frames, length fields
that lie) may get error frames or a close, but never crashes a worker, never
hangs it, and never disturbs the next client: after the fuzzing a plain
client still subscribes and receives a new event, and the log holds no
traceback.
"""

from __future__ import annotations

import json
import os
import socket
import struct
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.e2e.server import HubServer
from tests.e2e.wsclient import connect, handshake, post, receive, send, subscribe

pytestmark = pytest.mark.e2e

#: How long each example listens for the hub's answers before hanging up.
LISTEN = 0.15


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
        tmp_path_factory.mktemp("fuzz-ws"), env={"HUB_WS_MAX_FRAME_BYTES": "4096"}, workers=2
    ).start()
    yield server
    server.stop()


def exchange(server: HubServer, opening: bytes, data: bytes) -> None:
    """Send ``opening`` then ``data`` on one connection; read what comes back for a moment."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=LISTEN) as sock:
        sock.sendall(opening)
        try:
            sock.sendall(data)
            while sock.recv(65536):
                pass
        except (TimeoutError, ConnectionError):
            pass  # still open after the pause, or closed by the hub: both fine


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=streams)
def test_any_frames_leave_the_hub_serving(hub: HubServer, data: bytes) -> None:
    exchange(hub, handshake(hub.port), data)


@settings(
    max_examples=30,
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
def test_any_handshake_bytes_leave_the_hub_serving(hub: HubServer, request: bytes) -> None:
    exchange(hub, request, b"")


def test_after_the_fuzzing_a_plain_client_is_served(hub: HubServer) -> None:
    """Runs last in this module: the workers that took the fuzz still serve normally."""
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
