"""The Environments page and the environment filters in headless Chromium, live."""

from __future__ import annotations

import json
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import LIVE_MS, Watched, at, event, post
from tests.e2e.server import HubServer

pytestmark = pytest.mark.browser


def deployed(
    hub: HubServer,
    project: str,
    deployment_id: str,
    environment: str,
    minutes_ago: float,
    **meta: Any,
) -> None:
    post(
        hub,
        event(
            "deployment_started",
            project,
            deployment_id,
            timestamp=at(minutes_ago),
            environment=environment,
            **meta,
        ),
        event(
            "deployment_completed",
            project,
            deployment_id,
            status="success",
            timestamp=at(minutes_ago - 2),
        ),
    )


def cell(page: Any, project: str, environment: str) -> Any:
    return page.locator(f"td.env-cell[data-project='{project}'][data-environment='{environment}']")


def test_the_matrix_shows_what_runs_where_and_follows_a_deployment_live(
    hub: HubServer, watched: Watched
) -> None:
    deployed(hub, "shop", "shop-1", "production", 90, version="1.0.0", actor="mei", branch="main")
    deployed(
        hub, "shop", "shop-2", "staging", 60, commit="4e6d8a0b1c2d3e4f5a6b7c8d9e0f9c1e5d2a7b3f"
    )
    deployed(hub, "blog", "blog-1", "production", 30, environment_url="https://blog.example.com")
    page = watched.page
    page.goto(f"{hub.url}/project-dashboard/#/")
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    page.locator(".tabs a[data-tab='environments']").click()
    expect(page).to_have_url(f"{hub.url}/project-dashboard/#/environments")
    expect(page.locator(".tabs a[aria-current='page']")).to_have_text("Environments")
    expect(page.locator("table.environments thead th")).to_have_text(
        ["Project", "staging", "production"]
    )
    production = cell(page, "shop", "production")
    expect(production).to_have_attribute("data-state", "success")
    expect(production.locator(".env-what a")).to_have_text("1.0.0")
    expect(production.locator(".env-when")).to_contain_text("mei")
    expect(cell(page, "shop", "staging").locator(".env-what a")).to_have_text("4e6d8a0")
    expect(cell(page, "blog", "staging")).to_have_attribute("data-state", "none")
    expect(cell(page, "blog", "production").locator(".env-url a")).to_have_text("blog.example.com")

    post(
        hub,
        event(
            "deployment_started",
            "shop",
            "shop-3",
            timestamp=at(1),
            environment="production",
            version="1.1.0",
            actor="ops-bot",
        ),
    )
    expect(production).to_have_attribute("data-state", "running", timeout=LIVE_MS)
    expect(production.locator(".env-progress a")).to_have_text("1.1.0")
    expect(production.locator(".env-what a")).to_have_text("1.0.0")  # still what runs there

    post(hub, event("deployment_completed", "shop", "shop-3", status="success", timestamp=at(0)))
    expect(production).to_have_attribute("data-state", "success", timeout=LIVE_MS)
    expect(production.locator(".env-what a")).to_have_text("1.1.0")
    expect(production.locator(".env-progress")).to_have_count(0)

    post(
        hub,
        event("deployment_started", "shop", "shop-4", timestamp=at(0), environment="production"),
        event("deployment_completed", "shop", "shop-4", status="failure", timestamp=at(0)),
    )
    expect(production).to_have_attribute("data-state", "failure", timeout=LIVE_MS)
    expect(production.locator(".env-failed a")).to_have_text("shop-4")
    expect(production.locator(".env-what a")).to_have_text("1.1.0")

    production.locator(".env-what a").click()
    expect(page.locator("dl.meta")).to_contain_text("1.1.0")
    assert watched.errors == []


def test_history_and_metrics_filter_by_environment(hub: HubServer, watched: Watched) -> None:
    deployed(hub, "api", "api-1", "production", 50)
    deployed(hub, "api", "api-2", "staging", 40)
    page = watched.page
    page.goto(f"{hub.url}/project-dashboard/#/deployments?project=api")
    expect(page.locator("tbody tr")).to_have_count(2)
    page.locator("#filter-environment").select_option("staging")
    expect(page.locator("tbody tr")).to_have_count(1)
    expect(page.locator("tbody tr td[data-label='Environment']")).to_have_text("staging")
    assert "environment=staging" in page.url
    deployed(hub, "api", "api-3", "staging", 1)
    expect(page.locator("tbody tr")).to_have_count(2, timeout=LIVE_MS)

    page.goto(f"{hub.url}/project-dashboard/#/metrics?days=7&project=api")
    select = page.locator("#metrics-environment")
    expect(select).to_have_value("production")
    expect(page.locator(".metrics-table tbody tr td").first).to_have_text("1")
    select.select_option("staging")
    expect(page.locator(".metrics-table tbody tr td").first).to_have_text("2")
    assert "environment=staging" in page.url
    select.select_option("*")
    expect(page.locator(".metrics-table tbody tr td").first).to_have_text("3")
    assert watched.errors == []


def test_the_matrix_follows_every_project_without_polling_and_renders_sender_text(
    hub: HubServer, watched: Watched
) -> None:
    deployed(hub, "env-known", "env-known-1", "production", 20)
    page = watched.page
    sent: list[dict[str, Any]] = []
    page.on(
        "websocket",
        lambda ws: ws.on("framesent", lambda payload: sent.append(json.loads(payload))),
    )
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.clock.install()
    page.goto(f"{hub.url}/project-dashboard/#/environments")
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    expect(cell(page, "env-known", "production")).to_have_attribute("data-state", "success")
    asked = len(requests)
    page.clock.fast_forward(35_000)  # what polled every 30 s would have asked again by now
    page.wait_for_timeout(500)
    assert not [url for url in requests[asked:] if "/api/" in url], requests[asked:]

    # names are one line (no C0 controls), but C1 escapes and markup get through
    hostile = '<img src=x onerror="window.__pwned=1">'
    environment = "canary\x9b2J"
    deployed(
        hub,
        "env-new",
        "env-new-1",
        environment,
        1,
        actor=f"mei\x9d0;title\x9c {hostile}",
        branch="main\x9b1;1H",
        version="2.0",
    )
    canary = cell(page, "env-new", environment)
    expect(canary).to_have_attribute("data-state", "success", timeout=LIVE_MS)
    # a canary stage comes before production
    expect(page.locator("table.environments thead th")).to_contain_text(["canary", "production"])
    expect(page.locator("table.environments thead th", has_text="canary")).to_have_text("canary")
    expect(canary).to_have_attribute("data-label", "canary")
    expect(canary.locator(".chip")).to_have_text("main")
    expect(canary.locator(".env-when")).to_contain_text(f"mei {hostile}")
    text = page.locator("main").inner_text()
    assert not [bad for bad in ("\x9b", "\x9d", "\x9c", "2J", "title") if bad in text], text
    assert page.locator("main img").count() == 0
    assert page.evaluate("window.__pwned") is None
    subscriptions = [f for f in sent if str(f.get("type", "")).startswith("subscribe")]
    assert [f["type"] for f in subscriptions] == ["subscribe_all"]
    assert watched.errors == []
