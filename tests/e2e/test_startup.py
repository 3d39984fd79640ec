"""A start that cannot succeed stops at once with one line naming the setting to change."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, TIMEOUT_FACTOR
from tests.e2e.server import HubServer


def deploy_hub(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python -m server`` (what ``deploy-hub`` runs) with ``env`` over a clean HUB_* set."""
    base = {key: value for key, value in os.environ.items() if not key.startswith("HUB_")}
    return subprocess.run(
        [sys.executable, "-m", "server"],
        env={**base, "PYTHONPATH": str(ROOT), "HUB_HOST": "127.0.0.1", **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60 * TIMEOUT_FACTOR,
        check=False,
    )


def test_a_port_held_by_another_program_names_hub_port(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        done = deploy_hub({"HUB_PORT": str(port)}, tmp_path)
    assert done.returncode != 0
    assert (
        f"hub configuration error: HUB_PORT={port}: 127.0.0.1:{port} is already in use"
        in done.stderr
    )
    assert "Can't connect" not in done.stderr  # it did not wait out gunicorn's retries


def test_a_second_hub_on_a_running_hubs_port_stops_and_the_first_serves_on(
    tmp_path: Path,
) -> None:
    first = HubServer(tmp_path / "first").start()
    try:
        done = deploy_hub(
            {"HUB_PORT": str(first.port), "HUB_STORE_URL": f"sqlite:///{tmp_path / 'b.db'}"},
            tmp_path,
        )
        assert done.returncode != 0
        assert f"HUB_PORT={first.port}" in done.stderr
        status, body = first.request("GET", "/healthz")
        assert status == 200, body
    finally:
        first.stop()


def test_a_setting_that_is_not_a_number_names_itself(tmp_path: Path) -> None:
    done = deploy_hub({"HUB_PORT": "eighty"}, tmp_path)
    assert done.returncode != 0
    assert "hub configuration error: HUB_PORT='eighty' is not valid" in done.stderr
