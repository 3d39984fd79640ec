"""The log viewer in headless Chromium: numbers and their links, timestamps, levels, paging
past the lines rendered at once, and Download from the hub."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import Watched, event, post
from tests.e2e.server import HubServer

pytestmark = pytest.mark.browser

PROJECT, DEPLOYMENT, JOB, STEP = "atlas", "long-1", "build", "compile"
#: Lines of the long step: past the 5,000 a panel renders at once.
TOTAL = 12_345
#: Lines per posted event.
CHUNK = 2_000


def text_of(n: int) -> str:
    """The text of line ``n`` (from 1) of the long step; a few are warnings and errors."""
    if n == 20:
        return "\x1b[33mwarning:\x1b[0m deprecated flag"
    if n == 30:
        return "\x1b[31merror:\x1b[0m <b>not markup</b>"
    return f"compile unit {n}"


def level_of(n: int) -> str:
    return {20: "warning", 30: "error", 1: "debug"}.get(n, "info")


@pytest.fixture(scope="module")
def long_log(hub: HubServer) -> list[str]:
    """A finished deployment whose one step logged :data:`TOTAL` lines; their ids, in order."""
    spans: list[tuple[int, int]] = [(1, 1), (2, 19), (20, 20), (21, 29), (30, 30)]
    n = 31
    while n <= TOTAL:
        spans.append((n, min(n + CHUNK - 1, TOTAL)))
        n += CHUNK
    post(hub, event("deployment_started", PROJECT, DEPLOYMENT, timestamp="2026-03-01T10:00:00Z"))
    post(
        hub,
        *[
            event(
                "log_entry",
                PROJECT,
                DEPLOYMENT,
                job=JOB,
                step=STEP,
                level=level_of(first),
                message="\n".join(text_of(i) for i in range(first, last + 1)),
                timestamp=f"2026-03-01T10:{index // 60:02d}:{index % 60:02d}Z",
            )
            for index, (first, last) in enumerate(spans)
        ],
    )
    post(
        hub,
        event("step_completed", PROJECT, DEPLOYMENT, job=JOB, step=STEP, status="success"),
        event("deployment_completed", PROJECT, DEPLOYMENT, status="success"),
    )
    ids: list[str] = []
    after = ""
    while True:
        status, page = hub.request(
            "GET", f"/api/deployments/{DEPLOYMENT}/logs?job={JOB}&step={STEP}&limit=1000{after}"
        )
        assert status == 200
        ids += [line["id"] for line in page["lines"]]
        if page["next_cursor"] is None:
            break
        after = f"&after={page['next_cursor']}"
    assert len(ids) == TOTAL
    return ids


def open_page(watched: Watched, hub: HubServer, fragment: str) -> Any:
    page = watched.page
    page.goto(f"{hub.url}/project-dashboard/{fragment}")
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    return page


def open_step(page: Any) -> Any:
    """Expand the long step; its log panel."""
    step = page.locator(f'li.step[data-step="{STEP}"]')
    step.locator(".step-toggle").click()
    panel = step.locator(".log-panel")
    expect(panel.locator(".log-line").first).to_be_attached()
    return panel


def line(panel: Any, n: int) -> Any:
    return panel.locator(f'.log-line[data-number="{n}"]')


def test_each_line_has_its_number_and_the_number_links_to_the_line(
    hub: HubServer, long_log: list[str], watched: Watched
) -> None:
    page = open_page(watched, hub, f"#/deployments/{DEPLOYMENT}")
    panel = open_step(page)
    expect(line(panel, 1).locator(".log-num")).to_have_text("1")
    expect(line(panel, 2).locator(".log-text")).to_have_text("compile unit 2")
    link = line(panel, 250).locator("a.log-num")
    expect(link).to_have_text("250")
    expect(link).to_have_attribute(
        "href", f"#/deployments/{DEPLOYMENT}?job={JOB}&step={STEP}&line={long_log[249]}"
    )
    # sender text stays text, its colours rendered
    error = line(panel, 30).locator(".log-text")
    expect(error).to_have_text("error: <b>not markup</b>")
    expect(error.locator("b")).to_have_count(0)
    expect(error.locator("span.ansi-red-fg")).to_have_text("error:")
    link.click()
    target = page.locator(".log-line-target")
    expect(target).to_have_attribute("data-number", "250")
    expect(target).to_be_in_viewport()
    assert watched.errors == []


def test_a_link_to_a_line_past_the_first_pages_opens_at_it_with_its_step_expanded(
    hub: HubServer, long_log: list[str], watched: Watched
) -> None:
    fragment = f"#/deployments/{DEPLOYMENT}?job={JOB}&step={STEP}&line={long_log[9876]}"
    page = open_page(watched, hub, fragment)
    target = page.locator(".log-line-target")
    expect(target).to_have_attribute("data-number", "9877")
    expect(target.locator(".log-text")).to_have_text("compile unit 9877")
    expect(target).to_be_in_viewport()
    step = page.locator(f'li.step[data-step="{STEP}"]')
    expect(step.locator(".step-toggle")).to_have_attribute("aria-expanded", "true")
    expect(page.locator(".target-note")).to_be_hidden()
    panel = step.locator(".log-panel")
    # the page that ends at it and the one after it were read; what came before is offered
    expect(panel.locator(".log-earlier")).to_contain_text("8,877 earlier lines not shown")
    expect(line(panel, 10877)).to_be_attached()
    assert panel.locator(".log-line").count() == 2000
    panel.locator(".log-earlier button").click()  # scrolled up to it, at line 8878
    expect(line(panel, 7878)).to_be_attached()
    expect(panel.locator(".log-earlier")).to_contain_text("7,877 earlier lines not shown")
    expect(line(panel, 7878).locator(".log-text")).to_have_text("compile unit 7878")
    expect(line(panel, 8878)).to_be_in_viewport()  # the lines put above did not move it away
    expect(target).to_have_attribute("data-number", "9877")
    assert watched.errors == []


def test_the_log_pages_past_five_thousand_lines_keeping_five_thousand_rendered(
    hub: HubServer, long_log: list[str], watched: Watched
) -> None:
    page = open_page(watched, hub, f"#/deployments/{DEPLOYMENT}")
    panel = open_step(page)
    expect(line(panel, 5000)).to_be_attached()
    expect(panel.locator(".log-later")).to_be_visible()
    assert panel.locator(".log-line").count() == 5000
    body = panel.locator(".log-body")
    for last in (6000, 7000):
        body.evaluate("el => { el.scrollTop = el.scrollHeight; }")  # reading on by scrolling
        expect(line(panel, last)).to_be_attached()
    expect(line(panel, 1)).not_to_be_attached()
    assert panel.locator(".log-line").count() == 5000
    expect(panel.locator(".log-earlier")).to_contain_text("2,000 earlier lines not shown")
    panel.locator(".log-later button").click()  # or by the button
    expect(line(panel, 8000)).to_be_attached()
    for last in range(9000, TOTAL + 1000, 1000):
        body.evaluate("el => { el.scrollTop = el.scrollHeight; }")
        expect(line(panel, min(last, TOTAL))).to_be_attached()
    expect(panel.locator(".log-later")).to_be_hidden()
    expect(line(panel, TOTAL).locator(".log-text")).to_have_text(f"compile unit {TOTAL}")
    expect(panel.locator(".log-line").last).to_have_attribute("data-number", str(TOTAL))
    assert panel.locator(".log-line").count() <= 5000
    assert watched.errors == []


def test_timestamps_hide_and_the_choice_is_remembered(
    hub: HubServer, long_log: list[str], watched: Watched
) -> None:
    page = open_page(watched, hub, f"#/deployments/{DEPLOYMENT}")
    panel = open_step(page)
    toggle = panel.locator(".log-times-toggle")
    expect(toggle).to_have_attribute("aria-pressed", "true")
    clock = line(panel, 1).locator(".log-time")
    expect(clock).to_be_visible()
    toggle.click()
    expect(toggle).to_have_attribute("aria-pressed", "false")
    expect(clock).to_be_hidden()
    page.reload()
    panel = open_step(page)
    expect(panel.locator(".log-times-toggle")).to_have_attribute("aria-pressed", "false")
    expect(line(panel, 1).locator(".log-time")).to_be_hidden()
    expect(line(panel, 1).locator(".log-num")).to_be_visible()
    panel.locator(".log-times-toggle").click()
    expect(line(panel, 1).locator(".log-time")).to_be_visible()
    assert watched.errors == []


def test_the_level_filter_hides_lines_below_it_and_is_remembered(
    hub: HubServer, long_log: list[str], watched: Watched
) -> None:
    page = open_page(watched, hub, f"#/deployments/{DEPLOYMENT}")
    panel = open_step(page)
    levels = panel.locator("select.log-level")
    expect(levels).to_have_value("debug")
    levels.select_option("warning")
    expect(line(panel, 2)).to_be_hidden()
    expect(line(panel, 1)).to_be_hidden()
    expect(line(panel, 20)).to_be_visible()
    expect(line(panel, 30)).to_be_visible()
    levels.select_option("error")
    expect(line(panel, 20)).to_be_hidden()
    expect(line(panel, 30)).to_be_visible()
    page.reload()
    panel = open_step(page)
    expect(panel.locator("select.log-level")).to_have_value("error")
    expect(line(panel, 30)).to_be_visible()
    expect(line(panel, 31)).to_be_hidden()
    panel.locator("select.log-level").select_option("debug")
    expect(line(panel, 1)).to_be_visible()
    assert watched.errors == []


def test_download_saves_the_whole_log_from_the_hub(
    hub: HubServer, long_log: list[str], watched: Watched
) -> None:
    page = open_page(watched, hub, f"#/deployments/{DEPLOYMENT}")
    panel = open_step(page)
    link = panel.locator("a.log-download")
    expect(link).to_have_attribute(
        "href",
        f"{hub.url}/project-dashboard/api/deployments/{DEPLOYMENT}/logs.txt?job={JOB}&step={STEP}",
    )
    with page.expect_download() as saved:
        link.click()
    download = saved.value
    assert download.url == link.get_attribute("href")
    answer = page.request.get(download.url)  # what the hub answers that request
    assert answer.status == 200
    assert answer.headers["content-type"] == "text/plain; charset=utf-8"
    assert answer.headers["content-disposition"] == (
        f'attachment; filename="{DEPLOYMENT}-{JOB}-{STEP}.log"'
    )
    assert download.suggested_filename == f"{DEPLOYMENT}-{JOB}-{STEP}.log"
    rows = Path(download.path()).read_text(encoding="utf-8").splitlines()
    assert len(rows) == TOTAL  # all of it, not the lines the page rendered
    assert rows[0] == f"2026-03-01T10:00:00.000Z DEBUG   [{JOB} / {STEP}] compile unit 1"
    assert rows[29].endswith("ERROR   [build / compile] error: <b>not markup</b>")
    assert rows[-1].endswith(f"compile unit {TOTAL}")
    assert watched.errors == []


def test_a_live_line_is_numbered_after_the_others_and_gets_its_link(
    hub: HubServer, watched: Watched
) -> None:
    deployment = "live-numbers"
    post(
        hub,
        event("deployment_started", PROJECT, deployment),
        event("step_started", PROJECT, deployment, job=JOB, step=STEP),
        event("log_entry", PROJECT, deployment, job=JOB, step=STEP, message="one\ntwo\nthree"),
    )
    page = open_page(watched, hub, f"#/deployments/{quote(deployment)}")
    panel = open_step(page)
    expect(panel.locator(".log-line")).to_have_count(3)
    post(hub, event("log_entry", PROJECT, deployment, job=JOB, step=STEP, message="four\nfive"))
    expect(line(panel, 5).locator(".log-text")).to_have_text("five")
    # read back from the hub, the live lines take their ids: their numbers become links
    expect(line(panel, 5).locator("a.log-num")).to_have_attribute(
        "href", re.compile(rf"^#/deployments/{deployment}\?job={JOB}&step={STEP}&line=\d+$")
    )
    expect(panel.locator(".log-line")).to_have_count(5)
    page.reload()
    panel = open_step(page)
    expect(line(panel, 5).locator(".log-text")).to_have_text("five")
    assert watched.errors == []


def test_a_steps_message_shows_its_colours_as_text(hub: HubServer, watched: Watched) -> None:
    deployment = "step-message"
    post(
        hub,
        event("deployment_started", PROJECT, deployment),
        event(
            "step_completed",
            PROJECT,
            deployment,
            job=JOB,
            step=STEP,
            status="success",
            message="\x1b[32mdeployed\x1b[0m to <i>prod</i>\x1b]0;title\x07",
        ),
    )
    page = open_page(watched, hub, f"#/deployments/{deployment}")
    message = page.locator(f'li.step[data-step="{STEP}"] .step-message')
    expect(message).to_have_text("deployed to <i>prod</i>")
    expect(message.locator(".ansi-green-fg")).to_have_text("deployed")
    expect(message.locator("i")).to_have_count(0)
    assert watched.errors == []


def test_download_carries_the_read_token_of_a_guarded_hub(
    tmp_path_factory: pytest.TempPathFactory, watched: Watched
) -> None:
    hub = HubServer(tmp_path_factory.mktemp("guarded"), {"HUB_READ_TOKENS": "reader"}).start()
    try:
        post(
            hub,
            event("deployment_started", PROJECT, "guarded"),
            event("step_started", PROJECT, "guarded", job=JOB, step=STEP),
            event("log_entry", PROJECT, "guarded", job=JOB, step=STEP, message="kept\nsafe"),
        )
        page = watched.page
        page.goto(f"{hub.url}/?token=reader#/deployments/guarded")
        panel = open_step(page)
        link = panel.locator("a.log-download")
        expect(link).to_have_attribute(
            "href", f"{hub.url}/api/deployments/guarded/logs.txt?job={JOB}&step={STEP}&token=reader"
        )
        with page.expect_download() as saved:
            link.click()
        rows = Path(saved.value.path()).read_text(encoding="utf-8").splitlines()
        assert [row.split("] ", 1)[1] for row in rows] == ["kept", "safe"]
        status, _ = hub.request("GET", f"/api/deployments/guarded/logs.txt?job={JOB}")
        assert status == 401  # the same address without the token
    finally:
        hub.stop()
    assert watched.errors == []


def test_a_running_step_opens_at_its_last_page_and_follows_it(
    hub: HubServer, watched: Watched
) -> None:
    deployment = "running-long"
    post(
        hub,
        event("deployment_started", PROJECT, deployment),
        event("step_started", PROJECT, deployment, job=JOB, step=STEP),
        event(
            "log_entry",
            PROJECT,
            deployment,
            job=JOB,
            step=STEP,
            message="\n".join(f"step line {n}" for n in range(1, 3501)),
        ),
    )
    page = open_page(watched, hub, f"#/deployments/{deployment}")
    panel = open_step(page)
    expect(panel.locator(".log-line").first).to_have_attribute("data-number", "2501")
    expect(panel.locator(".log-earlier")).to_contain_text("2,500 earlier lines not shown")
    expect(line(panel, 3500)).to_be_in_viewport()
    post(hub, event("log_entry", PROJECT, deployment, job=JOB, step=STEP, message="step line 3501"))
    expect(line(panel, 3501).locator(".log-text")).to_have_text("step line 3501")
    expect(line(panel, 3501)).to_be_in_viewport()
    # a link that names no line id the hub gives out says the line is not there
    page.goto(
        f"{hub.url}/project-dashboard/#/deployments/{deployment}?job={JOB}&step={STEP}&line=x"
    )
    expect(page.locator(".target-note")).to_be_visible()
    assert watched.errors == []
