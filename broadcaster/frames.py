"""JSON Schema of every frame of the live protocol: ``docs/frames.schema.json``.

Built from the protocol's own constants (the frame names and bounds of
``session.py``, the error codes of ``codes.py``, the event types) and the event
schema the read API shares (``app/responses.py``), so the document cannot
name a frame the session does not know.  Regenerate the file with
``python -m broadcaster.frames > docs/frames.schema.json``; the tests check that
the file is what this module builds, that every frame the hub sends in the
end-to-end tests matches it, and that the session accepts exactly the client
frames it describes.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from app.responses import EVENT, EVENT_ID, JsonSchema, closed, nullable
from broadcaster.codes import ErrorCode

# The session's table of subscription frames: (subscribes, field naming the target or None).
from broadcaster.session import _TARGETS as TARGETS
from broadcaster.session import FRAME_NAMES, MAX_ID_LENGTH, MAX_SINCE_LENGTH, MAX_TYPE_ENTRIES
from ledger.events import EVENT_TYPES, PROTOCOL
from ledger.filters import TYPE_PATTERNS

#: Error codes that only end an SSE stream; the WebSocket closes with a code instead.
SSE_ONLY_CODES = (ErrorCode.TOO_SLOW, ErrorCode.GOING_AWAY)

#: The integers the hub's JSON parser (orjson) reads; a frame with a number beyond them
#: anywhere is ``invalid_json``.
JSON_INTEGERS = (-(2**63), 2**64 - 1)


def _ref(name: str) -> JsonSchema:
    return {"$ref": f"#/$defs/{name}"}


def _spellings(canonical: str) -> list[str]:
    """Every name a client may send for one frame (underscore and colon forms)."""
    return [name for name, target in FRAME_NAMES.items() if target == canonical]


def _target_frame(
    kind: str, properties: dict[str, JsonSchema], description: str, **more: Any
) -> JsonSchema:
    """A hub frame about one subscription: ``project``, ``deployment_id`` or ``all`` (a
    subscription to every project), exactly one of them."""
    schema = closed(
        {
            "type": {"const": kind},
            "project": {"type": "string"},
            "deployment_id": {"type": "string"},
            "all": {"const": True},
            **properties,
            **more,
        },
        description,
    )
    schema["required"] = ["type", *properties]
    schema["oneOf"] = [
        {"required": ["project"]},
        {"required": ["deployment_id"]},
        {"required": ["all"]},
    ]
    return schema


def _error(codes: list[ErrorCode], description: str) -> JsonSchema:
    return closed(
        {
            "type": {"const": "error"},
            "code": {"enum": [code.value for code in codes]},
            "message": {"type": "string", "description": "For people; match on `code`."},
        },
        description,
    )


def _hub_frames() -> dict[str, JsonSchema]:
    count = {"type": "integer", "minimum": 0}
    return {
        "welcome": closed(
            {
                "type": {"const": "welcome"},
                "server": {"const": "deploy-dashboard-hub"},
                "version": {"type": "string"},
                "protocol": {
                    "const": PROTOCOL,
                    "description": "The event shape: 2 leaves out payload keys that are null "
                    "or at their default, and a null `deployment_id` (CONTRACT.md).",
                },
                "connection_id": {
                    "type": "string",
                    "description": "Also in the hub's log lines for this connection.",
                },
                "limits": closed(
                    {
                        "heartbeat_interval": {"type": "number", "minimum": 0},
                        "max_subscriptions": count,
                        "max_frame_bytes": count,
                        "send_queue": count,
                        "replay_project_limit": count,
                        "replay_max_events": count,
                    }
                ),
                "stale_after": {
                    "type": "number",
                    "minimum": 0,
                    "description": "`HUB_STALE_AFTER`: an open run with no news for this many "
                    "seconds is stale (0: never).",
                },
            },
            "First on every WebSocket connection: who answers and which limits apply.",
        ),
        "subscribed": _target_frame(
            "subscribed",
            {
                "replayed": {**count, "description": "How many `event` frames replay sends."},
                "recovered": {
                    "type": "boolean",
                    "description": "`false`: history does not reach back to `since`; reload "
                    "from the read API.",
                },
            },
            "A subscription is live; its replay follows, then `replay_complete`.",
            types={
                "type": "array",
                "items": {"enum": list(EVENT_TYPES)},
                "minItems": 1,
                "description": "Only when the subscription has them, sorted.",
            },
        ),
        "event": closed(
            {"type": {"const": "event"}, "event": _ref("normalised_event")},
            "One event, replayed or live.",
        ),
        "replay_complete": _target_frame(
            "replay_complete",
            {"replayed": count, "last_event_id": nullable(EVENT_ID)},
            "The replay of that subscription is done: what follows is live.",
        ),
        "unsubscribed": _target_frame("unsubscribed", {}, "The answer to an unsubscribe frame."),
        "pong": closed({"type": {"const": "pong"}}, "The answer to `ping`."),
        "heartbeat_ack": closed({"type": {"const": "heartbeat:ack"}}, "The answer to `heartbeat`."),
        "error": _error(
            [code for code in ErrorCode if code not in SSE_ONLY_CODES],
            "A bad client frame was refused; nothing changed and the connection stays open.",
        ),
        "stream_end": _error(
            list(SSE_ONLY_CODES),
            "SSE only, the stream's last frame: the client was too slow, or the worker is "
            "shutting down. Reconnect with `Last-Event-ID`.",
        ),
    }


def _client_frames() -> dict[str, JsonSchema]:
    identifier = {
        "anyOf": [
            {"type": "string", "minLength": 1, "maxLength": MAX_ID_LENGTH},
            {
                "type": "integer",
                "minimum": JSON_INTEGERS[0],
                "maximum": JSON_INTEGERS[1],
                "description": "A run id as a JSON number: taken as its digits.",
            },
        ]
    }
    named = [
        name for name, canonical in FRAME_NAMES.items() if TARGETS.get(canonical, ("", None))[1]
    ]
    bare = [name for name in FRAME_NAMES if name not in named]
    options = {
        "since": {
            "type": ["string", "null"],
            "maxLength": MAX_SINCE_LENGTH,
            "description": "The last event id seen: replay what came after it. "
            '`""` and `null` are the same as absent.',
        },
        "types": {
            "type": "array",
            "items": {"enum": [*EVENT_TYPES, *TYPE_PATTERNS]},
            "minItems": 1,
            "maxItems": MAX_TYPE_ENTRIES,
            "description": "Only these event types, in replay and live; `*` and `<family>_*` "
            "(`deployment_*`, `step_*`, ...) stand for every type, or every type of a family.",
        },
        "limit": {
            "type": ["integer", "null"],
            "minimum": 0,
            "description": "Replay at most this many events (at most HUB_REPLAY_MAX_EVENTS); 0 "
            "is live only.",
        },
    }
    frames: dict[str, JsonSchema] = {}
    for canonical, (subscribing, field) in TARGETS.items():
        properties: dict[str, JsonSchema] = {"type": {"enum": _spellings(canonical)}}
        if field is not None:
            properties[field] = _ref("identifier")
        if subscribing:
            properties.update(options)
        frames[canonical] = {
            "type": "object",
            "properties": properties,
            "required": ["type", *([field] if field else [])],
            "description": f"`{canonical}` as an object; keys the hub does not know are ignored.",
        }
    frames["ping"] = {
        "type": "object",
        "properties": {"type": {"enum": ["ping", "heartbeat"]}},
        "required": ["type"],
        "description": "Answered by `pong` (`heartbeat` by `heartbeat:ack`).",
    }
    frames["array"] = {
        "description": "The emit style of the earlier Socket.io clients: `[name, id]` for a "
        "frame that names a project or deployment, else `[name, ...]` (anything after the "
        'name is ignored: `["ping"]`, `["subscribe_all"]`).',
        "oneOf": [
            {
                "type": "array",
                "prefixItems": [{"enum": named}, _ref("identifier")],
                "minItems": 2,
                "maxItems": 2,
            },
            {
                "type": "array",
                "prefixItems": [{"enum": bare}],
                "minItems": 1,
            },
        ],
    }
    return {"identifier": identifier, **frames}


def frames_schema() -> dict[str, Any]:
    """The whole document, as ``docs/frames.schema.json`` holds it."""
    hub = _hub_frames()
    client = _client_frames()
    hub_to_client = [
        "welcome",
        "subscribed",
        "event",
        "replay_complete",
        "unsubscribed",
        "pong",
        "heartbeat_ack",
        "error",
    ]
    client_to_hub = [name for name in client if name != "identifier"]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Frames of the deployment dashboard hub's WebSocket and SSE stream",
        "description": "Generated by `python -m broadcaster.frames`; docs/WEBSOCKET.md tells "
        "the protocol. `#/$defs/serverFrame`: every frame the hub sends on a WebSocket; "
        "`#/$defs/sseFrame`: every `data:` line of `GET /api/stream`; `#/$defs/clientFrame`: "
        "every frame a client may send (its integers must lie from -2^63 to 2^64-1, as the "
        "hub's JSON parser reads them). The hub's frames list every key this version sends; "
        "clients should still ignore keys and frame types they do not know, since later "
        "versions may add some.",
        "anyOf": [_ref("serverFrame"), _ref("sseFrame"), _ref("clientFrame")],
        "$defs": {
            "serverFrame": {"oneOf": [_ref(name) for name in hub_to_client]},
            "sseFrame": {
                "oneOf": [
                    _ref(name) for name in ("subscribed", "event", "replay_complete", "stream_end")
                ]
            },
            "clientFrame": {"oneOf": [_ref(name) for name in client_to_hub]},
            **hub,
            **client,
            "normalised_event": EVENT,
        },
    }


def render() -> str:
    """The file's text: two-space JSON, UTF-8 as is, one final newline."""
    return json.dumps(frames_schema(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
