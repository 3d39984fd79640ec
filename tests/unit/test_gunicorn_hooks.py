"""The gunicorn settings' worker hooks, run in a process of their own (importing the
settings sets process-wide state: the metrics directory, gunicorn's error writer)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


def test_a_worker_leaves_the_loaded_app_out_of_its_collections(tmp_path: Path) -> None:
    script = (
        "import gc\n"
        "import server.gunicorn_conf as conf\n"
        "import server.app\n"
        "assert gc.get_freeze_count() == 0\n"
        "conf.post_worker_init(None)\n"
        "print(gc.get_freeze_count())\n"
    )
    env = {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
        "HUB_STORE_URL": f"sqlite:///{tmp_path / 'hub.sqlite3'}",
    }
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    frozen = int(done.stdout.strip())
    assert frozen > 10_000  # the modules and objects the app is made of
