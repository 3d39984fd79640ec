"""A local HTTP server that takes alert webhooks, for the alert tests of every layer."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.conftest import TIMEOUT_FACTOR


class AlertReceiver:
    """Records every POST as ``(path, JSON body)``; answers from a script, then 200.

    ``script[path]`` is a list of ``(status, body)`` answers used up in order,
    so a test can make a target fail a few times before it accepts.
    """

    def __init__(self) -> None:
        self.received: list[tuple[str, Any]] = []
        self.script: dict[str, list[tuple[int, bytes]]] = {}
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length))
                with receiver._lock:
                    receiver.received.append((self.path, body))
                    answers = receiver.script.get(self.path) or []
                    status, reply = answers.pop(0) if answers else (200, b'{"ok": true}')
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> AlertReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def bodies(self, path: str) -> list[Any]:
        with self._lock:
            return [body for p, body in self.received if p == path]

    def wait_for(self, path: str, count: int, timeout: float = 20.0) -> list[Any]:
        """The bodies posted to ``path`` once there are at least ``count`` of them."""
        deadline = time.monotonic() + timeout * TIMEOUT_FACTOR
        while time.monotonic() < deadline:
            bodies = self.bodies(path)
            if len(bodies) >= count:
                return bodies
            time.sleep(0.05)
        raise AssertionError(
            f"{len(self.bodies(path))} alerts on {path}, wanted {count}: {self.received}"
        )
