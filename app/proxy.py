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


#: The headers the fix reads; a request with none of them has nothing to fix.
FORWARDED = (
    "HTTP_X_FORWARDED_FOR",
    "HTTP_X_FORWARDED_PROTO",
    "HTTP_X_FORWARDED_HOST",
    "HTTP_X_FORWARDED_PREFIX",
)


class TrustedProxyFix:
    def __init__(self, app: WSGIApplication, trusted: tuple[str, ...]) -> None:
        self.app = app
        self.trusted = frozenset(trusted)
        self.fixed = ProxyFix(app, x_for=1, x_proto=1, x_host=1, x_prefix=1)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        forwarded = environ.get("REMOTE_ADDR") in self.trusted and any(
            name in environ for name in FORWARDED
        )
        target: Any = self.fixed if forwarded else self.app
        result: Iterable[bytes] = target(environ, start_response)
        return result
