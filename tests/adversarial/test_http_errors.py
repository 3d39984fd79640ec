"""Malformed HTTP: every answer is the contract's JSON, nothing is stored, nothing is cut."""

from __future__ import annotations

import json

import pytest

from tests.adversarial.conftest import (
    ROUTE,
    Bystanders,
    assert_refused,
    exchange,
    stored_events,
)
from tests.e2e.server import HubServer

pytestmark = pytest.mark.e2e

MAX_BODY = 1024 * 1024


def chunked(*parts: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in parts) + b"0\r\n\r\n"


def ingest(head: str, body: bytes) -> bytes:
    return (
        f"POST {ROUTE} HTTP/1.1\r\nHost: hub\r\nContent-Type: application/json\r\n"
        f"Connection: close\r\n{head}\r\n"
    ).encode() + body


VALID = json.dumps({"type": "log_entry", "project": "cut", "deployment_id": "c", "message": "x"})
#: A whole, valid event that fills the cap, then more: it must not be stored as if it were all.
OVER_THE_CAP = VALID[:-1].encode() + b' ,"pad": "' + b"p" * (MAX_BODY - len(VALID) - 20) + b'"}'

CASES = {
    "chunked-over-the-cap": (
        ingest("Transfer-Encoding: chunked\r\n", chunked(OVER_THE_CAP, b" " * 4096)),
        413,
        "payload_too_large",
    ),
    "gzip-transfer-coding": (
        ingest("Transfer-Encoding: gzip, chunked\r\n", chunked(VALID.encode())),
        501,
        "unsupported_transfer_coding",
    ),
    "bad-chunk-size": (
        ingest("Transfer-Encoding: chunked\r\n", b"zz\r\n" + VALID.encode() + b"\r\n0\r\n\r\n"),
        400,
        "bad_request",
    ),
    "malformed-content-length": (
        ingest("Content-Length: 12abc\r\n", VALID.encode()),
        400,
        "bad_request",
    ),
    "url-over-4k": (
        b"GET /api/deployments?project=" + b"a" * 5000 + b" HTTP/1.1\r\nHost: hub\r\n\r\n",
        414,
        "uri_too_long",
    ),
    "unicode-digit-limit": (
        "GET /api/deployments?limit=² HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n\r\n".encode(),
        400,
        "bad_request",
    ),
    "after-beyond-64-bits": (
        b"GET /api/deployments/c/logs?after=" + b"9" * 30 + b" HTTP/1.1\r\nHost: hub\r\n"
        b"Connection: close\r\n\r\n",
        400,
        "bad_request",
    ),
    "garbage-since": (
        b"GET /api/events?since=yesterday HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n\r\n",
        400,
        "bad_request",
    ),
}


@pytest.mark.parametrize("raw", [pytest.param(case, id=name) for name, case in CASES.items()])
def test_malformed_requests_get_the_contracts_json_and_store_nothing(
    hub: HubServer, raw: tuple[bytes, int, str]
) -> None:
    data, expected, code = raw
    with Bystanders(hub):
        status, answer = exchange(hub, data)
    assert_refused(status, answer, expected, code)
    assert stored_events(hub, "cut") == []
