"""The hub as ``hubctl`` sees it: signed posts with bounded retries, reads, clear errors.

Every command goes through :class:`HubClient`, so they all sign the same way
(GitHub's ``X-Hub-Signature-256`` over the exact bytes sent, or a bearer
token), retry the same things (no answer, 5xx, 429) a bounded number of times
with the same ``Idempotency-Key`` (a retry of a post that did arrive is then
answered as a duplicate, never stored twice), and turn every failure into a
:class:`CommandError` whose message says what to do about it.  A signed post
also gives every event an ``event_id`` inside the signed body: the hub
trusts no unsigned header to deduplicate a signed request.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hubctl.http import Response, Unreachable, request

#: Where the hub listens by default: the public prefix of CONTRACT.md on gunicorn's default port.
DEFAULT_HUB = "http://127.0.0.1:8000/project-dashboard"

#: Ingest routes by the names commands use for them (LEGACY.md §1-§5).
ROUTES: dict[str, str] = {
    "deployment": "/webhooks/deployment",
    "summary": "/webhook/deployment",
    "step": "/webhook/step",
    "project-status": "/webhook/project-status",
}

#: What one post may hold; the hub's defaults are 1,000 events and 1 MiB.
BATCH_EVENTS = 500
BATCH_BYTES = 512 * 1024

_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_MAX_PAUSE = 60.0


class CommandError(Exception):
    """A failure to report in one line (and maybe a few indented detail lines)."""

    exit_code = 1

    def __init__(self, message: str, details: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.details = list(details)

    def __str__(self) -> str:
        return "\n".join([self.message, *(f"  {line}" for line in self.details)])


class HubUnreachable(CommandError):
    """Nothing answered, or only 5xx, after every retry."""

    exit_code = 3


class HubRejected(CommandError):
    """The hub answered with an error it means (4xx): retrying would not help."""

    def __init__(
        self, message: str, details: Sequence[str] = (), *, status: int, code: str
    ) -> None:
        super().__init__(message, details)
        self.status = status
        self.code = code


@dataclass(frozen=True)
class Posted:
    """The hub's answer to one accepted post."""

    ids: list[str]
    duplicate: bool


def hub_from_env(environ: Mapping[str, str]) -> str:
    """``DASHBOARD_HUB``, else the base of the script's ``DASHBOARD_URL``, else the default."""
    if environ.get("DASHBOARD_HUB"):
        return environ["DASHBOARD_HUB"]
    url = environ.get("DASHBOARD_URL", "")
    for suffix in ("/api/webhooks/deployment", "/api/webhook/deployment"):
        if url.endswith(suffix):
            return url.removesuffix(suffix)
    return DEFAULT_HUB


def with_event_ids(body: bytes, key: str) -> bytes:
    """``body`` with an ``event_id`` on each event that has none, derived from ``key``.

    What keeps a retried signed post from being stored twice; a body that is
    not JSON objects is left as it is (the hub will say what is wrong with it).
    """
    try:
        data = json.loads(body)
    except ValueError:
        return body
    items = data.get("events") if isinstance(data, dict) and "type" not in data else None
    events = items if isinstance(items, list) else [data]
    if not all(isinstance(event, dict) for event in events):
        return body
    for index, event in enumerate(events):
        event.setdefault("event_id", f"{key}-{index}")
    return encode(data)


def sign(secret: str, body: bytes) -> str:
    """GitHub's signature header value for ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def encode(value: Any) -> bytes:
    """Compact UTF-8 JSON: what the hub is sent, byte for byte what is signed."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def batches(bodies: Sequence[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """Split events into posts within :data:`BATCH_EVENTS` and :data:`BATCH_BYTES`."""
    chunk: list[dict[str, Any]] = []
    size = 0
    for body in bodies:
        length = len(encode(body)) + 1
        if chunk and (len(chunk) >= BATCH_EVENTS or size + length > BATCH_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(body)
        size += length
    if chunk:
        yield chunk


def flatten_details(details: Any, prefix: str = "") -> list[str]:
    """The hub's nested field errors as ``path: message`` lines."""
    if isinstance(details, dict):
        lines = []
        for key, value in details.items():
            lines += flatten_details(value, f"{prefix}.{key}" if prefix else str(key))
        return lines
    if isinstance(details, list) and all(isinstance(item, str) for item in details):
        return [f"{prefix}: {' '.join(details)}" if prefix else " ".join(details)]
    if isinstance(details, list):
        return [line for item in details for line in flatten_details(item, prefix)]
    return [f"{prefix}: {details}" if prefix else str(details)]


class HubClient:
    """One hub, reached at ``base_url`` (``…/project-dashboard`` or the bare host)."""

    def __init__(
        self,
        base_url: str,
        *,
        secret: str | None = None,
        token: str | None = None,
        read_token: str | None = None,
        timeout: float = 30.0,
        attempts: int = 4,
        backoff: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.secret = secret or None
        self.token = token or None
        self.read_token = read_token or None
        self.timeout = timeout
        self.attempts = max(1, attempts)
        self.backoff = backoff
        self.sleep = sleep

    def api_url(self, path: str, params: Mapping[str, str | None] | None = None) -> str:
        query = urllib.parse.urlencode({k: v for k, v in (params or {}).items() if v})
        return f"{self.base_url}/api{path}" + (f"?{query}" if query else "")

    def ws_url(self) -> str:
        scheme, rest = self.base_url.split("://", 1)
        return ("wss" if scheme == "https" else "ws") + f"://{rest}/ws"

    # -- writing -------------------------------------------------------------------

    def post(self, body: bytes, route: str = "deployment") -> Posted:
        """Post one raw body (one event or a batch) to an ingest route."""
        key = str(uuid.uuid4())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "hubctl",
            "Idempotency-Key": key,
        }
        if self.secret:
            body = with_event_ids(body, key)
            headers["X-Hub-Signature-256"] = sign(self.secret, body)
        private = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        url = self.api_url(ROUTES[route])
        answer = self._send("POST", url, body, headers, private)
        if answer.status != 200:
            raise self._rejection(answer, "the hub rejected the event", write=True)
        data = self._json(answer)
        return Posted(ids=list(data.get("ids") or []), duplicate=bool(data.get("duplicate")))

    def post_events(self, bodies: Sequence[dict[str, Any]], route: str = "deployment") -> Posted:
        """Post typed events in as many batches as the limits need; ids in order."""
        ids: list[str] = []
        duplicate = True
        for chunk in batches(bodies):
            posted = self.post(encode(chunk[0] if len(chunk) == 1 else {"events": chunk}), route)
            ids += posted.ids
            duplicate &= posted.duplicate
        return Posted(ids, duplicate and bool(ids))

    # -- reading -------------------------------------------------------------------

    def get(self, path: str, params: Mapping[str, str | None] | None = None) -> Any:
        """GET a read-API path and return its JSON; 404 and 401 become clear errors."""
        private = {"Authorization": f"Bearer {self.read_token}"} if self.read_token else {}
        answer = self._send(
            "GET", self.api_url(path, params), None, {"User-Agent": "hubctl"}, private
        )
        if answer.status != 200:
            raise self._rejection(answer, f"GET {path} failed", write=False)
        return self._json(answer)

    def events(
        self,
        *,
        project: str | None = None,
        deployment_id: str | None = None,
        since: str | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Every event of ``/api/events`` after ``since``, page by page, oldest first."""
        cursor = since
        while True:
            page = self.get(
                "/events",
                {
                    "project": project,
                    "deployment_id": deployment_id,
                    "since": cursor,
                    "limit": "1000",
                },
            )
            yield from page["events"]
            cursor = page.get("next_cursor")
            if not cursor:
                return

    # -- plumbing ------------------------------------------------------------------

    def _send(
        self,
        method: str,
        url: str,
        body: bytes | None,
        headers: dict[str, str],
        private: dict[str, str],
    ) -> Response:
        reason, pause = "", 0.0
        for attempt in range(self.attempts):
            if attempt:
                self.sleep(pause)
            try:
                answer = request(
                    method,
                    url,
                    body=body,
                    headers=headers,
                    private_headers=private,
                    timeout=self.timeout,
                )
            except Unreachable as exc:
                reason = str(exc)
                pause = min(self.backoff * 2**attempt, _MAX_PAUSE)
                continue
            if answer.status not in _RETRY_STATUSES:
                return answer
            reason = f"HTTP {answer.status}: {_error_message(answer)}"
            pause = _retry_after(answer) or min(self.backoff * 2**attempt, _MAX_PAUSE)
        tries = f"{self.attempts} attempt{'s' if self.attempts > 1 else ''}"
        raise HubUnreachable(f"cannot reach the hub at {self.base_url}: {reason} (after {tries})")

    def _json(self, answer: Response) -> dict[str, Any]:
        data = answer.json_object()
        if data is None:
            raise CommandError(
                f"unexpected answer from {answer.url} (HTTP {answer.status}, not the hub's JSON): "
                f"{answer.text(120)!r}"
            )
        return data

    def _rejection(self, answer: Response, what: str, *, write: bool) -> CommandError:
        try:
            error = answer.json()["error"]
            code, message = str(error["code"]), str(error["message"])
            details = flatten_details(error.get("details") or {})
        except (ValueError, KeyError, TypeError):
            return CommandError(
                f"{what}: HTTP {answer.status} from {answer.url}, not the hub's JSON: "
                f"{answer.text(120)!r} (is the hub URL right? it is {self.base_url})"
            )
        if answer.status == 401:
            details.append(self._credential_hint(write))
        return HubRejected(
            f"{what} ({answer.status} {code}): {message}", details, status=answer.status, code=code
        )

    def _credential_hint(self, write: bool) -> str:
        if not write:
            return "set DASHBOARD_READ_TOKEN to one of the hub's HUB_READ_TOKENS"
        if self.token:
            return "DASHBOARD_TOKEN must be one of the hub's HUB_WEBHOOK_TOKENS"
        if self.secret:
            return "DASHBOARD_SECRET must be one of the hub's HUB_WEBHOOK_SECRETS"
        return "the hub wants a signature or token: set DASHBOARD_SECRET or DASHBOARD_TOKEN"


def _error_message(answer: Response) -> str:
    try:
        return str(answer.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return answer.text(120) or "(empty body)"


def _retry_after(answer: Response) -> float | None:
    raw = answer.headers.get("Retry-After")
    try:
        return min(max(float(raw), 0.0), _MAX_PAUSE) if raw else None
    except ValueError:
        return None
