"""The WebSocket protocol against the real hub under gunicorn: frames, limits, close codes."""

from __future__ import annotations

import http.client
import json
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websocket
from websocket import ABNF

from ledger import version
from tests.e2e.server import HubServer, checked
from tests.e2e.wsclient import (
    WAIT,
    DeflateClient,
    close_code,
    connect,
    decode,
    log_event,
    post,
    receive,
    send,
    subscribe,
    ws_url,
)

pytestmark = pytest.mark.e2e

MAX_FRAME = 4096


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubServer]:
    hub = HubServer(
        tmp_path_factory.mktemp("ws-protocol"),
        env={
            "HUB_WS_MAX_FRAME_BYTES": str(MAX_FRAME),
            "HUB_WS_MAX_SUBSCRIPTIONS": "3",
            "HUB_MAX_BODY_BYTES": str(8 * 1024 * 1024),
        },
    ).start()
    yield hub
    hub.stop()


@pytest.mark.parametrize("path", ["/ws", "/ws/", "/project-dashboard/ws", "/project-dashboard/ws/"])
def test_welcome_is_sent_on_every_path(server: HubServer, path: str) -> None:
    ws = websocket.create_connection(ws_url(server, path), timeout=10)
    welcome = receive(ws)
    assert welcome["type"] == "welcome"
    assert welcome["server"] == "deploy-dashboard-hub"
    assert welcome["version"] == version()
    assert welcome["limits"]["max_subscriptions"] == 3
    assert welcome["limits"]["max_frame_bytes"] == MAX_FRAME
    assert welcome["limits"]["heartbeat_interval"] == 25.0
    ws.close()


def test_app_level_ping_and_heartbeat_are_answered(server: HubServer) -> None:
    ws = connect(server)
    pairs = [
        ({"type": "ping"}, "pong"),
        (["ping"], "pong"),
        ({"type": "heartbeat"}, "heartbeat:ack"),
        (["heartbeat"], "heartbeat:ack"),
    ]
    for frame, answer in pairs:
        send(ws, frame)
        assert receive(ws) == {"type": answer}
    ws.close()


def test_websocket_ping_is_answered_with_its_payload(server: HubServer) -> None:
    ws = connect(server)
    ws.ping(b"are you there")
    opcode, frame = ws.recv_data_frame(control_frame=True)
    assert opcode == ABNF.OPCODE_PONG
    assert frame.data == b"are you there"
    ws.close()


@pytest.mark.parametrize("form", ["object", "colon-object", "array", "colon-array"])
def test_every_subscribe_form_delivers_live_events(server: HubServer, form: str) -> None:
    project = f"forms-{form}"
    frame = {
        "object": {"type": "subscribe_project", "project": project},
        "colon-object": {"type": "subscribe:project", "project": project},
        "array": ["subscribe_project", project],
        "colon-array": ["subscribe:project", project],
    }[form]
    ws = connect(server)
    subscribed, replayed, _ = subscribe(ws, frame)
    assert subscribed == {
        "type": "subscribed",
        "project": project,
        "replayed": 0,
        "recovered": True,
    }
    assert replayed == []
    [event_id] = post(server, log_event(project, "1", "hello 你好"))
    event = receive(ws)
    assert event["type"] == "event"
    assert event["event"]["id"] == event_id
    assert event["event"]["payload"]["message"] == "hello 你好"
    ws.close()


def test_every_unsubscribe_form_stops_events(server: HubServer) -> None:
    ws = connect(server)
    subscribe(ws, ["subscribe:deployment", "u1"])
    subscribe(ws, ["subscribe_deployment", "u2"])
    send(ws, ["unsubscribe:deployment", "u1"])
    assert receive(ws) == {"type": "unsubscribed", "deployment_id": "u1"}
    send(ws, {"type": "unsubscribe_deployment", "deployment_id": "u2"})
    assert receive(ws) == {"type": "unsubscribed", "deployment_id": "u2"}
    post(server, log_event("unsub", "u1"), log_event("unsub", "u2"))
    send(ws, {"type": "ping"})
    assert receive(ws) == {"type": "pong"}, "no event may arrive after unsubscribing"
    ws.close()


def test_types_narrow_replay_and_live_events(server: HubServer) -> None:
    step = {
        "type": "step_completed",
        "project": "typed",
        "deployment_id": "t1",
        "step_name": "build / compile",
        "step_status": "success",
        "duration": 3,
    }
    post(server, log_event("typed", "t1"), step)
    ws = connect(server)
    subscribed, replayed, _ = subscribe(
        ws, {"type": "subscribe_deployment", "deployment_id": "t1", "types": ["step_completed"]}
    )
    assert subscribed["types"] == ["step_completed"]
    assert [e["type"] for e in replayed] == ["step_completed"]
    [_, live] = post(server, log_event("typed", "t1"), step)
    assert receive(ws)["event"]["id"] == live
    ws.close()


def test_type_patterns_keep_a_list_page_to_lifecycle_events(server: HubServer) -> None:
    """``deployment_*`` and ``step_*``: what a list page needs, without the log lines."""
    step = {
        "type": "step_completed",
        "project": "families",
        "deployment_id": "f1",
        "step_name": "build / compile",
        "step_status": "success",
    }
    ws = connect(server)
    lifecycle = ["deployment_*", "step_*"]
    frame = {"type": "subscribe_project", "project": "families", "types": lifecycle}
    subscribed, _, _ = subscribe(ws, frame)
    assert subscribed["types"] == [
        "deployment_completed",
        "deployment_rollback",
        "deployment_started",
        "step_completed",
        "step_started",
    ]
    [_, wanted, _] = post(server, log_event("families", "f1"), step, log_event("families", "f1"))
    assert receive(ws)["event"]["id"] == wanted
    [last] = post(server, {**step, "step_name": "build / test"})
    assert receive(ws)["event"]["id"] == last  # no log line came in between
    ws.close()


@pytest.mark.parametrize(
    ("data", "code"),
    [
        ("not json at all", "invalid_json"),
        ('{"type": "subscribe_everything"}', "unknown_type"),
        ('{"type": "subscribe_project"}', "missing_field"),
        ('{"project": "web"}', "missing_field"),
        ('["subscribe_project"]', "invalid_frame"),
        ("[]", "invalid_frame"),
        ('{"type": "subscribe_project", "project": "web", "types": ["nope"]}', "invalid_field"),
        (b"\x00\x01binary", "binary_not_supported"),
    ],
    ids=[
        "not-json",
        "unknown-type",
        "missing-project",
        "missing-type",
        "short-array",
        "empty-array",
        "unknown-event-type",
        "binary",
    ],
)
def test_a_bad_frame_gets_an_error_and_the_connection_stays(
    server: HubServer, data: str | bytes, code: str
) -> None:
    ws = connect(server)
    if isinstance(data, bytes):
        ws.send_binary(data)
    else:
        ws.send(data)
    error = receive(ws)
    assert error["type"] == "error"
    assert error["code"] == code
    assert error["message"]
    send(ws, ["ping"])
    assert receive(ws) == {"type": "pong"}
    ws.close()


def test_too_many_subscriptions_is_an_error_and_the_connection_stays(server: HubServer) -> None:
    ws = connect(server)
    for project in ("l1", "l2", "l3"):
        subscribe(ws, ["subscribe_project", project])
    send(ws, ["subscribe_project", "l4"])
    assert receive(ws)["code"] == "too_many_subscriptions"
    [event_id] = post(server, log_event("l3", "x"))
    assert receive(ws)["event"]["id"] == event_id
    ws.close()


@pytest.mark.parametrize("size", [MAX_FRAME + 1, 2_000_000], ids=["just-over", "megabytes"])
def test_a_frame_over_the_limit_is_closed_with_1009(server: HubServer, size: int) -> None:
    """Even when most of the frame is still unread, the close frame reaches the client."""
    ws = connect(server)
    send(ws, {"type": "ping", "padding": "x" * size})
    assert close_code(ws) == 1009


def test_a_frame_just_under_the_limit_is_answered(server: HubServer) -> None:
    ws = connect(server)
    frame = json.dumps({"type": "ping", "padding": ""})
    send(ws, {"type": "ping", "padding": "x" * (MAX_FRAME - len(frame))})
    assert receive(ws) == {"type": "pong"}
    ws.close()


def test_invalid_utf8_is_closed_with_1007(server: HubServer) -> None:
    ws = connect(server)
    ws.send_frame(ABNF.create_frame(b'{"type": "ping", "x": "\xff\xfe"}', ABNF.OPCODE_TEXT))
    assert close_code(ws) == 1007


def test_a_fragmented_message_is_reassembled(server: HubServer) -> None:
    ws = connect(server)
    text = json.dumps({"type": "subscribe:project", "project": "fragments 分片"})
    pieces = [text[:5], text[5:20], text[20:]]
    ws.send_frame(ABNF.create_frame(pieces[0], ABNF.OPCODE_TEXT, fin=0))
    ws.ping(b"between fragments")
    ws.send_frame(ABNF.create_frame(pieces[1], ABNF.OPCODE_CONT, fin=0))
    ws.send_frame(ABNF.create_frame(pieces[2], ABNF.OPCODE_CONT, fin=1))
    assert receive(ws)["project"] == "fragments 分片"
    ws.close()


def test_a_client_close_is_answered_with_the_same_code(server: HubServer) -> None:
    ws = connect(server)
    ws.close(status=1000, reason=b"bye")
    assert ws.close_frame is not None
    data = ws.close_frame.data
    assert isinstance(data, bytes)
    assert int.from_bytes(data[:2], "big") == 1000


def test_permessage_deflate_carries_multi_megabyte_events(server: HubServer) -> None:
    """A browser negotiates deflate; a 4 MB log line must arrive whole and intact."""
    client = DeflateClient(server)
    assert any(ext.name == "permessage-deflate" for ext in client.extensions)
    assert client.receive()["type"] == "welcome"
    client.send({"type": "subscribe_deployment", "deployment_id": "huge"})
    assert client.receive()["type"] == "subscribed"
    assert client.receive()["type"] == "replay_complete"
    messages = [
        "".join(f"{n}.{i:05d} 日志 \x1b[31mred\x1b[0m {'x' * 180}\n" for i in range(20_000))
        for n in range(2)
    ]
    ids = [post(server, log_event("huge", "huge", message))[0] for message in messages]
    for event_id, message in zip(ids, messages, strict=True):
        frame = client.receive()
        assert frame["event"]["id"] == event_id
        assert frame["event"]["payload"]["message"] == message
    client.send({"type": "ping"})
    assert client.receive() == {"type": "pong"}
    client.close()


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def test_a_compression_bomb_is_closed_with_1009_before_it_is_inflated(server: HubServer) -> None:
    """64 MiB of zeros compressed to about 64 KB, on four connections at once: the hub
    stops inflating each at its frame cap, so the worker never holds what they inflate to."""
    bombs = [DeflateClient(server) for _ in range(4)]
    for client in bombs:
        assert client.receive()["type"] == "welcome"
    pid = int(welcome_connection_id(server).split("-")[0])
    before = rss_bytes(pid)
    for client in bombs:
        client.send_text("0" * (64 << 20))
    assert [client.close_code() for client in bombs] == [1009] * 4
    assert rss_bytes(pid) - before < 32 << 20
    for client in bombs:
        client.close()
    survivor = DeflateClient(server)  # the worker is unhurt
    assert survivor.receive()["type"] == "welcome"
    survivor.close()


def welcome_connection_id(server: HubServer) -> str:
    """The ``<pid>-<n>`` connection id a new client of ``server`` is given."""
    client = DeflateClient(server)
    welcome = client.receive()
    client.close()
    return str(welcome["connection_id"])


def deflated_stream(client: DeflateClient, server: HubServer) -> None:
    """Events, interleaved with the hub's own frames, arrive whole through deflate."""
    assert client.receive()["type"] == "welcome"
    client.send({"type": "subscribe_deployment", "deployment_id": "zip"})
    assert client.receive()["type"] == "subscribed"
    assert client.receive()["type"] == "replay_complete"
    for n in range(20):
        message = f"{n} 日志 \x1b[31mred\x1b[0m " + "compressible " * n
        (event_id,) = post(server, log_event("zip", "zip", message))
        frame = client.receive()
        assert (frame["event"]["id"], frame["event"]["payload"]["message"]) == (event_id, message)
        client.send({"type": "ping"})
        assert client.receive() == {"type": "pong"}


def test_shared_deflate_keeps_no_context_on_either_side(server: HubServer) -> None:
    """The default: frames deflated once per worker, no zlib state per connection."""
    client = DeflateClient(server)
    (extension,) = client.extensions
    assert extension.server_no_context_takeover
    assert extension.client_no_context_takeover
    deflated_stream(client, server)
    client.close()


def test_deflate_with_a_context_per_connection(tmp_path: Path) -> None:
    hub = HubServer(tmp_path, env={"HUB_WS_DEFLATE": "connection"}).start()
    try:
        client = DeflateClient(hub)
        (extension,) = client.extensions
        assert not extension.server_no_context_takeover
        deflated_stream(client, hub)
        client.close()
    finally:
        hub.stop()


def test_permessage_deflate_can_be_turned_off(tmp_path: Path) -> None:
    hub = HubServer(tmp_path, env={"HUB_WS_DEFLATE": "false"}).start()
    try:
        client = DeflateClient(hub)
        assert client.extensions == []
        assert client.receive()["type"] == "welcome"
        client.close()
    finally:
        hub.stop()


def test_concurrent_writes_to_one_connection_stay_well_formed(server: HubServer) -> None:
    """Multi-megabyte event frames, pongs from the reader and app-level pongs share one socket.

    The client reads through a small receive buffer and starts late, so each
    event frame takes many partial writes while the hub answers the pings
    that keep arriving: every frame must still arrive whole and in order.
    """
    ws = connect(
        server, sockopt=[(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)], skip_utf8_validation=True
    )
    subscribe(ws, ["subscribe_deployment", "busy"])
    pings = 100
    messages = [f"{n}:" + "x" * 5_000_000 for n in range(2)]
    posted: list[str] = []

    def pinger() -> None:  # while the hub is in the middle of the first event frame
        while not posted:
            time.sleep(0.001)
        for i in range(pings):
            ws.ping(str(i))
            send(ws, {"type": "ping"})
            time.sleep(0.002)

    def poster() -> None:
        posted.extend(post(server, log_event("busy", "busy", m))[0] for m in messages)

    threads = [threading.Thread(target=poster), threading.Thread(target=pinger)]
    for thread in threads:
        thread.start()
    for thread in threads:  # every ping goes out while the first event frame is stuck
        thread.join(WAIT)
        assert not thread.is_alive(), f"{thread.name} still runs"
    events: list[dict[str, Any]] = []
    ws_pongs: list[str] = []
    app_pongs = 0
    while len(events) < len(messages) or app_pongs < pings or len(ws_pongs) < pings:
        opcode, frame = ws.recv_data_frame(control_frame=True)
        if opcode == ABNF.OPCODE_PONG:
            ws_pongs.append(frame.data.decode())
            continue
        assert opcode == ABNF.OPCODE_TEXT
        decoded = decode(frame.data)
        if decoded["type"] == "pong":
            app_pongs += 1
        else:
            events.append(decoded["event"])
    assert [e["id"] for e in events] == posted
    assert [e["payload"]["message"] for e in events] == messages
    assert ws_pongs == [str(i) for i in range(pings)]
    ws.close()


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 400),
        ({"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13"}, 400),
        (
            {
                "Upgrade": "websocket",
                "Connection": "Upgrade",
                "Sec-WebSocket-Version": "8",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            },
            426,
        ),
    ],
    ids=["plain-get", "no-key", "old-version"],
)
def test_a_request_that_is_not_a_valid_upgrade_gets_an_http_error(
    server: HubServer, headers: dict[str, str], status: int
) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    connection.request("GET", "/ws", headers=headers)
    response = connection.getresponse()
    body = json.loads(checked("GET", "/ws", response, response.read()))
    connection.close()
    assert response.status == status
    assert body["success"] is False
    assert body["error"]["message"]
    if status == 426:
        assert response.headers["Sec-WebSocket-Version"] == "13"


# -- settings that need a hub of their own ------------------------------------------------


def test_a_peer_that_stops_answering_pings_is_closed(tmp_path: Path) -> None:
    hub = HubServer(tmp_path, env={"HUB_WS_PING_INTERVAL": "0.2"}).start()
    try:
        answering = connect(hub)
        silent = connect(hub)
        for _ in range(15):  # several intervals; recv_data_frame answers each ping
            opcode, _ = answering.recv_data_frame(control_frame=True)
            assert opcode == ABNF.OPCODE_PING
        send(answering, ["ping"])
        while (opcode_frame := answering.recv_data_frame())[0] != ABNF.OPCODE_TEXT:
            pass
        assert decode(opcode_frame[1].data) == {"type": "pong"}
        assert close_code(silent) == 1008
        answering.close()
    finally:
        hub.stop()


def test_sigterm_closes_clients_with_1001(tmp_path: Path) -> None:
    hub = HubServer(tmp_path).start()
    clients = [connect(hub) for _ in range(3)]
    subscribe(clients[0], ["subscribe_project", "bye"])
    stopper = threading.Thread(target=hub.stop, args=(signal.SIGTERM,))
    stopper.start()
    try:
        assert [close_code(ws) for ws in clients] == [1001, 1001, 1001]
    finally:
        stopper.join()
    assert "Worker graceful timeout" not in hub.log()


def test_a_subscription_to_every_project_sees_a_brand_new_one_at_once(server: HubServer) -> None:
    """What the overview needs to show a new project live, without polling."""
    client = connect(server)
    subscribe(client, {"type": "subscribe_all", "types": ["deployment_started"]})
    project = f"new-{time.monotonic_ns()}"
    post(server, log_event(project, "n-1"))  # not a wanted type: not sent
    post(server, {"type": "deployment_started", "project": project, "deployment_id": "n-1"})
    frame = receive(client)
    assert (frame["event"]["project"], frame["event"]["type"]) == (project, "deployment_started")
    client.close()
