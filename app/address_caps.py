"""At most ``HUB_MAX_CONNECTIONS_PER_ADDRESS`` requests in flight from one client address.

Rate limits count requests as they start; they do not see a client that
starts few requests and never finishes them (bodies trickled a byte a second,
WebSockets opened and left).  Each worker counts the requests it is serving
per client address (after trusted proxies named the client) and refuses one
more with ``429 too_many_connections_from_address`` before reading anything
of it, so that one address cannot hold all of a worker's connections.  A
WebSocket or SSE stream counts for as long as it is open: a WebSocket served
after its request ended takes a hold of its own (:data:`HOLD`).  Loopback clients
are exempt unless ``HUB_RATE_LIMIT_LOOPBACK`` is set, as for rate limits.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from typing import TYPE_CHECKING

from app.body import stop_reading
from app.errors import AddressBusy, error_body
from app.metrics import RATE_LIMITED
from app.validation import is_loopback

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

RETRY_AFTER_SECONDS = 5
#: environ key of a function that counts one more use of the request's address, until
#: the function it returns is called (absent when the address is not counted).
HOLD = "hub.hold_address"


class AddressCaps:
    """WSGI middleware counting requests in flight per address; see the module docstring."""

    def __init__(self, app: WSGIApplication, cap: int, *, limit_loopback: bool) -> None:
        self.app = app
        self.cap = cap
        self.limit_loopback = limit_loopback
        self.in_flight: Counter[str] = Counter()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        address = environ.get("REMOTE_ADDR") or ""
        if not self.cap or (not self.limit_loopback and is_loopback(address)):
            return self.app(environ, start_response)
        if self.in_flight[address] >= self.cap:
            return self._refuse(environ, start_response)
        self.in_flight[address] += 1
        environ[HOLD] = partial(self._hold, address)
        try:
            result = self.app(environ, start_response)
        except BaseException:
            self._release(address)
            raise
        return self._counted(result, address)

    def _counted(self, result: Iterable[bytes], address: str) -> Iterator[bytes]:
        """The response, the address's count held until it is written (or abandoned)."""
        try:
            yield from result
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
            self._release(address)

    def _hold(self, address: str) -> Callable[[], None]:
        self.in_flight[address] += 1
        return partial(self._release, address)

    def _release(self, address: str) -> None:
        self.in_flight[address] -= 1
        if self.in_flight[address] <= 0:
            del self.in_flight[address]

    def _refuse(self, environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
        RATE_LIMITED.labels("connections_per_address").inc()
        stop_reading(environ)
        error = AddressBusy(
            f"this address already has {self.cap} requests in flight here; "
            f"retry after {RETRY_AFTER_SECONDS} s",
            {"limit": self.cap, "retry_after": RETRY_AFTER_SECONDS},
        )
        body = error_body(error.code, error.message, error.details)
        start_response(
            f"{error.status} Too Many Requests",
            [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(body))),
                ("Retry-After", str(RETRY_AFTER_SECONDS)),
            ],
        )
        return [body]
