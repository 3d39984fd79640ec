"""Stale runs on an open page, against a hub whose runs go stale after 2 seconds of quiet."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import event, post, watched_page
from tests.conftest import TIMEOUT_FACTOR
from tests.e2e.server import HubServer

pytestmark = pytest.mark.browser

STALE_AFTER = 2
#: Time for a quiet run to turn stale on the page: the threshold, a tick, and slack.
TURNS_STALE_MS = (STALE_AFTER + 4) * 1000 * TIMEOUT_FACTOR


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubServer]:
    server = HubServer(
        tmp_path_factory.mktemp("stale"), env={"HUB_STALE_AFTER": str(STALE_AFTER)}
    ).start()
    yield server
    server.stop()


def start_run(hub: HubServer, project: str, deployment: str) -> None:
    now = datetime.now(UTC).isoformat()
    post(
        hub,
        event("deployment_started", project, deployment, started_at=now),
        event("step_started", project, deployment, job="ci", step="build", started_at=now),
    )


def test_list_pages_show_stale_runs_and_stop_their_timers(hub: HubServer, browser: Any) -> None:
    start_run(hub, "quiet-list", "quiet-list-1")
    with watched_page(browser) as watched:
        page = watched.page
        page.goto(f"{hub.url}/project-dashboard/#/deployments?project=quiet-list")
        expect(page.locator("#connection")).to_have_attribute("data-state", "live")
        row = page.locator("tr[data-id='quiet-list-1']")
        expect(row.locator(".badge-stale")).to_be_visible(timeout=TURNS_STALE_MS)
        expect(row).to_have_attribute("data-stale", "true")
        elapsed = row.locator(".elapsed")
        stopped = elapsed.inner_text()
        page.wait_for_timeout(1500)
        expect(elapsed).to_have_text(stopped)

        page.goto(f"{hub.url}/project-dashboard/#/")
        card = page.locator(".project-card[data-project='quiet-list']")
        expect(card.locator(".badge-stale")).to_be_visible()
        expect(card).to_have_attribute("data-stale", "true")
        assert watched.errors == []
