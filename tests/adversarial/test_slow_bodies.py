"""Bodies trickled a byte at a time, and one address holding many connections."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.adversarial.conftest import (
    ROUTE,
    Bystanders,
    assert_refused,
    exchange,
    read_all,
    stored_events,
)
from tests.e2e.server import HubServer
from tests.e2e.wsclient import WAIT

pytestmark = pytest.mark.e2e

CAP = 20


@pytest.fixture
def capped(tmp_path: Path) -> Iterator[HubServer]:
    """Loopback limited too (the attacker is on 127.0.0.1; the bystanders post from .2)."""
    server = HubServer(
        tmp_path,
        env={
            "HUB_BODY_TIMEOUT": "1",
            "HUB_MAX_CONNECTIONS_PER_ADDRESS": str(CAP),
            "HUB_RATE_LIMIT_LOOPBACK": "true",
            "HUB_LOG_LEVEL": "WARNING",
        },
    ).start()
    yield server
    server.stop()


def slow_start(server: HubServer) -> socket.socket:
    """Headers done, then one byte of a 100-byte body, and nothing more."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=WAIT)
    sock.sendall(
        f"POST {ROUTE} HTTP/1.1\r\nHost: hub\r\nContent-Type: application/json\r\n"
        "Content-Length: 100\r\n\r\n{".encode()
    )
    return sock


def answer_of(sock: socket.socket) -> int:
    with sock:
        head = read_all(sock).split(b"\r\n", 1)[0]
    return int(head.split()[1])


def test_a_body_that_never_arrives_is_408_and_the_connection_closed(capped: HubServer) -> None:
    with Bystanders(capped):
        started = time.monotonic()
        status, answer = exchange(
            capped,
            f"POST {ROUTE} HTTP/1.1\r\nHost: hub\r\nContent-Type: application/json\r\n"
            "Content-Length: 100\r\n\r\n{".encode(),
        )
        waited = time.monotonic() - started
    assert_refused(status, answer, 408, "request_timeout")
    assert waited < WAIT  # the deadline, not the sender, ended it
    assert stored_events(capped, "slow") == []


def test_one_address_cannot_hold_the_workers_connections(capped: HubServer) -> None:
    """Thirty slow bodies from one address: the cap refuses the rest at once."""
    with Bystanders(capped):
        sockets = [slow_start(capped) for _ in range(CAP + 10)]
        statuses = [answer_of(sock) for sock in sockets]
    assert set(statuses) == {408, 429}
    assert statuses.count(429) >= 10  # the bystanders' subscriber holds one place too
