"""The fan-out baseline: Flask-SocketIO emitting each webhook to a room, nothing stored.

This is the shape of the Socket.io server the hub replaces: a client emits
``subscribe_project`` to join the project's room, and every event posted to
the webhook is emitted to that room as it arrives.  It runs under the same
gunicorn/gevent stack as the hub (``async_mode="gevent"``, WebSocket
transport through simple-websocket), so bench/fanout.py can set the two side
by side.  It does no validation and keeps no history, which only flatters it.
"""

from __future__ import annotations

import itertools
from typing import Any

import orjson
from flask import Flask, Response, request
from flask_socketio import SocketIO, join_room


def create_app() -> Flask:
    app = Flask(__name__)
    socketio = SocketIO(app, async_mode="gevent", cors_allowed_origins="*")
    ids = itertools.count(1)

    @socketio.on("subscribe_project")
    def subscribe(project: str) -> bool:
        join_room(f"project:{project}")
        return True

    @app.post("/api/webhooks/deployment")
    def ingest() -> Response:
        body: Any = orjson.loads(request.get_data())
        events = body.get("events", [body])
        for event in events:
            socketio.emit(
                "event", {"id": str(next(ids)), **event}, to=f"project:{event['project']}"
            )
        return Response(b'{"success": true}', mimetype="application/json")

    @app.get("/healthz")
    def healthz() -> Response:
        return Response(b'{"status": "ok"}', mimetype="application/json")

    return app
