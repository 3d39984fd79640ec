"""One HTTP request over the standard library, with every failure in one of two shapes.

``hubctl`` talks to two servers (the hub and GitHub's REST API) and needs the
same few things from both: the status, headers and body of any answer
(errors included, since their bodies say what went wrong), a bounded body
size, and a clear distinction between "the server answered" (a
:class:`Response`, whatever its status) and "nothing answered"
(:class:`Unreachable`).  ``urllib`` does all of that with a little help and
adds no dependency to the runners the CLI is installed on.
"""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import Message
from typing import Any

#: Largest answer read; more is cut (job logs can be large, nothing else is).
MAX_RESPONSE_BYTES = 64 * 1024 * 1024


class Unreachable(Exception):
    """No answer: refused, reset, timed out, or a name that does not resolve."""


@dataclass(frozen=True)
class Response:
    """What a server answered; ``truncated`` when the body went past the size bound."""

    status: int
    headers: Message
    body: bytes
    url: str
    truncated: bool = False

    def json(self) -> Any:
        """The body as JSON; ``ValueError`` when it is not (a proxy's HTML error page)."""
        return json.loads(self.body)

    def json_object(self) -> dict[str, Any] | None:
        """The body as a JSON object, or ``None`` for anything else (HTML, a list, garbage)."""
        try:
            data = self.json()
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    def text(self, limit: int = 300) -> str:
        """The start of the body as text, for error messages."""
        return self.body[:limit].decode("utf-8", errors="replace").strip()


def request(
    method: str,
    url: str,
    *,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    private_headers: Mapping[str, str] | None = None,
    timeout: float = 30.0,
    max_bytes: int = MAX_RESPONSE_BYTES,
) -> Response:
    """Send one request and return the answer, following redirects.

    ``private_headers`` (credentials) go only to ``url`` itself and are not
    repeated to wherever it redirects: GitHub answers a log download with a
    redirect to signed storage URLs, which refuse or log foreign credentials.
    """
    if not url.startswith(("http://", "https://")):
        raise Unreachable(f"not an http(s) URL: {url[:200]!r}")
    req = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))  # noqa: S310 - scheme checked above
    for name, value in (private_headers or {}).items():
        req.add_unredirected_header(name, value)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as answer:  # noqa: S310 - scheme checked above
            return _read(answer.status, answer.headers, answer, answer.geturl(), max_bytes)
    except urllib.error.HTTPError as error:
        with error:
            return _read(error.code, error.headers, error, error.geturl() or url, max_bytes)
    except urllib.error.URLError as error:
        raise Unreachable(str(error.reason)) from None
    except (OSError, http.client.HTTPException) as error:
        raise Unreachable(str(error) or type(error).__name__) from None


def _read(status: int, headers: Message, stream: Any, url: str, max_bytes: int) -> Response:
    try:
        data: bytes = stream.read(max_bytes + 1)
    except (OSError, http.client.HTTPException) as error:
        raise Unreachable(f"connection lost while reading the answer: {error}") from None
    return Response(status, headers, data[:max_bytes], url, len(data) > max_bytes)
