"""Reading a request body within its bounds: size, time and transfer coding.

Flask's ``MAX_CONTENT_LENGTH`` silently cuts a chunked body at the cap (a
valid first megabyte followed by more was stored as if it were the whole
body), and nothing bounds how long a body may take to arrive: a sender
trickling one byte a second held its connection (and the signature check
waiting for the whole body) for as long as it liked.  Here a body is read
whole or refused:

* over ``HUB_MAX_BODY_BYTES``, by its ``Content-Length`` or as it streams: 413;
* not arrived within ``HUB_BODY_TIMEOUT`` seconds: 408;
* a transfer coding other than ``chunked`` (``gzip, chunked``, say), which
  gunicorn passes on undecoded: 501;
* a malformed chunked encoding (gunicorn's errors while reading): 400.

After a refusal the rest of the body is never read: the connection's read
side is shut so that gunicorn closes it instead of draining the sender.
"""

from __future__ import annotations

import contextlib
import socket
from typing import TYPE_CHECKING

import gevent

from app.errors import BadRequest, PayloadTooLarge, RequestTimeout, UnsupportedCoding

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

#: Bytes asked of the socket at a time.
CHUNK_BYTES = 65536


def read_body(environ: WSGIEnvironment, *, limit: int, deadline: float) -> bytes:
    """The whole body of the request, or the error that refuses it (see module docstring).

    Raises:
        UnsupportedCoding: a transfer coding other than ``chunked``.
        PayloadTooLarge: more than ``limit`` bytes, declared or sent.
        RequestTimeout: the body took longer than ``deadline`` seconds.
    """
    codings = [c.strip().lower() for c in environ.get("HTTP_TRANSFER_ENCODING", "").split(",")]
    unknown = [c for c in codings if c not in ("", "chunked", "identity")]
    if unknown:
        stop_reading(environ)
        raise UnsupportedCoding(
            f"transfer coding {unknown[0][:40]!r} is not supported; send the body as it is "
            "(chunked or with a Content-Length)",
            {"transfer_encoding": ["Only chunked is supported."]},
        )
    declared = environ.get("CONTENT_LENGTH") or ""
    if declared.isdigit() and int(declared) > limit:
        stop_reading(environ)
        raise _too_large(limit)
    parts: list[bytes] = []
    size = 0
    try:
        with gevent.Timeout(deadline):
            while chunk := _read(environ, min(CHUNK_BYTES, limit + 1 - size)):
                parts.append(chunk)
                size += len(chunk)
                if size > limit:
                    stop_reading(environ)
                    raise _too_large(limit)
    except gevent.Timeout:
        stop_reading(environ)
        raise RequestTimeout(
            f"the request body did not arrive within {deadline:g} s; nothing was stored",
            {"timeout_seconds": deadline},
        ) from None
    return b"".join(parts)


def _read(environ: WSGIEnvironment, size: int) -> bytes:
    try:
        chunk: bytes = environ["wsgi.input"].read(size)
    except Exception as exc:  # noqa: BLE001 - the WSGI server's own errors for a broken body
        stop_reading(environ)  # (gunicorn: a bad chunk size, a body cut short)
        raise BadRequest(
            f"the request body could not be read: {type(exc).__name__}: {str(exc)[:200]}",
            {"body": ["Malformed or incomplete."]},
        ) from None
    return chunk


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"request body is over the {limit}-byte limit; nothing was stored", {"limit_bytes": limit}
    )


def stop_reading(environ: WSGIEnvironment) -> None:
    """Never read the rest of this request: gunicorn then answers and closes the connection.

    gunicorn would otherwise read whatever body is left before the next request
    on the connection, however slowly the sender sends it.
    """
    sock = environ.get("gunicorn.socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RD)
