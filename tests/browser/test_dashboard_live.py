"""The dashboard in headless Chromium, live against the real hub under gunicorn."""

from __future__ import annotations

import json
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import LIVE_MS, SLOW_MS, Watched, event, post
from tests.conftest import TIMEOUT_FACTOR
from tests.e2e.server import HubServer

pytestmark = pytest.mark.browser

GREEN, RED, BOLD, RESET = "\x1b[32m", "\x1b[31m", "\x1b[1m", "\x1b[0m"
#: Network errors a page logs while the hub it talks to is down.
OUTAGE_ERRORS = ("net::ERR_", "WebSocket connection to")


def open_page(
    watched: Watched, hub: HubServer, fragment: str, prefix: str = "/project-dashboard/"
) -> Any:
    page = watched.page
    page.goto(f"{hub.url}{prefix}{fragment}")
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    return page


def step_row(page: Any, name: str) -> Any:
    return page.locator(f'li.step[data-step="{name}"]')


def test_steps_appear_run_and_finish_live_with_coloured_logs(
    hub: HubServer, watched: Watched
) -> None:
    """Each posted step shows up running, then green or red with its duration; logs stream in."""
    project, deployment = "shop", "live-1"
    post(
        hub,
        event(
            "deployment_started",
            project,
            deployment,
            branch="main",
            commit="3f9a1c2b7d4e5f60718293a4b5c6d7e8f9a0b1c2",
            actor="dev",
        ),
    )
    page = open_page(watched, hub, f"#/deployments/{deployment}")
    status = page.locator(".deploy-status")
    expect(status).to_have_attribute("data-status", "running")

    for name, outcome in (("build", "success"), ("单元测试", "success"), ("deploy", "failure")):
        post(hub, event("step_started", project, deployment, job="ci", step=name))
        step = step_row(page, name)
        expect(step).to_have_attribute("data-status", "running", timeout=LIVE_MS)
        expect(step.locator(".step-bar")).to_have_css("animation-name", "stripes")
        step.locator(".step-toggle").click()
        log = step.locator(".log-body")
        post(
            hub,
            event(
                "log_entry",
                project,
                deployment,
                job="ci",
                step=name,
                level="info",
                message=f"{GREEN}✔ {name} ok{RESET} and {BOLD}{RED}bold red{RESET}",
            ),
        )
        expect(log.locator(".ansi-green-fg")).to_have_text(f"✔ {name} ok", timeout=LIVE_MS)
        expect(log.locator(".ansi-red-fg.ansi-bold")).to_have_text("bold red")
        post(
            hub,
            event(
                "step_completed",
                project,
                deployment,
                job="ci",
                step=name,
                status=outcome,
                # times that are 1.5 s apart: the duration shown is theirs
                started_at="2026-01-01T00:00:00.000Z",
                completed_at="2026-01-01T00:00:01.500Z",
                error="exit code 1" if outcome == "failure" else None,
            ),
        )
        expect(step).to_have_attribute("data-status", outcome, timeout=LIVE_MS)
        expect(step.locator(".step-duration")).to_have_text("1.5 s")

    expect(step_row(page, "deploy").locator(".step-error")).to_have_text("exit code 1")
    post(
        hub,
        event("deployment_completed", project, deployment, status="failure", error="deploy failed"),
    )
    expect(status).to_have_attribute("data-status", "failure", timeout=LIVE_MS)
    green = step_row(page, "build").locator(".ansi-green-fg")
    assert green.evaluate("el => getComputedStyle(el).color") == "rgb(63, 185, 80)"
    assert watched.errors == []


def test_log_groups_fold_and_search_finds_lines_inside_them(
    hub: HubServer, watched: Watched
) -> None:
    project, deployment = "shop", "groups-1"
    lines = [
        "::group::Install dependencies",
        "npm ci",
        "added 812 packages",
        "::endgroup::",
        "build finished",
    ]
    post(
        hub,
        event("deployment_started", project, deployment),
        event("step_started", project, deployment, job="ci", step="build"),
        *[
            event("log_entry", project, deployment, job="ci", step="build", message=line)
            for line in lines
        ],
    )
    page = open_page(watched, hub, f"#/deployments/{deployment}")
    step = step_row(page, "build")
    step.locator(".step-toggle").click()
    group = step.locator("details.log-group")
    expect(group.locator("summary")).to_have_text("Install dependencies")
    expect(group).not_to_have_attribute("open", "")
    expect(step.locator(".log-line", has_text="build finished")).to_be_visible()

    step.locator(".log-search").fill("packages")
    expect(step.locator(".log-matches")).to_have_text("1 match")
    expect(group).to_have_attribute("open", "")
    expect(step.locator(".log-line", has_text="added 812 packages")).to_be_visible()
    expect(step.locator(".log-line", has_text="build finished")).to_be_hidden()
    assert watched.errors == []


def test_hostile_log_lines_and_names_are_shown_as_text_and_never_run(
    hub: HubServer, watched: Watched
) -> None:
    project, deployment = "<b>evil</b>", "xss-1"
    script = "<script>window.__pwned=1</script>"
    image = '<img src=x onerror="window.__pwned=2">'
    step = '<img src=y onerror="window.__pwned=3">'
    post(
        hub,
        event("deployment_started", project, deployment, branch="<i>b</i>"),
        event("step_started", project, deployment, job="ci", step=step),
        event("log_entry", project, deployment, job="ci", step=step, message=script),
    )
    page = open_page(watched, hub, f"#/deployments/{deployment}")
    row = page.locator("li.step").first
    row.locator(".step-toggle").click()
    post(hub, event("log_entry", project, deployment, job="ci", step=step, message=image))

    texts = row.locator(".log-text")
    expect(texts).to_have_text([script, image], timeout=LIVE_MS)
    expect(row.locator(".step-name")).to_have_text(step)
    expect(page.locator(".crumbs a")).to_have_text(project)
    assert page.locator("main script, main img, main b, main i").count() == 0
    assert page.evaluate("window.__pwned") is None
    assert watched.errors == []


def test_history_rows_appear_live_and_running_durations_tick(
    hub: HubServer, watched: Watched
) -> None:
    """Served without the prefix too: a new deployment appears on top and its time runs."""
    post(
        hub,
        event("deployment_started", "ticker", "tick-1"),
        event("deployment_completed", "ticker", "tick-1", status="success"),
    )
    page = open_page(watched, hub, "#/deployments?project=ticker", prefix="/")
    expect(page.locator('tr[data-id="tick-1"]')).to_have_attribute("data-status", "success")

    post(hub, event("deployment_started", "ticker", "tick-2", branch="main"))
    newest = page.locator("tbody tr").first
    expect(newest).to_have_attribute("data-id", "tick-2", timeout=LIVE_MS)
    elapsed = newest.locator(".elapsed")
    expect(elapsed).not_to_have_text(elapsed.inner_text(), timeout=5000 * TIMEOUT_FACTOR)

    post(hub, event("deployment_completed", "ticker", "tick-2", status="failure"))
    expect(newest).to_have_attribute("data-status", "failure", timeout=LIVE_MS)
    assert watched.errors == []


def test_project_cards_follow_their_latest_deployment(hub: HubServer, watched: Watched) -> None:
    post(
        hub,
        event("deployment_started", "cards", "card-1"),
        event("deployment_completed", "cards", "card-1", status="success", duration_ms=60000),
    )
    page = open_page(watched, hub, "#/")
    card = page.locator(".project-card[data-project='cards']")
    expect(card).to_have_attribute("data-status", "success")
    expect(card.locator(".stat dd").first).to_have_text("100%")

    post(hub, event("deployment_started", "cards", "card-2"))
    expect(card).to_have_attribute("data-status", "running", timeout=LIVE_MS)
    post(hub, event("deployment_completed", "cards", "card-2", status="failure"))
    expect(card).to_have_attribute("data-status", "failure", timeout=LIVE_MS)
    expect(card.locator(".stat dd").first).to_have_text("50%")
    expect(card.locator(".spark-bar")).to_have_count(2)
    assert watched.errors == []


def test_a_step_log_opens_from_the_keyboard(hub: HubServer, watched: Watched) -> None:
    post(
        hub,
        event("deployment_started", "keys", "keys-1"),
        event("step_started", "keys", "keys-1", job="ci", step="lint"),
        event("log_entry", "keys", "keys-1", job="ci", step="lint", message="all clean"),
    )
    page = open_page(watched, hub, "#/deployments/keys-1")
    toggle = page.locator(".step-toggle").first
    toggle.focus()
    page.keyboard.press("Enter")
    expect(toggle).to_have_attribute("aria-expanded", "true")
    page.keyboard.press("Tab")
    expect(page.locator(".step-log .log-search")).to_be_focused()
    expect(page.locator(".step-log .log-text")).to_have_text(["all clean"])
    assert watched.errors == []


def test_page_recovers_after_a_hub_restart_and_shows_what_was_missed(
    hub: HubServer, watched: Watched
) -> None:
    """The hub restarts under an open page: the page shows it, reconnects, misses nothing."""
    project, deployment = "phoenix", "restart-1"
    post(
        hub,
        event("deployment_started", project, deployment),
        event("step_started", project, deployment, job="ci", step="build"),
    )
    page = open_page(watched, hub, f"#/deployments/{deployment}")
    step_row(page, "build").locator(".step-toggle").click()
    expect(step_row(page, "build").locator(".log-empty")).to_have_text("No log lines yet.")
    page.evaluate("""() => {
        const el = document.getElementById("connection");
        window.__states = [];
        new MutationObserver(() => window.__states.push(el.dataset.state))
            .observe(el, {attributes: true, attributeFilter: ["data-state"]});
    }""")

    hub.restart()
    post(
        hub,
        event(
            "log_entry",
            project,
            deployment,
            job="ci",
            step="build",
            message="posted while the page was away",
        ),
        event("step_completed", project, deployment, job="ci", step="build", status="success"),
        event("step_started", project, deployment, job="ci", step="deploy"),
        event("step_completed", project, deployment, job="ci", step="deploy", status="success"),
        event("deployment_completed", project, deployment, status="success"),
    )

    expect(page.locator("#connection")).to_have_attribute("data-state", "live", timeout=SLOW_MS)
    expect(page.locator(".deploy-status")).to_have_attribute("data-status", "success")
    expect(step_row(page, "deploy")).to_have_attribute("data-status", "success")
    expect(step_row(page, "build").locator(".log-text")).to_have_text(
        ["posted while the page was away"]
    )
    assert "offline" in page.evaluate("window.__states")
    assert watched.unexpected_errors(*OUTAGE_ERRORS) == []


def test_page_reloads_its_state_when_the_hub_lost_its_history(
    hub: HubServer, watched: Watched
) -> None:
    """After the store is wiped, resuming answers recovered: false and the page reloads."""
    project, deployment = "amnesia", "wiped-1"
    post(
        hub,
        event("deployment_started", project, deployment),
        event("step_started", project, deployment, job="ci", step="build"),
        event("log_entry", project, deployment, job="ci", step="build", message="before"),
    )
    page = open_page(watched, hub, f"#/deployments/{deployment}")
    subscribed: list[dict[str, Any]] = []
    page.on(
        "websocket",
        lambda ws: ws.on(
            "framereceived",
            lambda frame: subscribed.append(json.loads(frame)) if '"subscribed"' in frame else None,
        ),
    )
    build = step_row(page, "build")
    build.locator(".step-toggle").click()
    expect(build.locator(".log-text")).to_have_text(["before"])

    hub.stop()
    for path in hub.workdir.glob("hub.sqlite3*"):
        path.unlink()
    hub.start()
    post(
        hub,
        event("deployment_started", project, deployment),
        event("step_started", project, deployment, job="ci", step="build"),
        event("log_entry", project, deployment, job="ci", step="build", message="after"),
        event("step_completed", project, deployment, job="ci", step="build", status="success"),
    )

    expect(page.locator("#connection")).to_have_attribute("data-state", "live", timeout=SLOW_MS)
    expect(build).to_have_attribute("data-status", "success")
    expect(build.locator(".log-text")).to_have_text(["after"])
    assert any(frame.get("recovered") is False for frame in subscribed), subscribed
    assert watched.unexpected_errors(*OUTAGE_ERRORS) == []
