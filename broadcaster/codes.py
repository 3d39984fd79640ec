"""The numbers and words a WebSocket client can be told why something failed.

Two vocabularies, kept in one place so that the session, the route, the SSE
stream and docs/WEBSOCKET.md cannot drift apart:

* :class:`CloseCode`: RFC 6455 close codes the hub sends.  A close ends the
  connection; the client should reconnect (with ``since``) unless the code is
  a policy one.
* :class:`ErrorCode`: the ``code`` of an ``{"type": "error"}`` frame.  An
  error frame answers one bad client frame and the connection stays open,
  except the two that end an SSE stream (which has no close codes).
"""

from __future__ import annotations

from enum import IntEnum, StrEnum


class CloseCode(IntEnum):
    """Close codes (RFC 6455 section 7.4.1, 1013 from the IANA registry)."""

    #: The client closed, or the hub ended the session normally.
    NORMAL = 1000
    #: The worker is shutting down (deploy, restart); reconnect to another one.
    GOING_AWAY = 1001
    #: A frame that breaks RFC 6455 (bad opcode, reserved bits, unmasked...).
    PROTOCOL_ERROR = 1002
    #: A text frame that is not valid UTF-8 (answered by the protocol layer).
    INVALID_PAYLOAD = 1007
    #: The peer broke a rule: stopped answering pings, or floods frames it never reads.
    POLICY_VIOLATION = 1008
    #: A client frame over ``HUB_WS_MAX_FRAME_BYTES``.
    MESSAGE_TOO_BIG = 1009
    #: The hub failed; the connection cannot continue.
    INTERNAL_ERROR = 1011
    #: The client could not keep up with its events; reconnect with ``since``.
    TRY_AGAIN_LATER = 1013


class ErrorCode(StrEnum):
    """``code`` of an error frame; the connection stays open unless noted."""

    #: The text frame is not JSON.
    INVALID_JSON = "invalid_json"
    #: JSON, but neither an object with ``type`` nor an array ``[name, id]``.
    INVALID_FRAME = "invalid_frame"
    #: A binary frame; the protocol is JSON text frames only.
    BINARY_NOT_SUPPORTED = "binary_not_supported"
    #: ``type`` (or the array's name) is not a frame the hub knows.
    UNKNOWN_TYPE = "unknown_type"
    #: A field the frame needs is absent.
    MISSING_FIELD = "missing_field"
    #: A field has the wrong type or an impossible value.
    INVALID_FIELD = "invalid_field"
    #: Subscribing would exceed ``HUB_WS_MAX_SUBSCRIPTIONS``.
    TOO_MANY_SUBSCRIPTIONS = "too_many_subscriptions"
    #: Unsubscribing from something this connection is not subscribed to.
    NOT_SUBSCRIBED = "not_subscribed"
    #: The event store could not be read for the replay; try again.
    UNAVAILABLE = "unavailable"
    #: SSE only, the stream's last frame: the client could not keep up (WebSocket: close 1013).
    TOO_SLOW = "too_slow"
    #: SSE only, the stream's last frame: the worker is shutting down (WebSocket: close 1001).
    GOING_AWAY = "going_away"
