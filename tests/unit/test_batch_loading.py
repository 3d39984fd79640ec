"""Batches load each run of one schema with ``many=True`` yet answer exactly as item by item.

The contract under test: whatever the mix of typed, legacy and non-object
items, ``decode_events`` on a batch gives the events (or the 422 naming the
first failing index and its field messages) that loading each item alone
with ``load_one`` gives, stopping at the first failure.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError

import ledger.timestamps
from app.ingest import ROUTE_FORMATS, decode_events, load_one, schema_for
from app.legacy import LEGACY_DEPLOYMENT, PROJECT_STATUS, STEP_BODY, SUMMARY
from app.schemas import SCHEMAS, LogEntrySchema
from ledger.errors import Invalid
from ledger.events import Event

#: The clock while a test runs: 2025-11-29T09:08:00.261Z.
FROZEN_NS = 1_764_407_280_261_000_000
NOT_AN_OBJECT = ["An event must be a JSON object."]
MISSING = ["Missing data for required field."]


def typed(kind: Any, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "project": "web", "deployment_id": "42", **fields}


LOG = typed("log_entry", message="compiling", timestamp="2025-08-12T11:20:01.000Z")
LOG_NOW = typed("log_entry", message="部署中 \x1b[32mok\x1b[0m", level="WARN", step_name="b / c")
LOG_OLD_KEYS = {
    "type": "log_entry",
    "project": "web",
    "runId": "43",
    "step_logs": "from the old key",
    "event_id": "e-1",
}
STEP_STARTED = typed("step_started", step_name="build / compile", step_status="started")
STEP_COMPLETED = typed(
    "step_completed",
    step_name="build / compile",
    step_status="success",
    started_at="2025-08-12T11:20:05Z",
    completed_at="2025-08-12T11:20:19.500Z",
)
STEP_MANUAL = typed("step_manual", step_name="启动服务", step_status="retrying", duration=12)
DEPLOYMENT_STARTED = typed("deployment_started", branch="main", commit="abc123")
DEPLOYMENT_COMPLETED = typed(
    "deployment_completed", status="failed", duration="45", errorMessage="boom"
)
METRICS = typed("metrics_update", metrics={"steps_count": 3}, total_duration=12.5)
TEST_PING = {"type": "test", "message": "ping"}
LEGACY_RUNNING = {
    "project": "web",
    "status": "running",
    "duration": 0,
    "timestamp": "",
    "sourceRepo": "",
    "runId": "",
    "deployType": "static",
    "serverHost": "h",
    "logs": "",
    "errorMessage": "",
}
LEGACY_SUCCESS = {"project": "web", "status": "success", "duration": "12", "runId": "42"}
SUMMARY_BODY = {
    "project": "web",
    "commit_hash": "latest",
    "status": "success",
    "timestamp": "2025-08-16T07:40:00Z",
    "step_details": {"server_init": "success", "deploy_project": ""},
}
STEP_BODY_RUNNING = {"project": "web", "step_name": "deploy-project", "status": "running"}
STEP_BODY_DONE = {"project": "web", "step_name": "deploy", "step_status": "failed", "step_order": 2}
PROJECT_NOTE = {"project": "web", "status_type": "maintenance", "status": "on"}

#: Valid on the deployment route (LEGACY.md §1-§2): every typed event and the legacy body.
DEPLOYMENT_ITEMS = [
    LOG,
    LOG_NOW,
    LOG_OLD_KEYS,
    STEP_STARTED,
    STEP_COMPLETED,
    STEP_MANUAL,
    DEPLOYMENT_STARTED,
    DEPLOYMENT_COMPLETED,
    METRICS,
    TEST_PING,
    LEGACY_RUNNING,
    LEGACY_SUCCESS,
]
#: Valid items per route.
VALID: dict[str, list[Any]] = {
    "deployment": DEPLOYMENT_ITEMS,
    "summary": [SUMMARY_BODY, {**SUMMARY_BODY, "status": "running", "commit_hash": "a1"}],
    "step": [STEP_BODY_RUNNING, STEP_BODY_DONE],
    "project_status": [PROJECT_NOTE, {"project": "api", "status_type": "note"}],
}
#: Invalid on every route, or on some: each fails in a different place of loading.
INVALID: list[Any] = [
    5,
    [1, 2],
    None,
    "text",
    True,
    {},
    typed("nope", message="x"),
    typed(7, message="x"),
    {**LOG, "level": "loud"},
    typed("log_entry"),
    {**LOG, "project": "", "deployment_id": ""},
    {**LOG, "timestamp": "yesterday"},
    typed("deployment_completed"),
    typed("deployment_completed", status="exploded"),
    typed("metrics_update", metrics={}),
    typed("step_completed", step_status="success"),
    {"status": "success", "duration": 3},
    {**LEGACY_SUCCESS, "duration": "abc"},
    {**SUMMARY_BODY, "step_details": {"server_init": "maybe"}},
    {**STEP_BODY_RUNNING, "step_order": 1.5},
    {"project": "web"},
]


@pytest.fixture(autouse=True)
def _frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Items without a timestamp get the current millisecond; fixed, events compare whole."""
    monkeypatch.setattr(ledger.timestamps, "time", SimpleNamespace(time_ns=lambda: FROZEN_NS))


def decode(items: list[Any], route: str = "deployment") -> list[Event]:
    body = orjson.dumps({"events": items})
    return decode_events(body, route, max_depth=32, max_batch=1000)


def load_alone(items: list[Any], route: str) -> list[Event] | Invalid:
    """The answer before runs were loaded together: item by item, stopping at the first failure."""
    events = []
    for index, item in enumerate(orjson.loads(orjson.dumps(items))):
        try:
            events.append(load_one(item, route))
        except ValidationError as exc:
            return Invalid(
                f"event {index} of the batch is invalid; nothing was stored",
                {"index": index, "events": {str(index): exc.messages}},
            )
    return events


def answer(items: list[Any], route: str) -> list[Event] | Invalid:
    try:
        return decode(items, route)
    except Invalid as error:
        return error


def assert_same_answer(items: list[Any], route: str) -> None:
    got, expected = answer(items, route), load_alone(items, route)
    if isinstance(expected, Invalid):
        assert isinstance(got, Invalid), f"batch loaded, alone item {expected.message}"
        assert (got.message, got.details) == (expected.message, expected.details)
    else:
        assert isinstance(got, list), f"batch failed: {got!r}"
        assert [event.to_dict() for event in got] == [event.to_dict() for event in expected]
        assert got == expected  # dedup_key and join too: they steer storing


def batch_error(items: list[Any], route: str = "deployment") -> Invalid:
    with pytest.raises(Invalid) as info:
        decode(items, route)
    return info.value


def test_a_mixed_batch_of_every_typed_and_legacy_body_loads_in_order() -> None:
    items = [LOG, LOG, STEP_STARTED, LOG_NOW, LOG_OLD_KEYS, *DEPLOYMENT_ITEMS, LEGACY_RUNNING]
    events = decode(items)
    assert [event.type for event in events] == [
        "log_entry",
        "log_entry",
        "step_started",
        "log_entry",
        "log_entry",
        "log_entry",
        "log_entry",
        "log_entry",
        "step_started",
        "step_completed",
        "step_started",  # step_manual "retrying" is a (re)start
        "deployment_started",
        "deployment_completed",
        "metrics_update",
        "test",
        "deployment_started",
        "deployment_completed",
        "deployment_started",
    ]
    assert_same_answer(items, "deployment")


def test_a_run_of_log_lines_keeps_each_line_its_own_fields() -> None:
    events = decode([LOG, LOG_NOW, LOG_OLD_KEYS])
    assert [event.timestamp for event in events] == [
        "2025-08-12T11:20:01.000Z",
        "2025-11-29T09:08:00.261Z",
        "2025-11-29T09:08:00.261Z",
    ]
    assert [event.payload["level"] for event in events] == ["info", "warning", "info"]
    assert [(event.payload["job"], event.payload["step"]) for event in events][1] == ("b", "c")
    assert events[2].payload["logs"] == "from the old key"
    assert events[2].deployment_id == "43"
    assert [event.dedup_key for event in events] == [None, None, "e-1"]
    assert events[0].payload is not events[1].payload
    assert events[0].payload["extra"] is not events[1].payload["extra"]


def test_legacy_bodies_in_a_batch_keep_their_join_policies() -> None:
    events = decode([LEGACY_RUNNING, LEGACY_RUNNING, LEGACY_SUCCESS, LOG])
    assert [event.join for event in events] == ["new", "new", None, None]
    assert [event.deployment_id for event in events] == [None, None, "42", "42"]
    assert_same_answer([LEGACY_RUNNING, LEGACY_RUNNING, LEGACY_SUCCESS, LOG], "deployment")


@pytest.mark.parametrize(
    ("items", "index", "field"),
    [
        ([{**LOG, "level": "loud"}, LOG, LOG, LOG], 0, "level"),
        ([LOG, LOG, {**LOG, "level": "loud"}, LOG, LOG], 2, "level"),
        ([LOG, LOG, LOG, {**LOG, "level": "loud"}], 3, "level"),
        ([STEP_STARTED, LOG, LOG, {**LOG, "level": "loud"}], 3, "level"),
        ([LEGACY_RUNNING, LEGACY_RUNNING, {**LEGACY_SUCCESS, "duration": "abc"}], 2, "duration"),
    ],
    ids=["first", "middle-of-run", "last", "last-after-other-schema", "legacy-run"],
)
def test_the_invalid_item_of_a_run_is_named_with_its_field_messages(
    items: list[Any], index: int, field: str
) -> None:
    error = batch_error(items)
    assert isinstance(error, Invalid)
    assert error.message == f"event {index} of the batch is invalid; nothing was stored"
    assert error.details["index"] == index
    assert list(error.details["events"]) == [str(index)]
    assert list(error.details["events"][str(index)]) == [field]
    assert_same_answer(items, "deployment")


def test_of_two_invalid_items_the_first_is_named() -> None:
    """Marshmallow reports both; the 422 names the earlier one only, with its own messages."""
    items = [LOG, typed("log_entry"), LOG, {**LOG, "level": "loud"}, LOG]
    error = batch_error(items)
    assert error.details == {"index": 1, "events": {"1": {"message": MISSING}}}
    reversed_items = [LOG, {**LOG, "level": "loud"}, LOG, typed("log_entry"), LOG]
    assert batch_error(reversed_items).details == {
        "index": 1,
        "events": {"1": {"level": ["Unknown level; allowed: debug, info, warning, error."]}},
    }


def test_an_invalid_item_in_an_earlier_run_wins_over_one_in_a_later_run() -> None:
    items = [LOG, typed("deployment_completed", status="exploded"), LOG, {**LOG, "level": "x"}]
    error = batch_error(items)
    assert error.details["index"] == 1
    assert list(error.details["events"]["1"]) == ["status"]


def test_an_unknown_type_inside_a_run_names_the_allowed_types() -> None:
    items = [LOG, LOG, typed("log_entyr", message="typo"), LOG, LOG]
    error = batch_error(items)
    allowed = ", ".join(sorted(SCHEMAS))
    assert error.details == {
        "index": 2,
        "events": {"2": {"type": [f"Unknown event type 'log_entyr'; allowed: {allowed}."]}},
    }
    assert_same_answer(items, "deployment")


def test_a_type_that_is_not_a_string_inside_a_run_is_an_unknown_type() -> None:
    error = batch_error([LOG, {**LOG, "type": ["log_entry"]}, LOG])
    assert error.details["index"] == 1
    assert error.details["events"]["1"]["type"][0].startswith(
        "Unknown event type \"['log_entry']\""
    )


@pytest.mark.parametrize("item", [5, [1, 2], None, "text", True, 1.5], ids=repr)
@pytest.mark.parametrize("index", [0, 2, 4])
def test_an_item_that_is_not_an_object_is_named_on_the_deployment_route(
    item: Any, index: int
) -> None:
    items: list[Any] = [LOG, LOG, LOG, LOG]
    items.insert(index, item)
    error = batch_error(items)
    assert error.message == f"event {index} of the batch is invalid; nothing was stored"
    assert error.details == {"index": index, "events": {str(index): {"_schema": NOT_AN_OBJECT}}}


@pytest.mark.parametrize("route", ["summary", "step", "project_status"])
@pytest.mark.parametrize("item", [5, [1, 2], None, "text"], ids=repr)
def test_an_item_that_is_not_an_object_inside_a_run_of_a_flat_route_is_named(
    route: str, item: Any
) -> None:
    """On these routes every item shares one schema, so the non-object sits inside the run."""
    valid = VALID[route][0]
    error = batch_error([valid, valid, item, valid], route)
    assert error.details == {"index": 2, "events": {"2": {"_schema": NOT_AN_OBJECT}}}
    assert_same_answer([valid, valid, item, valid], route)


@pytest.mark.parametrize("route", ROUTE_FORMATS)
def test_every_route_loads_a_batch_of_its_bodies_as_item_by_item(route: str) -> None:
    items = [*VALID[route], *VALID[route], VALID[route][0]]
    assert len(decode(items, route)) == len(items)
    assert_same_answer(items, route)


@pytest.mark.parametrize("route", ROUTE_FORMATS)
def test_every_route_names_the_invalid_item_in_the_middle_of_a_batch(route: str) -> None:
    items = [*VALID[route], {"project": ""}, *VALID[route]]
    error = batch_error(items, route)
    assert error.details["index"] == len(VALID[route])
    assert_same_answer(items, route)


@pytest.mark.parametrize("route", ["summary", "step", "project_status"])
def test_typed_bodies_on_a_flat_route_are_read_as_that_route_format(route: str) -> None:
    items = [VALID[route][0], LOG]
    assert_same_answer(items, route)
    assert batch_error(items, route).details["index"] == 1


def test_a_run_of_one_schema_is_loaded_by_one_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the change is for: a batch of log lines costs marshmallow's set-up at most once
    per run; valid runs load by the schema's plan (app/load_plan.py), without it."""
    calls: list[tuple[int, bool]] = []
    real_load = LogEntrySchema.load

    def counting_load(self: LogEntrySchema, data: Any, **kwargs: Any) -> Any:
        calls.append((len(data) if kwargs.get("many") else 1, bool(kwargs.get("many"))))
        return real_load(self, data, **kwargs)

    monkeypatch.setattr(LogEntrySchema, "load", counting_load)
    decode([LOG] * 5 + [DEPLOYMENT_COMPLETED] + [LOG_NOW] * 3)
    assert calls == []
    with pytest.raises(Invalid):
        decode([LOG] * 5 + [DEPLOYMENT_COMPLETED] + [LOG_NOW, {**LOG_NOW, "level": "bogus"}])
    assert calls == [(2, True), (1, False)]  # the run, then (item by item) the bad item


@pytest.mark.parametrize(
    ("data", "route", "schema"),
    [
        (SUMMARY_BODY, "summary", SUMMARY),
        (LOG, "summary", SUMMARY),
        (5, "summary", SUMMARY),
        (STEP_BODY_RUNNING, "step", STEP_BODY),
        (LOG, "step", STEP_BODY),
        (None, "step", STEP_BODY),
        (PROJECT_NOTE, "project_status", PROJECT_STATUS),
        ([1], "project_status", PROJECT_STATUS),
        (LEGACY_RUNNING, "deployment", LEGACY_DEPLOYMENT),
        ({}, "deployment", LEGACY_DEPLOYMENT),
        *((typed(kind), "deployment", SCHEMAS[kind]) for kind in sorted(SCHEMAS)),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_schema_for_picks_the_schema_of_the_route_and_body(
    data: Any, route: str, schema: object
) -> None:
    """Typed bodies get their schema fitted to their keys (see test_fitted_schemas.py)."""
    picked = schema_for(data, route)
    assert picked is schema or (route == "deployment" and type(picked) is type(schema))


@pytest.mark.parametrize(
    "data",
    [typed("nope"), typed(7), {"type": None}, 5, [LOG], None, "log_entry"],
    ids=repr,
)
def test_schema_for_has_no_schema_for_unknown_types_or_non_objects_on_deployment(
    data: Any,
) -> None:
    assert schema_for(data, "deployment") is None


@st.composite
def batches(draw: st.DrawFn) -> tuple[str, list[Any]]:
    """A route and a short batch of its valid bodies with zero to two invalid items spliced in."""
    route = draw(st.sampled_from(ROUTE_FORMATS))
    valid_pool = VALID[route] + (VALID["deployment"][:3] if route != "deployment" else [])
    items = draw(st.lists(st.sampled_from(valid_pool), min_size=0, max_size=7))
    for _ in range(draw(st.integers(0, 2))):
        position = draw(st.integers(0, len(items)))
        items.insert(position, draw(st.sampled_from(INVALID)))
    if not items:
        items = [draw(st.sampled_from(valid_pool))]
    return route, items


@settings(max_examples=150, deadline=None)
@given(batch=batches())
def test_any_batch_answers_exactly_as_its_items_loaded_alone(batch: tuple[str, list[Any]]) -> None:
    route, items = batch
    assert_same_answer(items, route)


def _examples() -> Iterator[tuple[str, list[Any]]]:
    """Every single invalid item at the start, middle and end of a run, on every route."""
    for route in ROUTE_FORMATS:
        run = [VALID[route][0]] * 3
        for item in INVALID:
            for index in (0, 1, 3):
                yield route, [*run[:index], item, *run[index:]]


def test_every_invalid_item_anywhere_in_a_run_answers_as_alone() -> None:
    for route, items in _examples():
        assert_same_answer(items, route)
