"""Fuzzing every input path: ingest bodies and headers, read API queries, WebSocket frames.

Whatever arrives, the hub answers with one of its documented statuses (never
a 500), a rejected request writes nothing (the store's last sequence number
is unchanged), and the sans-I/O WebSocket session turns any frame into
answers without raising.  Examples are bounded so the suite stays well under
a minute; hangs are caught by pytest-timeout rather than by a deadline.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import string
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode

import orjson
import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from app.config import Settings
from broadcaster.limits import Limits
from broadcaster.session import Session, Subscribe, Unsubscribe
from ledger.events import EVENT_TYPES
from server.app import create_app

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
INGEST_ROUTES = (
    "/api/webhooks/deployment",
    "/api/webhook/deployment",
    "/api/webhook/step",
    "/api/webhook/project-status",
    "/api/webhooks/github",
    "/project-dashboard/api/webhooks/deployment",
)
INGEST_STATUSES = {200, 400, 401, 413, 415, 422, 501}
READ_STATUSES = {200, 400, 401, 404}
SECRET = "fuzz-secret"
TOKEN = "fuzz-token"

json_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=6)
    ),
    max_leaves=25,
)
known_keys = st.sampled_from(
    [
        "project",
        "deployment_id",
        "timestamp",
        "status",
        "step_name",
        "job",
        "step",
        "duration",
        "duration_ms",
        "started_at",
        "completed_at",
        "logs",
        "message",
        "level",
        "metrics",
        "runId",
        "projectName",
        "errorMessage",
        "step_details",
        "event_id",
        "step_status",
        "commit_hash",
        "workflow_name",
        "cpu_percent",
        "from_deployment_id",
        "steps",
        "branch",
    ]
)
event_like = st.builds(
    lambda kind, fields: {"type": kind, **fields},
    st.sampled_from([*EVENT_TYPES, "step_manual", "bogus", ""]),
    st.dictionaries(known_keys, json_values, max_size=8),
)
bodies = json_values | event_like | st.lists(event_like, max_size=4).map(lambda e: {"events": e})


@pytest.fixture(scope="module")
def open_app() -> Iterator[Flask]:
    application = create_app(Settings(store_url="memory://", max_body_bytes=65536))
    yield application
    application.extensions["hub"].stop()
    application.extensions["hub_context"].store.close()


@pytest.fixture(scope="module")
def signed_app() -> Iterator[Flask]:
    application = create_app(
        Settings(
            store_url="memory://",
            webhook_secrets=(SECRET,),
            webhook_tokens=(TOKEN,),
            read_tokens=(TOKEN,),
        )
    )
    yield application
    application.extensions["hub"].stop()
    application.extensions["hub_context"].store.close()


def last_seq(app: Flask) -> int:
    seq: int = app.extensions["hub_context"].store.last_seq()
    return seq


def check_ingest(
    app: Flask, client: FlaskClient, route: str, body: bytes, headers: dict[str, str]
) -> int:
    """Post once; the status must be documented and a refusal must write nothing."""
    before = last_seq(app)
    response = client.post(route, data=body, headers=headers)
    answer = response.get_json(silent=True)
    response.close()
    assert response.status_code in INGEST_STATUSES, (response.status_code, answer)
    assert isinstance(answer, dict)
    if response.status_code != 200:
        assert answer["success"] is False
        assert set(answer["error"]) == {"code", "message", "details"}
        assert last_seq(app) == before
    return response.status_code


@FUZZ
@given(route=st.sampled_from(INGEST_ROUTES), body=bodies)
def test_any_json_body_gets_a_documented_answer(open_app: Flask, route: str, body: Any) -> None:
    check_ingest(
        open_app,
        open_app.test_client(),
        route,
        json.dumps(body).encode(),
        {"Content-Type": "application/json"},
    )


@FUZZ
@given(
    route=st.sampled_from(INGEST_ROUTES),
    body=st.binary(max_size=300),
    content_type=st.sampled_from(
        [
            "application/json",
            "text/plain",
            "",
            "application/x+json",
            "application/json; charset=latin-1",
        ]
    ),
)
def test_any_bytes_get_a_documented_answer(
    open_app: Flask, route: str, body: bytes, content_type: str
) -> None:
    check_ingest(
        open_app,
        open_app.test_client(),
        route,
        body,
        {"Content-Type": content_type} if content_type else {},
    )


header_text = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=80,
)
ingest_headers = st.dictionaries(
    st.sampled_from(
        [
            "Authorization",
            "X-Hub-Signature-256",
            "webhook-id",
            "webhook-timestamp",
            "webhook-signature",
            "X-GitHub-Event",
            "X-GitHub-Delivery",
            "Idempotency-Key",
            "X-Request-ID",
            "X-Forwarded-For",
            "X-Forwarded-Proto",
            "X-Forwarded-Prefix",
            "Content-Encoding",
            "Transfer-Encoding",
            "Origin",
        ]
    ),
    header_text
    | st.sampled_from(
        [
            "Bearer ",
            f"Bearer {TOKEN}",
            "sha256=",
            "v1,",
            "v1,AAAA",
            "workflow_run",
            "ping",
            "1700000000",
            "sha256=zz",
        ]
    ),
    max_size=6,
)


@FUZZ
@given(
    route=st.sampled_from(INGEST_ROUTES), headers=ingest_headers, body=bodies, sign=st.booleans()
)
def test_any_headers_on_signed_ingest_get_a_documented_answer(
    signed_app: Flask, route: str, headers: dict[str, str], body: Any, sign: bool
) -> None:
    raw = json.dumps(body).encode()
    headers = {**headers, "Content-Type": "application/json"}
    if sign:  # past authentication, so the rest of the path is fuzzed too
        digest = hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
        headers["X-Hub-Signature-256"] = f"sha256={digest}"
    status = check_ingest(signed_app, signed_app.test_client(), route, raw, headers)
    if not sign and not headers.get("Authorization", "").startswith(f"Bearer {TOKEN}"):
        # A transfer coding is refused with the body, before the signature is looked at.
        assert status == 401 or (status == 501 and "Transfer-Encoding" in headers)


READ_ROUTES = (
    "/api/deployments",
    "/api/deployments/{id}",
    "/api/deployments/{id}/logs",
    "/api/projects",
    "/api/events",
    "/api/stream",
    "/healthz",
    "/readyz",
    "/metrics",
)
query_names = st.sampled_from(
    [
        "project",
        "status",
        "branch",
        "limit",
        "cursor",
        "job",
        "step",
        "after",
        "since",
        "deployment_id",
        "token",
        "types",
        "last_event_id",
        "x",
    ]
)
query_values = st.text(max_size=60) | st.sampled_from(
    [
        "0",
        "-1",
        "1",
        "1000",
        "1001",
        "99999999999999999999",
        "success",
        "1e3",
        "",
        "1795920951687-000000000042",
        "eyJ4Ijo",
        "W10=",
        "WyIiLCIiXQ==",
        "web",
    ]
)


@FUZZ
@given(
    route=st.sampled_from(READ_ROUTES),
    identifier=st.text(min_size=1, max_size=40),
    query=st.lists(st.tuples(query_names, query_values), max_size=6),
    headers=st.dictionaries(
        st.sampled_from(
            ["Authorization", "Last-Event-ID", "Accept", "X-Request-ID", "If-None-Match"]
        ),
        header_text,
        max_size=3,
    ),
    with_token=st.booleans(),
)
@example(  # an id holding "?": the answer is checked against the path as sent
    route="/api/deployments/{id}/logs",
    identifier="?",
    query=[("after", ":")],
    headers={},
    with_token=True,
)
def test_any_query_on_the_read_api_gets_a_documented_answer(
    signed_app: Flask,
    route: str,
    identifier: str,
    query: list[tuple[str, str]],
    headers: dict[str, str],
    with_token: bool,
) -> None:
    if with_token:
        query = [*query, ("token", TOKEN)]
        headers.pop("Authorization", None)
    path = route.replace("{id}", quote(identifier, safe=""))
    response = signed_app.test_client().get(f"{path}?{urlencode(query)}", headers=headers)
    status = response.status_code
    response.close()  # a stream that was accepted ends here, unread
    assert status in READ_STATUSES | {503}, (path, query, status)


# -- the WebSocket session, without sockets ------------------------------------------------------

LIMITS = Limits(
    heartbeat_interval=25.0,
    max_subscriptions=5,
    max_frame_bytes=65536,
    send_queue=100,
    replay_project_limit=10,
    replay_max_events=100,
)
frames = (
    st.text(max_size=200)
    | st.binary(max_size=200)
    | json_values.map(lambda value: json.dumps(value))
    | st.builds(
        lambda name, fields: json.dumps({"type": name, **fields}),
        st.sampled_from(
            [
                "subscribe_project",
                "subscribe_deployment",
                "unsubscribe_project",
                "unsubscribe_deployment",
                "ping",
                "heartbeat",
                "subscribe:project",
                "unsubscribe:deployment",
                "nope",
            ]
        ),
        st.dictionaries(
            st.sampled_from(
                ["project", "deployment_id", "since", "types", "limit", "projectId", "deploymentId"]
            ),
            json_values,
            max_size=4,
        ),
    )
    | st.builds(
        lambda name, arg: json.dumps([name, arg]),
        st.sampled_from(["subscribe_project", "subscribe_deployment", "x"]),
        json_values,
    )
)


@settings(max_examples=400, deadline=None)
@given(st.lists(frames, min_size=1, max_size=12))
def test_any_sequence_of_frames_never_raises(sequence: list[str | bytes]) -> None:
    session = Session(LIMITS, version="fuzz", connection_id="c1")
    for frame in sequence:
        outputs = session.feed(frame)
        assert outputs
        for output in outputs:
            assert isinstance(output, str | Subscribe | Unsubscribe)
            if isinstance(output, str):
                assert isinstance(orjson.loads(output), dict)
        assert len(session.subscriptions) <= LIMITS.max_subscriptions


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=string.printable, max_size=400))
def test_printable_garbage_is_one_error_frame(text: str) -> None:
    session = Session(LIMITS, version="fuzz", connection_id="c1")
    outputs = session.feed(text)
    if len(outputs) == 1 and isinstance(outputs[0], str):
        assert orjson.loads(outputs[0])["type"] in {
            "error",
            "pong",
            "heartbeat_ack",
            "unsubscribed",
        }
