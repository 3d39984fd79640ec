"""permessage-deflate bombs: closed at the frame cap, the worker's memory barely moves."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.adversarial.conftest import Bystanders
from tests.e2e.server import HubServer
from tests.e2e.wsclient import DeflateClient

pytestmark = pytest.mark.e2e

BOMBS = 8
#: What each bomb inflates to if nothing stops it.
INFLATED = 64 << 20


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


@pytest.mark.parametrize("hub", ["sqlite"], indirect=True)
def test_bombs_on_many_connections_are_closed_and_cost_the_worker_little(hub: HubServer) -> None:
    """Eight 64 MiB bombs at once (about 64 KB each on the wire), no credentials needed."""
    with Bystanders(hub):
        bombs = [DeflateClient(hub) for _ in range(BOMBS)]
        pids = {int(str(client.receive()["connection_id"]).split("-")[0]) for client in bombs}
        before = sum(rss_bytes(pid) for pid in pids)
        for client in bombs:
            client.send_text("0" * INFLATED)
        assert [client.close_code() for client in bombs] == [1009] * BOMBS
        grown = sum(rss_bytes(pid) for pid in pids) - before
        for client in bombs:
            client.close()
    assert grown < INFLATED // 2, f"the worker grew by {grown >> 20} MiB"
