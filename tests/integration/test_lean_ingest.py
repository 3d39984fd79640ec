"""The lean ingest route answers exactly as the Flask route does, request for request.

Two hubs with the same settings are sent the same requests in the same order:
one answers the typed-event routes with ``app/lean_ingest.py``, the other has
that layer pass everything to Flask.  Status line, headers (in order) and body
must be the same bytes; only the event ids, which carry the clock, are
compared by shape.
"""

from __future__ import annotations

import gzip
import hashlib
import hmac
import io
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import brotli
import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook
from werkzeug.test import EnvironBuilder, run_wsgi_app

from app.config import Settings
from app.lean_ingest import LeanIngest
from server.app import create_app

SECRET = "lean-secret-0123456789"
TOKEN = "lean-token-987654321"
PUBLIC = "203.0.113.7"
#: An event id (milliseconds, then a sequence number) in an answer's ``ids``.
EVENT_ID = re.compile(rb'"\d{13}-\d{12}"')

Answer = tuple[str, list[tuple[str, str]], bytes]


def lean_layer(app: Flask) -> LeanIngest:
    layer: Any = app.wsgi_app
    while not isinstance(layer, LeanIngest):
        layer = layer.app
    return layer


class Pair:
    """Two hubs alike but for the lean route; :meth:`send` gives both answers."""

    def __init__(self, **overrides: Any) -> None:
        options: dict[str, Any] = {
            "store_url": "memory://",
            "webhook_secrets": (SECRET,),
            "webhook_tokens": (TOKEN,),
            "max_body_bytes": 4096,
            "max_batch_events": 5,
            "max_json_depth": 8,
            **overrides,
        }
        self.lean = create_app(Settings(**options))
        self.flask = create_app(Settings(**options))
        lean_layer(self.flask).routes = {}  # every request goes on to Flask

    def close(self) -> None:
        for app in (self.lean, self.flask):
            app.extensions["hub"].stop()
            app.extensions["hub_context"].store.close()

    def send(self, body: bytes, **options: Any) -> tuple[Answer, Answer]:
        return _call(self.lean, body, **options), _call(self.flask, body, **options)


def _call(
    app: Flask,
    body: bytes,
    *,
    path: str = "/api/webhooks/deployment",
    method: str = "POST",
    headers: dict[str, str] | None = None,
    content_type: str | None = "application/json",
    stream: Any = None,
) -> Answer:
    environ = EnvironBuilder(
        path=path,
        method=method,
        headers={"X-Request-ID": "lean-compare", **(headers or {})},
        content_type=content_type,
        input_stream=io.BytesIO(body),
        content_length=len(body),
        environ_base={"REMOTE_ADDR": PUBLIC},
    ).get_environ()
    if content_type is None:
        environ.pop("CONTENT_TYPE", None)
    if stream is not None:
        environ["wsgi.input"] = stream
    result, status, response_headers = run_wsgi_app(app, environ, buffered=True)
    try:
        payload = b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return status, list(response_headers.items()), EVENT_ID.sub(b'"<id>"', payload)


@pytest.fixture
def pair() -> Iterator[Pair]:
    hubs = Pair()
    yield hubs
    hubs.close()


def github(body: bytes, secret: str = SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": f"sha256={digest}"}


def standard(body: bytes, msg_id: str, secret: str = SECRET) -> dict[str, str]:
    now = datetime.now(UTC)
    signature = Webhook(secret.encode()).sign(msg_id, now, body.decode())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
    }


BEARER = {"Authorization": f"Bearer {TOKEN}"}
LOG = json.dumps(
    {"type": "log_entry", "project": "web", "deployment_id": "7", "message": "hello world"}
).encode()
STEP = json.dumps(
    {
        "type": "step_completed",
        "project": "web",
        "deployment_id": "7",
        "step_name": "build / test",
        "step_status": "success",
        "duration": 12,
    }
).encode()
BATCH = json.dumps(
    {"events": [{**json.loads(LOG), "message": f"line {i}"} for i in range(3)]}
).encode()


class BrokenInput:
    """A body the server cannot read to its end (a bad chunk, a sender gone)."""

    def read(self, size: int = -1) -> bytes:
        raise ValueError("Invalid chunk size")


#: (what, body, options): every kind of answer the ingest routes give.
CASES: list[tuple[str, bytes, dict[str, Any]]] = [
    ("log line, token", LOG, {"headers": BEARER}),
    ("step, GitHub signature", STEP, {"headers": github(STEP)}),
    ("batch, Standard Webhooks", BATCH, {"headers": standard(BATCH, "msg_1")}),
    ("same delivery again", BATCH, {"headers": standard(BATCH, "msg_1")}),
    ("idempotency key", LOG, {"headers": {**BEARER, "Idempotency-Key": "k1"}}),
    ("same key, same body", LOG, {"headers": {**BEARER, "Idempotency-Key": "k1"}}),
    ("same key, other body", STEP, {"headers": {**BEARER, "Idempotency-Key": "k1"}}),
    ("event_id twice", json.dumps({**json.loads(LOG), "event_id": "e1"}).encode(), {}),
    ("legacy flat body", json.dumps({"project": "web", "status": "success"}).encode(), {}),
    (
        "summary route",
        json.dumps({"project": "web", "deployment_id": "8", "status": "success"}).encode(),
        {"path": "/api/webhook/deployment"},
    ),
    (
        "step route",
        json.dumps({"project": "web", "step_name": "build", "step_status": "running"}).encode(),
        {"path": "/api/webhook/step"},
    ),
    (
        "project status route",
        json.dumps({"project": "web", "status": "healthy"}).encode(),
        {"path": "/api/webhook/project-status"},
    ),
    ("public prefix", LOG, {"path": "/project-dashboard/api/webhooks/deployment"}),
    ("no signature or token", LOG, {"auth": False}),
    ("wrong token", LOG, {"auth": False, "headers": {"Authorization": "Bearer nope"}}),
    ("wrong signature", STEP, {"auth": False, "headers": github(STEP, "other")}),
    ("bad Standard signature", LOG, {"auth": False, "headers": standard(LOG, "m", "x")}),
    ("wrong media type", LOG, {"content_type": "text/plain"}),
    ("no media type", LOG, {"content_type": None}),
    ("json suffix", LOG, {"content_type": "application/vnd.hub+json; charset=utf-8"}),
    ("not UTF-8", b'{"type": "log_entry", "message": "\xff"}', {}),
    ("not JSON", b'{"type": ', {}),
    ("not an object", b"[1, 2]", {}),
    ("unknown type", json.dumps({"type": "nope", "project": "web"}).encode(), {}),
    ("invalid event", json.dumps({"type": "log_entry", "project": "web"}).encode(), {}),
    ("too deep", json.dumps({**json.loads(LOG), "x": [[[[[[[[1]]]]]]]]}).encode(), {}),
    ("empty batch", b'{"events": []}', {}),
    ("batch too long", json.dumps({"events": [json.loads(LOG)] * 6}).encode(), {}),
    ("bad item of a batch", json.dumps({"events": [json.loads(LOG), {"type": 1}]}).encode(), {}),
    ("over the body cap", json.dumps({**json.loads(LOG), "message": "x" * 5000}).encode(), {}),
    ("unknown coding", LOG, {"headers": {"Transfer-Encoding": "gzip, chunked"}}),
    ("unreadable body", LOG, {"stream": BrokenInput()}),
    ("GET", b"", {"method": "GET"}),
    ("trailing slash", LOG, {"path": "/api/webhooks/deployment/"}),
    ("compressed answers wanted", BATCH, {"headers": {"Accept-Encoding": "gzip"}}),
]


def test_each_answer_is_the_flask_routes_byte_for_byte(pair: Pair) -> None:
    for what, body, options in CASES:
        headers = dict(options.get("headers", {}))
        if options.pop("auth", True) and not any(
            name in headers for name in ("Authorization", "X-Hub-Signature-256", "webhook-id")
        ):
            headers.update(BEARER)
        lean, flask = pair.send(body, **{**options, "headers": headers})
        assert lean == flask, what


def test_rate_limited_answers_are_alike() -> None:
    hubs = Pair(ingest_address_rate=0.001, ingest_address_burst=2)
    try:
        answers = [hubs.send(LOG, headers=BEARER) for _ in range(3)]
    finally:
        hubs.close()
    assert [lean[0] for lean, _ in answers] == ["200 OK", "200 OK", "429 TOO MANY REQUESTS"]
    for lean, flask in answers:
        assert lean == flask


def test_an_unexpected_error_is_answered_alike(pair: Pair, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    for app in (pair.lean, pair.flask):
        monkeypatch.setattr(app.extensions["hub_context"].store, "append", broken)
    lean, flask = pair.send(LOG, headers=BEARER)
    assert lean[0] == "500 INTERNAL SERVER ERROR"
    assert lean == flask


_PAIR: list[Pair] = []


def _shared_pair() -> Pair:
    if not _PAIR:
        _PAIR.append(Pair(webhook_secrets=(), webhook_tokens=()))
    return _PAIR[0]


@pytest.fixture(scope="module", autouse=True)
def _close_shared_pair() -> Iterator[None]:
    yield
    while _PAIR:
        _PAIR.pop().close()


_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.lists(st.integers(), max_size=3),
)
_KEYS = st.sampled_from(
    [
        "type",
        "project",
        "deployment_id",
        "message",
        "logs",
        "level",
        "step_name",
        "job_name",
        "step_status",
        "status",
        "duration",
        "timestamp",
        "event_id",
        "metrics",
        "extra_key",
    ]
)
_TYPES = st.sampled_from(
    ["log_entry", "step_completed", "step_started", "deployment_started", "metrics_update", "x"]
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    base=st.fixed_dictionaries(
        {"type": _TYPES, "project": st.sampled_from(["web", "", "a b"]), "deployment_id": _VALUES}
    ),
    extra=st.dictionaries(_KEYS, _VALUES, max_size=5),
    batch=st.booleans(),
)
def test_any_body_is_answered_alike(
    base: dict[str, Any], extra: dict[str, Any], batch: bool
) -> None:
    event = {**base, **extra}
    body = json.dumps({"events": [event, event]} if batch else event).encode()
    lean, flask = _shared_pair().send(body)
    assert lean == flask


def _decoded(answer: Answer) -> tuple[str, list[tuple[str, str]], bytes]:
    """``answer`` with its body decompressed and its ids by shape, its length left out
    (the ids carry the clock, so compressed lengths may differ)."""
    status, headers, payload = answer
    coding = dict(headers).get("Content-Encoding")
    raw = {"gzip": gzip.decompress, "br": brotli.decompress}.get(coding or "", bytes)(payload)
    kept = [(name, value) for name, value in headers if name != "Content-Length"]
    return status, kept, EVENT_ID.sub(b'"<id>"', raw)


@pytest.mark.parametrize(
    "accepted", ["gzip", "br, gzip", "deflate", "identity", "gzip;q=0", "br;q=0, gzip"]
)
def test_a_large_answer_is_compressed_as_flask_compresses_it(accepted: str) -> None:
    """A batch's answer over the compression threshold, for a client that names codings."""
    hubs = Pair(max_batch_events=50, max_body_bytes=65536)
    try:
        batch = json.dumps(
            {"events": [{**json.loads(LOG), "message": f"line {i}"} for i in range(40)]}
        ).encode()
        headers = {**BEARER, "Accept-Encoding": accepted}
        lean, flask = hubs.send(batch, headers=headers)
        assert _decoded(lean) == _decoded(flask)
        assert _decoded(lean)[2].count(b'"<id>"') == 40
        coding = {"gzip": "gzip", "br, gzip": "br", "br;q=0, gzip": "gzip"}.get(accepted)
        assert dict(lean[1]).get("Content-Encoding") == coding
    finally:
        hubs.close()


@pytest.mark.parametrize("events", [1, 40])
def test_a_client_that_takes_compression_is_answered_by_the_lean_route(events: int) -> None:
    """Go's, Node's and ``requests``' clients send ``Accept-Encoding``; a small answer goes
    out as it is, a large one compressed, neither through Flask's routing."""
    hubs = Pair(max_batch_events=50, max_body_bytes=65536)
    try:
        layer = lean_layer(hubs.lean)

        def not_flask(environ: Any, start_response: Any) -> Any:
            raise AssertionError(f"{environ['PATH_INFO']} went on to Flask")

        layer.app = not_flask
        items = [{**json.loads(LOG), "message": f"line {i}"} for i in range(events)]
        body = json.dumps(items[0] if events == 1 else {"events": items}).encode()
        status, headers, _ = _call(
            hubs.lean, body, headers={**BEARER, "Accept-Encoding": "gzip, deflate"}
        )
        assert status == "200 OK"
        assert dict(headers).get("Content-Encoding") == (None if events == 1 else "gzip")
    finally:
        hubs.close()
