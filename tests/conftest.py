"""Fixtures shared by every test layer: settings, the app, its test client."""

from __future__ import annotations

import configparser
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.config import Settings
from server.app import create_app
from tests.contract import CheckedClient

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "original-payloads"
#: Waits scale with this, for slow CI machines; tests never assert timings.
TIMEOUT_FACTOR = float(os.environ.get("HUB_TEST_TIMEOUT_FACTOR", "1"))
#: The packages the wheel ships.
PACKAGES = ("ledger", "senders", "storage", "app", "broadcaster", "alerts", "server", "hubctl")


def declared_version() -> str:
    """The version setup.cfg gives the distribution."""
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    return config["metadata"]["version"]


def load_manifest() -> list[dict[str, Any]]:
    """The captured sender bodies with their routes and headers."""
    entries: list[dict[str, Any]] = json.loads((FIXTURES / "manifest.json").read_text())
    return entries


def companions_expected(body: dict[str, Any]) -> int:
    """How many log_entry events a captured lifecycle body becomes besides itself:
    one for its logs, and one more for its error when it has both."""
    logs = body.get("logs") or body.get("step_logs")
    error = body.get("error") or body.get("errorMessage") or body.get("error_message")
    return (1 + bool(error)) if logs else 0


@pytest.fixture(autouse=True)
def _clean_hub_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """No HUB_* variable of the caller's shell leaks into a test."""
    for name in list(os.environ):
        if name.startswith("HUB_") and not name.startswith("HUB_TEST_"):
            monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def _checked_test_client(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every response of Flask's test client is held to the OpenAPI document."""
    monkeypatch.setattr(Flask, "test_client_class", CheckedClient)


@pytest.fixture
def settings() -> Settings:
    return Settings(store_url="memory://")


@pytest.fixture
def app(settings: Settings) -> Iterator[Flask]:
    application = create_app(settings)
    yield application
    application.extensions["hub"].stop()
    application.extensions["hub_context"].store.close()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()
