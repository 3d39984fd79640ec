"""Every sender format of LEGACY.md, table-driven, into the one normalised event."""

from __future__ import annotations

from typing import Any

import pytest
from marshmallow import ValidationError

from app.ingest import load_one
from ledger.events import PAYLOAD_KEYS, STATUS_WORDS

ANSI = "\x1b[31mred\x1b[0m 部署失败"


def typed(**fields: Any) -> dict[str, Any]:
    return {"project": "web", "deployment_id": "42", **fields}


@pytest.mark.parametrize(("word", "status"), sorted(STATUS_WORDS.items()))
def test_every_status_word_is_normalised(word: str, status: str) -> None:
    event = load_one(typed(type="deployment_completed", status=word), "deployment")
    assert event.payload["status"] == status
    assert event.payload["retry"] is (word == "retrying")


@pytest.mark.parametrize("word", ["SUCCESS", " Failed ", "Canceled"])
def test_status_words_ignore_case_and_spaces(word: str) -> None:
    event = load_one(typed(type="deployment_completed", status=word), "deployment")
    assert event.payload["status"] in {"success", "failure", "cancelled"}


def test_unknown_status_is_rejected_naming_the_allowed_words() -> None:
    with pytest.raises(ValidationError) as info:
        load_one(typed(type="deployment_completed", status="exploded"), "deployment")
    message = info.value.messages["status"][0]  # type: ignore[index]
    assert "exploded" in message
    assert "success" in message
    assert "cancelled" in message


@pytest.mark.parametrize(
    ("duration", "millis"),
    [(45, 45000), ("45", 45000), ("0.5", 500), (1.25, 1250), ("", None), (None, None)],
    ids=["int", "string", "fraction-string", "float", "empty", "null"],
)
def test_durations_in_seconds_accept_numbers_and_numeric_strings(
    duration: Any, millis: int | None
) -> None:
    body = typed(type="deployment_completed", status="success", duration=duration)
    assert load_one(body, "deployment").payload["duration_ms"] == millis


@pytest.mark.parametrize("duration", ["abc", -1, "-3", True, [1], "nan", "inf"], ids=repr)
def test_meaningless_durations_are_rejected(duration: Any) -> None:
    body = typed(type="deployment_completed", status="success", duration=duration)
    with pytest.raises(ValidationError) as info:
        load_one(body, "deployment")
    assert "duration" in info.value.messages  # type: ignore[operator]


@pytest.mark.parametrize(
    ("field", "body", "message"),
    [
        ("duration", {"duration": 2**70}, "Must be between 0 and 315360000 seconds."),
        ("duration", {"duration": 1e300}, "Must be between 0 and 315360000 seconds."),
        ("duration", {"duration": "1e300"}, "Must be between 0 and 315360000 seconds."),
        ("duration_ms", {"duration_ms": 2**70}, "Must be between 0 and 315360000000 milliseconds."),
        ("duration_ms", {"duration_ms": 1e300}, "Must be between 0 and 315360000000 milliseconds."),
        ("step_number", {"step_number": 1e300}, "Must be between 0 and 1000000."),
        ("step_number", {"step_number": 2**64}, "Must be between 0 and 1000000."),
    ],
    ids=[
        "seconds-2**70",
        "seconds-1e300",
        "seconds-string",
        "ms-2**70",
        "ms-1e300",
        "step-1e300",
        "step-2**64",
    ],
)
def test_numbers_beyond_their_range_are_refused_naming_field_and_range(
    field: str, body: dict[str, Any], message: str
) -> None:
    """A number that would not fit where it is stored never gets past validation."""
    event = typed(type="step_completed", step_name="build", step_status="success", **body)
    with pytest.raises(ValidationError) as info:
        load_one(event, "deployment")
    assert info.value.messages == {field: [message]}


def test_the_largest_duration_allowed_is_accepted() -> None:
    body = typed(type="deployment_completed", status="success", duration=315360000)
    assert load_one(body, "deployment").payload["duration_ms"] == 315360000000


def test_duration_is_computed_from_start_and_end_when_absent() -> None:
    body = typed(
        type="step_completed",
        step_name="build / compile",
        step_status="success",
        started_at="2025-08-12T11:20:05Z",
        completed_at="2025-08-12T11:20:19.500Z",
    )
    assert load_one(body, "deployment").payload["duration_ms"] == 14500


@pytest.mark.parametrize(
    ("step_name", "job", "step"),
    [
        ("deploy-project / deploy", "deploy-project", "deploy"),
        ("部署验证", "default", "部署验证"),
        ("a / b / c", "a", "b / c"),
        (" / orphan", "default", "/ orphan"),
    ],
)
def test_step_names_encode_the_job(step_name: str, job: str, step: str) -> None:
    body = typed(type="step_started", step_name=step_name, step_status="started")
    payload = load_one(body, "deployment").payload
    assert (payload["job"], payload["step"]) == (job, step)


def test_new_senders_may_name_job_and_step_separately() -> None:
    body = typed(type="step_completed", job="build", step="test", status="failed", duration_ms=900)
    payload = load_one(body, "deployment").payload
    assert (payload["job"], payload["step"], payload["status"]) == ("build", "test", "failure")
    assert payload["duration_ms"] == 900


@pytest.mark.parametrize(
    ("word", "kind"),
    [
        ("started", "step_started"),
        ("running", "step_started"),
        ("retrying", "step_started"),
        ("completed", "step_completed"),
        ("failed", "step_completed"),
    ],
)
def test_manual_steps_become_starts_or_ends_by_status(word: str, kind: str) -> None:
    body = typed(type="step_manual", step_name="启动服务", step_status=word)
    assert load_one(body, "deployment").type == kind


def test_a_start_with_duration_zero_has_no_duration() -> None:
    body = typed(type="step_started", step_name="x", step_status="started", duration=0)
    assert load_one(body, "deployment").payload["duration_ms"] is None


def test_unknown_keys_are_kept_under_extra() -> None:
    body = typed(type="deployment_completed", status="success", serverHost="h", whatever=[1, 2])
    extra = load_one(body, "deployment").payload["extra"]
    assert extra == {"serverHost": "h", "whatever": [1, 2]}


def test_camel_case_legacy_keys_are_renamed() -> None:
    body = typed(
        type="deployment_completed", status="failed", errorMessage="boom", sourceRepo="o/r"
    )
    payload = load_one(body, "deployment").payload
    assert (payload["error"], payload["repository"]) == ("boom", "o/r")


def test_every_payload_has_every_key() -> None:
    bodies = [
        typed(type="deployment_started"),
        typed(type="log_entry", message="hi"),
        typed(type="metrics_update", metrics={"cpu": 1}),
        {"type": "test"},
        {"project": "p", "status": "running"},
    ]
    for body in bodies:
        assert tuple(load_one(body, "deployment").payload) == PAYLOAD_KEYS


@pytest.mark.parametrize(
    "text", [ANSI, "第一行\n第二行", "emoji 📤 and \t tabs", "<script>x</script>"]
)
def test_text_is_kept_verbatim(text: str) -> None:
    event = load_one(typed(type="log_entry", message=text), "deployment")
    assert event.payload["message"] == text


def test_timestamps_are_normalised_to_utc_milliseconds() -> None:
    cases = {
        "2025-08-12T11:20:00.000Z": "2025-08-12T11:20:00.000Z",
        "2025-08-12T11:20:00Z": "2025-08-12T11:20:00.000Z",
        "2025-08-12T11:21:02.1234567Z": "2025-08-12T11:21:02.123Z",
        "2025-08-12T19:20:00+08:00": "2025-08-12T11:20:00.000Z",
        "2025-08-12T11:20:00": "2025-08-12T11:20:00.000Z",
    }
    for raw, normal in cases.items():
        event = load_one(typed(type="deployment_started", timestamp=raw), "deployment")
        assert event.timestamp == normal


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("0999-12-31T23:59:59.5Z", "0999-12-31T23:59:59.500Z"),
        ("0001-01-02T00:00:00Z", "0001-01-02T00:00:00.000Z"),
    ],
)
def test_years_before_1000_keep_four_digits(raw: str, normal: str) -> None:
    """Every time is ISO-8601 and sorts as a string: ``strftime("%Y")`` would give ``999``."""
    event = load_one(typed(type="deployment_started", timestamp=raw), "deployment")
    assert event.timestamp == normal


def test_a_missing_timestamp_is_the_receipt_time() -> None:
    event = load_one(typed(type="deployment_started", timestamp=""), "deployment")
    assert event.timestamp.endswith("Z")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "deployment_started", "project": "p"}, "deployment_id"),
        ({"type": "deployment_completed", "project": "p", "deployment_id": "1"}, "status"),
        ({"type": "step_started", "project": "p", "deployment_id": "1"}, "step_name"),
        ({"type": "log_entry", "project": "p", "deployment_id": "1"}, "message"),
        ({"type": "metrics_update", "project": "p", "deployment_id": "1"}, "metrics"),
        ({"type": "deployment_started", "deployment_id": "1", "project": 5.5j}, "project"),
        ({"type": "nope", "project": "p", "deployment_id": "1"}, "type"),
        ({"type": 7, "project": "p", "deployment_id": "1"}, "type"),
        (
            {
                "type": "log_entry",
                "project": "p",
                "deployment_id": "1",
                "message": "m",
                "level": "loud",
            },
            "level",
        ),
        ({"type": "deployment_started", "project": "p", "deployment_id": "a\nb"}, "deployment_id"),
        (
            {"type": "deployment_started", "project": "p", "deployment_id": "x" * 201},
            "deployment_id",
        ),
        (
            {
                "type": "deployment_started",
                "project": "p",
                "deployment_id": "1",
                "timestamp": "yesterday",
            },
            "timestamp",
        ),
        (
            {"type": "metrics_update", "project": "p", "deployment_id": "1", "metrics": [1]},
            "metrics",
        ),
        ({"project": "", "status": "running"}, "project"),
        ({"project": "p"}, "status"),
    ],
    ids=[
        "no-deployment",
        "no-status",
        "no-step",
        "no-message",
        "no-metrics",
        "project-type",
        "unknown-type",
        "type-not-string",
        "unknown-level",
        "control-char-id",
        "long-id",
        "bad-timestamp",
        "metrics-not-object",
        "legacy-no-project",
        "legacy-no-status",
    ],
)
def test_invalid_bodies_name_the_failing_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        load_one(body, "deployment")
    assert field in info.value.messages  # type: ignore[operator]


def test_unknown_project_with_a_deployment_id_is_accepted() -> None:
    event = load_one(typed(type="step_started", project="", step_name="s"), "deployment")
    assert event.project == ""
    assert event.deployment_id == "42"


def test_numeric_ids_become_strings() -> None:
    event = load_one(
        {"type": "deployment_started", "project": "p", "deployment_id": 16898765432}, "deployment"
    )
    assert event.deployment_id == "16898765432"


def test_metrics_keep_strings_and_take_top_level_numbers() -> None:
    body = typed(type="metrics_update", metrics={"status": "ok"}, cpu_percent=12.5)
    assert load_one(body, "deployment").payload["metrics"] == {"status": "ok", "cpu_percent": 12.5}


def test_test_events_need_only_a_type() -> None:
    event = load_one({"type": "test", "hello": "world"}, "deployment")
    assert event.type == "test"
    assert event.payload["extra"] == {"hello": "world"}


def test_rollback_names_where_it_came_from() -> None:
    body = typed(type="deployment_rollback", from_deployment_id="41", reason="bad build")
    payload = load_one(body, "deployment").payload
    assert (payload["from_deployment_id"], payload["reason"]) == ("41", "bad build")


def test_event_id_becomes_the_dedup_key() -> None:
    event = load_one(typed(type="deployment_started", event_id="abc"), "deployment")
    assert event.dedup_key == "abc"
    assert "event_id" not in event.payload["extra"]
