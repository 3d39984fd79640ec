"""Alert rules, payload shapes, deduplication that survives a restart, delivery with retries."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from alerts.delivery import Sender, payload_for
from alerts.rules import Alert, failure_alert, long_running_alert, p95, stalled_alerts
from alerts.runner import Alerter
from alerts.state import AlertState
from app.config import Settings
from app.ingest import decode_events
from broadcaster.hub import Hub
from ledger.events import Event
from ledger.ids import make_event_id
from ledger.timestamps import format_timestamp
from storage.sqlite_store import SqliteStore
from storage.store import Batch, Store
from tests.alerts_receiver import AlertReceiver

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ALERT = Alert(
    "failed",
    "web",
    "d-1",
    "Deployment failed: web d-1",
    {"branch": "main", "error": "exit 1", "run_url": None},
)


def ago(seconds: float) -> str:
    return format_timestamp(NOW - timedelta(seconds=seconds))


def event(kind: str, **payload: Any) -> Event:
    return Event(
        id=make_event_id(1, 1),
        type=kind,
        project="web",
        deployment_id="d-1",
        timestamp=ago(0),
        payload={"status": None, **payload},
    )


# -- payloads ----------------------------------------------------------------------------------


def test_each_kind_gets_its_documented_text_shape() -> None:
    text = "Deployment failed: web d-1\nbranch: main\nerror: exit 1"
    assert payload_for("slack", ALERT, "t") == {"text": text}
    assert payload_for("feishu", ALERT, "t") == {"msg_type": "text", "content": {"text": text}}
    assert payload_for("dingtalk", ALERT, "t") == {"msgtype": "text", "text": {"content": text}}
    generic = payload_for("webhook", ALERT, "t")
    assert generic["type"] == "deployment_alert"
    assert (generic["cause"], generic["project"], generic["deployment_id"]) == (
        "failed",
        "web",
        "d-1",
    )
    assert generic["text"] == text
    assert generic["sent_at"] == "t"


def test_text_is_bounded() -> None:
    long = Alert("failed", "web", "d", "s", {"error": "x" * 100000})
    assert len(payload_for("slack", long, "t")["text"]) <= 3000


# -- rules -------------------------------------------------------------------------------------


def test_a_failed_completion_raises_failed() -> None:
    alert = failure_alert(event("deployment_completed", status="failure", error="boom"))
    assert alert is not None
    assert alert.key == "failed:d-1"
    assert alert.details["error"] == "boom"


@pytest.mark.parametrize(
    ("kind", "status"),
    [
        ("deployment_completed", "success"),
        ("deployment_completed", "cancelled"),
        ("step_completed", "failure"),
        ("deployment_started", "running"),
    ],
)
def test_other_events_raise_nothing(kind: str, status: str) -> None:
    assert failure_alert(event(kind, status=status)) is None


def row(started_seconds_ago: float, **extra: Any) -> dict[str, Any]:
    return {
        "deployment_id": "d-1",
        "project": "web",
        "status": "running",
        "started_at": ago(started_seconds_ago),
        **extra,
    }


@pytest.mark.parametrize(
    ("age", "absolute", "factor", "project_p95", "raised"),
    [
        (601, 600, 0, None, True),
        (599, 600, 0, None, False),
        (301, 0, 2, 150, True),  # over 2 x p95
        (299, 0, 2, 150, False),
        (301, 600, 2, 150, True),  # the lower threshold wins
        (10_000, 0, 2, None, False),  # no history: the relative rule cannot apply
        (10_000, 0, 0, None, False),  # both off
    ],
)
def test_long_running_uses_the_lower_threshold(
    age: float, absolute: float, factor: float, project_p95: float | None, raised: bool
) -> None:
    alert = long_running_alert(row(age), NOW.timestamp(), absolute, factor, project_p95)
    assert (alert is not None) is raised
    if alert is not None:
        assert alert.key == "long_running:d-1"


def test_p95_needs_enough_history() -> None:
    assert p95([1.0, 2.0, 3.0]) is None
    assert p95([float(n) for n in range(1, 101)]) == 95.0
    assert p95([5.0] * 5) == 5.0


def test_a_stall_names_every_running_step() -> None:
    view = {
        "deployment_id": "d-1",
        "project": "web",
        "jobs": [
            {
                "name": "build",
                "steps": [
                    {"name": "compile", "status": "success"},
                    {"name": "test", "status": "running"},
                ],
            },
            {"name": "deploy", "steps": [{"name": "upload", "status": "running"}]},
        ],
    }
    alerts = stalled_alerts(view, 900)
    assert [a.key for a in alerts] == ["stalled:d-1:build / test", "stalled:d-1:deploy / upload"]
    assert "no news for 15.0 min" in alerts[0].summary


# -- state -------------------------------------------------------------------------------------


def test_an_alert_is_claimed_once_even_after_a_restart(tmp_path: Path) -> None:
    path = str(tmp_path / "alerts.sqlite3")
    state = AlertState(path)
    assert state.claim(ALERT, 1.0)
    assert not state.claim(ALERT, 2.0)
    state.close()
    reopened = AlertState(path)
    assert not reopened.claim(ALERT, 3.0)
    assert reopened.pending() == [ALERT]
    reopened.finish(ALERT, "sent")
    assert reopened.pending() == []
    reopened.close()


# -- delivery ----------------------------------------------------------------------------------


@pytest.fixture
def receiver() -> Iterator[AlertReceiver]:
    with AlertReceiver() as server:
        yield server


def sender_to(receiver: AlertReceiver, attempts: int = 4, **paths: str) -> Sender:
    return Sender(
        [(kind, receiver.url + path) for kind, path in paths.items()],
        attempts=attempts,
        backoff=0.001,
    )


def test_every_target_receives_its_shape(receiver: AlertReceiver) -> None:
    sender = sender_to(receiver, webhook="/w", slack="/s", feishu="/f", dingtalk="/d")
    assert sender.deliver(ALERT)
    assert receiver.bodies("/s") == [payload_for("slack", ALERT, "")]
    assert receiver.bodies("/f")[0]["msg_type"] == "text"
    assert receiver.bodies("/d")[0]["msgtype"] == "text"
    assert receiver.bodies("/w")[0]["cause"] == "failed"


def test_a_failing_target_is_retried_until_it_accepts(receiver: AlertReceiver) -> None:
    receiver.script["/s"] = [(500, b"down"), (503, b"down"), (429, b"slow")]
    assert sender_to(receiver, slack="/s").deliver(ALERT)
    assert len(receiver.bodies("/s")) == 4


def test_retries_are_bounded(receiver: AlertReceiver) -> None:
    receiver.script["/s"] = [(500, b"down")] * 10
    assert not sender_to(receiver, attempts=3, slack="/s").deliver(ALERT)
    assert len(receiver.bodies("/s")) == 3


@pytest.mark.parametrize(
    ("path", "kind", "answer"),
    [
        ("/s", "slack", (400, b"invalid_payload")),
        ("/f", "feishu", (200, b'{"code": 19021, "msg": "sign match fail"}')),
        ("/d", "dingtalk", (200, b'{"errcode": 310000, "errmsg": "keywords not in content"}')),
    ],
)
def test_a_refusal_is_not_retried(
    receiver: AlertReceiver, path: str, kind: str, answer: tuple[int, bytes]
) -> None:
    receiver.script[path] = [answer]
    sender = Sender([(kind, receiver.url + path)], attempts=4, backoff=0.001)
    assert not sender.deliver(ALERT)
    assert len(receiver.bodies(path)) == 1


def test_one_good_target_is_enough(receiver: AlertReceiver) -> None:
    receiver.script["/bad"] = [(404, b"")]
    sender = Sender(
        [("slack", receiver.url + "/bad"), ("webhook", receiver.url + "/good")],
        attempts=2,
        backoff=0.001,
    )
    assert sender.deliver(ALERT)


def test_an_unreachable_target_fails_after_its_attempts() -> None:
    sender = Sender([("webhook", "http://127.0.0.1:9/closed")], attempts=2, backoff=0.001)
    assert not sender.deliver(ALERT)


# -- the engine over a real store ---------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = NOW.timestamp()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(clock: Clock) -> Iterator[Store]:
    """An in-memory store whose receipt times follow the test's clock."""
    opened = SqliteStore(":memory:", clock=clock)
    yield opened
    opened.close()


def alerter(store: Store, tmp_path: Path, clock: Clock, **overrides: Any) -> Alerter:
    settings = Settings(
        store_url="memory://",
        alerts=True,
        alert_webhook_urls=("http://127.0.0.1:9/",),
        alert_state_path=str(tmp_path / "alerts.sqlite3"),
        **overrides,
    )
    engine = Alerter(settings, store, Hub(store), clock=clock)
    assert engine.take_lead()
    return engine


def queued(engine: Alerter) -> list[str]:
    """Keys of the queued alerts, each then marked sent as if delivered."""
    keys = []
    while engine.queue.qsize():
        alert = engine.queue.get_nowait()
        assert engine.state is not None
        engine.state.finish(alert, "sent")
        keys.append(alert.key)
    engine.in_flight.clear()
    return keys


def ingest(store: Store, *bodies: dict[str, Any]) -> None:
    for body in bodies:
        store.append(
            Batch(decode_events(orjson.dumps(body), "deployment", max_depth=32, max_batch=10))
        )


def test_long_running_and_stalled_deployments_are_alerted_once(
    store: Store, tmp_path: Path, clock: Clock
) -> None:
    engine = alerter(
        store, tmp_path, clock, alert_long_running_seconds=3600, alert_stalled_step_seconds=600
    )
    clock.now -= 700  # the old deployment was last heard of 700 s ago
    ingest(
        store,
        {
            "type": "deployment_started",
            "project": "web",
            "deployment_id": "old",
            "timestamp": ago(7200),
        },
        {
            "type": "step_started",
            "project": "web",
            "deployment_id": "old",
            "step_name": "deploy / upload",
            "timestamp": ago(7000),
        },
    )
    clock.now += 700
    ingest(
        store,
        {
            "type": "deployment_started",
            "project": "web",
            "deployment_id": "new",
            "timestamp": ago(60),
        },
    )
    engine.check()
    assert sorted(queued(engine)) == ["long_running:old", "stalled:old:deploy / upload"]
    engine.check()
    assert queued(engine) == []
    engine.stop()


def test_news_from_the_hub_postpones_a_stall(store: Store, tmp_path: Path, clock: Clock) -> None:
    """Any event of the deployment is news, a log line included."""
    engine = alerter(store, tmp_path, clock, alert_stalled_step_seconds=600)
    clock.now -= 3600
    step = {
        "type": "step_started",
        "project": "web",
        "deployment_id": "d",
        "step_name": "build",
        "timestamp": ago(3600),
    }
    ingest(store, step)
    clock.now += 3600
    ingest(store, {"type": "log_entry", "project": "web", "deployment_id": "d", "message": "go"})
    engine.check()
    assert queued(engine) == []
    clock.now += 601
    engine.check()
    assert queued(engine) == ["stalled:d:default / build"]
    engine.stop()


def test_relative_threshold_comes_from_the_projects_p95(
    store: Store, tmp_path: Path, clock: Clock
) -> None:
    engine = alerter(store, tmp_path, clock, alert_long_running_p95_factor=2.0)
    for n in range(6):
        ingest(
            store,
            {
                "type": "deployment_completed",
                "project": "web",
                "deployment_id": f"ok{n}",
                "status": "success",
                "duration": 100,
                "timestamp": ago(90000 - n),
            },
        )
    ingest(
        store,
        {
            "type": "deployment_started",
            "project": "web",
            "deployment_id": "slow",
            "timestamp": ago(250),
        },
        {
            "type": "deployment_started",
            "project": "web",
            "deployment_id": "fine",
            "timestamp": ago(150),
        },
    )
    engine.check()
    assert queued(engine) == ["long_running:slow"]
    engine.stop()


def test_failures_are_alerted_live_and_never_twice_across_a_restart(
    store: Store, tmp_path: Path, clock: Clock
) -> None:
    engine = alerter(store, tmp_path, clock)
    failed = event("deployment_completed", status="failure")
    engine.observe(failed)
    engine.observe(failed)
    assert engine.queue.qsize() == 1
    engine.stop()  # before it was sent
    again = alerter(store, tmp_path, clock)
    assert queued(again) == ["failed:d-1"]  # still pending, so queued again
    again.observe(failed)
    assert queued(again) == []
    again.stop()
    third = alerter(store, tmp_path, clock)
    third.observe(failed)
    assert queued(third) == []
    third.stop()


def test_recent_failures_missed_live_are_caught_up(
    store: Store, tmp_path: Path, clock: Clock
) -> None:
    engine = alerter(store, tmp_path, clock)
    ingest(
        store,
        {
            "type": "deployment_completed",
            "project": "web",
            "deployment_id": "recent",
            "status": "failure",
            "timestamp": ago(60),
        },
        {
            "type": "deployment_completed",
            "project": "web",
            "deployment_id": "ancient",
            "status": "failure",
            "timestamp": ago(86400),
        },
    )
    engine.check()
    assert queued(engine) == ["failed:recent"]
    engine.stop()


def test_only_one_process_holds_the_lead(store: Store, tmp_path: Path, clock: Clock) -> None:
    first = alerter(store, tmp_path, clock)
    settings = first.settings
    second = Alerter(settings, store, Hub(store), clock=clock)
    assert not second.take_lead()
    first.stop()
    assert second.take_lead()
    second.stop()


def test_sending_marks_the_alert_sent(
    store: Store, tmp_path: Path, receiver: AlertReceiver
) -> None:
    engine = alerter(store, tmp_path, Clock())
    engine.sender = sender_to(receiver, webhook="/w")
    engine.observe(event("deployment_completed", status="failure"))
    engine._send(engine.queue.get_nowait())
    assert engine.state is not None
    assert engine.state.states() == {"failed:d-1": "sent"}
    assert len(receiver.bodies("/w")) == 1
    engine.stop()


# -- the failing line in a failure alert --------------------------------------------------------


def test_a_failure_alert_carries_the_failing_line_and_its_link(
    store: Store, tmp_path: Path
) -> None:
    engine = alerter(
        store, tmp_path, Clock(), public_url="https://ci.example.com/project-dashboard/"
    )
    for deployment, error in (("d-0", "10.0.0.1:5432"), ("d-1", "10.0.0.2:5432")):
        ingest(
            store,
            {
                "events": [
                    {
                        "type": "log_entry",
                        "project": "web",
                        "deployment_id": deployment,
                        "step_name": "deploy / migrate",
                        "message": f"Error: connect ECONNREFUSED {error}",
                    },
                    {
                        "type": "step_completed",
                        "project": "web",
                        "deployment_id": deployment,
                        "step_name": "deploy / migrate",
                        "status": "failed",
                    },
                    {
                        "type": "deployment_completed",
                        "project": "web",
                        "deployment_id": deployment,
                        "status": "failure",
                        "error": "exit 1",
                    },
                ]
            },
        )
    alert = engine.explained(ALERT)
    line_id = store.failure("d-1")["line"]["id"]  # type: ignore[index]
    assert alert.details["failing_step"] == "deploy / migrate"
    assert alert.details["failing_line"] == "Error: connect ECONNREFUSED 10.0.0.2:5432"
    assert alert.details["line_url"] == (
        "https://ci.example.com/project-dashboard/#/deployments/d-1"
        f"?job=deploy&step=migrate&line={line_id}"
    )
    assert alert.details["seen_before"].startswith("1 time, first ")
    text = alert.text()
    assert "failed step: deploy / migrate" in text
    assert "failing line: Error: connect ECONNREFUSED 10.0.0.2:5432" in text
    assert f"log: {alert.details['line_url']}" in text
    assert alert.key == ALERT.key
    assert engine.explained(alert) is alert  # explained once
    engine.stop()


def test_an_alert_without_a_stored_failure_goes_out_as_it_is(store: Store, tmp_path: Path) -> None:
    engine = alerter(store, tmp_path, Clock())
    assert engine.explained(ALERT) is ALERT
    other = Alert("long_running", "web", "d-1", "slow", {})
    assert engine.explained(other) is other
    engine.stop()


def test_with_failure_links_to_the_deployment_when_no_line_explains_it() -> None:
    from alerts.rules import with_failure

    failure: Any = {
        "job": None,
        "step": None,
        "line": None,
        "message": "exit 1",
        "signature": "abc",
        "seen": {"count": 0, "first_seen": None, "last_seen": None, "deployments": []},
    }
    alert = with_failure(ALERT, failure)
    assert alert.details["failing_line"] == "exit 1"
    assert alert.details["line_url"] == "#/deployments/d-1"
    assert "failing_step" not in alert.details
    assert "seen_before" not in alert.details
    assert with_failure(ALERT, None) is ALERT
