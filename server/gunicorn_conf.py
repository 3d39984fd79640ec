"""gunicorn settings for the hub: gevent workers, bound from the HUB_* settings.

Start-up stops here, before any worker, when a setting is wrong: one line per
problem (``app.validation``).  It also sets up prometheus-client's
multiprocess mode, so that ``/metrics`` adds up every worker whichever one
answers: the workers write their samples to files in
``PROMETHEUS_MULTIPROC_DIR`` (a fresh temporary directory per start unless
the operator sets one, which is then emptied at start), and a dead worker's
live gauges are dropped.  The request log comes from the app (one line per
request, with its request id and without query-string tokens), so gunicorn's
own access log is off.
"""

import gc
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

#: Set when this file made the metrics directory, so that it is removed at exit.
_OWNED_METRICS_DIR = "_HUB_OWNED_METRICS_DIR"
# Before anything imports prometheus_client: it picks multiprocess storage at import time.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # read again on reload: keep the same one
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="hub-metrics-")
    os.environ[_OWNED_METRICS_DIR] = os.environ["PROMETHEUS_MULTIPROC_DIR"]

from gunicorn import util as gunicorn_util  # noqa: E402 - likewise

from app.config import ConfigError  # noqa: E402 - after the metrics directory is set
from app.errors import error_body  # noqa: E402 - likewise
from app.validation import load_settings  # noqa: E402 - likewise
from server.ports import bind_problem  # noqa: E402 - likewise

try:
    _settings = load_settings()
except ConfigError as error:  # one clear line per problem instead of a traceback, and no start
    sys.exit("\n".join(f"hub configuration error: {problem}" for problem in error.problems))


# What gunicorn refuses before the app sees a request (a request line over
# limit_request_line, too many or too long header fields, a malformed
# Content-Length or chunk size, an unsupported transfer coding) it answers
# with an HTML page; senders parse the contract's JSON error body, so that
# is what gunicorn writes here too.  Its limits stay gunicorn's defaults
# (docs/OPERATIONS.md, "Limits").
def write_json_error(sock: Any, status_int: int, reason: str, mesg: str) -> None:
    body = error_body(reason.lower().replace(" ", "_"), mesg or reason)
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    gunicorn_util.write_nonblock(sock, head.encode("latin-1") + body)


gunicorn_util.write_error = write_json_error

worker_class = "gevent"
bind = f"{_settings.host}:{_settings.port}"
workers = _settings.workers
worker_connections = _settings.worker_connections
# WebSocket and SSE connections live for hours; gevent workers heartbeat on their own.
timeout = 30
graceful_timeout = 10
keepalive = 5
accesslog = None
errorlog = "-"
loglevel = _settings.log_level.lower()
# One shared control socket path would make two hubs on one host fight over it.
control_socket_disable = True


def on_starting(server: Any) -> None:
    """Refuse an address the hub cannot listen on, then start the metrics from zero.

    The address is not checked when the listening socket is inherited (gunicorn's
    re-exec on USR2, systemd socket activation): it is then held on purpose.
    Metric files left by an earlier run would be added in, so they go.
    """
    inherited = "GUNICORN_FD" in os.environ or "LISTEN_FDS" in os.environ
    problem = None if inherited else bind_problem(_settings.host, _settings.port)
    if problem is not None:
        sys.exit(f"hub configuration error: {problem}")
    directory = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()


def post_fork(server: Any, worker: Any) -> None:
    """Give the new worker its metric files at once, every metric at zero.

    prometheus-client writes a worker's files at its first change of a
    metric, so until then a quiet worker, or a quiet hub, would export
    nothing.
    """
    from app.metrics import CONNECTIONS

    CONNECTIONS.inc(0)


def post_worker_init(worker: Any) -> None:
    """Leave the loaded app out of the worker's garbage collections.

    Everything loaded by now (modules, the app, its schemas) lives as long as
    the worker, yet each full collection walked all of it again: reads that
    allocate many objects at once (step trends over 5,000 deployments) paid
    for that walk in their slowest answers (docs/BENCHMARKS.md).
    :func:`gc.freeze` moves those objects out of the collector's generations.
    """
    gc.collect()
    gc.freeze()


def worker_exit(server: Any, worker: Any) -> None:
    """Let the WebSockets closed for shutdown finish their closing handshakes.

    They run on greenlets of their own (``broadcaster/ws.py``), which gunicorn
    does not wait for; SIGTERM has already asked each of them to close.
    """
    from broadcaster.ws import drain

    drain(timeout=float(worker.cfg.graceful_timeout))


def child_exit(server: Any, worker: Any) -> None:
    """A worker is gone: its live gauges (connections, subscriptions) no longer count."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]  # unannotated upstream


def on_exit(server: Any) -> None:
    owned = os.environ.get(_OWNED_METRICS_DIR)
    if owned:
        shutil.rmtree(owned, ignore_errors=True)
