"""Settings come from HUB_* variables, parsed strictly."""

from __future__ import annotations

import logging

import pytest

from app.config import ConfigError, Settings, settings_table


def test_defaults_need_no_environment() -> None:
    settings = Settings.from_env({})
    assert settings.store_url == "sqlite:///var/hub.sqlite3"
    assert settings.max_body_bytes == 1048576
    assert not settings.auth_required


def test_values_are_cast_by_type() -> None:
    settings = Settings.from_env(
        {
            "HUB_PORT": "9000",
            "HUB_RETENTION_DAYS": "1.5",
            "HUB_WEBHOOK_SECRETS": " a, b ,,c ",
            "HUB_LOG_LEVEL": "debug",
        }
    )
    assert settings.port == 9000
    assert settings.retention_days == 1.5
    assert settings.webhook_secrets == ("a", "b", "c")
    assert settings.log_level == "DEBUG"
    assert settings.auth_required


@pytest.mark.parametrize(
    ("value", "mode"),
    [
        ("shared", "SHARED"),
        ("Connection", "CONNECTION"),
        ("off", "OFF"),
        ("true", "SHARED"),
        ("FALSE", "OFF"),
    ],
)
def test_older_spellings_of_a_choice_still_work(value: str, mode: str) -> None:
    """``HUB_WS_DEFLATE`` was true/false before it had modes."""
    assert Settings.from_env({"HUB_WS_DEFLATE": value}).ws_deflate == mode


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("HUB_PORT", "eighty", "HUB_PORT='eighty' is not valid"),
        ("HUB_WORKERS", "0", "HUB_WORKERS='0' must be at least 1"),
        ("HUB_TAIL_INTERVAL", "-1", "HUB_TAIL_INTERVAL"),
        ("HUB_LOG_LEVEL", "loud", "must be one of DEBUG"),
        ("HUB_SQLITE_SYNCHRONOUS", "OFF", "must be one of NORMAL, FULL"),
        ("HUB_WS_DEFLATE", "yes", "must be one of SHARED, CONNECTION, OFF"),
        ("HUB_WS_SEND_TIMEOUT", "nan", "HUB_WS_SEND_TIMEOUT='nan' is not valid: expected a finite"),
        ("HUB_RETENTION_DAYS", "inf", "HUB_RETENTION_DAYS='inf' is not valid: expected a finite"),
        ("HUB_FANOUT_DELAY", "-0.01", "HUB_FANOUT_DELAY='-0.01' must be at least 0"),
        ("HUB_FANOUT_DELAY", "2", "HUB_FANOUT_DELAY='2' must be at most 1"),
    ],
)
def test_bad_values_stop_start_up_naming_the_variable(name: str, value: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        Settings.from_env({name: value})


def test_unknown_hub_variables_are_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="app.config"):
        Settings.from_env({"HUB_PROT": "1", "HUB_TEST_TIMEOUT_FACTOR": "2", "PATH": "/bin"})
    assert [r.getMessage() for r in caplog.records] == ["unknown setting HUB_PROT is ignored"]


def test_settings_table_lists_every_setting() -> None:
    table = settings_table()
    for name in Settings.__dataclass_fields__:
        assert f"`HUB_{name.upper()}`" in table
