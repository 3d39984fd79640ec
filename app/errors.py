"""Every error the hub answers with, and the one JSON body they all share.

::

    HubError (500 internal_error)
    ├── InvalidJSON            400 invalid_json
    ├── BadRequest             400 bad_request        (query strings, cursors)
    ├── Unauthorized           401 unauthorized       (missing/bad signature or token)
    ├── OriginNotAllowed       403 origin_not_allowed (WebSocket/SSE, before the upgrade)
    ├── NotFound               404 not_found
    ├── RequestTimeout         408 request_timeout    (the body did not arrive in time)
    ├── Conflict               409 idempotency_conflict (a key reused for another body)
    ├── PayloadTooLarge        413 payload_too_large
    ├── UnsupportedMediaType   415 unsupported_media_type
    ├── InvalidEvent           422 validation_failed  (details: field errors)
    ├── InvalidQuery           422 invalid_query      (a log search query that cannot be run)
    ├── UpgradeRequired        426 upgrade_required   (WebSocket version other than 13)
    ├── RateLimited            429 rate_limited       (Retry-After)
    ├── AddressBusy            429 too_many_connections_from_address (Retry-After)
    ├── UnsupportedCoding      501 unsupported_transfer_coding
    ├── BackendUnavailable     503 backend_unavailable
    └── TooManyConnections     503 too_many_connections (a worker at its connection limit)

The neutral refusals of ``ledger/errors.py`` (raised by decoders, sender
translations and the ledger) become ``InvalidJSON`` and ``InvalidEvent`` here
and nowhere else (:func:`from_event_error`).

Senders print whatever they get, so every body is
``{"success": false, "error": {"code", "message", "details"}}``, including
for Flask's own 404/405 and for anything unexpected (logged with traceback).
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from flask import Flask, Response
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from ledger.errors import EventError, Malformed
from storage.store import StoreUnavailable

log = logging.getLogger(__name__)


class HubError(Exception):
    code = "internal_error"
    status = 500

    def __init__(
        self,
        message: str,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}
        self.headers = headers or {}

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(code={self.code!r}, status={self.status}, "
            f"message={self.message!r}, details={self.details!r})"
        )


class InvalidJSON(HubError):
    code = "invalid_json"
    status = 400


class BadRequest(HubError):
    code = "bad_request"
    status = 400


class Unauthorized(HubError):
    code = "unauthorized"
    status = 401


class OriginNotAllowed(HubError):
    code = "origin_not_allowed"
    status = 403


class NotFound(HubError):
    code = "not_found"
    status = 404


class RequestTimeout(HubError):
    code = "request_timeout"
    status = 408


class Conflict(HubError):
    code = "idempotency_conflict"
    status = 409


class PayloadTooLarge(HubError):
    code = "payload_too_large"
    status = 413


class UnsupportedMediaType(HubError):
    code = "unsupported_media_type"
    status = 415


class InvalidEvent(HubError):
    code = "validation_failed"
    status = 422


class InvalidQuery(HubError):
    code = "invalid_query"
    status = 422


class UpgradeRequired(HubError):
    code = "upgrade_required"
    status = 426


class RateLimited(HubError):
    code = "rate_limited"
    status = 429


class AddressBusy(HubError):
    code = "too_many_connections_from_address"
    status = 429


class UnsupportedCoding(HubError):
    code = "unsupported_transfer_coding"
    status = 501


class BackendUnavailable(HubError):
    code = "backend_unavailable"
    status = 503


class TooManyConnections(HubError):
    code = "too_many_connections"
    status = 503


def from_event_error(error: EventError) -> HubError:
    """The HTTP error for a neutral refusal: 400 for an unreadable body, else 422."""
    if isinstance(error, Malformed):
        return InvalidJSON(error.message, error.details)
    return InvalidEvent(error.message, error.details)


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> bytes:
    """The contract's error body, for answers written outside Flask too (middleware, gunicorn)."""
    return orjson.dumps(
        {"success": False, "error": {"code": code, "message": message, "details": details or {}}}
    )


def as_hub_error(error: Exception) -> HubError:
    """What a route's error is answered with: a :class:`HubError` as it is, a neutral
    refusal as :func:`from_event_error` says, a store outage as 503 (clients and
    balancers retry), anything else as 500, logged with its traceback."""
    if isinstance(error, HubError):
        return error
    if isinstance(error, EventError):
        return from_event_error(error)
    if isinstance(error, StoreUnavailable):
        return BackendUnavailable(f"event store unavailable: {error}", headers={"Retry-After": "5"})
    log.error("unhandled error", exc_info=error)
    return HubError("internal error; it has been logged")


def error_response(error: HubError) -> Response:
    response = Response(
        error_body(error.code, error.message, error.details), mimetype="application/json"
    )
    response.status_code = error.status
    response.headers.update(error.headers)
    return response


def register_error_handlers(app: Flask, max_body_bytes: int) -> None:
    @app.errorhandler(HubError)
    @app.errorhandler(EventError)
    @app.errorhandler(StoreUnavailable)
    @app.errorhandler(Exception)
    def _error(error: Exception) -> Response:
        return error_response(as_hub_error(error))

    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(error: RequestEntityTooLarge) -> Response:
        return error_response(
            PayloadTooLarge(
                f"request body is over the {max_body_bytes}-byte limit",
                {"limit_bytes": max_body_bytes},
            )
        )

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Response:
        hub_error = HubError(error.description or error.name)
        hub_error.status = error.code or 500
        hub_error.code = error.name.lower().replace(" ", "_")
        return error_response(hub_error)
