"""Believe ``X-Forwarded-*`` only from the proxies we were told about.

Werkzeug's ``ProxyFix`` trusts by hop count, whoever sent the headers; here it
is applied only when the peer address is a configured proxy, so a client that
reaches gunicorn directly cannot forge its address or scheme.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from werkzeug.middleware.proxy_fix import ProxyFix

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment


class TrustedProxyFix:
    def __init__(self, app: WSGIApplication, trusted: tuple[str, ...]) -> None:
        self.app = app
        self.trusted = frozenset(trusted)
        self.fixed = ProxyFix(app, x_for=1, x_proto=1, x_host=1, x_prefix=1)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        target: Any = self.fixed if environ.get("REMOTE_ADDR") in self.trusted else self.app
        result: Iterable[bytes] = target(environ, start_response)
        return result
