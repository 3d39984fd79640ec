"""Hold what the hub sends to its machine-readable documents.

``GET /api/openapi.json`` (``app/openapi.py``) describes every HTTP answer and
``docs/frames.schema.json`` every WebSocket and SSE frame.  The helpers here
check one answer or one frame against them and fail the test, naming what
disagrees, when it does not match:

* :class:`CheckedClient`, the Flask test client every integration test gets
  (``tests/conftest.py``), checks each response it receives;
* :func:`check_response` serves the end-to-end helpers, which speak HTTP over
  real sockets (``tests/e2e/server.py``);
* :func:`check_frame` serves the WebSocket and SSE clients of the end-to-end
  tests (``tests/e2e/wsclient.py``, ``tests/e2e/test_sse.py``).

A request to a path or method the document does not describe (an unknown
route's 404, a 405) has no operation to hold it to; its body, when JSON, is
still held to the one error body every route shares.
"""

from __future__ import annotations

import functools
import gzip
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote

from flask.testing import FlaskClient
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match
from openapi_core import OpenAPI
from openapi_core.exceptions import OpenAPIError
from openapi_core.templating.paths.exceptions import (
    OperationNotFound,
    PathNotFound,
    ServerNotFound,
)
from openapi_core.testing import MockRequest, MockResponse
from werkzeug.test import TestResponse

from app.openapi import document

FRAMES_PATH = Path(__file__).resolve().parent.parent / "docs" / "frames.schema.json"
#: The host every checked request is taken to be sent to (only paths matter).
HOST = "http://hub.test"
#: Characters of a body shown in a failure message.
SHOWN = 600


@functools.cache
def openapi() -> OpenAPI:
    """The document as the app serves it, parsed once for the test session."""
    return OpenAPI.from_dict(document())


@functools.cache
def _error_validator() -> Draft202012Validator:
    spec = document()
    return Draft202012Validator({**spec["components"]["schemas"]["Error"]})


@functools.cache
def frames() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(FRAMES_PATH.read_text(encoding="utf-8"))
    return loaded


@functools.cache
def frame_validator(kind: str) -> Draft202012Validator:
    """A validator of ``#/$defs/<kind>`` of docs/frames.schema.json."""
    schema = frames()
    return Draft202012Validator(
        {"$schema": schema["$schema"], "$defs": schema["$defs"], "$ref": f"#/$defs/{kind}"}
    )


def _describe(exc: BaseException) -> str:
    """openapi-core's error and the schema errors it wraps, each shortened."""
    parts = [f"{type(exc).__name__}: {str(exc)[:200]}"]
    errors = getattr(exc, "schema_errors", None) or ()
    for error in list(errors)[:10]:
        parts.append(f"  at {list(error.absolute_path)}: {error.message[:200]}")
    cause = exc.__cause__
    if cause is not None and cause is not exc:
        parts.append(_describe(cause))
    return "\n".join(parts)


def check_response(
    method: str,
    target: str,
    status: int,
    headers: Mapping[str, str],
    body: bytes,
) -> None:
    """Fail unless ``status``, ``headers`` and ``body`` are what the document says the
    operation for ``method`` ``target`` (a path with its query) answers."""
    path, _, query = target.partition("?")
    content_type = headers.get("Content-Type") or ""
    if method.upper() == "HEAD":
        return  # no body to hold to anything
    body = _decoded(body, headers.get("Content-Encoding"))
    data: bytes | str = body
    if content_type.startswith("text/event-stream"):
        data = ":\n"  # an SSE comment stands in for the stream, whose frames check_frame checks
    elif content_type.startswith("image/svg+xml"):
        data = body.decode()  # text, but openapi-core decodes only text/* by itself
    request = MockRequest(
        HOST,
        method.lower(),
        path,
        args=dict(parse_qsl(query, keep_blank_values=True)),
        headers=dict(headers),
    )
    response = MockResponse(
        data,  # type: ignore[arg-type]  # it takes text as well
        status_code=status,
        headers=dict(headers),
        content_type=content_type,
    )
    try:
        openapi().validate_response(request, response)
    except (PathNotFound, ServerNotFound, OperationNotFound):  # no operation: see the top
        _check_undocumented(method, target, status, content_type, body)
    except OpenAPIError as exc:
        shown = body[:SHOWN].decode(errors="replace")
        raise AssertionError(
            f"{method} {target} answered {status} ({content_type}) outside the OpenAPI "
            f"document:\n{_describe(exc)}\nbody: {shown}"
        ) from None


def _decoded(body: bytes, coding: str | None) -> bytes:
    """The body a ``Content-Encoding`` (the hub compresses larger answers) stands for."""
    coding = (coding or "").strip().lower()
    if coding == "gzip":
        return gzip.decompress(body)
    if coding == "br":
        import brotli  # flask-compress brings it

        decoded: bytes = brotli.decompress(body)
        return decoded
    assert coding in ("", "identity"), f"an answer in an unknown coding: {coding}"
    return body


def _check_undocumented(
    method: str, target: str, status: int, content_type: str, body: bytes
) -> None:
    """No operation: an error body is still the one error body."""
    if status < 400 or not content_type.startswith("application/json"):
        return
    error = best_match(_error_validator().iter_errors(json.loads(body)))
    if error is not None:
        raise AssertionError(
            f"{method} {target} answered {status} with an error body outside the OpenAPI "
            f"document's Error: {error.message[:SHOWN]}"
        )


def check_test_response(response: TestResponse) -> None:
    """:func:`check_response` for a response of Flask's test client."""
    request = response.request
    # The path as sent, encoded again: a decoded "?" in an id would start the query.
    path = quote(request.path, safe="/")
    target = path + (f"?{request.query_string.decode()}" if request.query_string else "")
    streaming = response.mimetype == "text/event-stream"  # reading it would wait forever
    body = b"" if streaming else response.get_data()
    check_response(request.method, target, response.status_code, dict(response.headers), body)


class CheckedClient(FlaskClient):
    """Flask's test client, checking each response against the OpenAPI document."""

    def open(self, *args: Any, **kwargs: Any) -> TestResponse:
        response = super().open(*args, **kwargs)
        check_test_response(response)
        return response


def check_frame(frame: Any, kind: str = "serverFrame") -> None:
    """Fail unless ``frame`` matches ``#/$defs/<kind>`` of docs/frames.schema.json."""
    error = best_match(frame_validator(kind).iter_errors(frame))
    if error is not None:
        shown = json.dumps(frame, ensure_ascii=False)[:SHOWN]
        raise AssertionError(
            f"a frame outside docs/frames.schema.json#/$defs/{kind}: "
            f"{list(error.absolute_path)}: {error.message[:SHOWN]}\nframe: {shown}"
        )
