"""Stale runs: open, and no news for longer than HUB_STALE_AFTER."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ledger.staleness import is_stale, mark_stale, news_at, quiet_for

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC).timestamp()
HOUR = 3600.0


@pytest.mark.parametrize(
    ("status", "quiet", "after", "stale"),
    [
        ("running", HOUR + 1, HOUR, True),
        ("pending", HOUR + 1, HOUR, True),
        ("running", HOUR - 1, HOUR, False),
        ("success", 10 * HOUR, HOUR, False),  # only open runs go stale
        ("failure", 10 * HOUR, HOUR, False),
        ("running", 10 * HOUR, 0, False),  # 0 turns it off
    ],
)
def test_an_open_run_is_stale_after_its_quiet_time(
    status: str, quiet: float, after: float, stale: bool
) -> None:
    assert is_stale(status, news_at(NOW - quiet), NOW, after) is stale


def test_without_news_known_nothing_is_quiet() -> None:
    assert quiet_for(None, NOW) == 0.0
    assert not is_stale("running", None, NOW, HOUR)


def test_a_stale_deployment_marks_its_open_jobs_and_steps_only() -> None:
    view = {
        "status": "running",
        "last_news_at": news_at(NOW - 2 * HOUR),
        "jobs": [
            {
                "status": "running",
                "steps": [{"status": "success"}, {"status": "running"}],
            },
            {"status": "success", "steps": [{"status": "success"}]},
        ],
    }
    marked = mark_stale(view, NOW, HOUR)
    assert marked["stale"] is True
    assert [job["stale"] for job in marked["jobs"]] == [True, False]
    assert [step["stale"] for step in marked["jobs"][0]["steps"]] == [False, True]


def test_news_revives_it() -> None:
    row = {"status": "running", "last_news_at": news_at(NOW - 5)}
    assert mark_stale(row, NOW, HOUR)["stale"] is False
