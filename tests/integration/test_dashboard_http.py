"""The dashboard's HTTP side through the Flask test client: page, assets, badge, metrics.

No browser is needed for these, so they run everywhere; what the page does
with the answers is covered by the Chromium tests beside this file.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.config import Settings
from app.dashboard import STATIC_DIR, asset_version
from ledger.delivery import summarise
from ledger.timestamps import format_timestamp
from server.app import create_app
from storage import paging
from tests.conftest import ROOT

SVG = "{http://www.w3.org/2000/svg}"
PREFIXES = ["", "/project-dashboard"]


def post(client: FlaskClient, *events: dict[str, Any]) -> None:
    response = client.post("/api/webhooks/deployment", json={"events": list(events)})
    assert response.status_code == 200, response.json


def finished(
    client: FlaskClient,
    project: str,
    deployment_id: str,
    status: str,
    started: datetime,
    seconds: float,
) -> None:
    end = started + timedelta(seconds=seconds)
    post(
        client,
        {
            "type": "deployment_started",
            "project": project,
            "deployment_id": deployment_id,
            "timestamp": format_timestamp(started),
        },
        {
            "type": "deployment_completed",
            "project": project,
            "deployment_id": deployment_id,
            "status": status,
            "timestamp": format_timestamp(end),
            "started_at": format_timestamp(started),
            "completed_at": format_timestamp(end),
        },
    )


def parse_svg(body: bytes) -> ET.Element:
    return ET.fromstring(body)  # noqa: S314 - the hub's own badge, made in this process by the test


def badge_texts(body: bytes) -> list[str]:
    root = parse_svg(body)
    assert root.tag == f"{SVG}svg"
    return [t.text or "" for t in root.iter(f"{SVG}text")]


# -- the page and its files ----------------------------------------------------------------


@pytest.mark.parametrize("prefix", PREFIXES)
def test_page_is_served_at_both_paths_with_a_strict_policy(
    client: FlaskClient, prefix: str
) -> None:
    response = client.get(f"{prefix}/")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy
    assert "unsafe" not in policy
    assert "frame-ancestors 'none'" in policy
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "no-cache" in response.headers["Cache-Control"]
    html = response.get_data(as_text=True)
    assert f'src="static/{asset_version()}/js/main.js"' in html
    assert re.findall(r"<script(?![^>]*\bsrc=)", html) == [], "inline script"
    assert re.findall(r"\son[a-z]+=", html) == [], "inline event handler"


def test_page_without_its_trailing_slash_redirects(client: FlaskClient) -> None:
    response = client.get("/project-dashboard")
    assert response.status_code == 308
    assert response.headers["Location"].endswith("/project-dashboard/")


def test_unchanged_page_answers_304(client: FlaskClient) -> None:
    etag = client.get("/").headers["ETag"]
    assert client.get("/", headers={"If-None-Match": etag}).status_code == 304


@pytest.mark.parametrize("prefix", PREFIXES)
def test_versioned_assets_are_cached_for_good_and_others_revalidate(
    client: FlaskClient, prefix: str
) -> None:
    versioned = client.get(f"{prefix}/static/{asset_version()}/js/main.js")
    assert versioned.status_code == 200
    assert versioned.mimetype == "text/javascript"
    assert "immutable" in versioned.headers["Cache-Control"]
    assert "max-age=31536000" in versioned.headers["Cache-Control"]
    versioned.close()
    for path in ("static/js/main.js", "static/000000000000/js/main.js"):
        plain = client.get(f"{prefix}/{path}")
        assert plain.status_code == 200
        assert plain.headers["Cache-Control"] == "no-cache"
        plain.close()


@pytest.mark.parametrize(
    "path",
    [
        "/static/../dashboard.py",
        "/static/%2e%2e/dashboard.py",
        "/static/js/../../dashboard.py",
        "/static/missing.js",
        "/static/",
    ],
)
def test_nothing_outside_the_static_folder_is_served(client: FlaskClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert response.json is not None
    assert response.json["success"] is False


def test_every_vendored_library_ships_with_its_licence_and_is_documented() -> None:
    vendor = STATIC_DIR / "vendor"
    assert {p.name for p in vendor.iterdir()} == {
        "anser.js",
        "anser.LICENSE",
        "chart.umd.min.js",
        "chart.LICENSE.md",
    }
    assert "Chart.js v4.6.1" in (vendor / "chart.umd.min.js").read_text()[:200]
    docs = (ROOT / "docs" / "DASHBOARD.md").read_text()
    assert "anser` 2.3.5" in docs
    assert "chart.js` 4.6.1" in docs


def test_scripts_never_turn_data_into_markup_or_code() -> None:
    sources = {p: p.read_text() for p in (STATIC_DIR / "js").rglob("*.js")}
    forbidden = re.compile(
        r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function"
    )
    assert {p.name: forbidden.findall(s) for p, s in sources.items() if forbidden.search(s)} == {}


# -- the badge -----------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize(("status", "colour"), [("success", "#2e7d32"), ("failure", "#c62828")])
def test_badge_shows_the_latest_deployments_status(
    client: FlaskClient, prefix: str, status: str, colour: str
) -> None:
    now = datetime.now(UTC)
    finished(
        client,
        "shop",
        "d1",
        "failure" if status == "success" else "success",
        now - timedelta(hours=2),
        30,
    )
    finished(client, "shop", "d2", status, now - timedelta(hours=1), 30)
    response = client.get(f"{prefix}/api/projects/shop/badge.svg")
    assert response.status_code == 200
    assert response.mimetype == "image/svg+xml"
    assert badge_texts(response.data) == ["shop", "shop", status, status]
    assert f'fill="{colour}"' in response.get_data(as_text=True)
    assert response.headers["Cache-Control"] in ("public, max-age=30", "max-age=30, public")
    etag = response.headers["ETag"]
    again = client.get(f"{prefix}/api/projects/shop/badge.svg", headers={"If-None-Match": etag})
    assert again.status_code == 304


def test_badge_of_a_project_that_never_deployed_says_so(client: FlaskClient) -> None:
    response = client.get("/api/projects/nobody/badge.svg?label=deploy")
    assert response.status_code == 200
    assert badge_texts(response.data)[::2] == ["deploy", "no deployments"]


def test_badge_escapes_hostile_and_control_characters(client: FlaskClient) -> None:
    project = '<script>alert("x")</script>&部署'
    finished(client, project, "evil-1", "success", datetime.now(UTC), 5)
    response = client.get(f"/api/projects/{project}/badge.svg")
    assert response.status_code == 200
    root = parse_svg(response.data)
    assert [e.tag for e in root.iter() if "script" in e.tag] == []
    assert badge_texts(response.data)[0] == project
    label = client.get("/api/projects/x/badge.svg?label=%3Cimg%20onerror%3D1%3E%1B[31mred")
    assert "<img" not in label.get_data(as_text=True)
    assert badge_texts(label.data)[0] == "<img onerror=1>[31mred"


def test_wide_characters_make_a_wider_badge(client: FlaskClient) -> None:
    def width(label: str) -> int:
        root = parse_svg(client.get(f"/api/projects/p/badge.svg?label={label}").data)
        return int(root.attrib["width"])

    assert width("部署部署") > width("abcd")


@pytest.mark.parametrize(
    "path",
    [
        "/api/projects/" + "p" * 201 + "/badge.svg",
        "/api/projects/p/badge.svg?label=" + "l" * 201,
    ],
)
def test_badge_refuses_overlong_names(client: FlaskClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 400
    assert response.json is not None
    assert response.json["error"]["code"] == "bad_request"
    assert response.json["error"]["details"]


@pytest.fixture
def guarded() -> Iterator[Flask]:
    application = create_app(Settings(store_url="memory://", read_tokens=("s3cret",)))
    yield application
    application.extensions["hub"].stop()
    application.extensions["hub_context"].store.close()


def test_badge_and_metrics_need_a_read_token_when_reads_are_guarded(guarded: Flask) -> None:
    client = guarded.test_client()
    for path in ("/api/projects/p/badge.svg", "/api/delivery-metrics"):
        assert client.get(path).status_code == 401
        assert client.get(f"{path}?token=wrong").status_code == 401
        assert client.get(f"{path}?token=s3cret").status_code == 200
    badge = client.get("/api/projects/p/badge.svg", headers={"Authorization": "Bearer s3cret"})
    assert "private" in badge.headers["Cache-Control"]
    assert client.get("/").status_code == 200  # the page holds no data


# -- delivery metrics ----------------------------------------------------------------------


def row(project: str, status: str, started: datetime, minutes: float | None) -> dict[str, Any]:
    end = started + timedelta(minutes=minutes) if minutes is not None else None
    return {
        "project": project,
        "status": status,
        "started_at": format_timestamp(started),
        "completed_at": format_timestamp(end) if end else None,
        "duration_ms": round(minutes * 60000) if minutes is not None else None,
    }


def test_summary_counts_frequency_failure_rate_restores_and_percentiles() -> None:
    """A run of failures is one outage, timed from its first failure to the next success."""
    end = datetime(2025, 8, 20, 12, tzinfo=UTC)
    start = end - timedelta(days=4)
    day = timedelta(days=1)
    rows = [
        row("a", "success", start + 0.1 * day, 2),
        row("a", "failure", start + 1.1 * day, 4),
        row("a", "failure", start + 1.2 * day, 6),
        row("a", "success", start + 1.3 * day, 8),
        row("a", "failure", start + 3.1 * day, 10),
        row("a", "running", start + 3.9 * day, None),
        row("b", "success", start + 2.0 * day, 1),
        row("b", "cancelled", start + 2.5 * day, 1),
    ]
    summary = summarise(rows, start=start, end=end)
    assert summary["window"]["days"] == 4
    assert [d["date"] for d in summary["daily"]] == [
        "2025-08-16",
        "2025-08-17",
        "2025-08-18",
        "2025-08-19",
        "2025-08-20",
    ]
    assert sum(d["success"] + d["failure"] + d["other"] for d in summary["daily"]) == 8
    a, b = summary["projects"]
    assert a["project"] == "a"
    assert a["deployments"] == 6
    assert a["per_day"] == 1.5
    assert a["change_failure_rate"] == 0.6
    restore = (4 * 60 + 48 + 8 - 4) * 60000  # 0.2 days between the starts, then 8 - 4 minutes
    assert a["time_to_restore_ms"] == {
        "count": 1,
        "median": restore,
        "mean": restore,
        "max": restore,
    }
    assert a["failing_since"] == rows[4]["completed_at"]
    assert a["duration_ms"] == {"count": 5, "p50": 6 * 60000, "p90": 10 * 60000, "p95": 10 * 60000}
    assert b["change_failure_rate"] == 0
    assert b["statuses"] == {"cancelled": 1, "success": 1}
    assert summary["overall"]["deployments"] == 8
    assert summary["overall"]["time_to_restore_ms"]["count"] == 1
    assert summary["overall"]["failing_since"] == a["failing_since"]


def test_summary_of_nothing_has_no_rates() -> None:
    end = datetime(2025, 8, 20, tzinfo=UTC)
    overall = summarise([], start=end - timedelta(days=7), end=end)["overall"]
    assert overall["change_failure_rate"] is None
    assert overall["time_to_restore_ms"]["median"] is None
    assert overall["duration_ms"]["p50"] is None


def test_metrics_endpoint_counts_the_window_only(client: FlaskClient) -> None:
    now = datetime.now(UTC)
    finished(client, "shop", "old", "failure", now - timedelta(days=10), 60)
    finished(client, "shop", "new-1", "failure", now - timedelta(days=2), 60)
    finished(client, "shop", "new-2", "success", now - timedelta(days=1), 120)
    finished(client, "blog", "b-1", "success", now - timedelta(hours=3), 30)
    for prefix in PREFIXES:
        body = client.get(f"{prefix}/api/delivery-metrics?days=7").json
        assert body is not None
        assert body["truncated"] is False
        assert [p["project"] for p in body["projects"]] == ["blog", "shop"]
        assert body["projects"][1]["deployments"] == 2
        assert body["projects"][1]["change_failure_rate"] == 0.5
    only = client.get("/api/delivery-metrics?days=30&project=blog").json
    assert only is not None
    assert [p["project"] for p in only["projects"]] == ["blog"]


@pytest.mark.parametrize("days", ["0", "366", "x", "-1", "1.5", "7" * 300])
def test_metrics_endpoint_refuses_a_bad_window(client: FlaskClient, days: str) -> None:
    response = client.get(f"/api/delivery-metrics?days={days}")
    assert response.status_code == 400
    assert response.json is not None
    assert "days" in response.json["error"]["details"]


def test_metrics_read_at_most_a_bounded_number_of_rows(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store that reads a window row by row stops at its bound and says so; the
    embedded store counts the window from its aggregates and leaves nothing out."""
    monkeypatch.setattr(paging, "MAX_WINDOW_DEPLOYMENTS", 3)
    monkeypatch.setattr(paging, "PAGE_SIZE", 2)
    now = datetime.now(UTC)
    for index in range(5):
        finished(client, "shop", f"d{index}", "success", now - timedelta(hours=index + 1), 10)
    store = app.extensions["hub_context"].store
    day_ago = format_timestamp(now - timedelta(days=1))
    rows, truncated = paging.deployments_since(store, None, day_ago)
    assert ([r["deployment_id"] for r in rows], truncated) == (["d0", "d1", "d2"], True)
    rows, truncated = paging.deployments_since(
        store, None, format_timestamp(now - timedelta(hours=2.5))
    )
    assert ([r["deployment_id"] for r in rows], truncated) == (["d0", "d1"], False)
    body = client.get("/api/delivery-metrics").json
    assert body is not None
    assert (body["truncated"], body["overall"]["deployments"]) == (False, 5)


def test_days_are_counted_in_the_time_zone_asked_for() -> None:
    """23:30 UTC is already the next day in Berlin (UTC+2 in summer) and still that day in
    New York, 16:00 UTC the next day in Tokyo; the window's first and last days are the
    zone's too."""
    end = datetime(2025, 8, 20, 12, tzinfo=UTC)
    start = end - timedelta(days=2)
    rows = [
        row("a", "success", datetime(2025, 8, 18, 23, 30, tzinfo=UTC), 2),
        row("a", "failure", datetime(2025, 8, 19, 16, 0, tzinfo=UTC), 2),
    ]

    def days(**zone: Any) -> dict[str, tuple[int, int]]:
        summary = summarise(rows, start=start, end=end, **zone)
        return {d["date"]: (d["success"], d["failure"]) for d in summary["daily"]}

    assert days() == {"2025-08-18": (1, 0), "2025-08-19": (0, 1), "2025-08-20": (0, 0)}
    berlin = days(zone=ZoneInfo("Europe/Berlin"), zone_name="Europe/Berlin")
    assert berlin == {"2025-08-18": (0, 0), "2025-08-19": (1, 1), "2025-08-20": (0, 0)}
    tokyo = days(zone=timezone(timedelta(hours=9)), zone_name="UTC+09:00")
    assert tokyo == {"2025-08-18": (0, 0), "2025-08-19": (1, 0), "2025-08-20": (0, 1)}
    summary = summarise(rows, start=start, end=end, zone=ZoneInfo("America/New_York"))
    assert summary["daily"][0] == {"date": "2025-08-18", "success": 1, "failure": 0, "other": 0}


def test_a_zone_with_daylight_saving_counts_each_local_day() -> None:
    """Across the end of summer time in Berlin each local day is still one bucket."""
    zone = ZoneInfo("Europe/Berlin")
    end = datetime(2025, 10, 27, 12, tzinfo=UTC)
    start = end - timedelta(days=3)
    rows = [
        # 22:30 UTC is 00:30 the next day in summer (UTC+2) and 23:30 in winter (UTC+1)
        row("a", "success", datetime(2025, 10, 25, 22, 30, tzinfo=UTC), 1),
        row("a", "success", datetime(2025, 10, 26, 22, 30, tzinfo=UTC), 1),
    ]
    daily = summarise(rows, start=start, end=end, zone=zone, zone_name="Europe/Berlin")["daily"]
    assert {d["date"]: d["success"] for d in daily} == {
        "2025-10-24": 0,
        "2025-10-25": 0,
        "2025-10-26": 2,
        "2025-10-27": 0,
    }


@pytest.mark.parametrize(
    ("query", "zone"),
    [
        ("", "UTC"),
        ("&tz=UTC", "UTC"),
        ("&tz=Europe/Berlin", "Europe/Berlin"),
        ("&tz=America/Argentina/Buenos_Aires", "America/Argentina/Buenos_Aires"),
        ("&utc_offset=330", "UTC+05:30"),
        ("&utc_offset=-300", "UTC-05:00"),
        ("&utc_offset=%2B60", "UTC+01:00"),
        ("&utc_offset=0", "UTC"),
    ],
)
def test_metrics_endpoint_takes_a_time_zone(client: FlaskClient, query: str, zone: str) -> None:
    body = client.get(f"/api/delivery-metrics?days=2{query}").json
    assert body is not None
    assert body["window"]["time_zone"] == zone
    assert len(body["daily"]) in (2, 3)


def test_metrics_endpoint_buckets_in_the_zone_asked_for(client: FlaskClient) -> None:
    now = datetime.now(UTC)
    started = now.replace(hour=23, minute=30, second=0, microsecond=0) - timedelta(days=1)
    finished(client, "late", "late-1", "success", started, 60)
    utc = client.get("/api/delivery-metrics?days=3&project=late").json
    east = client.get("/api/delivery-metrics?days=3&project=late&utc_offset=120").json
    assert utc is not None
    assert east is not None
    in_utc = [d["date"] for d in utc["daily"] if d["success"]]
    in_east = [d["date"] for d in east["daily"] if d["success"]]
    assert in_utc == [started.date().isoformat()]
    assert in_east == [(started + timedelta(hours=2)).date().isoformat()]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("tz=Mars/Olympus_Mons", "tz"),
        ("tz=../../etc/passwd", "tz"),
        ("tz=/etc/localtime", "tz"),
        ("tz=Europe/Berlin%00", "tz"),
        ("tz=" + "A" * 300, "tz"),
        ("tz=Europe/" + "B" * 40, "tz"),
        ("utc_offset=900", "utc_offset"),
        ("utc_offset=-721", "utc_offset"),
        ("utc_offset=1.5", "utc_offset"),
        ("utc_offset=+-5", "utc_offset"),
        ("utc_offset=%EF%BC%91", "utc_offset"),
        ("utc_offset=60&tz=UTC", "utc_offset"),
    ],
)
def test_metrics_endpoint_refuses_a_bad_time_zone(
    client: FlaskClient, query: str, field: str
) -> None:
    response = client.get(f"/api/delivery-metrics?{query}")
    assert response.status_code == 400
    assert response.json is not None
    assert field in response.json["error"]["details"]
