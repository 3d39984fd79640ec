"""A schema's load plan gives what marshmallow gives, or hands the body back to it."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from marshmallow import Schema, ValidationError, fields, validates, validates_schema

from app.legacy import LEGACY_DEPLOYMENT, PROJECT_STATUS, STEP_BODY, SUMMARY
from app.load_plan import GIVE_UP, LoadPlan, load, load_many, plan_for
from app.schemas import SCHEMAS, EventSchema, fitted
from ledger.events import Event
from tests.unit.test_fitted_schemas import KEYS, VALUES, fixed_clock  # noqa: F401 - a fixture

#: Every schema a body may be loaded with: the typed ones and the legacy formats'.
ALL_SCHEMAS = {**SCHEMAS, "legacy": LEGACY_DEPLOYMENT, "summary": SUMMARY}
ALL_SCHEMAS |= {"step": STEP_BODY, "project_status": PROJECT_STATUS}


def by_marshmallow(schema: Schema, body: Any) -> tuple[str, Any]:
    try:
        event = schema.load(body)
    except ValidationError as error:
        return "error", error.messages
    assert isinstance(event, Event)
    return "event", _shown(event)


def _shown(event: Event) -> bytes:
    """The event as it is stored and sent, key order included."""
    return orjson.dumps(event.to_dict())


@pytest.mark.parametrize("name", sorted(ALL_SCHEMAS))
def test_every_schema_of_the_hub_has_a_plan(name: str) -> None:
    assert plan_for(ALL_SCHEMAS[name]) is not None


@settings(max_examples=600, deadline=None)
@given(
    name=st.sampled_from(sorted(ALL_SCHEMAS)),
    body=st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=9),
    typed=st.booleans(),
    deployment=st.booleans(),
    fit=st.booleans(),
)
def test_the_plan_loads_what_marshmallow_loads_or_gives_up(
    name: str, body: dict[str, Any], typed: bool, deployment: bool, fit: bool
) -> None:
    schema = ALL_SCHEMAS[name]
    if typed and name in SCHEMAS:
        body = {**body, "type": name}
    if deployment:
        body.setdefault("deployment_id", "d-1")
    if fit and isinstance(schema, EventSchema) and name in SCHEMAS:
        schema = fitted(schema, body)
    expected = by_marshmallow(schema, body)
    plan = plan_for(schema)
    assert plan is not None
    planned = plan.load(body)
    if expected[0] == "error":
        assert planned is GIVE_UP
    elif planned is not GIVE_UP:
        assert ("event", _shown(planned)) == expected
    assert by_marshmallow(_Loader(schema), body) == expected


@settings(max_examples=200, deadline=None)
@given(
    bodies=st.lists(
        st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=6).map(
            lambda body: {"deployment_id": "d-1", "message": "m", **body, "type": "log_entry"}
        ),
        min_size=1,
        max_size=4,
    )
)
def test_a_run_of_a_batch_loads_as_marshmallow_loads_it(bodies: list[dict[str, Any]]) -> None:
    schema = SCHEMAS["log_entry"]
    try:
        expected: Any = [_shown(event) for event in schema.load(bodies, many=True)]
    except ValidationError as error:
        expected = error.messages
    try:
        got: Any = [_shown(event) for event in load_many(schema, bodies)]
    except ValidationError as error:
        got = error.messages
    assert got == expected


@pytest.mark.parametrize("body", [[1, 2], "text", None, 3])
def test_what_is_not_an_object_goes_to_marshmallow(body: Any) -> None:
    schema = SCHEMAS["log_entry"]
    plan = plan_for(schema)
    assert plan is not None
    assert plan.load(body) is GIVE_UP
    assert by_marshmallow(_Loader(schema), body) == by_marshmallow(schema, body)


class _WithFieldValidator(Schema):
    name = fields.String()

    @validates("name")
    def _check(self, value: str, **kwargs: Any) -> None:
        """A field validator: not modelled by plans."""


class _WithOriginal(Schema):
    name = fields.String()

    @validates_schema(pass_original=True)
    def _check(self, data: Any, original: Any, **kwargs: Any) -> None:
        """A validator of the original data: not modelled by plans."""


class _Nested(Schema):
    name = fields.String(attribute="a.b")


@pytest.mark.parametrize("schema", [_WithFieldValidator(), _WithOriginal(), _Nested()])
def test_a_schema_using_what_plans_do_not_model_has_none(schema: Schema) -> None:
    assert LoadPlan.of(schema) is None
    assert load(schema, {"name": "x"}) == schema.load({"name": "x"})


class _Loader:
    """``load`` dressed as a schema, so one helper reads both."""

    def __init__(self, schema: Schema) -> None:
        self.schema = schema

    def load(self, body: Any) -> Any:
        return load(self.schema, body)
