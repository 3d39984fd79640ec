"""/metrics is as guarded as the read API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.adversarial.conftest import Bystanders, assert_refused, exchange
from tests.e2e.server import HubServer

pytestmark = pytest.mark.e2e


@pytest.fixture
def private(tmp_path: Path) -> Iterator[HubServer]:
    server = HubServer(tmp_path, env={"HUB_READ_TOKENS": "reader"}).start()
    yield server
    server.stop()


@pytest.mark.parametrize("prefix", ["", "/project-dashboard"])
def test_metrics_need_a_read_token_when_reads_do(private: HubServer, prefix: str) -> None:
    request = f"GET {prefix}/metrics HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n\r\n"
    with Bystanders(private, read_token="reader"):
        status, answer = exchange(private, request.encode())
    assert_refused(status, answer, 401, "unauthorized")
    allowed = private.request(
        "GET", f"{prefix}/metrics", headers={"Authorization": "Bearer reader"}
    )
    assert allowed[0] == 200
    assert "hub_events_accepted_total" in allowed[1]
