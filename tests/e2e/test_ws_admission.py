"""Who may connect, decided before the upgrade: read tokens, Origin, the connection limit."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websocket

from tests.contract import check_response
from tests.e2e.server import HubServer, checked
from tests.e2e.wsclient import WAIT, connect, receive, send, wait_for, ws_url

pytestmark = pytest.mark.e2e

TOKEN = "s3cret-read-token"
ORIGIN = "https://dash.example.com"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubServer]:
    hub = HubServer(
        tmp_path_factory.mktemp("ws-guarded"),
        env={"HUB_READ_TOKENS": f"old-token,{TOKEN}", "HUB_ALLOWED_ORIGINS": ORIGIN},
    ).start()
    yield hub
    hub.stop()


def refused(server: HubServer, path: str = "/ws", **options: Any) -> int:
    """The HTTP status of a refused upgrade."""
    with pytest.raises(websocket.WebSocketBadStatusException) as refusal:
        websocket.create_connection(ws_url(server, path), timeout=WAIT, **options)
    status: int = refusal.value.status_code
    headers = refusal.value.resp_headers or {}
    check_response(
        "GET",
        path,
        status,
        {name.title(): value for name, value in headers.items()},
        refusal.value.resp_body or b"",
    )
    return status


def get(
    server: HubServer, path: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any], http.client.HTTPMessage]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=WAIT)
    connection.request("GET", path, headers=headers or {})
    response = connection.getresponse()
    status, reply_headers = response.status, response.headers
    body = json.loads(checked("GET", path, response, response.read())) if status != 200 else {}
    connection.close()
    return status, body, reply_headers


@pytest.mark.parametrize(
    ("path", "options"),
    [
        ("/ws", {}),
        ("/ws?token=wrong", {}),
        ("/ws", {"header": ["Authorization: Bearer wrong"]}),
        ("/ws", {"header": ["Authorization: Basic czNjcmV0"]}),
    ],
    ids=["none", "wrong-query", "wrong-bearer", "not-bearer"],
)
def test_a_websocket_without_a_valid_read_token_is_refused_with_401(
    guarded: HubServer, path: str, options: dict[str, Any]
) -> None:
    assert refused(guarded, path, **options) == 401


@pytest.mark.parametrize(
    ("path", "options"),
    [
        (f"/ws?token={TOKEN}", {"suppress_origin": True}),
        ("/project-dashboard/ws?token=old-token", {"suppress_origin": True}),
        ("/ws", {"header": [f"Authorization: Bearer {TOKEN}"], "suppress_origin": True}),
        (f"/ws?token={TOKEN}", {"origin": ORIGIN}),
        (f"/ws?token={TOKEN}", {"origin": ORIGIN.upper() + "/"}),
    ],
    ids=["query-no-origin", "rotated-token", "bearer", "allowed-origin", "origin-case-and-slash"],
)
def test_a_websocket_with_a_read_token_and_an_allowed_origin_connects(
    guarded: HubServer, path: str, options: dict[str, Any]
) -> None:
    ws = connect(guarded, path, **options)
    send(ws, ["ping"])
    assert receive(ws) == {"type": "pong"}
    ws.close()


def test_a_websocket_from_a_foreign_origin_is_refused_with_403(guarded: HubServer) -> None:
    assert refused(guarded, f"/ws?token={TOKEN}", origin="https://evil.example.com") == 403


def test_the_stream_needs_the_read_token_but_not_an_origin(guarded: HubServer) -> None:
    status, body, _ = get(guarded, "/api/stream?project=p")
    assert status == 401
    assert body["error"]["code"] == "unauthorized"
    connection = http.client.HTTPConnection("127.0.0.1", guarded.port, timeout=WAIT)
    connection.request(
        "GET",
        "/api/stream?project=p",
        headers={"Authorization": f"Bearer {TOKEN}", "Origin": "https://elsewhere.example.com"},
    )
    response = connection.getresponse()
    checked("GET", "/api/stream?project=p", response, b"")
    assert response.status == 200
    connection.close()


def test_the_connection_limit_answers_503_before_the_upgrade(tmp_path: Path) -> None:
    # A closed SSE stream is noticed at its next keep-alive, so keep those frequent.
    hub = HubServer(
        tmp_path, env={"HUB_WS_MAX_CONNECTIONS": "2", "HUB_WS_PING_INTERVAL": "0.3"}
    ).start()
    try:
        first = connect(hub)
        stream = http.client.HTTPConnection("127.0.0.1", hub.port, timeout=WAIT)
        stream.request("GET", "/api/stream?project=p")
        opened = stream.getresponse()
        checked("GET", "/api/stream?project=p", opened, b"")
        assert opened.status == 200
        assert refused(hub) == 503
        status, body, headers = get(hub, "/api/stream?project=p")
        assert status == 503
        assert body["error"]["code"] == "too_many_connections"
        assert headers["Retry-After"]
        stream.close()

        def admitted() -> bool:
            try:
                ws = connect(hub)
            except websocket.WebSocketBadStatusException:
                return False
            ws.close()
            return True

        wait_for(admitted, "the closed stream's slot to be given back")
        first.close()
    finally:
        hub.stop()
