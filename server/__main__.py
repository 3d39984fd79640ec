"""``python -m server``: the same as the ``deploy-hub`` command (``server.cli``)."""

from server.cli import main

main()
