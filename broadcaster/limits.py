"""The bounds every WebSocket and SSE client of a worker is held to."""

from __future__ import annotations

from dataclasses import dataclass

from app.config import Settings
from ledger.filters import Filter


@dataclass(frozen=True, slots=True)
class Limits:
    """Every bound of a worker's WebSocket and SSE clients, read once from the settings.

    The session enforces and announces (in its welcome frame) the protocol's
    bounds; the connection and the SSE stream enforce the transport's.
    """

    heartbeat_interval: float = 25.0
    max_subscriptions: int = 100
    max_frame_bytes: int = 65536
    send_queue: int = 2000
    replay_project_limit: int = 200
    replay_max_events: int = 10000
    send_timeout: float = 10.0
    max_connections: int = 10000
    #: Not a bound but announced beside them: when open runs count as stale.
    stale_after: float = 3600.0

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            heartbeat_interval=settings.ws_ping_interval,
            max_subscriptions=settings.ws_max_subscriptions,
            max_frame_bytes=settings.ws_max_frame_bytes,
            send_queue=settings.ws_send_queue,
            replay_project_limit=settings.replay_project_limit,
            replay_max_events=settings.replay_max_events,
            send_timeout=settings.ws_send_timeout,
            max_connections=settings.ws_max_connections,
            stale_after=settings.stale_after,
        )

    def replay_limit(self, match: Filter, since: str | None) -> int:
        """How much history a subscription replays unless the client asks for less.

        A deployment replays all of its events, and so does a resume from
        ``since`` (it wants exactly what it missed); a fresh project
        subscription, or one to every project, only the latest events.
        ``replay_max_events`` bounds all.
        """
        if since is None and match.deployment_id is None:  # a project, or every project
            return min(self.replay_project_limit, self.replay_max_events)
        return self.replay_max_events
