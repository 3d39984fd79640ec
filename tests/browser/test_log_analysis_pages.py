"""The failure box, line links, log search and the trend pages in headless Chromium."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from playwright.sync_api import expect

from ledger.timestamps import format_timestamp
from tests.browser.conftest import Watched, event, post, watched_page
from tests.e2e.server import HubServer

pytestmark = pytest.mark.browser

RED, RESET = "\x1b[31m", "\x1b[0m"


def open_page(watched: Watched, hub: HubServer, fragment: str) -> Any:
    page = watched.page
    page.goto(f"{hub.url}/project-dashboard/{fragment}")
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    return page


def ago(minutes: float) -> str:
    return format_timestamp(datetime.now(UTC) - timedelta(minutes=minutes))


def failing_deployment(
    hub: HubServer, deployment: str, minutes_ago: float, port: int, *, filler: int = 120
) -> None:
    """A deployment whose ``test / integration`` step fails after ``filler`` ordinary lines."""
    project, job, step = "shop", "test", "integration"
    lines = [f"test {i} passed" for i in range(filler)]
    lines[10:10] = ["::group::Service logs", "db ready", "cache ready", "::endgroup::"]
    lines += [
        f"{RED}Error:{RESET} connect ECONNREFUSED 10.0.0.{port}:5432",
        "    at TCPConnectWrap.afterConnect [as oncomplete] (node:net:1300:16)",
        "npm ERR! code 1",
    ]
    post(
        hub,
        event("deployment_started", project, deployment, timestamp=ago(minutes_ago)),
        event("step_started", project, deployment, job=job, step=step, timestamp=ago(minutes_ago)),
        *[
            event(
                "log_entry",
                project,
                deployment,
                job=job,
                step=step,
                message=line,
                timestamp=ago(minutes_ago - 0.5),
            )
            for line in lines
        ],
        event(
            "step_completed",
            project,
            deployment,
            job=job,
            step=step,
            status="failure",
            error="Process completed with exit code 1.",
            timestamp=ago(minutes_ago - 1),
        ),
        event(
            "deployment_completed",
            project,
            deployment,
            status="failure",
            timestamp=ago(minutes_ago - 1),
        ),
    )


@pytest.fixture(scope="module")
def failures(hub: HubServer) -> list[str]:
    deployments = ["fail-1", "fail-2", "fail-3"]
    for index, deployment in enumerate(deployments):
        failing_deployment(hub, deployment, 90 - 20 * index, port=index + 1)
    return deployments


def test_the_failure_box_links_to_the_line_in_its_expanded_step(
    hub: HubServer, failures: list[str], watched: Watched
) -> None:
    page = open_page(watched, hub, "#/deployments/fail-3")
    box = page.locator(".failure-box")
    expect(box.locator("h2")).to_have_text("Why it failed: test / integration")
    expect(box.locator(".failure-text").first).to_have_text(
        "Error: connect ECONNREFUSED 10.0.0.3:5432"
    )
    expect(box.locator(".failure-seen")).to_contain_text("Seen 2 times before, first on")
    expect(box.locator(".failure-seen a")).to_have_text(["fail-2", "fail-1"])
    box.locator(".failure-link").click()
    expect(page).to_have_url(
        re.compile(r"#/deployments/fail-3\?job=test&step=integration&line=\d+$")
    )
    target = page.locator(".log-line-target")
    expect(target).to_have_count(1)
    expect(target.locator(".log-text")).to_have_text("Error: connect ECONNREFUSED 10.0.0.3:5432")
    expect(target).to_be_in_viewport()
    step = page.locator('li.step[data-step="integration"]')
    expect(step.locator(".step-toggle")).to_have_attribute("aria-expanded", "true")
    # the seen-before links open the earlier deployments
    box = page.locator(".failure-box")
    box.locator(".failure-seen a", has_text="fail-1").click()
    expect(page.locator(".failure-box .failure-text").first).to_have_text(
        "Error: connect ECONNREFUSED 10.0.0.1:5432"
    )
    assert watched.errors == []


def test_a_line_link_opens_the_page_at_that_line_even_inside_a_group(
    hub: HubServer, failures: list[str], watched: Watched
) -> None:
    status, found = hub.request("GET", "/api/logs/search?q=%22cache+ready%22&deployment_id=fail-2")
    assert status == 200
    [hit] = found["items"]
    page = open_page(watched, hub, hit["link"])
    target = page.locator(".log-line-target")
    expect(target.locator(".log-text")).to_have_text("cache ready")
    expect(target).to_be_in_viewport()
    assert target.evaluate("el => el.closest('details').open") is True
    # every line's number is its own link
    other = page.locator('li.step[data-step="integration"] .log-line', has_text="test 100 passed")
    href = other.locator("a.log-num").get_attribute("href")
    assert href is not None
    assert href.startswith("#/deployments/fail-2?job=test&step=integration&line=")
    other.locator("a.log-num").click()
    expect(page.locator(".log-line-target .log-text")).to_have_text("test 100 passed")
    assert watched.errors == []


def test_the_search_box_finds_lines_across_deployments_and_links_to_them(
    hub: HubServer, failures: list[str], watched: Watched
) -> None:
    page = open_page(watched, hub, "#/")
    box = page.locator("#global-search input")
    box.fill('econnrefused "10.0.0"')
    box.press("Enter")
    hits = page.locator(".search-hit")
    expect(hits).to_have_count(3)
    expect(hits.first.locator("mark")).to_have_text(["ECONNREFUSED", "10.0.0"])
    expect(hits.first).to_have_attribute("data-deployment", "fail-3")
    hits.nth(1).locator(".search-hit-link").click()
    expect(page.locator(".log-line-target .log-text")).to_have_text(
        "Error: connect ECONNREFUSED 10.0.0.2:5432"
    )
    # a query that cannot be run says why
    page.goto(f"{hub.url}/project-dashboard/#/search?q=%22unclosed")
    expect(page.locator('[role="status"].callout')).to_contain_text("not closed")
    # nothing found says so
    page.locator("#search-q").fill("zebra")
    page.locator(".search-form button[type=submit]").click()
    expect(page.locator('main [role="status"]')).to_have_text("No log line matches.")
    assert watched.unexpected_errors("422") == []


def test_failures_and_steps_pages(hub: HubServer, failures: list[str], watched: Watched) -> None:
    page = open_page(watched, hub, "#/failures")
    group = page.locator(".failure-group").first
    expect(group.locator(".failure-count")).to_have_text("3×")
    expect(group.locator(".failure-text")).to_have_text("Error: connect ECONNREFUSED 10.0.0.3:5432")
    expect(group.locator(".failure-meta a")).to_have_text(["fail-3", "fail-2", "fail-1"])
    page.locator(".mainnav a[data-nav='steps']").click()
    card = page.locator(".trend-card[data-project='shop']")
    expect(card.locator(".trend-table", has_text="Failing most").locator("tbody tr")).to_have_count(
        1
    )
    expect(card).to_contain_text("test / integration")
    assert watched.errors == []


def test_a_running_deployment_shows_its_progress_and_eta(hub: HubServer, watched: Watched) -> None:
    project = "eta-shop"
    for index in range(3):
        deployment = f"eta-{index}"
        start = 200 - 10 * index
        post(
            hub,
            event("deployment_started", project, deployment, timestamp=ago(start)),
            event("step_started", project, deployment, job="b", step="s", timestamp=ago(start)),
            event(
                "step_completed",
                project,
                deployment,
                job="b",
                step="s",
                status="success",
                started_at=ago(start),
                timestamp=ago(start - 10),
            ),
            event(
                "deployment_completed",
                project,
                deployment,
                status="success",
                timestamp=ago(start - 10),
            ),
        )
    post(
        hub,
        event("deployment_started", project, "eta-now", timestamp=ago(2)),
        event(
            "step_started",
            project,
            "eta-now",
            job="b",
            step="s",
            timestamp=ago(2),
            started_at=ago(2),
        ),
    )
    page = open_page(watched, hub, "#/deployments/eta-now")
    eta = page.locator(".eta")
    expect(eta).to_be_visible()
    expect(eta.locator(".eta-text")).to_contain_text(re.compile(r"About 7m \d\ds left"))
    expect(eta.locator(".eta-text")).to_contain_text("from 3 recent runs")
    value = float(eta.locator("progress").evaluate("el => el.value"))
    assert 0.15 < value < 0.25
    assert watched.errors == []


def test_a_deployments_own_line_opens_in_the_full_log(hub: HubServer, watched: Watched) -> None:
    post(
        hub,
        event("deployment_started", "shop", "own-1", timestamp=ago(3)),
        event(
            "step_completed",
            "shop",
            "own-1",
            job="deploy",
            step="smoke",
            status="failure",
            error="exit 1",
            timestamp=ago(2),
        ),
        event(
            "deployment_completed",
            "shop",
            "own-1",
            status="failure",
            error="smoke test failed: HTTP 502",
            timestamp=ago(2),
        ),
    )
    page = open_page(watched, hub, "#/deployments/own-1")
    page.locator(".failure-box .failure-link").click()
    expect(page.locator(".full-log")).to_be_visible()
    target = page.locator(".full-log .log-line-target .log-text")
    expect(target).to_have_text("smoke test failed: HTTP 502")
    assert watched.errors == []


HOSTILE = '<img src=x onerror="window.__pwned=1">'


def test_sender_text_on_the_log_analysis_pages_is_rendered_and_stays_text(
    hub: HubServer, watched: Watched
) -> None:
    """Job and step names, the failing line, its error, its group and search hits go through
    the ANSI renderer: colours become spans, other escapes and controls go, markup stays text.
    (Names may not hold C0 controls, so they carry an 8-bit CSI.)"""
    project, deployment = "hostile-shop", "hostile-1"
    job, step = "c\x9b2Ji", "smo\x9b31mke"
    post(
        hub,
        event("deployment_started", project, deployment, timestamp=ago(5)),
        event("step_started", project, deployment, job=job, step=step, timestamp=ago(5)),
        event(
            "log_entry",
            project,
            deployment,
            job=job,
            step=step,
            message=f"{RED}Error:{RESET} unreachable\x07 host\x1b]0;title\x07 {HOSTILE}",
            timestamp=ago(4),
        ),
        event(
            "step_completed",
            project,
            deployment,
            job=job,
            step=step,
            status="failure",
            error=f"{RED}exit 1{RESET}",
            started_at=ago(5),
            timestamp=ago(4),
        ),
        event("deployment_completed", project, deployment, status="failure", timestamp=ago(4)),
    )
    shown = f"Error: unreachable host {HOSTILE}"

    def clean(page: Any) -> None:
        text = page.locator("main").inner_text()
        assert not [bad for bad in ("\x1b", "\x07", "\x9b", "[32m", "]0;") if bad in text], text
        assert page.locator("main img").count() == 0
        assert page.evaluate("window.__pwned") is None

    page = open_page(watched, hub, f"#/deployments/{deployment}")
    box = page.locator(".failure-box")
    expect(box.locator("h2")).to_have_text("Why it failed: ci / smoke")
    expect(box.locator(".failure-text")).to_have_text(shown)
    expect(box.locator(".failure-message .ansi-red-fg")).to_have_text("exit 1")
    clean(page)

    page.goto(f"{hub.url}/project-dashboard/#/failures?project={project}")
    group = page.locator(".failure-group", has_text="unreachable")
    expect(group.locator(".failure-text")).to_have_text(shown)
    expect(group.locator(".failure-meta")).to_contain_text("ci / smoke")
    assert "\x1b" not in (group.locator(".failure-text").get_attribute("title") or "")
    clean(page)

    page.goto(f"{hub.url}/project-dashboard/#/search?q=unreachable+host&project={project}")
    hit = page.locator(".search-hit")
    expect(hit).to_have_count(1)
    expect(hit.locator("mark")).to_have_text(["unreachable", "host"])
    expect(hit.locator(".search-hit-text")).to_have_text(shown)
    expect(hit.locator(".search-hit-head")).to_contain_text("ci / smoke")
    clean(page)

    page.goto(f"{hub.url}/project-dashboard/#/steps?project={project}")
    card = page.locator(f".trend-card[data-project='{project}']")
    expect(card.locator(".trend-table", has_text="Failing most")).to_contain_text("ci / smoke")
    clean(page)
    assert watched.errors == []


def test_failure_times_and_log_clocks_follow_the_zone_switch(
    hub: HubServer, failures: list[str], browser: Any
) -> None:
    with watched_page(browser, timezone_id="Asia/Kolkata") as watched:
        page = open_page(watched, hub, "#/deployments/fail-3")
        seen = page.locator(".failure-seen time").first
        expect(seen).to_have_text(re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\+05:30$"))
        page.locator(".failure-box .failure-link").click()
        clock = page.locator(".log-line-target .log-time")
        expect(clock).to_have_attribute("title", re.compile(r"UTC\+05:30$"))
        local = clock.inner_text()
        page.locator("#time-zone").click()
        expect(seen).to_have_text(re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$"))
        expect(clock).not_to_have_text(local)
        expect(clock).to_have_attribute("title", re.compile(r" UTC$"))
        minutes = lambda text: int(text.split(":")[0]) * 60 + int(text.split(":")[1])  # noqa: E731
        assert (minutes(local) - minutes(clock.inner_text())) % (24 * 60) == 5 * 60 + 30
        assert watched.errors == []
