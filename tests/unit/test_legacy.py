"""LEGACY.md §2-§5: the flat bodies, their join policies and the broken-JSON template."""

from __future__ import annotations

from typing import Any

import pytest
from marshmallow import ValidationError

from app.ingest import load_one, parse_json
from app.legacy import SUMMARY_STEPS, recover_template
from ledger.errors import Malformed

NOTIFY_BODY = {
    "project": "axi-star-cloud",
    "status": "success",
    "duration": 45,
    "timestamp": "2025-08-12T11:20:00.000Z",
    "sourceRepo": "MoseLu/axi-star-cloud",
    "runId": "16898765432",
    "deployType": "backend",
    "serverHost": "redamancy.com.cn",
    "logs": "部署成功，耗时 45 秒",
    "errorMessage": "",
}


def notify_template(logs: str, error: str = "", run_id: str = "1") -> bytes:
    """The body notify-dashboard.sh builds: arguments pasted in unescaped."""
    return (
        "{\n"
        '  "project": "web",\n'
        '  "status": "failed",\n'
        '  "duration": 12,\n'
        '  "timestamp": "2025-08-12T11:20:00.000Z",\n'
        '  "sourceRepo": "o/web",\n'
        f'  "runId": "{run_id}",\n'
        '  "deployType": "static",\n'
        '  "serverHost": "h",\n'
        f'  "logs": "{logs}",\n'
        f'  "errorMessage": "{error}"\n'
        "}\n"
    ).encode()


@pytest.mark.parametrize(
    ("status", "kind", "join"),
    [
        ("running", "deployment_started", "new"),
        ("success", "deployment_completed", "latest_open"),
        ("failed", "deployment_completed", "latest_open"),
    ],
)
def test_legacy_status_decides_start_or_completion(status: str, kind: str, join: str) -> None:
    event = load_one({**NOTIFY_BODY, "status": status, "runId": ""}, "deployment")
    assert event.type == kind
    assert event.deployment_id is None
    assert event.join == join


def test_legacy_body_with_run_id_names_its_deployment() -> None:
    event = load_one(NOTIFY_BODY, "deployment")
    assert event.deployment_id == "16898765432"
    assert event.join is None
    assert event.payload["duration_ms"] == 45000
    assert event.payload["repository"] == "MoseLu/axi-star-cloud"
    assert event.payload["extra"] == {"deployType": "backend", "serverHost": "redamancy.com.cn"}
    assert event.payload["source_format"] == "legacy"


def test_legacy_empty_strings_mean_unknown() -> None:
    body = {**NOTIFY_BODY, "logs": "", "errorMessage": "", "sourceRepo": "", "duration": ""}
    payload = load_one(body, "deployment").payload
    assert payload["logs"] is payload["error"] is payload["repository"] is None
    assert payload["duration_ms"] is None


def test_legacy_error_message_becomes_the_error() -> None:
    body = {**NOTIFY_BODY, "status": "failed", "errorMessage": "部署失败"}
    assert load_one(body, "deployment").payload["error"] == "部署失败"


def test_summary_steps_come_in_the_documented_order_with_readable_names() -> None:
    details = {key: "success" for key in reversed(list(SUMMARY_STEPS))}
    details["test_website_static"] = ""
    details["custom_step"] = "failure"
    body = {"project": "p", "status": "success", "commit_hash": "latest", "step_details": details}
    event = load_one(body, "summary")
    steps = event.payload["steps"]
    assert [s["key"] for s in steps] == [*SUMMARY_STEPS, "custom_step"]
    assert steps[0]["step"] == "Validate artifact"
    assert steps[6]["status"] == "skipped"
    assert steps[8] == {
        "job": "default",
        "step": "Custom step",
        "key": "custom_step",
        "status": "failure",
        "step_number": 9,
    }
    assert event.payload["commit"] is None
    assert event.payload["extra"]["commit_hash"] == "latest"
    assert event.join == "latest_open"


def test_summary_rejects_an_unknown_step_result() -> None:
    body = {"project": "p", "status": "success", "step_details": {"deploy_project": "meh"}}
    with pytest.raises(ValidationError) as info:
        load_one(body, "summary")
    assert "step_details" in info.value.messages  # type: ignore[operator]


@pytest.mark.parametrize(
    ("body", "kind", "status"),
    [
        (
            {
                "project": "p",
                "step_name": "deploy-project",
                "status": "running",
                "step_duration": "0",
            },
            "step_started",
            "running",
        ),
        (
            {
                "project": "p",
                "step_name": "start-service",
                "status": "failed",
                "step_duration": "38",
                "error_message": "端口 8080 已被占用",
            },
            "step_completed",
            "failure",
        ),
        (
            {
                "project": "p",
                "step_name": "deploy-project",
                "step_status": "success",
                "step_order": 1,
                "logs": "部署日志内容...",
            },
            "step_completed",
            "success",
        ),
    ],
    ids=["running-from-status", "failed-with-error", "documented-minimal"],
)
def test_step_bodies_take_status_from_either_key(
    body: dict[str, Any], kind: str, status: str
) -> None:
    event = load_one(body, "step")
    assert (event.type, event.payload["status"]) == (kind, status)
    assert event.join == "latest_open"


def test_step_body_duration_string_is_seconds() -> None:
    body = {"project": "p", "step_name": "s", "status": "failed", "step_duration": "38"}
    assert load_one(body, "step").payload["duration_ms"] == 38000


def test_project_status_is_a_project_event() -> None:
    event = load_one(
        {"project": "p", "status_type": "maintenance", "status": "on"}, "project_status"
    )
    assert event.type == "project_status"
    assert event.deployment_id is None
    assert event.payload["extra"] == {"status_type": "maintenance", "status": "on"}


def test_project_status_needs_its_type() -> None:
    with pytest.raises(ValidationError):
        load_one({"project": "p"}, "project_status")


@pytest.mark.parametrize(
    "logs",
    ['he said "hi"', "C:\\path\\file", "line1\nline2", 'all "of\\ it"\n\t', "部署 \x1b[32mok"],
    ids=["quotes", "backslashes", "newline", "mixed", "ansi"],
)
def test_broken_notify_template_is_recovered_verbatim(logs: str) -> None:
    body = notify_template(logs, error='err "x"')
    data = parse_json(body, "deployment")
    assert data["logs"] == logs
    assert data["errorMessage"] == 'err "x"'
    event = load_one(data, "deployment")
    assert event.payload["repaired"] is True
    assert event.payload["logs"] == logs
    assert "_repaired" not in event.payload["extra"]


def test_valid_notify_template_is_plain_json() -> None:
    event = load_one(parse_json(notify_template("fine"), "deployment"), "deployment")
    assert event.payload["repaired"] is False


def test_other_invalid_json_is_not_recovered() -> None:
    assert recover_template(b'{"project": "p", "status": "ok"') is None
    with pytest.raises(Malformed):
        parse_json(b'{"project": "p", "logs": "a"b"}', "deployment")


def test_template_recovery_is_only_for_the_deployment_route() -> None:
    with pytest.raises(Malformed):
        parse_json(notify_template('a"b'), "summary")


@pytest.mark.parametrize(
    ("route", "body"),
    [
        ("deployment", {"status": "running"}),
        ("deployment", {"status": "success", "runId": "42"}),
        ("summary", {"status": "success", "runId": "42"}),
        ("step", {"step_name": "deploy", "status": "running"}),
        ("project_status", {"status_type": "maintenance"}),
    ],
)
def test_a_legacy_body_without_a_project_is_told_so_once(route: str, body: Any) -> None:
    """A deployment id does not stand in for the project in these formats; one message says so."""
    with pytest.raises(ValidationError) as raised:
        load_one(body, route)
    messages = raised.value.messages
    assert isinstance(messages, dict)
    assert messages["project"] == ["Missing data for required field."]
