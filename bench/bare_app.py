"""The ingest ceiling: a Flask endpoint that only parses JSON and answers 200.

Run under the same gunicorn/gevent stack as the hub, it shows what the stack
itself costs, so the hub's figures can be read as a fraction of it.
"""

from __future__ import annotations

import orjson
from flask import Flask, Response, request


def create_app() -> Flask:
    app = Flask(__name__)

    @app.post("/api/webhooks/deployment")
    def ingest() -> Response:
        orjson.loads(request.get_data())
        return Response(b'{"success": true}', mimetype="application/json")

    @app.get("/healthz")
    def healthz() -> Response:
        return Response(b'{"status": "ok"}', mimetype="application/json")

    return app
