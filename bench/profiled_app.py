"""The hub under cProfile, for finding where a request's time goes (bench use only).

``python -m gunicorn ... 'bench.profiled_app:create_app()'`` with
``HUB_BENCH_PROFILE=PATH`` set: the worker profiles everything it runs and
writes the statistics to ``PATH`` when it exits (read them with ``pstats``).
"""

from __future__ import annotations

import atexit
import cProfile
import os

from flask import Flask

from server.app import create_app as create_hub


def create_app() -> Flask:
    app = create_hub()
    profile = cProfile.Profile()

    def dump() -> None:
        profile.disable()
        profile.dump_stats(os.environ["HUB_BENCH_PROFILE"])

    atexit.register(dump)
    profile.enable()
    return app
