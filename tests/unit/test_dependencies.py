"""setup.cfg declares every library the shipped code imports, each with a minimum to test."""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions

from scripts.lowest_constraints import SETUP_CFG, minimums
from tests.conftest import PACKAGES, ROOT

#: Imported only while type checking (``if TYPE_CHECKING``), never at run time.
TYPING_ONLY = {"_typeshed"}


def imported_modules() -> set[str]:
    """Top-level names of everything the shipped packages import (absolute imports)."""
    names = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    names.update(alias.name.partition(".")[0] for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names.add(node.module.partition(".")[0])
    return names - set(sys.stdlib_module_names) - set(PACKAGES) - {"__future__"} - TYPING_ONLY


def normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_imported_library_is_declared() -> None:
    declared = set(minimums(SETUP_CFG, []))
    providers = packages_distributions()
    undeclared = {
        module: providers.get(module)
        for module in imported_modules()
        if not {normalised(dist) for dist in providers.get(module, [])} & declared
    }
    assert undeclared == {}


def test_the_lowest_constraints_pin_every_direct_dependency() -> None:
    pins = minimums(SETUP_CFG, ["test"])
    assert pins["redis"] == "6.0"
    assert pins["gunicorn"] == "23.0"  # the extra's name, without [gevent]
    assert pins["wsproto"] == "0.15"
    # required by the hub (1.0) and by the test extra (1.9.1): the higher minimum wins
    assert pins["websocket-client"] == "1.9.1"
    assert minimums(SETUP_CFG, [])["websocket-client"] == "1.0"
