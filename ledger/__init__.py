"""The event model and the rules that turn events into the deployment view.

Pure: nothing here does I/O or imports Flask, gevent, Redis or Prometheus, so
the stores, the web app, the fan-out and ``hubctl`` can all build on it.  The
one exception is :func:`version`, kept here so that anyone may ask for it.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as distribution_version

#: The distribution name in setup.cfg, whose version is the hub's.
DISTRIBUTION = "deploy-dashboard-hub"


@cache
def version() -> str:
    """The hub's version: the installed distribution's (setup.cfg's ``version``).

    The one place it is read: ``/healthz``, the WebSocket welcome frame and
    ``deploy-hub --version`` all report this.  ``"unknown"`` when the code runs
    from a tree that was never installed.
    """
    try:
        return distribution_version(DISTRIBUTION)
    except PackageNotFoundError:  # pragma: no cover - a checkout used without pip install
        return "unknown"
