"""``Accept-Encoding`` as RFC 9110 reads it: a coding of quality 0 is refused.

flask_compress ranks a request's codings by quality but keeps those of quality
0, so ``Accept-Encoding: gzip;q=0`` (a client saying it cannot decode gzip)
was answered in gzip.  :class:`RefusedCodings` takes the refused codings out of
the header before the app reads it, so that Flask's answers and the lean ingest
route's, both compressed by the one ``Compress`` instance, are sent in a coding
the client takes, or as they are.  A header that refuses nothing is left as it
came.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from werkzeug.http import parse_accept_header

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment


def accepted_codings(header: str) -> str:
    """``header`` without the codings it refuses (``q=0``), the others as they ranked."""
    if ";" not in header:  # no coding carries a quality: nothing is refused
        return header
    ranked = parse_accept_header(header)
    if all(quality > 0 for _, quality in ranked):
        return header
    return ", ".join(
        coding if quality == 1 else f"{coding};q={quality:g}"
        for coding, quality in ranked
        if quality > 0
    )


class RefusedCodings:
    """WSGI middleware: the request's ``Accept-Encoding`` without its refused codings."""

    def __init__(self, app: WSGIApplication) -> None:
        self.app = app

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        header = environ.get("HTTP_ACCEPT_ENCODING")
        if header:
            environ["HTTP_ACCEPT_ENCODING"] = accepted_codings(header)
        return self.app(environ, start_response)
