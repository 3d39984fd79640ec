"""What the page shows agrees with the hub: live everywhere, durations, times, sender text.

Each behaviour is checked at desktop and phone width (1280 and 390 px); the
screenshots land in ``test-artifacts/dashboard/`` beside those of the other
browser tests.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import ARTIFACTS, LIVE_MS, Watched, at, event, post, watched_page
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
    ("fragment", "ready"),
    [
        ("#/deployments", "tbody tr"),
        ("#/metrics", ".kpis"),
        ("#/failures", ".failure-group"),
        ("#/steps", ".trend-card"),
    ],
)
def test_list_pages_follow_every_project_without_polling(
    hub: HubServer, watched: Watched, fragment: str, ready: str
) -> None:
    failed = f"pf-failed-{fragment[2:]}"
    post(
        hub,
        event("deployment_started", "poll-free", failed, timestamp=at(3)),
        event(
            "step_completed",
            "poll-free",
            failed,
            job="build",
            step="test",
            status="failure",
            error="exit 1",
            started_at=at(3),
            timestamp=at(2),
        ),
        event("deployment_completed", "poll-free", failed, status="failure", timestamp=at(2)),
        event("deployment_started", "poll-free", f"pf-{fragment[2:]}"),
    )
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


# -- times -----------------------------------------------------------------------------------

#: One format for every exact time: date, time to the second, zone.
DATE_TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (UTC|UTC[+-]\d\d:\d\d)$")


@pytest.mark.parametrize("size", list(SIZES))
def test_times_show_their_zone_and_switch_between_local_and_utc(
    hub: HubServer, browser: Any, size: str
) -> None:
    """In Kolkata (UTC+05:30) 20:00 UTC is 01:30 the next day; the choice outlives a reload."""
    deployment = f"zone-{size}"
    yesterday = (datetime.now(UTC) - timedelta(days=1)).replace(
        hour=20, minute=0, second=0, microsecond=0
    )
    started, ended = yesterday, yesterday + timedelta(seconds=90)
    post(
        hub,
        event(
            "deployment_started",
            "zones",
            deployment,
            timestamp=at(0),
            started_at=started.isoformat(),
        ),
        event(
            "deployment_completed",
            "zones",
            deployment,
            status="success",
            started_at=started.isoformat(),
            completed_at=ended.isoformat(),
        ),
    )
    local_day = (started + timedelta(hours=5, minutes=30)).date().isoformat()
    with watched_page(browser, timezone_id="Asia/Kolkata") as watched:
        page = open_page(watched, hub, f"#/deployments/{deployment}", size)
        switch = page.locator("#time-zone")
        expect(switch).to_have_text("Local · UTC+05:30")
        started_cell = page.locator(".meta-item", has_text="Started").locator("time")
        expect(started_cell).to_have_text(f"{local_day} 01:30:00 UTC+05:30")
        ago = page.locator(".deploy-when time")
        assert DATE_TIME.match(ago.get_attribute("title") or "")
        shoot(page, f"times-local-{size}")

        switch.click()
        expect(switch).to_have_text("UTC")
        expect(started_cell).to_have_text(f"{started.date().isoformat()} 20:00:00 UTC")
        expect(ago).to_have_attribute("title", f"{started.date().isoformat()} 20:00:00 UTC")
        page.reload()
        expect(page.locator("#time-zone")).to_have_text("UTC")
        expect(started_cell).to_have_text(f"{started.date().isoformat()} 20:00:00 UTC")

        page.goto(f"{hub.url}/project-dashboard/#/deployments?project=zones")
        cell = page.locator(f"tr[data-id='{deployment}'] time")
        expect(cell).to_have_attribute("title", f"{started.date().isoformat()} 20:00:00 UTC")
        for title in page.locator("main [title]").evaluate_all(
            "els => els.filter(e => e.tagName === 'TIME').map(e => e.title)"
        ):
            assert DATE_TIME.match(title), title
        assert watched.errors == []


def test_metrics_count_days_in_the_zone_shown(hub: HubServer, browser: Any) -> None:
    started = (datetime.now(UTC) - timedelta(days=1)).replace(
        hour=20, minute=0, second=0, microsecond=0
    )
    post(
        hub,
        event("deployment_started", "zone-metrics", "zm-1", started_at=started.isoformat()),
        event(
            "deployment_completed",
            "zone-metrics",
            "zm-1",
            status="success",
            started_at=started.isoformat(),
            completed_at=(started + timedelta(minutes=1)).isoformat(),
        ),
    )
    local_day = (started + timedelta(hours=5, minutes=30)).date().isoformat()
    with watched_page(browser, timezone_id="Asia/Kolkata") as watched:
        page = watched.page
        with page.expect_response(lambda r: "delivery-metrics" in r.url) as answer:
            open_page(watched, hub, "#/metrics?days=7&project=zone-metrics", "1280")
        body = answer.value.json()
        # Chromium names the zone by its older alias; the hub knows both
        assert re.search(r"tz=Asia%2F(Kolkata|Calcutta)", answer.value.url)
        assert body["window"]["time_zone"] in ("Asia/Kolkata", "Asia/Calcutta")
        assert [d["date"] for d in body["daily"] if d["success"]] == [local_day]
        expect(page.locator("#chart-frequency-title + .chart-note")).to_contain_text("UTC+05:30")
        with page.expect_response(lambda r: "delivery-metrics" in r.url) as answer:
            page.locator("#time-zone").click()
        body = answer.value.json()
        assert body["window"]["time_zone"] == "UTC"
        assert [d["date"] for d in body["daily"] if d["success"]] == [started.date().isoformat()]
        expect(page.locator("#chart-frequency-title + .chart-note")).to_contain_text(
            "(days in UTC)"
        )
        assert watched.errors == []


# -- sender text -----------------------------------------------------------------------------

RED, GREEN, YELLOW, BOLD, RESET = "\x1b[31m", "\x1b[32m", "\x1b[33m", "\x1b[1m", "\x1b[0m"


@pytest.mark.parametrize("size", list(SIZES))
def test_colours_in_errors_messages_and_names_are_rendered_and_hostile_text_stays_text(
    hub: HubServer, watched: Watched, size: str
) -> None:
    """The failed step's error box showed `□[31mred□[0m`; every sender text now goes through
    the log's ANSI renderer, which drops other escapes and never makes markup."""
    project, deployment = "ansi-everywhere", f"ansi-{size}"
    hostile = '<img src=x onerror="window.__pwned=1">'
    post(
        hub,
        event("deployment_started", project, deployment, message=f"{GREEN}deploying{RESET} v2"),
        event("step_started", project, deployment, job="c\x9b2Ji", step="build"),
        event(
            "step_completed",
            project,
            deployment,
            job="c\x9b2Ji",
            step="build",
            status="failure",
            error=f"{RED}red{RESET}\x1b]0;window title\x07 {hostile}",
        ),
        event(
            "deployment_completed",
            project,
            deployment,
            status="failure",
            error=f"{BOLD}{RED}deploy failed{RESET}\x1b]52;c;aGk=\x07",
        ),
        event(
            "deployment_rollback",
            project,
            deployment,
            reason=f"{YELLOW}smoke test{RESET} failed",
            from_deployment_id="ansi-previous",
        ),
        event("metrics_update", project, deployment, metrics={"gate": f"{GREEN}open{RESET}"}),
    )
    page = open_page(watched, hub, f"#/deployments/{deployment}", size)
    error = page.locator("li.step[data-step='build'] .step-error")
    expect(error).to_have_text(f"red {hostile}")
    expect(error.locator(".ansi-red-fg")).to_have_text("red")
    callout = page.locator(".callout-error .callout-text")
    expect(callout).to_have_text("deploy failed")
    expect(callout.locator(".ansi-red-fg.ansi-bold")).to_have_text("deploy failed")
    expect(page.locator(".deploy-message .ansi-green-fg")).to_have_text("deploying")
    expect(page.locator(".callout-warning .ansi-yellow-fg")).to_have_text("smoke test")
    expect(page.locator(".metric-list .ansi-green-fg")).to_have_text("open")
    expect(page.locator(".job-name")).to_have_text("ci")
    # readable on the light error box: the page's own red, not the log panel's
    assert error.locator(".ansi-red-fg").evaluate("el => getComputedStyle(el).color") == (
        "rgb(180, 35, 24)"
    )
    text = page.locator("main").inner_text()
    assert not [bad for bad in ("\x1b", "[31m", "]0;", "]52;") if bad in text], text
    assert page.locator("main img").count() == 0
    assert page.evaluate("window.__pwned") is None
    shoot(page, f"ansi-{size}")
    assert watched.errors == []


# -- durations on screen ---------------------------------------------------------------------

DURATION = re.compile(r"^(?:(\d+) ms|(\d+(?:\.\d)?) s|(\d+)m (\d\d)s|(\d+)h (\d\d)m)$")


def label_ms(text: str) -> tuple[float, float]:
    """A duration label as milliseconds, and how far rounding may have moved it."""
    match = DURATION.match(text.strip())
    assert match, f"not a duration label: {text!r}"
    ms, seconds, minutes, rest, hours, hour_minutes = match.groups()
    if ms is not None:
        return float(ms), 0.5
    if seconds is not None:
        return float(seconds) * 1000, 50.0 if "." in seconds else 500.0
    if minutes is not None:
        return (int(minutes) * 60 + int(rest)) * 1000.0, 1000.0
    return (int(hours) * 3600 + int(hour_minutes) * 60) * 1000.0, 60000.0


MEASURE = """() => [...document.querySelectorAll("li.step")].map((li) => {
    const track = li.querySelector(".step-track").getBoundingClientRect();
    const bar = li.querySelector(".step-bar");
    const box = bar.getBoundingClientRect();
    return {step: li.dataset.step, status: li.dataset.status, bar: !bar.hidden,
            left: box.left - track.left, width: box.width, track: track.width,
            label: li.querySelector(".step-duration").textContent,
            nobar: li.querySelector(".step-nobar").hidden
                ? null : li.querySelector(".step-nobar").textContent};
})"""


def assert_bars_match_labels(steps: list[dict[str, Any]], span_ms: float) -> None:
    for step in steps:
        if not step["bar"]:
            continue
        shown, rounding = label_ms(step["label"])
        drawn = step["width"] / step["track"] * span_ms
        # within rounding: the label's own, and a pixel of the bar (its 2 px minimum too)
        slack = rounding + 2.5 / step["track"] * span_ms
        assert abs(drawn - shown) <= slack, (step, drawn, shown, slack)


@pytest.mark.parametrize("size", list(SIZES))
def test_bars_and_labels_come_from_the_same_times(hub: HubServer, browser: Any, size: str) -> None:
    """A finished deployment: bars sit on one axis, each as long as its label says."""
    deployment = f"bars-{size}"
    t0 = datetime.now(UTC) - timedelta(minutes=10)
    plan = [("build", "checkout", 0, 4), ("build", "install", 4, 52), ("build", "compile", 52, 147)]
    plan += [("deploy", "upload", 147, 168), ("deploy", "smoke test", 168, 182)]
    events = [event("deployment_started", "bars", deployment, started_at=t0.isoformat())]
    for job, step, begin, end in plan:
        started = (t0 + timedelta(seconds=begin)).isoformat()
        ended = (t0 + timedelta(seconds=end)).isoformat()
        events.append(
            event("step_started", "bars", deployment, job=job, step=step, started_at=started)
        )
        events.append(
            event(
                "step_completed",
                "bars",
                deployment,
                job=job,
                step=step,
                status="success",
                started_at=started,
                completed_at=ended,
                # a sender's own figure that disagrees with its times: the times win
                duration_ms=(end - begin) * 1000 + 7000,
            )
        )
    events.append(
        event(
            "step_completed",
            "bars",
            deployment,
            job="deploy",
            step="canary",
            status="skipped",
            completed_at=(t0 + timedelta(seconds=182)).isoformat(),
        )
    )
    events.append(
        event(
            "deployment_completed",
            "bars",
            deployment,
            status="success",
            started_at=t0.isoformat(),
            completed_at=(t0 + timedelta(seconds=182)).isoformat(),
        )
    )
    post(hub, *events)
    with watched_page(browser, reduced_motion="reduce") as watched:
        page = open_page(watched, hub, f"#/deployments/{deployment}", size)
        expect(page.locator("li.step")).to_have_count(6)
        expect(page.locator(".deploy-duration")).to_have_text("3m 02s")
        steps = page.evaluate(MEASURE)
        by_name = {s["step"]: s for s in steps}
        assert [label_ms(by_name[name]["label"])[0] for _, name, _, _ in plan] == [
            (end - begin) * 1000 for _, _, begin, end in plan
        ]
        assert_bars_match_labels(steps, 182_000)
        for _, name, begin, _ in plan:
            left = by_name[name]["left"] / by_name[name]["track"] * 182
            assert abs(left - begin) <= 182 * 2.5 / by_name[name]["track"] + 0.5, (name, left)
        canary = by_name["canary"]
        assert canary["bar"] is False
        assert canary["nobar"] == "skipped"
        assert canary["label"] == "—"
        expect(page.locator(".job[data-job='build'] .job-duration")).to_have_text("2m 27s")
        expect(page.locator(".job[data-job='deploy'] .job-duration")).to_have_text("35 s")
        shoot(page, f"bars-finished-{size}")
        assert watched.errors == []


@pytest.mark.parametrize("size", list(SIZES))
def test_a_running_steps_bar_grows_with_its_timer(hub: HubServer, browser: Any, size: str) -> None:
    deployment = f"bars-running-{size}"
    t0 = datetime.now(UTC) - timedelta(seconds=90)
    mid = t0 + timedelta(seconds=30)
    post(
        hub,
        event("deployment_started", "bars", deployment, started_at=t0.isoformat()),
        event("step_started", "bars", deployment, job="ci", step="lint", started_at=t0.isoformat()),
        event(
            "step_completed",
            "bars",
            deployment,
            job="ci",
            step="lint",
            status="success",
            started_at=t0.isoformat(),
            completed_at=mid.isoformat(),
        ),
        event(
            "step_started", "bars", deployment, job="ci", step="test", started_at=mid.isoformat()
        ),
        event("step_started", "bars", deployment, job="ci", step="deploy", status="pending"),
    )
    with watched_page(browser, reduced_motion="reduce") as watched:
        page = open_page(watched, hub, f"#/deployments/{deployment}", size)
        running = page.locator("li.step[data-step='test']")
        expect(running).to_have_attribute("data-status", "running")
        first = page.evaluate(MEASURE)
        page.wait_for_timeout(2500)
        measured = page.evaluate(
            f"() => [({MEASURE})(), document.querySelector('.deploy-duration').textContent]"
        )
        steps, total = measured
        span_ms, _ = label_ms(total)
        assert_bars_match_labels(steps, span_ms)
        test = next(s for s in steps if s["step"] == "test")
        before = next(s for s in first if s["step"] == "test")
        assert test["width"] > before["width"]
        assert label_ms(test["label"])[0] > label_ms(before["label"])[0]
        pending = next(s for s in steps if s["step"] == "deploy")
        assert (pending["bar"], pending["nobar"], pending["label"]) == (False, "not started", "—")
        expect(running.locator(".step-bar")).to_have_css("animation-name", "none")
        shoot(page, f"bars-running-{size}")
        assert watched.errors == []


# -- page polish -----------------------------------------------------------------------------

COMMIT = "4e6d8a0b1c2d3e4f5a6b7c8d9e0f9c1e5d2a7b3f"


@pytest.mark.parametrize("size", list(SIZES))
def test_the_title_says_what_ran(hub: HubServer, watched: Watched, size: str) -> None:
    post(
        hub,
        event(
            "deployment_started",
            "titles",
            f"title-{size}",
            workflow_name="Deploy to production",
            branch="release/2.4",
            commit=COMMIT,
        ),
        event("deployment_started", "titles", f"title-bare-{size}"),
    )
    page = open_page(watched, hub, f"#/deployments/title-{size}", size)
    title = page.locator("#deploy-title")
    expect(title).to_have_text("Deploy to production on release/2.4 at 4e6d8a0")
    expect(page).to_have_title(
        "Deploy to production on release/2.4 at 4e6d8a0 · running · Deployments"
    )
    page.goto(f"{hub.url}/project-dashboard/#/deployments/title-bare-{size}")
    expect(title).to_have_text("titles")
    assert watched.errors == []


def finished_run(
    project: str, deployment: str, status: str, minutes_ago: float, seconds: float
) -> list[dict[str, Any]]:
    started = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    ended = started + timedelta(seconds=seconds)
    return [
        event("deployment_started", project, deployment, started_at=started.isoformat()),
        event(
            "deployment_completed",
            project,
            deployment,
            status=status,
            started_at=started.isoformat(),
            completed_at=ended.isoformat(),
        ),
    ]


@pytest.mark.parametrize("size", list(SIZES))
def test_counts_have_the_right_plural_and_percentages_one_format(
    hub: HubServer, watched: Watched, size: str
) -> None:
    single, pair = f"single-{size}", f"pair-{size}"
    post(
        hub,
        *finished_run(single, f"{single}-1", "success", 30, 60),
        *finished_run(pair, f"{pair}-1", "failure", 50, 60),
        *finished_run(pair, f"{pair}-2", "success", 40, 60),
        *finished_run(pair, f"{pair}-3", "success", 20, 60),
    )
    page = open_page(watched, hub, f"#/metrics?days=7&project={single}", size)
    hints = page.locator(".kpi-hint")
    expect(hints).to_have_text(["1 deployment in 7 days", "0 failed", "0 recoveries", "1 duration"])
    page.goto(f"{hub.url}/project-dashboard/#/metrics?days=7&project={pair}")
    expect(hints).to_have_text(["3 deployments in 7 days", "1 failed", "1 recovery", "3 durations"])
    expect(page.locator(".kpi-value").nth(1)).to_have_text("33.3%")
    expect(page.locator(".metrics-table tbody td").nth(2)).to_have_text("33.3%")
    page.goto(f"{hub.url}/project-dashboard/#/")
    card = page.locator(f".project-card[data-project='{single}']")
    expect(card.locator("figcaption")).to_have_text("Last 1 duration")
    expect(card.locator(".stat dd").first).to_have_text("100%")
    expect(page.locator(f".project-card[data-project='{pair}'] .stat dd").first).to_have_text(
        "66.7%"
    )
    assert watched.errors == []


@pytest.mark.parametrize("size", list(SIZES))
def test_long_step_names_wrap_instead_of_being_cut(
    hub: HubServer, watched: Watched, size: str
) -> None:
    name = "deploy the frontend bundle to every edge location, then warm each cache 缓存预热"
    post(
        hub,
        event("deployment_started", "long-names", f"long-{size}"),
        event("step_started", "long-names", f"long-{size}", job="ci", step=name),
        event("step_started", "long-names", f"long-{size}", job="ci", step="averyveryverylong" * 6),
    )
    page = open_page(watched, hub, f"#/deployments/long-{size}", size)
    names = page.locator(".step-name")
    expect(names).to_have_count(2)
    for index in range(2):
        cell = names.nth(index)
        assert cell.evaluate("el => el.scrollWidth <= el.clientWidth + 1"), cell.inner_text()
        assert cell.evaluate("el => el.getClientRects().length") >= 1
        assert cell.get_attribute("title") == cell.text_content()
    expect(page.locator(f'li.step[data-step="{name}"] .step-name')).to_have_text(name)
    assert page.evaluate("document.documentElement.scrollWidth") <= SIZES[size]["width"]
    shoot(page, f"long-step-names-{size}")
    assert watched.errors == []


@pytest.mark.parametrize("size", list(SIZES))
def test_the_metrics_table_scrolls_sideways_on_a_phone(
    hub: HubServer, watched: Watched, size: str
) -> None:
    post(hub, *finished_run(f"table-{size}", f"table-{size}-1", "success", 30, 60))
    page = open_page(watched, hub, "#/metrics?days=7", size)
    table = page.locator(".metrics-table")
    expect(table).to_be_visible()
    box = page.locator(".table-card:has(.metrics-table)")
    overflow = box.evaluate("el => el.scrollWidth - el.clientWidth")
    if size == "390":
        assert overflow > 0
        box.evaluate("el => { el.scrollLeft = 200; }")
        assert box.evaluate("el => el.scrollLeft") > 0
        # the project names stay in view while the numbers scroll
        name = table.locator("tbody th").first
        assert name.evaluate(
            "el => Math.abs(el.getBoundingClientRect().left - el.closest('.table-card')"
            ".getBoundingClientRect().left) < 16"
        )
        shoot(page, "metrics-table-scrolled-390")
    else:
        assert overflow <= 0
    assert page.evaluate("document.documentElement.scrollWidth") <= SIZES[size]["width"]
    assert watched.errors == []


@pytest.mark.parametrize("size", list(SIZES))
def test_no_full_log_button_without_a_log(hub: HubServer, watched: Watched, size: str) -> None:
    deployment = f"no-log-{size}"
    post(
        hub,
        event("deployment_started", "logs", deployment),
        event("step_started", "logs", deployment, job="ci", step="build"),
    )
    page = open_page(watched, hub, f"#/deployments/{deployment}", size)
    expect(page.locator("li.step")).to_have_count(1)
    button = page.get_by_role("button", name="Show full log")
    expect(button).to_be_hidden()
    post(hub, event("log_entry", "logs", deployment, job="ci", step="build", message="first"))
    expect(button).to_be_visible(timeout=LIVE_MS)
    button.click()
    expect(page.locator(".full-log .log-text")).to_have_text(["first"])
    assert watched.errors == []


@pytest.mark.parametrize("size", list(SIZES))
def test_history_filters_by_environment(hub: HubServer, watched: Watched, size: str) -> None:
    project = f"envs-{size}"
    post(
        hub,
        event("deployment_started", project, f"{project}-prod", environment="production"),
        event("deployment_started", project, f"{project}-stage", environment="staging"),
        event("deployment_started", project, f"{project}-none"),
    )
    page = open_page(watched, hub, f"#/deployments?project={project}", size)
    rows = page.locator("tbody tr")
    expect(rows).to_have_count(3)
    expect(page.locator("table.deployments thead th")).to_have_text(
        [
            "Status",
            "Project",
            "Deployment",
            "Environment",
            "Branch",
            "Commit",
            "Actor",
            "Started",
            "Duration",
        ]
    )
    labels = rows.first.locator("td").evaluate_all("els => els.map(e => e.dataset.label)")
    assert labels[3:5] == ["Environment", "Branch"]
    page.locator("#filter-environment").select_option("staging")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-id", f"{project}-stage")
    assert "environment=staging" in page.url
    expect(rows.first.locator("td[data-label='Environment']")).to_have_text("staging")
    # one dash for what is missing, in one font: the commit column's is not monospace
    dashes = rows.first.locator("td:text-is('—')")
    fonts = set(dashes.evaluate_all("els => els.map(e => getComputedStyle(e).fontFamily)"))
    assert dashes.count() >= 2
    assert len(fonts) == 1, fonts

    post(
        hub,
        event("deployment_started", project, f"{project}-stage-2", environment="staging"),
        event("deployment_started", project, f"{project}-prod-2", environment="production"),
    )
    expect(rows.first).to_have_attribute("data-id", f"{project}-stage-2", timeout=LIVE_MS)
    page.wait_for_timeout(300)
    expect(rows).to_have_count(2)
    page.reload()
    expect(page.locator("#filter-environment")).to_have_value("staging")
    expect(rows).to_have_count(2)
    shoot(page, f"history-environment-{size}")
    assert page.evaluate("document.documentElement.scrollWidth") <= SIZES[size]["width"]
    assert watched.errors == []


# -- notifications ---------------------------------------------------------------------------

#: Records every notification the page shows and every permission request it makes.
NOTIFICATION_HOOK = """(() => {
  window.__notifications = [];
  window.__permissionRequests = 0;
  const Original = window.Notification;
  if (!Original) return;
  function Recorded(title, options = {}) {
    window.__notifications.push({title, body: options.body || "", tag: options.tag || ""});
    try { return new Original(title, options); }
    catch { return {close() {}, addEventListener() {}}; }
  }
  Object.defineProperty(Recorded, "permission", {get: () => Original.permission});
  Recorded.requestPermission = (...args) => {
    window.__permissionRequests += 1;
    return Original.requestPermission(...args);
  };
  window.Notification = Recorded;
})();"""


def notifications(page: Any) -> list[dict[str, str]]:
    shown: list[dict[str, str]] = page.evaluate("window.__notifications")
    return shown


@pytest.mark.parametrize("size", list(SIZES))
def test_a_watched_deployment_notifies_when_it_finishes(
    hub: HubServer, browser: Any, size: str
) -> None:
    project, first, second = "notify", f"notify-{size}-1", f"notify-{size}-2"
    post(
        hub,
        event("deployment_started", project, first, branch="main", workflow_name="Release"),
        event("deployment_started", project, second, branch="main"),
    )
    with watched_page(browser) as watched:
        page = watched.page
        page.context.grant_permissions(["notifications"], origin=hub.url)
        page.context.add_init_script(NOTIFICATION_HOOK)
        open_page(watched, hub, f"#/deployments/{first}", size)
        button = page.get_by_role("button", name="Notify me when it finishes")
        expect(button).to_be_visible()
        assert page.evaluate("window.__permissionRequests") == 0, "asked without a click"
        button.click()
        expect(page.get_by_role("button", name="Notifying you when it finishes")).to_have_attribute(
            "aria-pressed", "true"
        )
        shoot(page, f"notify-watching-{size}")

        post(hub, event("deployment_completed", project, first, status="success"))
        page.wait_for_function("() => window.__notifications.length === 1", timeout=LIVE_MS * 3)
        [shown] = notifications(page)
        assert shown["title"] == "Release succeeded"
        assert shown["body"].startswith(f"notify {first} on main · took ")
        assert shown["tag"] == f"deployment-{first}"
        expect(page.locator(".notify-button")).to_have_count(0)  # it has finished

        # watching holds on another page of the dashboard, and a failure says so
        page.goto(f"{hub.url}/project-dashboard/#/deployments/{second}")
        page.get_by_role("button", name="Notify me when it finishes").click()
        page.goto(f"{hub.url}/project-dashboard/#/deployments")
        expect(page.locator(f"tr[data-id='{second}']")).to_be_visible()
        post(
            hub,
            event(
                "deployment_completed",
                project,
                second,
                status="failure",
                error="\x1b[31mboom\x1b[0m",
            ),
        )
        page.wait_for_function("() => window.__notifications.length === 2", timeout=LIVE_MS * 3)
        shown = notifications(page)[1]
        assert shown["title"] == "notify failed"
        assert shown["body"].endswith(" · boom")
        assert watched.errors == []


def test_the_page_never_asks_for_notifications_unprompted(hub: HubServer, browser: Any) -> None:
    post(hub, event("deployment_started", "notify", "notify-unasked"))
    with watched_page(browser) as watched:
        page = watched.page
        page.context.add_init_script(NOTIFICATION_HOOK)
        for fragment in ("#/", "#/deployments", "#/deployments/notify-unasked", "#/metrics"):
            page.goto(f"{hub.url}/project-dashboard/{fragment}")
            expect(page.locator("#connection")).to_have_attribute("data-state", "live")
        page.wait_for_timeout(500)
        assert page.evaluate("window.__permissionRequests") == 0
        assert notifications(page) == []
        assert watched.errors == []
