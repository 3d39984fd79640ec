"""From raw request bytes to validated events: JSON, batches, formats, limits.

Kept apart from the Flask view so the whole decision (which format, which
error, which index failed) is a plain function the unit tests drive with bytes.
Refusals are the neutral errors of ``ledger/errors.py``; the web layer gives
them their status.  Nothing here stores anything: a body that fails any check
leaves no trace.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import groupby
from typing import Any

import orjson
from marshmallow import ValidationError

from app.legacy import LEGACY_DEPLOYMENT, PROJECT_STATUS, STEP_BODY, SUMMARY, recover_template
from app.load_plan import load_many
from app.schemas import SCHEMAS, EventSchema, fitted, load_typed_event, load_with
from ledger.errors import Invalid, Malformed
from ledger.events import Event

#: Route name -> which body formats it accepts (LEGACY.md §1-§5).
ROUTE_FORMATS = ("deployment", "summary", "step", "project_status")


def parse_json(body: bytes, route: str) -> Any:
    """Parse the body; on the deployment route, recover ``notify-dashboard.sh``'s broken JSON."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if route == "deployment":
            recovered = recover_template(body)
            if recovered is not None:
                return recovered
        raise Malformed(f"body is not valid JSON: {exc}") from None


def json_depth(value: Any, limit: int) -> int:
    """Nesting depth of ``value`` (as orjson parses it), counting no further than ``limit + 1``.

    Level by level, keeping only the containers: a batch is mostly strings, and
    this runs on every request, so it must cost little next to the parse itself.
    """
    level = [value] if type(value) is dict or type(value) is list else []
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return depth
        below: list[Any] = []
        for item in level:
            below += [
                child
                for child in (item.values() if type(item) is dict else item)
                if type(child) is dict or type(child) is list
            ]
        level = below
    return depth


def schema_for(data: Any, route: str) -> EventSchema | None:
    """Which schema loads a body of ``route``: a typed event's own, fitted to its keys
    (:func:`~app.schemas.fitted`); ``None`` for an unknown type or what is not an object."""
    if route == "summary":
        return SUMMARY
    if route == "step":
        return STEP_BODY
    if route == "project_status":
        return PROJECT_STATUS
    if isinstance(data, dict) and "type" not in data:
        return LEGACY_DEPLOYMENT
    if isinstance(data, dict) and isinstance(data["type"], str):
        schema = SCHEMAS.get(data["type"])
        return None if schema is None else fitted(schema, data)
    return None


def load_one(data: Any, route: str) -> Event:
    """One body of ``route``'s formats as an Event; ``ValidationError`` when it is not."""
    schema = schema_for(data, route)
    if schema is not None:
        return load_with(schema, data)
    if isinstance(data, dict):
        return load_typed_event(data)  # an unknown type: its error names the ones allowed
    raise ValidationError({"_schema": ["An event must be a JSON object."]})  # as schemas say it


def load_batch(items: Sequence[Any], route: str) -> list[Event]:
    """Every event of a batch; on the first invalid one an error naming its index and fields.

    Consecutive items of one schema (a batch is mostly log lines) are loaded
    together: by the schema's load plan (``app/load_plan.py``), or by one
    marshmallow ``load(many=True)`` when an item is invalid.  A batch that fails
    is loaded again item by item: marshmallow's collection errors do not say
    which item failed first, and the error must.
    """
    events: list[Event] = []
    try:
        for schema, run in groupby(items, key=lambda item: schema_for(item, route)):
            if schema is None:  # not an object, or an unknown type: load_one says which
                events.extend(load_one(item, route) for item in run)
            else:
                events.extend(load_many(schema, list(run)))
    except ValidationError:
        return load_each(
            items,
            lambda item: load_one(item, route),
            lambda index, _: f"event {index} of the batch is invalid; nothing was stored",
        )
    return events


def load_each(
    items: Sequence[Any],
    load: Callable[[Any], Event],
    describe: Callable[[int, Any], str],
) -> list[Event]:
    """Load every item or none: the first invalid one is an error naming its index and fields."""
    events = []
    for index, item in enumerate(items):
        try:
            events.append(load(item))
        except ValidationError as exc:
            raise Invalid(
                describe(index, item), {"index": index, "events": {str(index): exc.messages}}
            ) from None
    return events


def decode_events(body: bytes, route: str, *, max_depth: int, max_batch: int) -> list[Event]:
    """All events of one request, or an error naming what is wrong (and where)."""
    data = parse_json(body, route)
    depth = json_depth(data, max_depth)
    if depth > max_depth:
        raise Invalid(f"JSON is nested deeper than {max_depth} levels", {"max_depth": max_depth})
    if isinstance(data, dict) and "type" not in data and isinstance(data.get("events"), list):
        items: list[Any] = data["events"]
        if not items:
            raise Invalid("batch has no events", {"events": ["Must not be empty."]})
        if len(items) > max_batch:
            raise Invalid(
                f"batch has {len(items)} events; at most {max_batch} are allowed",
                {"events": [f"At most {max_batch} events."]},
            )
        return load_batch(items, route)
    try:
        return [load_one(data, route)]
    except ValidationError as exc:
        messages = exc.messages if isinstance(exc.messages, dict) else {"_schema": exc.messages}
        raise Invalid("event is invalid; nothing was stored", messages) from None
