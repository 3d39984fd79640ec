"""Fixtures for driving the dashboard in real headless Chromium against the real hub.

One hub (gunicorn, gevent workers) and one browser per test module keep the run
short; each test gets a fresh page whose console errors and uncaught exceptions
are collected, so a test can assert that the page stayed clean.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ledger.timestamps import format_timestamp
from tests.conftest import ROOT, TIMEOUT_FACTOR
from tests.e2e.server import HubServer

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ARTIFACTS = ROOT / "test-artifacts" / "dashboard"
#: How long the page may take to show a posted event ("within a second", scaled on slow machines).
LIVE_MS = 1000 * TIMEOUT_FACTOR
#: Page loads, reconnects after a restart, chart rendering.
SLOW_MS = 30000 * TIMEOUT_FACTOR


@dataclass
class Watched:
    """A page and every console error or uncaught exception it produced."""

    page: Any
    errors: list[str] = field(default_factory=list)

    def unexpected_errors(self, *allowed: str) -> list[str]:
        return [e for e in self.errors if not any(part in e for part in allowed)]


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubServer]:
    server = HubServer(tmp_path_factory.mktemp("dashboard")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed (make test installs Debian's chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@contextmanager
def watched_page(browser: Any, **options: Any) -> Iterator[Watched]:
    """A page in a new browser context made with ``options`` (Playwright's new_context)."""
    context = browser.new_context(
        **{"viewport": {"width": 1280, "height": 900}, "locale": "en-GB", **options}
    )
    page = context.new_page()
    page.set_default_timeout(SLOW_MS)
    result = Watched(page)
    page.on(
        "console",
        lambda message: (
            result.errors.append(f"console: {message.text}") if message.type == "error" else None
        ),
    )
    page.on("pageerror", lambda error: result.errors.append(f"pageerror: {error}"))
    try:
        yield result
    finally:
        context.close()


@pytest.fixture
def watched(browser: Any) -> Iterator[Watched]:
    with watched_page(browser) as result:
        yield result


def post(hub: HubServer, *events: dict[str, Any]) -> list[str]:
    """Post events as one batch through the ingest route; their ids."""
    status, body = hub.post_json("/api/webhooks/deployment", {"events": list(events)})
    assert status == 200, body
    ids: list[str] = body["ids"]
    return ids


def at(minutes_ago: float) -> str:
    """An ISO timestamp ``minutes_ago`` before now (the metrics window is relative to now)."""
    return format_timestamp(datetime.now(UTC) - timedelta(minutes=minutes_ago))


def event(kind: str, project: str, deployment_id: str, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "project": project, "deployment_id": deployment_id, **fields}
