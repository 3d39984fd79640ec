"""A typed schema fitted to a body's keys loads exactly what the whole schema loads."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError

import app.schemas
from app.schemas import ALIASES, FITTED_MAX, SCHEMAS, EventSchema, fitted

FIXED_NOW = "2026-11-29T09:00:00.000Z"

#: Every key a typed body may carry: each schema's fields, the old spellings, and others.
KEYS = sorted(
    {name for schema in SCHEMAS.values() for name in schema.declared_fields}
    | set(ALIASES)
    | {"anything_else", "metrics_extra"}
)
#: Values that load, values that are refused, and the blanks senders use for "unknown".
VALUES = st.sampled_from(
    [
        "web",
        "build / compile",
        " deploy ",
        "",
        None,
        "success",
        "failed",
        "retrying",
        "nonsense-status",
        "2026-11-29T08:00:00Z",
        "2026-11-29T08:00:01.1234567+02:00",
        "not a time",
        3,
        "4.5",
        -1,
        True,
        "abc",
        "warn",
        "line one\nline two \x1b[31mred\x1b[0m",
        {"cpu": 1.5},
        ["a"],
        "x" * 300,
    ]
)


def load(schema: EventSchema, body: dict[str, Any]) -> tuple[str, Any]:
    try:
        event = schema.load(body)
    except ValidationError as error:
        return "error", error.messages
    return "event", event.to_dict()


@pytest.fixture(autouse=True)
def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bodies without a timestamp are stamped now: the same now for both loads."""
    monkeypatch.setattr(app.schemas, "now_timestamp", lambda: FIXED_NOW)


@settings(max_examples=400, deadline=None)
@given(
    kind=st.sampled_from(sorted(SCHEMAS)),
    body=st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=9),
    deployment=st.booleans(),
)
def test_a_fitted_schema_loads_what_the_whole_schema_loads(
    kind: str, body: dict[str, Any], deployment: bool
) -> None:
    """Same event, or the same error messages, for any keys and values a sender may send."""
    body = {**body, "type": kind}
    if deployment:
        body.setdefault("deployment_id", "d-1")
    whole = SCHEMAS[kind]
    assert load(fitted(whole, body), body) == load(whole, body)


@pytest.mark.parametrize(
    "body",
    [
        {"type": "step_completed", "project": "web", "deployment_id": "1", "step_name": "a / b"},
        {"type": "step_completed", "deployment_id": "1", "step": "b", "step_status": "failed"},
        {"type": "log_entry", "runId": "1", "project": "web", "logs": "x", "errorMessage": "e"},
        {"type": "log_entry", "deployment_id": "1", "message": "m", "level": "bogus"},
    ],
)
def test_old_spellings_and_renamed_keys_are_still_validated(body: dict[str, Any]) -> None:
    whole = SCHEMAS[body["type"]]
    assert load(fitted(whole, body), body) == load(whole, body)


def test_a_step_without_a_status_is_still_refused() -> None:
    """``status`` is not given, so the fitted copy skips it; the requirement still holds."""
    body = {"type": "step_completed", "deployment_id": "1", "step_name": "build"}
    copy = fitted(SCHEMAS["step_completed"], body)
    assert "status" not in copy.load_fields
    with pytest.raises(ValidationError) as raised:
        copy.load(body)
    assert raised.value.messages == {"status": ["Missing data for required field."]}


def test_one_copy_per_key_set_and_none_when_nothing_is_skipped() -> None:
    whole = SCHEMAS["log_entry"]
    body = {"type": "log_entry", "deployment_id": "1", "message": "m"}
    copy = fitted(whole, body)
    assert copy is not whole
    assert fitted(whole, {**body, "message": "other"}) is copy
    assert list(copy.load_fields) == ["type", "deployment_id", "message", "level"]
    everything = dict.fromkeys(whole.declared_fields, "x")
    assert fitted(whole, everything) is whole


def test_past_the_bound_bodies_load_with_the_whole_schema(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(app.schemas, "_FITTED", {})
    whole = SCHEMAS["log_entry"]
    for index in range(FITTED_MAX):
        fitted(whole, {"type": "log_entry", f"extra_{index}": 1})
    assert len(app.schemas._FITTED) == FITTED_MAX
    late = {"type": "log_entry", "deployment_id": "1", "message": "m", "one_more": 1}
    assert fitted(whole, late) is whole
    assert load(fitted(whole, late), late)[0] == "event"
