"""Stale runs on an open page, against a hub whose runs go stale after 2 seconds of quiet."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import ARTIFACTS, LIVE_MS, event, post, watched_page
from tests.conftest import TIMEOUT_FACTOR
from tests.e2e.server import HubServer

pytestmark = pytest.mark.browser

STALE_AFTER = 2
#: Time for a quiet run to turn stale on the page: the threshold, a tick, and slack.
TURNS_STALE_MS = (STALE_AFTER + 4) * 1000 * TIMEOUT_FACTOR
SIZES = {"1280": {"width": 1280, "height": 900}, "390": {"width": 390, "height": 844}}


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubServer]:
    server = HubServer(
        tmp_path_factory.mktemp("stale"), env={"HUB_STALE_AFTER": str(STALE_AFTER)}
    ).start()
    yield server
    server.stop()


def start_run(hub: HubServer, project: str, deployment: str, **meta: Any) -> None:
    now = datetime.now(UTC).isoformat()
    post(
        hub,
        event("deployment_started", project, deployment, started_at=now, **meta),
        event("step_started", project, deployment, job="ci", step="build", started_at=now),
    )


@pytest.mark.parametrize("size", list(SIZES))
def test_a_quiet_run_turns_stale_on_an_open_page_and_news_revives_it(
    hub: HubServer, browser: Any, size: str
) -> None:
    deployment = f"quiet-{size}"
    with watched_page(browser, viewport=SIZES[size]) as watched:
        page = watched.page
        page.goto(f"{hub.url}/project-dashboard/#/deployments/{deployment}")
        expect(page.locator("#connection")).to_have_attribute("data-state", "live")
        start_run(hub, "quiet", deployment)
        step = page.locator("li.step[data-step='build']")
        expect(step).to_have_attribute("data-status", "running", timeout=LIVE_MS)
        badge = page.locator(".deploy-stale")
        expect(badge).to_be_hidden()
        expect(step).to_have_attribute("data-stale", "false")

        asked: list[str] = []
        page.on("request", lambda request: asked.append(request.url))
        expect(badge).to_be_visible(timeout=TURNS_STALE_MS)
        expect(step).to_have_attribute("data-stale", "true")
        expect(step.locator(".badge-stale")).to_be_visible()
        expect(page.locator(".job-head .badge-stale")).to_be_visible()
        assert "No news since" in (badge.get_attribute("title") or "")
        assert asked == [], "the page turned the run stale by itself, without asking the hub"

        # the timers stopped at the last news
        timers = page.locator(".deploy-duration, li.step .step-duration, .job-duration")
        stopped = timers.all_inner_texts()
        page.wait_for_timeout(1500)
        assert timers.all_inner_texts() == stopped
        bar = step.locator(".step-bar")
        width = bar.evaluate("el => el.style.width")
        page.wait_for_timeout(1100)
        assert bar.evaluate("el => el.style.width") == width
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"stale-{size}.png"), full_page=True)

        post(hub, event("log_entry", "quiet", deployment, job="ci", step="build", message="hi"))
        expect(badge).to_be_hidden(timeout=LIVE_MS)
        expect(step).to_have_attribute("data-stale", "false")
        expect(page.locator(".deploy-duration")).not_to_have_text(stopped[0], timeout=LIVE_MS * 3)
        # the page was opened before the deployment existed: its first fetch was a 404
        assert watched.unexpected_errors("404 (NOT FOUND)") == []


def test_list_pages_show_stale_runs_and_stop_their_timers(hub: HubServer, browser: Any) -> None:
    start_run(hub, "quiet-list", "quiet-list-1", environment="production")
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

        page.goto(f"{hub.url}/project-dashboard/#/environments")
        cell = page.locator("td.env-cell[data-project='quiet-list'][data-environment='production']")
        progress = cell.locator(".env-progress")
        expect(progress.locator(".badge-stale")).to_be_visible()
        expect(progress).to_have_attribute("data-stale", "true")
        assert watched.errors == []
