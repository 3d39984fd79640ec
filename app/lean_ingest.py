"""The typed-event ingest routes, answered before Flask's routing and request objects.

Most pipelines post one small event per request, and for such a request
Flask's request and app contexts, URL matching, ``Request``/``Response``
objects and after-request hooks cost about as much as the hub's own work.
This WSGI layer sits inside the request log and the per-address caps (so
those see every request as before) and answers a ``POST`` to one of the
routes of :data:`~app.webhooks.LEAN_ROUTES` itself, through the same
:func:`~app.webhooks.receive` the Flask views call: the checks, their order,
the errors and metrics are those of the one receiver.  The answer is the one
Flask would give, byte for byte (status line, headers in the same order,
body), which ``tests/integration/test_lean_ingest.py`` compares.

Everything else goes to Flask unchanged.  A request that says
``Accept-Encoding`` (Go's, Node's and Python ``requests``' clients all do) is
answered here too: an answer under ``flask_compress``'s minimum size goes out
as it is, as Flask would send it, and a larger one is handed to the same
``Compress`` instance that compresses Flask's answers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from flask import Flask
from flask_compress import Compress
from werkzeug.http import HTTP_STATUS_CODES

from app.context import HubContext
from app.errors import as_hub_error, error_body
from app.ratelimit import RateLimits
from app.webhooks import LEAN_ROUTES, receive

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment


class LeanIngest:
    """WSGI middleware answering the typed-event ingest routes; see the module docstring.

    Args:
        app: Flask's WSGI app, which answers everything else.
        prefixes: the path prefixes the webhooks blueprint is mounted under (``/api``
            and the public one).
        flask: the Flask app, and ``compress`` its ``flask_compress`` extension, which
            compress a large answer for a client that takes it.
    """

    def __init__(
        self,
        app: WSGIApplication,
        context: HubContext,
        limits: RateLimits,
        prefixes: Iterable[str],
        *,
        flask: Flask,
        compress: Compress,
    ) -> None:
        self.app = app
        self.context = context
        self.limits = limits
        self.flask = flask
        self.compress = compress
        self.compress_from = int(flask.config["COMPRESS_MIN_SIZE"])
        self.routes = {
            prefix + path: route for prefix in prefixes for path, route in LEAN_ROUTES.items()
        }

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        route = self.routes.get(environ.get("PATH_INFO", ""))
        if route is None or environ.get("REQUEST_METHOD") != "POST":
            return self.app(environ, start_response)
        try:
            body = receive(self.context, self.limits, environ, route)
        except Exception as exc:  # noqa: BLE001 - answered as Flask's error handlers answer it
            error = as_hub_error(exc)
            return _answer(
                start_response,
                error.status,
                error_body(error.code, error.message, error.details),
                error.headers,
            )
        if len(body) >= self.compress_from and environ.get("HTTP_ACCEPT_ENCODING"):
            return self._compressed(environ, start_response, body)
        return _answer(start_response, 200, body, {})

    def _compressed(
        self, environ: WSGIEnvironment, start_response: StartResponse, body: bytes
    ) -> Iterable[bytes]:
        """The answer as Flask's compression sends it (only successes are compressed)."""
        with self.flask.request_context(environ):
            response = self.compress.after_request(
                self.flask.response_class(body, mimetype="application/json")
            )
        return response(environ, start_response)


def _answer(
    start_response: StartResponse, status: int, body: bytes, headers: Mapping[str, str]
) -> list[bytes]:
    """What Flask sends for a JSON ``Response``: werkzeug's status line, the same
    headers in the same order, ``flask_compress``'s ``Vary`` last."""
    start_response(
        f"{status} {HTTP_STATUS_CODES[status].upper()}",
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            *headers.items(),
            ("Vary", "Accept-Encoding"),
        ],
    )
    return [body]
