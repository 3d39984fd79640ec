"""``python -m hubctl``: the same as the ``hubctl`` console script."""

from __future__ import annotations

from hubctl.cli import main

raise SystemExit(main())
