"""The hub's WebSocket protocol, with no socket in it (sans-I/O).

Every rule of the protocol lives here: the frame forms a client may send
(CONTRACT.md's underscore names, LEGACY.md §6's colon names, objects and
``[name, id]`` arrays), their validation and limits, what a subscription
replays, and the exact text of every frame the hub answers with.  Keeping the
socket out (as python-websockets' ``protocol.py`` does) lets all of that be
tested without a server; ``ws.py`` and ``sse.py`` only move text between a
:class:`Session`, the connection and the :class:`~broadcaster.hub.Hub`.

The caller feeds each client frame to :meth:`Session.feed` and gets back, in
order, frames to queue for the client (``str``) and requests for the hub
(:class:`Subscribe`, :class:`Unsubscribe`).  It carries out a
:class:`Subscribe` with :meth:`Hub.add_filter <broadcaster.hub.Hub.add_filter>`
and queues what :func:`replay` makes of the history, without yielding in
between, so the replay lands ahead of the subscription's live events.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from broadcaster.codes import ErrorCode
from broadcaster.hub import Envelope
from broadcaster.limits import Limits
from ledger.events import EVENT_TYPES, PROTOCOL
from ledger.filters import Filter, expand_types
from ledger.ids import parse_event_id
from storage.store import History

#: Longest project or deployment id a client may name (the read API's query bound).
MAX_ID_LENGTH = 200
#: Longest ``since``; real ids are ``<epoch>-<seq>``, far shorter.
MAX_SINCE_LENGTH = 64
#: Entries of a subscription's ``types``: more than there are types, fewer than a flood.
MAX_TYPE_ENTRIES = 32

#: Every frame name a client may send, mapped to its canonical (CONTRACT.md) name.
FRAME_NAMES: dict[str, str] = {
    "subscribe_project": "subscribe_project",
    "subscribe:project": "subscribe_project",
    "subscribe_deployment": "subscribe_deployment",
    "subscribe:deployment": "subscribe_deployment",
    "unsubscribe_project": "unsubscribe_project",
    "unsubscribe:project": "unsubscribe_project",
    "unsubscribe_deployment": "unsubscribe_deployment",
    "unsubscribe:deployment": "unsubscribe_deployment",
    "subscribe_all": "subscribe_all",
    "unsubscribe_all": "unsubscribe_all",
    "ping": "ping",
    "heartbeat": "heartbeat",
}

#: Canonical subscription frames: (subscribe or not, the field naming the target; ``None``:
#: every project, no target).
_TARGETS: dict[str, tuple[bool, str | None]] = {
    "subscribe_project": (True, "project"),
    "subscribe_deployment": (True, "deployment_id"),
    "subscribe_all": (True, None),
    "unsubscribe_project": (False, "project"),
    "unsubscribe_deployment": (False, "deployment_id"),
    "unsubscribe_all": (False, None),
}


def encode(frame: dict[str, Any]) -> str:
    """The text of one hub frame: compact JSON, UTF-8 kept as is."""
    return orjson.dumps(frame).decode()


def error_frame(code: ErrorCode, message: str) -> str:
    return encode({"type": "error", "code": code.value, "message": message})


PONG = encode({"type": "pong"})
HEARTBEAT_ACK = encode({"type": "heartbeat:ack"})


class FrameError(ValueError):
    """A client frame the hub refuses; becomes an error frame, the connection stays."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Subscribe:
    """Ask the hub for ``match``'s history after ``since`` (at most ``limit``) and its live events.

    ``replaces`` is the connection's earlier filter for the same project or
    deployment, to be removed first: subscribing again replaces.
    """

    match: Filter
    since: str | None
    limit: int
    replaces: Filter | None = None


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    """Stop sending ``match``'s events to this connection."""

    match: Filter


Output = str | Subscribe | Unsubscribe


def target_of(match: Filter) -> dict[str, str | bool]:
    """``{"project": P}``, ``{"deployment_id": D}`` or ``{"all": true}``, as frames name a
    subscription."""
    if match.project is not None:
        return {"project": match.project}
    if match.deployment_id is not None:
        return {"deployment_id": match.deployment_id}
    return {"all": True}


def make_filter(field: str | None, target: str, types: frozenset[str] | None = None) -> Filter:
    """The filter for ``field`` (``project`` or ``deployment_id``) equal to ``target``;
    every project's events when ``field`` is ``None``."""
    if field == "project":
        return Filter(project=target, types=types)
    if field == "deployment_id":
        return Filter(deployment_id=target, types=types)
    return Filter(types=types)


def parse_identifier(value: Any, field: str) -> str:
    """A project or deployment id; run ids sent as JSON numbers are taken as their digits."""
    if value is None:
        raise FrameError(ErrorCode.MISSING_FIELD, f"{field!r} is required")
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise FrameError(ErrorCode.INVALID_FIELD, f"{field!r} must be a string")
    text = str(value)
    if not text or len(text) > MAX_ID_LENGTH:
        raise FrameError(
            ErrorCode.INVALID_FIELD, f"{field!r} must be 1 to {MAX_ID_LENGTH} characters"
        )
    return text


def parse_since(value: Any) -> str | None:
    """The last event id a client saw; empty means none.  Unknown ids are the store's call."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > MAX_SINCE_LENGTH:
        raise FrameError(
            ErrorCode.INVALID_FIELD,
            f"'since' must be an event id of at most {MAX_SINCE_LENGTH} characters",
        )
    return value


def parse_types(value: Any) -> frozenset[str] | None:
    """The event types a subscription narrows to (patterns expanded); ``None`` for all."""
    if value is None:
        return None
    allowed = ", ".join(EVENT_TYPES)
    if not isinstance(value, list) or not value or len(value) > MAX_TYPE_ENTRIES:
        raise FrameError(
            ErrorCode.INVALID_FIELD,
            f"'types' must be a list of 1 to {MAX_TYPE_ENTRIES} event types or patterns "
            f"such as 'step_*': {allowed}",
        )
    try:
        return expand_types(value)
    except ValueError as exc:
        raise FrameError(ErrorCode.INVALID_FIELD, f"{exc}; known: {allowed}") from None


def _canonical(name: str) -> str:
    try:
        return FRAME_NAMES[name]
    except KeyError:
        raise FrameError(
            ErrorCode.UNKNOWN_TYPE,
            f"unknown frame type {name[:50]!r}; known: {', '.join(FRAME_NAMES)}",
        ) from None


def _unpack(value: Any) -> tuple[str, dict[str, Any]]:
    """The canonical frame name and its fields, from the object or the array form."""
    if isinstance(value, dict):
        name = value.get("type")
        if name is None:
            raise FrameError(ErrorCode.MISSING_FIELD, "a frame object needs a 'type'")
        if not isinstance(name, str):
            raise FrameError(ErrorCode.INVALID_FIELD, "'type' must be a string")
        return _canonical(name), value
    if isinstance(value, list):
        if not value or not isinstance(value[0], str):
            raise FrameError(
                ErrorCode.INVALID_FRAME, "an array frame starts with the frame's name: [name, id]"
            )
        name = _canonical(value[0])
        if name not in _TARGETS or _TARGETS[name][1] is None:  # nothing to name: extras ignored
            return name, {}
        if len(value) != 2:
            raise FrameError(ErrorCode.INVALID_FRAME, f"expected [{value[0]!r}, id]")
        return name, {str(_TARGETS[name][1]): value[1]}
    raise FrameError(
        ErrorCode.INVALID_FRAME, "a frame is a JSON object with a 'type', or an array [name, id]"
    )


class Session:
    """One connection's protocol state: its subscriptions, keyed by project or deployment."""

    __slots__ = ("connection_id", "limits", "subscriptions", "version")

    def __init__(self, limits: Limits, *, version: str, connection_id: str) -> None:
        self.limits = limits
        self.version = version
        self.connection_id = connection_id
        self.subscriptions: dict[str, Filter] = {}

    def welcome(self) -> str:
        """The first frame: who is answering and which limits apply."""
        limits = self.limits
        return encode(
            {
                "type": "welcome",
                "server": "deploy-dashboard-hub",
                "version": self.version,
                # The event shape: 2 leaves out null and default keys (ledger.events.PROTOCOL).
                "protocol": PROTOCOL,
                "connection_id": self.connection_id,
                "limits": {
                    "heartbeat_interval": limits.heartbeat_interval,
                    "max_subscriptions": limits.max_subscriptions,
                    "max_frame_bytes": limits.max_frame_bytes,
                    "send_queue": limits.send_queue,
                    "replay_project_limit": limits.replay_project_limit,
                    "replay_max_events": limits.replay_max_events,
                },
                # So that pages can tell a run stale as time passes (ledger/staleness.py).
                "stale_after": limits.stale_after,
            }
        )

    def feed(self, data: str | bytes) -> list[Output]:
        """Answer one client frame; a bad frame yields one error frame and nothing else."""
        try:
            return self._handle(data)
        except FrameError as error:
            return [error_frame(error.code, error.message)]

    def _handle(self, data: str | bytes) -> list[Output]:
        if not isinstance(data, str):
            raise FrameError(
                ErrorCode.BINARY_NOT_SUPPORTED,
                "binary frames are not supported; send JSON text frames",
            )
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise FrameError(ErrorCode.INVALID_JSON, f"frame is not JSON: {exc}") from None
        name, fields = _unpack(value)
        if name == "ping":
            return [PONG]
        if name == "heartbeat":
            return [HEARTBEAT_ACK]
        subscribing, field = _TARGETS[name]
        target = "" if field is None else parse_identifier(fields.get(field), field)
        if subscribing:
            return [self._subscribe(field, target, fields)]
        return self._unsubscribe(field, target)

    def _subscribe(self, field: str | None, target: str, fields: dict[str, Any]) -> Subscribe:
        since = parse_since(fields.get("since"))
        match = make_filter(field, target, parse_types(fields.get("types")))
        limit = fields.get("limit")
        if limit is None:
            limit = self.limits.replay_limit(match, since)
        elif (
            isinstance(limit, bool)
            or not isinstance(limit, int)
            or not 0 <= limit <= self.limits.replay_max_events
        ):
            raise FrameError(
                ErrorCode.INVALID_FIELD,
                f"'limit' must be a whole number from 0 to {self.limits.replay_max_events}",
            )
        previous = self.subscriptions.get(match.topic)
        if previous is None and len(self.subscriptions) >= self.limits.max_subscriptions:
            raise FrameError(
                ErrorCode.TOO_MANY_SUBSCRIPTIONS,
                f"at most {self.limits.max_subscriptions} subscriptions per "
                "connection; unsubscribe from one first",
            )
        self.subscriptions[match.topic] = match
        return Subscribe(match, since, limit, previous)

    def _unsubscribe(self, field: str | None, target: str) -> list[Output]:
        match = self.subscriptions.pop(make_filter(field, target).topic, None)
        if match is None:
            what = "every project" if field is None else f"{field} {target!r}"
            raise FrameError(ErrorCode.NOT_SUBSCRIBED, f"not subscribed to {what}")
        return [Unsubscribe(match), encode({"type": "unsubscribed", **target_of(match)})]

    def failed(self, request: Subscribe, reason: str) -> str:
        """``request`` could not be carried out: forget it and tell the client."""
        if self.subscriptions.get(request.match.topic) == request.match:
            del self.subscriptions[request.match.topic]
        return error_frame(ErrorCode.UNAVAILABLE, f"subscription failed, try again: {reason}")


def replay(request: Subscribe, history: History) -> list[Envelope | str]:
    """What to queue once ``request`` is registered: ``subscribed``, events, ``replay_complete``.

    Replayed events are queued as :class:`Envelope` like live ones, so the
    writer (and the SSE stream, which needs their ids) treats both alike.
    """
    target = target_of(request.match)
    announce: dict[str, Any] = {"type": "subscribed", **target}
    if request.match.types is not None:
        announce["types"] = sorted(request.match.types)
    announce.update(replayed=len(history.events), recovered=history.recovered)
    events = [Envelope(_seq(event.id), event) for event in history.events]
    last = history.events[-1].id if history.events else None
    done = encode(
        {"type": "replay_complete", **target, "replayed": len(events), "last_event_id": last}
    )
    return [encode(announce), *events, done]


def _seq(event_id: str) -> int:
    position = parse_event_id(event_id)
    return 0 if position is None else position[1]
