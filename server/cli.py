"""``deploy-hub`` (also ``python -m server``): start the hub under gunicorn.

It runs ``gunicorn -c python:server.gunicorn_conf [OPTIONS] server.app:create_app()``
with the settings that ship inside this package, so an installed hub starts
from any directory, without the source tree.  Everything is configured with
the ``HUB_*`` environment variables (README); arguments given to
``deploy-hub`` go to gunicorn as they are (``deploy-hub --pid /run/hub.pid``).

gunicorn replaces this process (``exec``): a process manager's signals
(SIGTERM, SIGHUP to reload) reach gunicorn's master directly.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

#: gunicorn's settings module, loaded from the installed package.
CONFIG = "python:server.gunicorn_conf"
#: The app factory gunicorn calls in each worker.
APP = "server.app:create_app()"

USAGE = """\
usage: deploy-hub [GUNICORN OPTION ...]

Start the deployment dashboard hub under gunicorn with gevent workers:
  gunicorn -c {config} [GUNICORN OPTION ...] '{app}'
Settings are HUB_* environment variables (HUB_HOST, HUB_PORT, HUB_STORE_URL, ...);
options given here go to gunicorn as they are (python -m gunicorn --help lists them).

  -h, --help  show this message and exit
  --version   print the hub's version and exit
"""


def gunicorn_command(options: Sequence[str]) -> list[str]:
    """The gunicorn command line: this interpreter, the packaged settings, ``options``."""
    return [sys.executable, "-m", "gunicorn", "-c", CONFIG, *options, APP]


def main(argv: Sequence[str] | None = None) -> None:
    options = list(sys.argv[1:] if argv is None else argv)
    if options in (["-h"], ["--help"]):
        print(USAGE.format(config=CONFIG, app=APP), end="")  # noqa: T201 - the command's output
        return
    if options == ["--version"]:
        from ledger import version

        print(f"deploy-hub {version()}")  # noqa: T201 - the command's output
        return
    command = gunicorn_command(options)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(command[0], command)  # noqa: S606 - a fixed program: this Python's gunicorn
