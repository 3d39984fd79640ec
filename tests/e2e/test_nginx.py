"""The shipped nginx site in front of two hubs on one Redis: real nginx, real sockets.

``nginx/hub.conf`` and each upstream file are loaded into a generated
``nginx.conf`` under a temporary prefix, with the ports rewritten to the
hubs and the free port this test listens on; nginx runs in the foreground.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websocket

from tests.conftest import ROOT, TIMEOUT_FACTOR
from tests.e2e.server import HubServer, checked, free_port
from tests.e2e.test_redis_scaleout import start_pair
from tests.e2e.wsclient import WAIT, receive, subscribe, wait_for
from tests.redis_server import RedisServer

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
SITE = ROOT / "nginx" / "hub.conf"
UPSTREAMS = ["hub-upstream.conf", "hub-redis.conf", "hub-redis-roles.conf"]


def nginx_conf(prefix: Path, port: int, upstream: str, ports: dict[str, int] | None) -> Path:
    """An nginx.conf under ``prefix`` that includes the shipped site and upstream files."""
    for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi", "logs"):
        (prefix / name).mkdir(parents=True, exist_ok=True)
    site = (
        SITE.read_text()
        .replace("listen 80;", f"listen 127.0.0.1:{port};")
        .replace("client_body_timeout 10s;", "client_body_timeout 1s;")  # tests wait less
    )
    (prefix / "hub.conf").write_text(site)
    text = (ROOT / "nginx" / upstream).read_text()
    for placeholder, real in (ports or {}).items():
        text = text.replace(f"127.0.0.1:{placeholder};", f"127.0.0.1:{real};")
        text = text.replace(f"127.0.0.1:{placeholder} ", f"127.0.0.1:{real} ")
    (prefix / "upstream.conf").write_text(text)
    conf = prefix / "nginx.conf"
    conf.write_text(
        f"""
user root;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log info;
events {{ worker_connections 1024; }}
http {{
    access_log {prefix}/logs/access.log;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    include {prefix}/upstream.conf;
    include {prefix}/hub.conf;
}}
"""
    )
    return conf


@pytest.mark.parametrize("upstream", UPSTREAMS)
def test_the_site_and_each_upstream_file_pass_nginx_t(tmp_path: Path, upstream: str) -> None:
    conf = nginx_conf(tmp_path, free_port(), upstream, None)
    result = subprocess.run(
        [
            NGINX,
            "-t",
            "-p",
            str(tmp_path),
            "-e",
            str(tmp_path / "logs" / "error.log"),
            "-c",
            str(conf),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


@pytest.fixture(scope="module")
def hubs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[HubServer, HubServer]]:
    redis = RedisServer(tmp_path_factory.mktemp("redis")).start()
    a, b = start_pair(redis, tmp_path_factory.mktemp("hubs"), f"nginx-{uuid.uuid4().hex}")
    yield a, b
    a.stop()
    b.stop()
    redis.stop()


@pytest.fixture(scope="module")
def proxy(
    hubs: tuple[HubServer, HubServer], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[int]:
    """nginx with hub.conf and hub-redis.conf in front of both hubs; its port."""
    a, b = hubs
    prefix, port = tmp_path_factory.mktemp("nginx"), free_port()
    conf = nginx_conf(prefix, port, "hub-redis.conf", {"8001": a.port, "8002": b.port})
    process = subprocess.Popen(
        [
            NGINX,
            "-p",
            str(prefix),
            "-e",
            str(prefix / "logs" / "error.log"),
            "-c",
            str(conf),
            "-g",
            "daemon off;",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 10 * TIMEOUT_FACTOR
        while not answers(port):
            assert process.poll() is None, (prefix / "logs" / "error.log").read_text()
            assert time.monotonic() < deadline, "nginx did not start"
            time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


def answers(port: int) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        connection.request("GET", "/project-dashboard/healthz")
        response = connection.getresponse()
        checked("GET", "/project-dashboard/healthz", response, response.read())
        return response.status == 200
    except OSError:
        return False
    finally:
        connection.close()


def request(
    port: int, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], Any]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
    raw = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    connection.request(method, path, raw, {"Content-Type": "application/json", **(headers or {})})
    response = connection.getresponse()
    data = response.read()
    connection.close()
    checked(method, path, response, data)
    with contextlib.suppress(ValueError):
        return response.status, dict(response.getheaders()), json.loads(data)
    return response.status, dict(response.getheaders()), data


def test_ingest_and_websocket_work_on_the_public_paths(
    proxy: int, hubs: tuple[HubServer, HubServer]
) -> None:
    ws = websocket.create_connection(f"ws://127.0.0.1:{proxy}/project-dashboard/ws", timeout=WAIT)
    assert receive(ws)["type"] == "welcome"
    subscribe(ws, {"type": "subscribe_project", "project": "via-nginx"})
    sent = []
    for index in range(20):
        status, _, answer = request(
            proxy,
            "POST",
            "/project-dashboard/api/webhooks/deployment",
            {
                "type": "log_entry",
                "project": "via-nginx",
                "deployment_id": "n",
                "message": f"line {index}",
            },
        )
        assert status == 200, answer
        sent += answer["ids"]
    received = [receive(ws)["event"]["id"] for _ in sent]
    ws.close()
    assert received == sent
    status, _, view = request(proxy, "GET", "/project-dashboard/api/deployments/n")
    assert (status, view["log_lines"]) == (200, 20)
    served = [hub.log().count("ingest accepted") for hub in hubs]
    assert all(served), f"nginx should spread ingest over both hubs, got {served}"


def test_the_websocket_trailing_slash_path_and_legacy_ingest_path_work(proxy: int) -> None:
    ws = websocket.create_connection(f"ws://127.0.0.1:{proxy}/project-dashboard/ws/", timeout=WAIT)
    assert receive(ws)["type"] == "welcome"
    ws.close()
    status, _, answer = request(proxy, "POST", "/api/webhooks/deployment", {"type": "test"})
    assert (status, answer["success"]) == (200, True)


def test_server_sent_events_are_not_buffered(proxy: int) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", proxy, timeout=WAIT)
    connection.request(
        "GET",
        "/project-dashboard/api/stream?project=sse-nginx",
        headers={"Accept": "text/event-stream"},
    )
    response = connection.getresponse()
    assert response.status == 200
    checked("GET", "/project-dashboard/api/stream?project=sse-nginx", response, b"")
    status, _, answer = request(
        proxy,
        "POST",
        "/project-dashboard/api/webhooks/deployment",
        {"type": "log_entry", "project": "sse-nginx", "deployment_id": "s", "message": "hi"},
    )
    assert status == 200
    seen = b""
    while answer["ids"][0].encode() not in seen:
        line = response.fp.readline()
        assert line, "the stream ended"
        seen += line
    connection.close()


def test_a_body_over_the_cap_is_refused_by_nginx_as_json(proxy: int) -> None:
    status, _, answer = request(
        proxy, "POST", "/project-dashboard/api/webhooks/deployment", b"x" * (3 * 1024 * 1024)
    )
    assert status == 413
    assert answer["error"]["code"] == "payload_too_large"


def test_metrics_are_not_served_on_the_public_site(proxy: int) -> None:
    status, _, answer = request(proxy, "GET", "/project-dashboard/metrics")
    assert status == 404
    assert answer["error"]["code"] == "not_found"


def raw_exchange(port: int, data: bytes) -> tuple[int, dict[str, Any]]:
    """Send ``data`` as it is; the status and JSON body of what comes back."""
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head, "nginx closed the connection without answering"
    assert body.strip().startswith(b"{"), answer[:600]
    return int(head.split()[1]), json.loads(body)


@pytest.mark.parametrize(
    ("data", "status", "code"),
    [
        (
            b"GET /project-dashboard/" + b"a" * 40000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
            414,
            "uri_too_long",
        ),
        (
            b"GET /project-dashboard/healthz HTTP/1.1\r\nHost: x\r\nX-Big: "
            + b"b" * 20000
            + b"\r\n\r\n",
            400,
            "bad_request",
        ),
    ],
    ids=["uri-too-long", "header-too-large"],
)
def test_what_nginx_refuses_itself_is_the_contracts_json(
    proxy: int, data: bytes, status: int, code: str
) -> None:
    got, answer = raw_exchange(proxy, data)
    assert (got, answer["success"], answer["error"]["code"]) == (status, False, code)


def test_a_body_slower_than_the_timeout_is_cut_off_without_storing(proxy: int) -> None:
    """nginx closes the connection of a body that stops arriving (it answers no 408)."""
    with socket.create_connection(("127.0.0.1", proxy), timeout=WAIT) as sock:
        sock.sendall(
            b"POST /project-dashboard/api/webhooks/deployment HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
        )
        assert sock.recv(65536) == b""


def test_the_hub_sees_the_public_prefix(proxy: int, hubs: tuple[HubServer, HubServer]) -> None:
    """nginx strips /project-dashboard and says so; the hub logs the public path."""
    status, headers, _ = request(proxy, "GET", "/project-dashboard/api/projects")
    assert status == 200
    request_id = headers["X-Request-ID"]

    def logged() -> list[str]:
        return [line for hub in hubs for line in hub.log().splitlines() if request_id in line]

    wait_for(lambda: bool(logged()), "the request's access line")
    assert '"GET /project-dashboard/api/projects"' in logged()[0]
