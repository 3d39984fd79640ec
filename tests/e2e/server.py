"""The real hub under real gunicorn (gevent workers) in a subprocess.

Modelled on werkzeug's ``DevServerClient``: start on a free port, wait until
``/healthz`` answers, log to a file the test can print, stop at the end.  It
can also be restarted (gracefully or with ``kill -9``) on the same port and
store, which is how the durability tests prove nothing accepted is lost.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.conftest import ROOT, TIMEOUT_FACTOR
from tests.contract import check_response


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class HubServer:
    """One gunicorn process tree serving the hub on ``self.url``."""

    def __init__(
        self,
        workdir: Path,
        env: dict[str, str] | None = None,
        workers: int = 1,
        app_spec: str = "server.app:create_app()",
        root: Path = ROOT,
    ) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.app_spec = app_spec
        self.root = root  # another checkout's code, for benchmarks comparing two commits
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "gunicorn.log"
        self.env = {
            "HUB_HOST": "127.0.0.1",
            "HUB_PORT": str(self.port),
            "HUB_WORKERS": str(workers),
            "HUB_STORE_URL": f"sqlite:///{workdir / 'hub.sqlite3'}",
            **(env or {}),
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> HubServer:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
        env.update(self.env)
        env["PYTHONPATH"] = str(self.root)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-c",
                "python:server.gunicorn_conf",
                self.app_spec,
            ],
            cwd=self.root,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout * TIMEOUT_FACTOR
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited early:\n{self.log()}")
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as response,
            ):
                if response.status == 200:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"gunicorn did not become ready:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the whole process group (master and workers) and wait for it."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)
        try:
            self.process.wait(timeout=20 * TIMEOUT_FACTOR)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None

    def kill(self) -> None:
        """``kill -9`` master and workers at once: no shutdown code runs."""
        self.stop(signal.SIGKILL)

    def restart(self, sig: int = signal.SIGTERM) -> None:
        self.stop(sig)
        self.start()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        """One HTTP request; returns ``(status, parsed JSON or text)``.

        The answer is held to the OpenAPI document first (``tests/contract.py``): a
        response the document does not describe fails the test.
        """
        req = urllib.request.Request(
            self.url + path, data=body, method=method, headers=headers or {}
        )
        try:
            with urllib.request.urlopen(req, timeout=30 * TIMEOUT_FACTOR) as response:
                status, raw, answered = response.status, response.read(), response.headers
        except urllib.error.HTTPError as error:
            status, raw, answered = error.code, error.read(), error.headers
        check_response(method, path, status, dict(answered.items()), raw)
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode(errors="replace")

    def post_json(
        self, path: str, payload: Any, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        return self.request(
            "POST",
            path,
            json.dumps(payload).encode(),
            {"Content-Type": "application/json", **(headers or {})},
        )


def checked(method: str, target: str, response: http.client.HTTPResponse, body: bytes) -> bytes:
    """``body``, once ``response`` to ``method`` ``target`` is held to the OpenAPI document.

    For tests that speak ``http.client`` themselves (keep-alive, streams, odd headers).
    """
    check_response(method, target, response.status, dict(response.getheaders()), body)
    return body
