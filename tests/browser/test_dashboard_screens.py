"""Every page at desktop and phone width, light and dark, over realistic data: clean,
fitting, screenshotted.

The screenshots land in ``test-artifacts/dashboard/`` for a person to look at;
the test itself checks what a machine can: no console errors, nothing wider
than the viewport, charts and the badge image actually rendered, the dark theme
(charts included) when the system asks for it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from playwright.sync_api import expect

from ledger.timestamps import format_timestamp
from tests.browser.conftest import ARTIFACTS, Watched, event, post, watched_page
from tests.conftest import FIXTURES
from tests.e2e.server import HubServer

pytestmark = pytest.mark.browser

GREEN, YELLOW, CYAN, DIM, RESET = "\x1b[32m", "\x1b[33m", "\x1b[36m", "\x1b[2m", "\x1b[0m"
BUILD = [
    ("build", "checkout", 4),
    ("build", "install dependencies", 48),
    ("build", "编译 compile", 95),
    ("build", "unit tests", 62),
]
DEPLOY = [
    ("deploy", "upload artefact", 21),
    ("deploy", "重启服务", 9),
    ("deploy", "smoke test", 14),
]
SIZES = {"1280": {"width": 1280, "height": 900}, "390": {"width": 390, "height": 844}}
#: The page's background in each theme (--bg).
BACKGROUNDS = {"light": "rgb(244, 246, 249)", "dark": "rgb(13, 17, 23)"}
#: What the frequency chart's "success" bars are drawn in, in each theme (--chart-success).
CHART_SUCCESS = {"light": "#2e7d32", "dark": "#3fb950"}


def log_lines(step: str) -> list[str]:
    return [
        f"{CYAN}▶ {step}{RESET}",
        "::group::Environment",
        "NODE_ENV=production",
        "REGION=eu-west-1",
        "::endgroup::",
        f"{DIM}resolving packages…{RESET}",
        f"{YELLOW}warning{RESET} peer dependency react@18 not installed",
        f"{GREEN}✔ {step} finished{RESET}",
    ]


def deployment(
    project: str,
    deployment_id: str,
    started: datetime,
    *,
    outcome: str | None,
    fail_at: str | None = None,
    running_at: str | None = None,
    **meta: Any,
) -> list[dict[str, Any]]:
    """A whole deployment's events with consistent times; stops at ``running_at`` if given."""

    def stamp(moment: datetime) -> str:
        return format_timestamp(moment)

    events = [
        event(
            "deployment_started",
            project,
            deployment_id,
            timestamp=stamp(started),
            started_at=stamp(started),
            workflow_name="Deploy to production",
            **meta,
        )
    ]
    now = started
    for job, step, seconds in BUILD + DEPLOY:
        events.append(
            event(
                "step_started",
                project,
                deployment_id,
                job=job,
                step=step,
                timestamp=stamp(now),
                started_at=stamp(now),
            )
        )
        events += [
            event(
                "log_entry",
                project,
                deployment_id,
                job=job,
                step=step,
                timestamp=stamp(now + timedelta(seconds=1)),
                message=line,
                level="warning" if "warning" in line else "info",
            )
            for line in log_lines(step)
        ]
        if step == running_at:
            return events
        end = now + timedelta(seconds=seconds)
        status = "failure" if step == fail_at else "success"
        events.append(
            event(
                "step_completed",
                project,
                deployment_id,
                job=job,
                step=step,
                status=status,
                timestamp=stamp(end),
                started_at=stamp(now),
                completed_at=stamp(end),
                error="Process completed with exit code 1." if status == "failure" else None,
            )
        )
        now = end
        if status == "failure":
            break
    if outcome:
        events.append(
            event(
                "deployment_completed",
                project,
                deployment_id,
                status=outcome,
                timestamp=stamp(now),
                started_at=stamp(started),
                completed_at=stamp(now),
                error="smoke test failed: HTTP 502" if outcome == "failure" else None,
            )
        )
    return events


@pytest.fixture(scope="module")
def seeded(hub: HubServer) -> str:
    """Three projects with history, one deployment running now; the running deployment's id."""
    now = datetime.now(UTC)
    plan = [
        ("web-shop", "ws-101", 60 * 70, "success", None, "production"),
        ("web-shop", "ws-102", 60 * 46, "success", None, "staging"),
        ("web-shop", "ws-103", 60 * 30, "failure", "smoke test", "production"),
        ("web-shop", "ws-104", 60 * 29, "success", None, "production"),
        ("api-gateway", "gw-201", 60 * 50, "success", None, "staging"),
        ("api-gateway", "gw-202", 60 * 20, "failure", "unit tests", "production"),
        ("api-gateway", "gw-203", 60 * 5, "success", None, "production"),
        ("数据平台", "dp-301", 60 * 10, "success", None, "production"),
    ]
    for project, deployment_id, minutes_ago, outcome, fail_at, environment in plan:
        post(
            hub,
            *deployment(
                project,
                deployment_id,
                now - timedelta(minutes=minutes_ago),
                outcome=outcome,
                fail_at=fail_at,
                branch="main",
                commit="9c1e5d2a7b3f4e6d8a0b1c2d3e4f5a6b7c8d9e0f",
                actor="mei",
                environment=environment,
                version=f"2.{minutes_ago % 7}.0",
                environment_url=f"https://{environment}.{project}.example.com"
                if project.isascii()
                else None,
            ),
        )
    running = "ws-105"
    post(
        hub,
        *deployment(
            "web-shop",
            running,
            now - timedelta(minutes=4),
            outcome=None,
            running_at="重启服务",
            branch="release/2.4",
            commit="4e6d8a0b1c2d3e4f5a6b7c8d9e0f9c1e5d2a7b3f",
            actor="ops-bot",
            environment="production",
            repository="acme/web-shop",
            run_url="https://github.com/acme/web-shop/actions/runs/105",
        ),
    )
    post(
        hub,
        event(
            "metrics_update",
            "web-shop",
            running,
            metrics={"cpu_percent": 37.5, "memory_mb": 812, "artifact_bytes": 48_213_004},
        ),
    )
    summary = json.loads((FIXTURES / "webhook_deployment-3.json").read_text())
    status, body = hub.post_json("/api/webhook/deployment", summary)
    assert status == 200, body
    return running


PAGES = [
    ("projects", "#/", ".project-card"),
    ("environments", "#/environments", "table.environments td.env-cell"),
    ("deployments", "#/deployments", "tbody tr"),
    ("deployment", "#/deployments/ws-105", "li.step"),
    ("failed-deployment", "#/deployments/ws-103", ".failure-box"),
    ("metrics", "#/metrics?days=7", ".chart-grid canvas"),
    ("failures", "#/failures", ".failure-group"),
    ("search", "#/search?q=peer+dependency", ".search-hit"),
    ("steps", "#/steps", ".trend-card"),
]


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("size", list(SIZES))
def test_every_page_renders_cleanly_and_fits_the_screen(
    hub: HubServer, seeded: str, browser: Any, size: str, scheme: str
) -> None:
    with watched_page(browser, viewport=SIZES[size], color_scheme=scheme) as watched:
        every_page(hub, watched, size, scheme)


def every_page(hub: HubServer, watched: Watched, size: str, scheme: str) -> None:
    page = watched.page
    suffix = "" if scheme == "light" else "-dark"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for name, fragment, ready in PAGES:
        page.goto(f"{hub.url}/project-dashboard/{fragment}")
        expect(page.locator("#connection")).to_have_attribute("data-state", "live")
        expect(page.locator(ready).first).to_be_visible()
        if name == "projects":
            expect(page.locator(".project-card")).to_have_count(4)
            page.locator(".project-card[data-project='web-shop'] summary").click()
            badge = page.locator(".project-card[data-project='web-shop'] .badge-snippet img")
            expect(badge).to_be_visible()
            assert badge.evaluate("img => img.complete && img.naturalWidth") > 0
        elif name == "deployment":
            step = page.locator("li.step[data-step='编译 compile']")
            step.locator(".step-toggle").click()
            expect(step.locator(".log-group summary")).to_have_text("Environment")
            expect(page.locator("li.step[data-step='重启服务']")).to_have_attribute(
                "data-status", "running"
            )
            expect(page.locator(".metric-list")).to_contain_text("812")
        elif name == "environments":
            expect(page.locator("table.environments thead th")).to_have_text(
                ["Project", "staging", "production"]
            )
            expect(page.locator("table.environments tbody tr")).to_have_count(3)
        elif name == "failed-deployment":
            # the step ended with a bare exit code; the deployment's own error says more
            expect(page.locator(".failure-box .failure-text").first).to_have_text(
                "smoke test failed: HTTP 502"
            )
        elif name == "failures":
            # both failed deployments end with the same error, whatever step failed
            expect(page.locator(".failure-group .failure-count").first).to_have_text("2×")
        elif name == "steps":
            expect(page.locator(".trend-card")).to_have_count(3)  # the summary is older
        elif name == "metrics":
            expect(page.locator("#metrics-environment")).to_have_value("production")
            expect(page.locator(".chart-grid canvas")).to_have_count(4)
            expect(page.locator(".metrics-table tbody tr")).to_have_count(3)
            assert chart_success(page) == CHART_SUCCESS[scheme]
        assert (
            page.evaluate("getComputedStyle(document.body).backgroundColor")
            == (BACKGROUNDS[scheme])
        )
        page.screenshot(path=str(ARTIFACTS / f"{name}-{size}{suffix}.png"), full_page=True)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= SIZES[size]["width"], f"{name} is {width}px wide at {size}px"
    assert watched.errors == []


def test_legacy_summary_steps_show_in_their_order_with_readable_names(
    hub: HubServer, seeded: str, watched: Watched
) -> None:
    page = watched.page
    page.goto(f"{hub.url}/project-dashboard/#/deployments?project=axi-docs")
    page.locator("tbody tr a.mono").first.click()
    steps = page.locator("li.step .step-name")
    expect(steps).to_have_text(
        [
            "Validate artifact",
            "Parse secrets",
            "Initialise server",
            "Deploy project",
            "Configure nginx",
            "Start service",
            "Test website (static)",
            "Test website (backend)",
        ]
    )
    expect(page.locator("li.step[data-step='Test website (static)']")).to_have_attribute(
        "data-status", "failure"
    )
    assert watched.errors == []


def chart_success(page: Any) -> str:
    """The colour the frequency chart draws its "success" bars in."""
    colour: str = page.evaluate(
        "Chart.getChart(document.getElementById('chart-frequency')).data.datasets[0].backgroundColor"
    )
    return colour


def test_the_charts_follow_the_system_theme_as_it_changes(
    hub: HubServer, seeded: str, browser: Any
) -> None:
    with watched_page(browser, color_scheme="light") as watched:
        page = watched.page
        page.goto(f"{hub.url}/project-dashboard/#/metrics?days=7")
        expect(page.locator(".chart-grid canvas")).to_have_count(4)
        assert chart_success(page) == CHART_SUCCESS["light"]
        page.emulate_media(color_scheme="dark")
        expect(page.locator("body")).to_have_css("background-color", BACKGROUNDS["dark"])
        page.wait_for_function(
            "colour => Chart.getChart(document.getElementById('chart-frequency'))"
            ".data.datasets[0].backgroundColor === colour",
            arg=CHART_SUCCESS["dark"],
        )
        assert watched.errors == []
