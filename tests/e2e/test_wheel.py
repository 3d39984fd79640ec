"""The wheel alone makes a working hub: built, installed into a new virtualenv, started
with ``deploy-hub`` from a directory that is not the source tree.

Nothing of the checkout is on the installed hub's path, so a module, a data
file (the dashboard under app/static) or a dependency the wheel lacks fails
here and nowhere else.  The virtualenv is a plain one: the dependencies come
from the package index, or pip's cache of it (about 20 s when cached).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
from collections.abc import Iterator
from pathlib import Path

import pytest
import websocket

from tests.conftest import PACKAGES, ROOT, TIMEOUT_FACTOR, declared_version
from tests.e2e.server import HubServer

pytestmark = pytest.mark.e2e

#: Left out of the copy the wheel is built from: environments, caches, build output.
NOT_SOURCE = shutil.ignore_patterns(
    ".git",
    ".venv*",
    "var",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    ".*_cache",
    "test-artifacts",
)


class InstalledHub(HubServer):
    """The hub as an installed ``deploy-hub`` runs it: its own venv, another directory."""

    def __init__(self, workdir: Path, bin_dir: Path) -> None:
        super().__init__(workdir)
        self.bin_dir = bin_dir

    def start(self) -> InstalledHub:
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("HUB_", "PYTHON", "VIRTUAL"))
        }
        env.update(self.env)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [str(self.bin_dir / "deploy-hub")],
                cwd=self.workdir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.wait_ready(timeout=60)
        return self


def run(command: list[str], cwd: Path, timeout: float = 300) -> str:
    result = subprocess.run(
        command,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout * TIMEOUT_FACTOR,
        check=False,
    )
    assert result.returncode == 0, f"{command} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new virtualenv with the wheel built from this checkout: its bin directory."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
    dist = tmp / "dist"
    run([sys.executable, "-m", "pip", "wheel", "-qq", "--no-deps", "-w", str(dist), "."], source)
    (wheel,) = dist.glob("*.whl")
    environment = tmp / "venv"
    venv.create(environment, with_pip=True)
    bin_dir = environment / "bin"
    run([str(bin_dir / "python"), "-m", "pip", "install", "-qq", str(wheel)], tmp)
    shutil.rmtree(source)  # nothing of the checkout is left to fall back on
    return bin_dir


@pytest.fixture(scope="module")
def hub(installed: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[InstalledHub]:
    server = InstalledHub(tmp_path_factory.mktemp("elsewhere"), installed).start()
    yield server
    server.stop()


def test_the_installed_packages_come_from_the_venv_with_their_data(installed: Path) -> None:
    script = (
        "import importlib, json, pathlib\n"
        f"names = {list(PACKAGES)!r}\n"
        "print(json.dumps({n: importlib.import_module(n).__file__ for n in names}))\n"
    )
    files = json.loads(run([str(installed / "python"), "-c", script], installed))
    site = installed.parent / "lib"
    for name, init in files.items():
        package = Path(init).parent
        assert package.is_relative_to(site), name
        assert (package / "py.typed").is_file(), name
    static = Path(files["app"]).parent / "static"
    assert (static / "index.html").is_file()
    assert (static / "js" / "views" / "deployment.js").is_file()


def test_deploy_hub_serves_from_another_directory(hub: InstalledHub) -> None:
    status, body = hub.request("GET", "/healthz")
    assert (status, body) == (200, {"status": "ok", "version": declared_version()})
    status, page = hub.request("GET", "/")
    assert status == 200
    assert "<html" in page.lower()
    assert hub.request("GET", "/readyz")[0] == 200


def test_an_event_posted_is_read_back(hub: InstalledHub) -> None:
    event = {"type": "deployment_started", "project": "wheel", "deployment_id": "7"}
    status, answer = hub.post_json("/api/webhooks/deployment", event)
    assert status == 200, answer
    assert answer["accepted"] == 1
    status, listing = hub.request("GET", "/api/deployments?project=wheel")
    assert status == 200
    assert [(d["project"], d["deployment_id"]) for d in listing["deployments"]] == [("wheel", "7")]


def test_every_place_reports_the_version_setup_cfg_declares(
    installed: Path, hub: InstalledHub
) -> None:
    expected = declared_version()
    distribution = run(
        [
            str(installed / "python"),
            "-c",
            "import importlib.metadata as m; print(m.version('deploy-dashboard-hub'))",
        ],
        hub.workdir,
    )
    assert distribution.strip() == expected
    assert run([str(installed / "deploy-hub"), "--version"], hub.workdir).strip() == (
        f"deploy-hub {expected}"
    )
    assert run([str(installed / "python"), "-m", "server", "--version"], hub.workdir).strip() == (
        f"deploy-hub {expected}"
    )
    assert hub.request("GET", "/healthz")[1]["version"] == expected
    ws = websocket.create_connection(hub.url.replace("http", "ws", 1) + "/ws", timeout=10)
    try:
        welcome = json.loads(ws.recv())
    finally:
        ws.close()
    assert welcome["type"] == "welcome"
    assert welcome["version"] == expected


def test_hubctl_is_installed_beside_it(installed: Path, hub: InstalledHub) -> None:
    hubctl = [str(installed / "hubctl"), "--hub", hub.url]
    assert "github" in run([*hubctl, "--help"], hub.workdir)
    sent = [*hubctl, "send", "--type", "deployment_started", "--project", "cli"]
    assert "accepted 1 event" in run([*sent, "--deployment-id", "8"], hub.workdir)
    tree = json.loads(run([*hubctl, "status", "8", "--json"], hub.workdir))
    assert tree["project"] == "cli"
