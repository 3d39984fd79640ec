"""End-to-end fixtures: a real gunicorn hub per test (module-scoped where noted)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.server import HubServer


@pytest.fixture
def hub_server(tmp_path: Path) -> Iterator[HubServer]:
    server = HubServer(tmp_path).start()
    yield server
    server.stop()
