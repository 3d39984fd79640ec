"""One log line per request, a request id on every line, and no secret in any line.

Operators grep one request's story by its id: it is taken from a sane
incoming ``X-Request-ID`` (a proxy's, or the sender's) or made up, returned
as the ``X-Request-ID`` response header, and added by :class:`RequestIdFilter`
to every line logged while the request runs.  :class:`RequestLog` is WSGI
middleware rather than Flask hooks so that it also sees what Flask never
answers (a WebSocket's end under gunicorn is a ``StopIteration``) and so that
the line is written when the response is finished (a stream's duration is its
whole life), replacing gunicorn's access log, which would print query-string
tokens.

Lines are plain text or JSON (``HUB_LOG_FORMAT``), the JSON by
``python-json-logger``.  Both formatters pass the finished line through
:class:`Redactor`: configured secrets and tokens, ``Authorization`` values,
signatures and ``token=``-style query parameters become ``[redacted]``,
whatever code logged them.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

from app.config import Settings
from app.security import add_security_headers

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

access_log = logging.getLogger("app.access")

#: The id of the request this greenlet is serving (gevent gives each greenlet its own context).
REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)

#: What an incoming ``X-Request-ID`` may look like to be reused: short, no spaces or markup.
_SANE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/+=-]{0,127}")
#: Query parameters whose values never reach a log line.  The patterns stop at a quote or a
#: backslash, so that a JSON line stays valid JSON after redaction.
SECRET_PARAMS = ("token", "access_token", "secret", "signature", "sig", "key", "password")
_SECRET_PATTERNS = (
    (re.compile(r"(?i)\b(bearer|basic)\s+[^\s\"',;\\]+"), r"\1 [redacted]"),
    (re.compile(r"(?i)\bsha(1|256)=[0-9a-f]{8,}"), r"sha\1=[redacted]"),
    (re.compile(r"\bv1[,=][A-Za-z0-9+/=_-]{8,}"), "v1,[redacted]"),
    (
        re.compile(r"(?i)([?&](?:" + "|".join(SECRET_PARAMS) + r")=)[^&\s\"'\\]+"),
        r"\1[redacted]",
    ),
)
#: Configured secrets shorter than this are not scrubbed literally (they would match prose).
MIN_SECRET_LENGTH = 4
_EXTRA_SKIP = frozenset(RESERVED_ATTRS) | {"request_id", "message", "asctime"}


def sane_request_id(offered: str | None) -> str:
    """The incoming id when it is short and plain, else a new one."""
    if offered and _SANE_ID.fullmatch(offered):
        return offered
    return secrets.token_hex(16)


class Redactor:
    """Replaces secrets in a finished log line; see the module docstring."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        literal = sorted({s for s in secrets if len(s) >= MIN_SECRET_LENGTH}, key=len, reverse=True)
        self._literal = re.compile("|".join(map(re.escape, literal))) if literal else None

    def __call__(self, line: str) -> str:
        if self._literal is not None:
            line = self._literal.sub("[redacted]", line)
        for pattern, replacement in _SECRET_PATTERNS:
            line = pattern.sub(replacement, line)
        return line

    @classmethod
    def from_settings(cls, settings: Settings) -> Redactor:
        return cls(
            (
                *settings.webhook_secrets,
                *settings.webhook_tokens,
                *settings.read_tokens,
                *settings.alert_webhook_urls,
                *settings.alert_slack_urls,
                *settings.alert_feishu_urls,
                *settings.alert_dingtalk_urls,
            )
        )


class RequestIdFilter(logging.Filter):
    """Gives every record a ``request_id``: the current request's, or ``-`` outside one."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = REQUEST_ID.get() or "-"
        return True


class PlainFormatter(logging.Formatter):
    """``time level logger [request id]: message key=value ...``, redacted."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s")
        self.redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = [
            f"{key}={value}"
            for key, value in record.__dict__.items()
            if key not in _EXTRA_SKIP and not key.startswith("_")
        ]
        if extras:
            head, newline, trace = line.partition("\n")
            line = f"{head} {' '.join(extras)}{newline}{trace}"
        return self.redactor(line)


class RedactingJsonFormatter(JsonFormatter):
    """One JSON object per line: time, level, logger, message, request id and extras."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__(
            "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            json_ensure_ascii=False,
            json_default=str,
        )
        self.redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        return self.redactor(super().format(record))


def make_formatter(settings: Settings) -> logging.Formatter:
    redactor = Redactor.from_settings(settings)
    if settings.log_format == "JSON":
        return RedactingJsonFormatter(redactor)
    return PlainFormatter(redactor)


def shown_path(environ: WSGIEnvironment) -> str:
    """The request's path and query string as a log line may show them."""
    path = str(environ.get("SCRIPT_NAME", "")) + str(environ.get("PATH_INFO", ""))
    query = environ.get("QUERY_STRING")
    return f"{path}?{query}" if query else path


class RequestLog:
    """WSGI middleware: request id, security headers, one access line per request."""

    def __init__(self, app: WSGIApplication) -> None:
        self.app = app

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        request_id = sane_request_id(environ.get("HTTP_X_REQUEST_ID"))
        environ["HTTP_X_REQUEST_ID"] = request_id  # the app sees the id it will answer with
        REQUEST_ID.set(request_id)
        line = _Line(environ, request_id)

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            line.status = status.split(" ", 1)[0]
            headers = [(k, v) for k, v in headers if k.lower() != "x-request-id"]
            headers.append(("X-Request-ID", request_id))
            add_security_headers(headers)
            return start_response(status, headers, exc_info)

        try:
            result = self.app(environ, start)
        except StopIteration:  # gunicorn's signal that a WebSocket handler is done
            line.write(default_status="101")
            REQUEST_ID.set(None)
            raise
        except BaseException:
            line.write(default_status="500")
            REQUEST_ID.set(None)
            raise
        return _Body(result, line)


class _Line:
    """What the access line of one request says, filled in as the response goes out."""

    def __init__(self, environ: WSGIEnvironment, request_id: str) -> None:
        self.environ = environ
        self.request_id = request_id
        self.started = time.perf_counter()
        self.status = ""
        self.bytes = 0
        self.written = False

    def write(self, default_status: str = "-") -> None:
        if self.written:
            return
        self.written = True
        if not access_log.isEnabledFor(logging.INFO):  # e.g. HUB_LOG_LEVEL=WARNING
            return
        elapsed_ms = (time.perf_counter() - self.started) * 1000
        status = self.status or default_status
        method = str(self.environ.get("REQUEST_METHOD", "-"))
        path = shown_path(self.environ)
        remote = str(self.environ.get("REMOTE_ADDR", "-"))
        access_log.info(
            '%s "%s %s" %s %d %.1fms',
            remote,
            method,
            path,
            status,
            self.bytes,
            elapsed_ms,
            extra={
                "request_id": self.request_id,
                "remote_addr": remote,
                "method": method,
                "path": path,
                "status": int(status) if status.isdigit() else status,
                "bytes": self.bytes,
                "duration_ms": round(elapsed_ms, 2),
            },
        )


class _Body:
    """The response body, counted as it is written; the line is logged when it is closed."""

    def __init__(self, body: Iterable[bytes], line: _Line) -> None:
        self._body = body
        self._line = line

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._body:
            self._line.bytes += len(chunk)
            yield chunk

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            self._line.write()
            REQUEST_ID.set(None)  # gevent reuses the greenlet for the connection's next request
