"""A schema's load worked out once, so that a valid body skips marshmallow's per-call set-up.

For every body, ``Schema.load`` sets up an error store, wraps each field in a
getter and an error-catching call, walks its hook lists twice (pass-collection,
then per item) for each of pre-load, schema validation and post-load, and
builds validator chains: about half of the cost of loading a typical event,
the other half being the fields' own work.  A :class:`LoadPlan` is read off a
schema once (its load fields, their data keys and defaults, its hooks in
marshmallow's order) and then does, for one body, what ``load`` does on the
way to a result when nothing is wrong: the schema's own pre-load hooks, each
field's own ``_deserialize`` and validators, unknown keys included as
marshmallow includes them, the schema's validators and post-load hooks.

marshmallow stays the source of truth: the moment anything would be an error
(a field's, a validator's, a hook's, a required key missing, a ``null`` a
field does not allow), the plan gives up and the body is loaded again by
``Schema.load``, which then raises its own error; a schema with a feature the
plan does not model (hooks on collections or on the original data, field
validators, dotted attributes, unknown keys other than ``INCLUDE``) gets no
plan at all.  The hooks and fields the plan calls must therefore be free of
side effects, as the schemas here are.  ``tests/unit/test_load_plan.py`` holds
plan and marshmallow to the same results and errors for generated bodies.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from marshmallow import INCLUDE, Schema, ValidationError, missing
from marshmallow.decorators import POST_LOAD, PRE_LOAD, VALIDATES, VALIDATES_SCHEMA
from marshmallow.fields import Field

#: What :meth:`LoadPlan.load` returns when marshmallow must load the body itself.
GIVE_UP: Any = object()


class LoadPlan:
    """How ``schema`` loads one body when nothing is wrong with it; see the module docstring."""

    __slots__ = ("fields", "known", "options", "post_load", "pre_load", "validators")

    def __init__(self, schema: Schema) -> None:
        self.options: dict[str, Any] = {"partial": schema.partial, "unknown": schema.unknown}
        self.pre_load = _hooks(schema, PRE_LOAD)
        self.validators = _hooks(schema, VALIDATES_SCHEMA)
        self.post_load = _hooks(schema, POST_LOAD)
        #: (data key, result key, field) in the schema's order.
        self.fields: list[tuple[str, str, Field[Any]]] = []
        for name, field in schema.load_fields.items():
            key = field.attribute or name
            if "." in key or getattr(field, "pre_load", None) or getattr(field, "post_load", None):
                raise _Unplanned(name)  # a nested value, or a field's own load functions
            self.fields.append((field.data_key or name, key, field))
        self.known = {data_key for data_key, _, _ in self.fields}

    @classmethod
    def of(cls, schema: Schema) -> LoadPlan | None:
        """The plan of ``schema``, or ``None`` when it uses what a plan does not model."""
        if (
            schema.unknown != INCLUDE
            or schema.partial
            or schema.many
            or schema.dict_class is not dict
            or schema._hooks[VALIDATES]
        ):
            return None
        try:
            return cls(schema)
        except _Unplanned:
            return None

    def load(self, data: Any) -> Any:
        """What ``schema.load(data)`` returns, or :data:`GIVE_UP` if it might raise."""
        if type(data) is not dict:
            return GIVE_UP
        options = self.options
        try:
            for hook in self.pre_load:
                data = hook(data, many=False, **options)
            result: dict[str, Any] = {}
            for data_key, key, field in self.fields:
                raw = data.get(data_key, missing)
                if raw is missing:
                    if field.required:
                        return GIVE_UP
                    default = field.load_default
                    value = default() if callable(default) else default
                elif raw is None:
                    if not field.allow_none:
                        return GIVE_UP
                    value = None
                else:
                    value = field._deserialize(raw, data_key, data)
                    if field.validators:
                        field._validate(value)
                if value is not missing:
                    result[key] = value
            for key in set(data) - self.known:  # marshmallow's own order for unknown keys
                result[key] = data[key]
            for validator in self.validators:
                validator(result, many=False, **options)
            loaded: Any = result
            for hook in self.post_load:
                loaded = hook(loaded, many=False, **options)
        except ValidationError:
            return GIVE_UP
        return loaded


class _Unplanned(Exception):
    """A schema feature :class:`LoadPlan` does not model."""


def _hooks(schema: Schema, tag: str) -> list[Callable[..., Any]]:
    """The bound per-item hooks of ``tag``, in marshmallow's order (it sorts them by name)."""
    hooks = []
    for name, on_collection, options in schema._hooks[tag]:
        if on_collection or options.get("pass_original"):
            raise _Unplanned(name)
        hooks.append(getattr(schema, name))
    return hooks


#: Plans by schema; the schemas here live as long as the process, and are few (the typed
#: and legacy ones, and at most ``app.schemas.FITTED_MAX`` fitted copies).
_PLANS: dict[Schema, LoadPlan | None] = {}


def plan_for(schema: Schema) -> LoadPlan | None:
    """``schema``'s plan, read off it the first time it is asked for."""
    try:
        return _PLANS[schema]
    except KeyError:
        plan = _PLANS[schema] = LoadPlan.of(schema)
        return plan


def load(schema: Schema, data: Any) -> Any:
    """``schema.load(data)``, by its plan when it has one and the body is valid."""
    plan = plan_for(schema)
    if plan is not None:
        loaded = plan.load(data)
        if loaded is not GIVE_UP:
            return loaded
    return schema.load(data)


def load_many(schema: Schema, items: Sequence[Any]) -> list[Any]:
    """``schema.load(items, many=True)``: by the plan item by item while every item is
    valid; else marshmallow loads them all, as it would have (and raises its error)."""
    plan = plan_for(schema)
    if plan is not None:
        loaded = []
        for item in items:
            one = plan.load(item)
            if one is GIVE_UP:
                break
            loaded.append(one)
        else:
            return loaded
    result = schema.load(items, many=True)
    assert isinstance(result, list)  # noqa: S101 - many=True gives a list
    return result
