"""Follow a project's or a deployment's events over the hub's raw WebSocket, across disconnects.

The protocol is CONTRACT.md's "WebSocket": read the ``welcome``, send one
``subscribe_project``/``subscribe_deployment`` frame, then read
``subscribed``, events and ``replay_complete``.  When the connection drops (a
hub restart closes it with 1001, a network blip with nothing at all) the tail
reconnects with capped exponential backoff and subscribes again with
``since`` set to the last event it saw, which the hub answers with exactly
the events missed; ``recovered: false`` means history no longer reaches back
that far, and the user is told so.  Events are also skipped if their id is
not after the last one seen, so nothing is ever shown twice.
"""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import websocket
from websocket import ABNF

from hubctl.hub import CommandError, HubClient

#: Statuses of a refused handshake that a retry cannot fix.
_FATAL_HANDSHAKE = {400, 401, 403, 404, 405, 426}
#: Error codes of a refused subscription that a retry cannot fix.
_RETRYABLE_ERRORS = {"unavailable"}


class Disconnected(Exception):
    """The connection ended; the message says how (close code and reason when there was one)."""


class Tail:
    """One subscription kept alive across reconnects.

    ``on_event`` is called with each new event and returns ``True`` to stop;
    ``notice`` receives the human-readable story of disconnects and gaps.
    """

    def __init__(
        self,
        client: HubClient,
        *,
        project: str | None = None,
        deployment_id: str | None = None,
        since: str | None = None,
        types: Sequence[str] | None = None,
        on_event: Callable[[dict[str, Any]], bool],
        notice: Callable[[str], None],
        connect_timeout: float = 10.0,
        max_backoff: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if (project is None) == (deployment_id is None):
            raise ValueError("exactly one of project and deployment_id")
        self.client = client
        self.project = project
        self.deployment_id = deployment_id
        self.last_id = since or None
        self.types = list(types) if types else None
        self.on_event = on_event
        self.notice = notice
        self.connect_timeout = connect_timeout
        self.max_backoff = max_backoff
        self.sleep = sleep
        self.reconnects = 0

    def run(self) -> None:
        """Follow until ``on_event`` says stop; raise :class:`CommandError` on a fatal refusal."""
        backoff = 0.25
        while True:
            subscribed = False
            try:
                for _ in self._session():
                    subscribed = True
                return
            except (Disconnected, websocket.WebSocketException, OSError) as exc:
                self._fatal(exc)
                if subscribed:
                    backoff = 0.25
                backoff = min(backoff * 2, self.max_backoff)
                resume = f"resuming after {self.last_id}" if self.last_id else "starting over"
                self.notice(
                    f"connection to {self.client.ws_url()} lost ({_describe(exc)}); "
                    f"reconnecting in {backoff:.1f}s, {resume}"
                )
                self.reconnects += 1
                self.sleep(backoff)

    def _fatal(self, exc: Exception) -> None:
        status = getattr(exc, "status_code", None)
        if isinstance(exc, websocket.WebSocketBadStatusException) and status in _FATAL_HANDSHAKE:
            hint = (
                "; set DASHBOARD_READ_TOKEN to one of the hub's HUB_READ_TOKENS"
                if status == 401
                else ""
            )
            raise CommandError(
                f"the hub refused the WebSocket at {self.client.ws_url()} (HTTP {status}){hint}"
            ) from None

    def _subscribe_frame(self) -> dict[str, Any]:
        frame: dict[str, Any] = (
            {"type": "subscribe_project", "project": self.project}
            if self.project is not None
            else {"type": "subscribe_deployment", "deployment_id": self.deployment_id}
        )
        if self.last_id:
            frame["since"] = self.last_id
        if self.types:
            frame["types"] = self.types
        return frame

    def _session(self) -> Iterator[None]:
        """One connection; yields once the subscription is live, returns when told to stop."""
        headers = []
        if self.client.read_token:
            headers.append(f"Authorization: Bearer {self.client.read_token}")
        ws = websocket.create_connection(
            self.client.ws_url(),
            timeout=self.connect_timeout,
            header=headers,
            suppress_origin=True,
        )
        try:
            welcome = _receive(ws)
            if welcome.get("type") != "welcome":
                raise Disconnected(f"expected a welcome frame, got {str(welcome)[:100]}")
            interval = float((welcome.get("limits") or {}).get("heartbeat_interval") or 25)
            ws.settimeout(interval * 2.5 + self.connect_timeout)
            asked_since = self.last_id
            ws.send(json.dumps(self._subscribe_frame()))
            while True:
                frame = _receive(ws)
                kind = frame.get("type")
                if kind == "subscribed":
                    if asked_since and frame.get("recovered") is False:
                        self.notice(
                            f"history no longer reaches back to {asked_since}: events were "
                            "missed; showing what the hub still holds"
                        )
                    yield
                elif kind == "event":
                    event = frame.get("event") or {}
                    event_id = str(event.get("id") or "")
                    if self.last_id and event_id <= self.last_id:
                        continue
                    self.last_id = event_id or self.last_id
                    if self.on_event(event):
                        return
                elif kind == "error":
                    if frame.get("code") in _RETRYABLE_ERRORS:
                        raise Disconnected(f"hub: {frame.get('message')}")
                    raise CommandError(
                        f"the hub refused the subscription ({frame.get('code')}): "
                        f"{frame.get('message')}"
                    )
        finally:
            ws.close(timeout=1)


def _receive(ws: websocket.WebSocket) -> dict[str, Any]:
    opcode, frame = ws.recv_data_frame()
    if opcode == ABNF.OPCODE_CLOSE:
        data = frame.data or b""
        if len(data) >= 2:
            code = struct.unpack("!H", data[:2])[0]
            reason = data[2:].decode("utf-8", errors="replace")
            raise Disconnected(f"closed by the hub: {code} {reason}".strip())
        raise Disconnected("closed by the hub")
    try:
        value = json.loads(frame.data)
    except ValueError:
        raise Disconnected("the hub sent a frame that is not JSON") from None
    return value if isinstance(value, dict) else {"type": "unknown"}


def _describe(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) < 200 else text[:200] + "…"
