"""``deploy-hub`` / ``python -m server``: gunicorn with the packaged settings and app."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ledger import version
from server import cli
from tests.conftest import ROOT


def test_the_command_is_gunicorn_with_the_packaged_settings_and_app() -> None:
    assert cli.gunicorn_command([]) == [
        sys.executable,
        "-m",
        "gunicorn",
        "-c",
        "python:server.gunicorn_conf",
        "server.app:create_app()",
    ]


def test_extra_arguments_go_to_gunicorn_before_the_app() -> None:
    command = cli.gunicorn_command(["--pid", "/run/hub.pid", "--graceful-timeout", "30"])
    assert command[5:] == [
        "--pid",
        "/run/hub.pid",
        "--graceful-timeout",
        "30",
        "server.app:create_app()",
    ]


def test_main_replaces_the_process_with_gunicorn(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, list[str]]] = []
    monkeypatch.setattr(cli.os, "execv", lambda path, args: calls.append((path, args)))
    cli.main(["--workers", "2"])
    assert calls == [(sys.executable, cli.gunicorn_command(["--workers", "2"]))]


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_help_says_what_it_runs(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    cli.main([flag])
    out = capsys.readouterr().out
    assert out.startswith("usage: deploy-hub")
    assert "python:server.gunicorn_conf" in out
    assert "HUB_" in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    cli.main(["--version"])
    assert capsys.readouterr().out == f"deploy-hub {version()}\n"


def test_python_dash_m_server_is_the_same_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "server", "--version"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout == f"deploy-hub {version()}\n"
