"""What the page shows agrees with the hub: live everywhere, durations, times, sender text.

Each behaviour is checked at desktop and phone width (1280 and 390 px); the
screenshots land in ``test-artifacts/dashboard/`` beside those of the other
browser tests.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import ARTIFACTS, LIVE_MS, Watched, event, post
from tests.e2e.server import HubServer

pytestmark = pytest.mark.browser

SIZES = {"1280": {"width": 1280, "height": 900}, "390": {"width": 390, "height": 844}}
LIFECYCLE = [
    "deployment_started",
    "deployment_completed",
    "deployment_rollback",
    "step_started",
    "step_completed",
]


def open_page(watched: Watched, hub: HubServer, fragment: str, size: str) -> Any:
    page = watched.page
    page.set_viewport_size(SIZES[size])
    page.goto(f"{hub.url}/project-dashboard/{fragment}")
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    return page


def shoot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def frames_sent(page: Any) -> list[dict[str, Any]]:
    """Every frame the page sends on its WebSockets from now on (call before goto)."""
    sent: list[dict[str, Any]] = []
    page.on(
        "websocket",
        lambda ws: ws.on("framesent", lambda payload: sent.append(json.loads(payload))),
    )
    return sent


# -- everything live -----------------------------------------------------------------------


@pytest.mark.parametrize("size", list(SIZES))
def test_a_new_project_appears_on_the_overview_within_a_second(
    hub: HubServer, watched: Watched, size: str
) -> None:
    post(hub, event("deployment_started", f"known-{size}", f"known-{size}-1"))
    sent = frames_sent(watched.page)
    page = open_page(watched, hub, "#/", size)
    expect(page.locator(f".project-card[data-project='known-{size}']")).to_be_visible()

    name = f"brand-new-{size}"
    post(hub, event("deployment_started", name, f"{name}-1", branch="main"))
    card = page.locator(f".project-card[data-project='{name}']")
    expect(card).to_be_visible(timeout=LIVE_MS)
    expect(card).to_have_attribute("data-status", "running")
    shoot(page, f"live-new-project-{size}")

    subscriptions = [f for f in sent if str(f.get("type", "")).startswith("subscribe")]
    assert subscriptions == [{"type": "subscribe_all", "limit": 1, "types": LIFECYCLE}]
    assert watched.errors == []


@pytest.mark.parametrize(
    ("fragment", "ready"), [("#/deployments", "tbody tr"), ("#/metrics", ".kpis")]
)
def test_history_and_metrics_follow_every_project_without_polling(
    hub: HubServer, watched: Watched, fragment: str, ready: str
) -> None:
    post(hub, event("deployment_started", "poll-free", f"pf-{fragment[2:]}"))
    sent = frames_sent(watched.page)
    requests: list[str] = []
    watched.page.on("request", lambda request: requests.append(request.url))
    watched.page.clock.install()
    page = open_page(watched, hub, fragment, "1280")
    expect(page.locator(ready).first).to_be_visible()
    asked = len(requests)
    page.clock.fast_forward(35_000)  # what polled every 30 s would have asked again by now
    page.wait_for_timeout(500)
    assert not [url for url in requests[asked:] if "/api/" in url], requests[asked:]

    name = f"poll-free-new-{fragment[2:]}"
    post(hub, event("deployment_started", name, f"{name}-1"))
    expect(page.locator(f"option[value='{name}']")).to_have_count(1, timeout=LIVE_MS)
    if fragment == "#/deployments":
        expect(page.locator(f"tr[data-id='{name}-1']")).to_be_visible(timeout=LIVE_MS)
    subscriptions = [f for f in sent if str(f.get("type", "")).startswith("subscribe")]
    assert subscriptions == [{"type": "subscribe_all", "limit": 1, "types": LIFECYCLE}]
    assert watched.errors == []
