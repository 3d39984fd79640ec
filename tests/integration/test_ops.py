"""Operations through the Flask app: start-up checks, headers, request ids, logs, rate limits."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.config import ConfigError, Settings
from app.requestlog import Redactor, sane_request_id
from app.validation import load_settings, settings_problems
from server.app import create_app

SECRET = "gh-secret-0123456789"
TOKEN = "tok-abcdef-987654321"
READ_TOKEN = "read-tok-55555"
EVENT = {"type": "deployment_started", "project": "web", "deployment_id": "d-1"}
PUBLIC = {"REMOTE_ADDR": "203.0.113.9"}


@pytest.fixture
def make_app() -> Iterator[Any]:
    apps: list[Flask] = []

    def make(**overrides: Any) -> Flask:
        application = create_app(Settings(store_url="memory://", **overrides))
        apps.append(application)
        return application

    yield make
    for application in apps:
        application.extensions["hub"].stop()
        application.extensions["hub_context"].store.close()


def captured_log(app: Flask) -> io.StringIO:
    """Point the app's own log handler (its real formatter and filters) at a buffer."""
    stream = io.StringIO()
    handler = logging.getLogger("app").handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    return stream


def post(client: FlaskClient, body: Any, **headers: str) -> Any:
    return client.post(
        "/api/webhooks/deployment",
        data=json.dumps(body),
        headers={"Content-Type": "application/json", **headers},
    )


# -- start-up validation ---------------------------------------------------------------------


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError) as error:
        load_settings(
            {
                "HUB_PORT": "eighty",
                "HUB_WORKERS": "0",
                "HUB_HOST": "0.0.0.0",  # noqa: S104 - the address under test, never bound
                "HUB_STORE_URL": f"sqlite:///{blocker}/hub.db",
                "HUB_TRUSTED_PROXIES": "10.0.0.1,proxy.local",
                "HUB_ALERTS": "true",
            }
        )
    problems = error.value.problems
    assert [p.split(" ")[0].split("=")[0].rstrip(":") for p in problems] == [
        "HUB_PORT",
        "HUB_WORKERS",
        "HUB_HOST",
        "HUB_STORE_URL",
        "HUB_TRUSTED_PROXIES",
        "HUB_ALERTS",
    ]
    assert "HUB_ALLOW_UNAUTHENTICATED=true" in problems[2]


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"host": "0.0.0.0"}, "HUB_HOST=0.0.0.0 is reachable"),  # noqa: S104 - not bound
        ({"store_url": "postgres://u:pw@db/x"}, "HUB_STORE_URL='postgres://***@db/x' is not"),
        ({"store_url": "redis://:pw@localhost:port/0"}, "port that is not a number"),
        ({"store_url": "redis://localhost:6379/zero"}, "database must be a number"),
        ({"store_url": "sqlite:///"}, "names no database file"),
        ({"store_url": "memory://", "workers": 2}, "each worker would see only its own"),
        ({"port": 70000}, "HUB_PORT=70000 is not a TCP port"),
        ({"allowed_origins": ("dashboard.example",)}, "HUB_ALLOWED_ORIGINS"),
        ({"webhook_secrets": ("whsec_***",)}, "not base64"),
        ({"alert_slack_urls": ("hooks.slack.example/T0/B0/secretpart",)}, "URL #0 is not"),
        ({"alerts": True}, "no alert target is set"),
        (
            {"alerts": True, "role": "INGEST", "alert_webhook_urls": ("http://127.0.0.1:9/",)},
            "HUB_ROLE=INGEST",
        ),
        ({"public_url": "ci.example.com/dashboard"}, "HUB_PUBLIC_URL="),
    ],
)
def test_a_bad_combination_is_named(overrides: dict[str, Any], fragment: str) -> None:
    problems = settings_problems(Settings(**overrides))
    assert any(fragment in p for p in problems), problems
    assert not any("pw" in p or "secretpart" in p for p in problems)


@pytest.mark.parametrize(
    "overrides",
    [
        {"host": "0.0.0.0", "webhook_tokens": ("t",)},  # noqa: S104 - not bound
        {"host": "0.0.0.0", "allow_unauthenticated": True},  # noqa: S104 - not bound
        {"host": "localhost"},
        {"host": "::1"},
        {"store_url": "redis://localhost:6379/0?prefix=hub"},
        {"store_url": "memory://"},
        {"public_url": "https://ci.example.com/project-dashboard/"},
    ],
)
def test_sound_settings_pass(overrides: dict[str, Any]) -> None:
    assert settings_problems(Settings(**overrides)) == []


def test_create_app_refuses_bad_settings() -> None:
    with pytest.raises(ConfigError, match="HUB_HOST"):
        create_app(Settings(store_url="memory://", host="192.0.2.1"))


# -- headers and request ids -----------------------------------------------------------------


def test_api_responses_carry_security_headers(client: FlaskClient) -> None:
    response = client.get("/api/projects")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Content-Security-Policy"].startswith("default-src 'none'")


def test_a_policy_set_by_the_page_is_kept(app: Flask) -> None:
    @app.get("/page-with-policy")
    def page() -> tuple[str, int, dict[str, str]]:
        return "<p>hi</p>", 200, {"Content-Security-Policy": "default-src 'self'"}

    response = app.test_client().get("/page-with-policy")
    assert response.headers.getlist("Content-Security-Policy") == ["default-src 'self'"]


def test_an_html_page_without_a_policy_only_gets_frame_ancestors(app: Flask) -> None:
    @app.get("/plain-page")
    def page() -> str:
        return "<p>hi</p>"

    response = app.test_client().get("/plain-page")
    assert response.headers["Content-Security-Policy"] == "frame-ancestors 'none'"


def test_errors_carry_headers_too(client: FlaskClient) -> None:
    response = client.get("/no/such/route")
    assert response.status_code == 404
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Request-ID"]


def test_a_sane_request_id_is_echoed(client: FlaskClient) -> None:
    response = client.get("/healthz", headers={"X-Request-ID": "ci-run-42.step:7"})
    assert response.headers["X-Request-ID"] == "ci-run-42.step:7"


@pytest.mark.parametrize("offered", ["", "has space", "<script>", "x" * 200, "é"])
def test_an_odd_request_id_is_replaced(client: FlaskClient, offered: str) -> None:
    response = client.get("/healthz", headers={"X-Request-ID": offered})
    assert response.headers["X-Request-ID"] != offered
    assert len(response.headers["X-Request-ID"]) == 32


def test_generated_ids_differ() -> None:
    assert sane_request_id(None) != sane_request_id(None)


# -- logs ------------------------------------------------------------------------------------


def test_every_line_of_a_request_has_its_id(make_app: Any) -> None:
    app = make_app()
    log = captured_log(app)
    post(app.test_client(), EVENT, **{"X-Request-ID": "req-77"}).close()
    lines = log.getvalue().splitlines()
    assert any("ingest accepted" in line for line in lines)
    assert any('"POST /api/webhooks/deployment" 200' in line for line in lines)
    assert lines
    assert all("[req-77]" in line for line in lines)


def test_json_lines_carry_the_request_id_and_extras(make_app: Any) -> None:
    app = make_app(log_format="JSON")
    log = captured_log(app)
    post(app.test_client(), EVENT, **{"X-Request-ID": "req-88"}).close()
    records = [json.loads(line) for line in log.getvalue().splitlines()]
    access = [r for r in records if r["logger"] == "app.access"]
    assert access[0]["status"] == 200
    assert access[0]["method"] == "POST"
    assert {r["request_id"] for r in records} == {"req-88"}
    assert {"time", "level", "message"} <= set(access[0])


@pytest.mark.parametrize("log_format", ["PLAIN", "JSON"])
def test_secrets_signatures_and_tokens_never_reach_the_log(make_app: Any, log_format: str) -> None:
    app = make_app(
        webhook_secrets=(SECRET,),
        webhook_tokens=(TOKEN,),
        read_tokens=(READ_TOKEN,),
        log_format=log_format,
        log_level="DEBUG",
    )
    log = captured_log(app)
    client = app.test_client()
    body = json.dumps(EVENT).encode()
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    wrong = "sha256=" + hmac.new(b"other", body, hashlib.sha256).hexdigest()
    for headers in (
        {"X-Hub-Signature-256": signature},
        {"X-Hub-Signature-256": wrong},
        {"Authorization": f"Bearer {TOKEN}"},
        {"Authorization": "Bearer nope-nope"},
    ):
        client.post(
            "/api/webhooks/deployment",
            data=body,
            headers={"Content-Type": "application/json", **headers},
        ).close()
    client.get(f"/api/projects?token={READ_TOKEN}").close()
    client.get("/api/projects", headers={"Authorization": f"Bearer {READ_TOKEN}"}).close()
    logging.getLogger("app.test").warning("careless %s %s", TOKEN, signature)
    text = log.getvalue()
    if log_format == "JSON":  # redaction keeps every line valid JSON
        assert all(json.loads(line) for line in text.splitlines())
    assert text.count("POST /api/webhooks/deployment") == 4
    for secret in (SECRET, TOKEN, READ_TOKEN, signature[7:], wrong[7:], "nope-nope"):
        assert secret not in text


def test_redactor_scrubs_known_shapes() -> None:
    redact = Redactor(["abcd-secret"])
    line = redact(
        "Authorization: Bearer xyz.123 sha256="
        + "ab" * 32
        + " v1,dGhpcyBpcyBzaWduZWQ= /ws?token=t0k&project=p abcd-secret"
    )
    assert line == (
        "Authorization: Bearer [redacted] sha256=[redacted] v1,[redacted] "
        "/ws?token=[redacted]&project=p [redacted]"
    )


# -- rate limits -----------------------------------------------------------------------------


def test_ingest_over_the_address_limit_gets_429_and_stores_nothing(make_app: Any) -> None:
    app = make_app(ingest_address_rate=0.5, ingest_address_burst=2)
    client = app.test_client()
    client.environ_base.update(PUBLIC)
    store = app.extensions["hub_context"].store
    assert post(client, EVENT).status_code == 200
    assert post(client, {**EVENT, "deployment_id": "d-2"}).status_code == 200
    before = store.last_seq()
    refused = post(client, {**EVENT, "deployment_id": "d-3"})
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "2"
    error = refused.get_json()
    assert error["success"] is False
    assert error["error"]["code"] == "rate_limited"
    assert error["error"]["details"]["limit"] == "ingest_address"
    assert store.last_seq() == before


def test_ingest_is_limited_per_credential_across_addresses(make_app: Any) -> None:
    app = make_app(webhook_tokens=(TOKEN, "second-token"), ingest_rate=0.1, ingest_burst=1)
    client = app.test_client()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    client.environ_base.update(PUBLIC)
    assert post(client, EVENT, **auth).status_code == 200
    client.environ_base["REMOTE_ADDR"] = "198.51.100.3"
    assert post(client, EVENT, **auth).status_code == 429
    assert post(client, EVENT, Authorization="Bearer second-token").status_code == 200


def test_loopback_senders_are_not_limited_by_default(make_app: Any) -> None:
    app = make_app(ingest_address_rate=0.1, ingest_address_burst=1)
    client = app.test_client()
    assert all(
        post(client, {**EVENT, "deployment_id": f"d{n}"}).status_code == 200 for n in range(5)
    )


def test_websocket_connections_over_the_limit_get_429_before_the_upgrade(make_app: Any) -> None:
    app = make_app(ws_connect_rate=0.1, ws_connect_burst=1, read_tokens=(READ_TOKEN,))
    client = app.test_client()
    client.environ_base.update(PUBLIC)
    upgrade = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    }
    first = client.get("/ws", headers=upgrade)  # within the limit: on to the token check
    refused = client.get("/ws", headers=upgrade)
    assert first.status_code == 401
    assert refused.status_code == 429
    assert refused.get_json()["error"]["details"]["limit"] == "ws_connect"
    assert refused.headers["Retry-After"] == "10"


# -- metrics ---------------------------------------------------------------------------------


def test_metrics_count_ingest_outcomes(client: FlaskClient) -> None:
    def sample(text: str, name: str) -> float:
        return sum(
            float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name)
        )

    before = client.get("/metrics").get_data(as_text=True)
    post(client, EVENT).close()
    post(client, EVENT, **{"Idempotency-Key": "k1"}).close()
    post(client, EVENT, **{"Idempotency-Key": "k1"}).close()
    client.post(
        "/api/webhooks/deployment", data=b"{", headers={"Content-Type": "application/json"}
    ).close()
    after = client.get("/metrics").get_data(as_text=True)
    for name, grew in (
        ('hub_events_accepted_total{type="deployment_started"}', 2),
        ('hub_ingest_rejected_total{reason="invalid_json"}', 1),
        ("hub_ingest_duplicates_total", 1),
        ("hub_store_seconds_count", 3),
    ):
        assert sample(after, name) - sample(before, name) == grew, name
    assert "hub_fanout_lag_seconds_bucket" in after
    assert "hub_redis_reconnects_total" in after
