"""``docs/frames.schema.json``: generated from the protocol's code, and the session keeps to it.

The end-to-end clients check every frame the hub sends them (``tests/e2e/wsclient.py``,
``tests/e2e/test_sse.py``); here the file is checked against its generator, every kind
of hub frame the session makes is checked without a socket, and the client side both
ways: the session accepts a client frame exactly when the schema describes it.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from app.ingest import decode_events
from broadcaster.codes import ErrorCode
from broadcaster.frames import JSON_INTEGERS, SSE_ONLY_CODES, frames_schema, render
from broadcaster.hub import Envelope
from broadcaster.limits import Limits
from broadcaster.session import (
    FRAME_NAMES,
    MAX_TYPE_ENTRIES,
    Session,
    Subscribe,
    error_frame,
    replay,
)
from ledger.errors import EventError
from ledger.events import EVENT_TYPES
from ledger.filters import TYPE_PATTERNS
from ledger.ids import make_event_id
from storage.store import History
from tests.conftest import FIXTURES, load_manifest
from tests.contract import FRAMES_PATH, check_frame, frame_validator

LIMITS = Limits(max_subscriptions=3, replay_max_events=500)
ROUTES = {
    "/webhooks/deployment": "deployment",
    "/webhook/deployment": "summary",
    "/webhook/step": "step",
    "/webhook/project-status": "project_status",
}


def test_the_file_is_what_the_code_generates() -> None:
    """Regenerate with ``python -m broadcaster.frames > docs/frames.schema.json``."""
    assert FRAMES_PATH.read_text(encoding="utf-8") == render()


def test_the_file_is_a_valid_2020_12_schema() -> None:
    schema = frames_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)


def test_every_error_code_is_described_once() -> None:
    defs = frames_schema()["$defs"]
    websocket = set(defs["error"]["properties"]["code"]["enum"])
    sse = set(defs["stream_end"]["properties"]["code"]["enum"])
    assert websocket.isdisjoint(sse)
    assert websocket | sse == {code.value for code in ErrorCode}
    assert sse == {code.value for code in SSE_ONLY_CODES}


def session() -> Session:
    return Session(LIMITS, version="1.2.3", connection_id="4211-17")


def captured_events() -> list[Any]:
    """The normalised events of every accepted captured body, with ids as the store gives."""
    events = []
    for entry in load_manifest():
        route = ROUTES.get(entry["path"].removeprefix("/project-dashboard").removeprefix("/api"))
        body = (FIXTURES / entry["file"]).read_bytes()
        with contextlib.suppress(EventError):  # the refused ones give no events
            events += decode_events(body, route or "deployment", max_depth=32, max_batch=1000)
    return [event.with_id(make_event_id(1795920951687, seq)) for seq, event in enumerate(events, 1)]


def test_every_frame_the_session_makes_is_described() -> None:
    hub = session()
    frames: list[Any] = [hub.welcome()]
    for text in (
        '{"type": "ping"}',
        '["heartbeat"]',
        '{"type": "subscribe_project", "project": "web", "types": ["log_entry"]}',
        '["subscribe:deployment", 16898765432]',
        '{"type": "subscribe_all", "types": ["deployment_started"]}',
        '{"type": "unsubscribe_project", "project": "web"}',
        '["unsubscribe_all"]',
        "not json",
        '{"no": "type"}',
        "[1, 2]",
        '{"type": "nope"}',
        '{"type": "subscribe_project", "project": ""}',
        '{"type": "unsubscribe_deployment", "deployment_id": "never"}',
    ):
        frames += hub.feed(text)
    frames += hub.feed(b"binary")
    events = captured_events()
    assert len(events) > 20
    for output in list(frames):
        if isinstance(output, Subscribe):
            frames += replay(output, History(events, recovered=False))
            frames.append(hub.failed(output, "store down"))
    for output in frames:
        if isinstance(output, Envelope):
            check_frame(orjson.loads(output.frame))
        elif isinstance(output, str):
            check_frame(json.loads(output))
    for code in SSE_ONLY_CODES:
        check_frame(json.loads(error_frame(code, "bye")), "sseFrame")
        with pytest.raises(AssertionError):
            check_frame(json.loads(error_frame(code, "bye")))


def test_a_replay_is_also_an_sse_stream() -> None:
    request = Subscribe(
        session().feed('{"type": "subscribe_deployment", "deployment_id": "1"}')[0].match,  # type: ignore[union-attr]
        None,
        10,
    )
    for output in replay(request, History(captured_events()[:3], recovered=True)):
        frame = orjson.loads(output.frame) if isinstance(output, Envelope) else json.loads(output)
        check_frame(frame, "sseFrame")


def accepts(frame: Any) -> bool:
    """Whether a fresh session takes ``frame``'s shape: no error, or one about state only."""
    outputs = session().feed(json.dumps(frame))
    errors = [json.loads(o) for o in outputs if isinstance(o, str) and '"type":"error"' in o]
    return all(e["code"] in ("not_subscribed", "too_many_subscriptions") for e in errors)


CLIENT_FRAMES: list[Any] = [
    {"type": "subscribe_project", "project": "P"},
    {"type": "subscribe:project", "project": "P", "since": "1795920951687-000000000042"},
    {"type": "subscribe_deployment", "deployment_id": 16898765432, "since": None},
    {"type": "subscribe_deployment", "deployment_id": "D", "types": ["log_entry"], "limit": 0},
    {"type": "subscribe_project", "project": "P", "types": []},
    {"type": "subscribe_project", "project": "P", "types": ["nope"]},
    {"type": "subscribe_project", "project": "P", "limit": -1},
    {"type": "subscribe_project", "project": "P", "limit": "5"},
    {"type": "subscribe_project", "project": "P", "since": 5},
    {"type": "subscribe_project", "project": "P", "since": "9" * 65},
    {"type": "subscribe_project", "project": "p" * 200},
    {"type": "subscribe_project", "project": "p" * 201},
    {"type": "subscribe_project", "project": ""},
    {"type": "subscribe_project", "project": True},
    {"type": "subscribe_project"},
    {"type": "subscribe_project", "deployment_id": "D"},
    {"type": "unsubscribe_deployment", "deployment_id": "D"},
    {"type": "unsubscribe:project", "project": "P", "ignored": 1},
    {"type": "subscribe_all"},
    {"type": "subscribe_all", "since": "1795920951687-000000000042", "limit": 5},
    {"type": "subscribe_all", "types": []},
    {"type": "unsubscribe_all", "project": "ignored"},
    ["subscribe_all"],
    ["subscribe_all", "anything", "after"],
    ["unsubscribe_all", 1],
    {"type": "ping"},
    {"type": "heartbeat", "anything": [1]},
    {"type": "pong"},
    {"type": 5},
    {"project": "P"},
    ["subscribe_project", "P"],
    ["subscribe:deployment", 16898765432],
    ["subscribe:deployment", 2**64 - 1],
    ["subscribe:deployment", 2**64],  # past what the hub's JSON parser reads
    {"type": "subscribe_deployment", "deployment_id": -(2**63) - 1},
    ["unsubscribe:project", "P"],
    ["subscribe_project"],
    ["subscribe_project", "P", "extra"],
    ["subscribe_project", None],
    ["ping"],
    ["heartbeat", {"socket.io": "payload"}],
    ["nope", "P"],
    [],
    [1, 2],
    "subscribe_project",
    None,
    42,
]


@pytest.mark.parametrize("frame", CLIENT_FRAMES, ids=[str(i) for i in range(len(CLIENT_FRAMES))])
def test_the_session_accepts_a_client_frame_exactly_when_the_schema_describes_it(
    frame: Any,
) -> None:
    assert frame_validator("clientFrame").is_valid(frame) is accepts(frame)


#: Integers stay within what the hub's JSON parser reads: past them any frame is
#: ``invalid_json``, wherever the number is (the corpus above has the bounds).
identifiers = (
    st.text(max_size=3)
    | st.just("p" * 201)
    | st.integers(*JSON_INTEGERS)
    | st.none()
    | st.booleans()
    | st.floats(allow_nan=False, allow_infinity=False).filter(
        lambda f: not f.is_integer()
    )  # 1.0 is a JSON Schema
    # integer but a float to the hub: the one shape the schema cannot tell apart
)
type_entries = st.sampled_from([*EVENT_TYPES, *TYPE_PATTERNS, "nope", "zzz_*"])
too_many_types = st.lists(
    st.just("step_*"), min_size=MAX_TYPE_ENTRIES + 1, max_size=MAX_TYPE_ENTRIES + 1
)
options = st.fixed_dictionaries(
    {},
    optional={
        "since": st.none() | st.text(max_size=3) | st.just("9" * 65) | st.integers(*JSON_INTEGERS),
        "types": st.lists(
            st.sampled_from([*EVENT_TYPES, *TYPE_PATTERNS, "nope", "zzz_*"]), max_size=3
        )
        | st.lists(st.just("step_*"), min_size=MAX_TYPE_ENTRIES + 1, max_size=MAX_TYPE_ENTRIES + 1)
        | st.text(),
        "limit": st.none() | st.integers(-2, LIMITS.replay_max_events) | st.text(max_size=2),
        "other": st.integers(*JSON_INTEGERS),
    },
)
names = st.sampled_from([*FRAME_NAMES, "pong", "nope"]) | st.integers(*JSON_INTEGERS)
object_frames = st.builds(
    lambda name, fields, target: {"type": name, **fields, **target},
    names,
    options,
    st.dictionaries(st.sampled_from(["project", "deployment_id"]), identifiers, max_size=2),
)
array_frames = st.lists(names | identifiers, max_size=3)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frame=object_frames | array_frames)
def test_any_client_frame_is_accepted_exactly_when_the_schema_describes_it(frame: Any) -> None:
    assert frame_validator("clientFrame").is_valid(frame) is accepts(frame)
