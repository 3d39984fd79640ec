#!/usr/bin/env python3
"""Print pip constraints that pin each direct dependency to the lowest version setup.cfg allows.

``make test-lowest`` installs the hub with them, to show that the minimums in
setup.cfg are ones the code works with.  Read: ``install_requires`` and the
extras named as arguments (``test``: the tools the tests run with).  Every
requirement must have a ``>=`` minimum; a name required twice is pinned at
the higher of its minimums.  Dependencies of dependencies are left to pip,
which takes their newest compatible releases.

Usage: scripts/lowest_constraints.py [EXTRA ...] > constraints.txt
"""

from __future__ import annotations

import configparser
import re
import sys
from pathlib import Path

SETUP_CFG = Path(__file__).resolve().parent.parent / "setup.cfg"
#: ``name[extras]>=version``, possibly followed by more specifiers or a marker.
REQUIREMENT = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*>=\s*([0-9][0-9.]*)\b")


def release(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def minimums(setup_cfg: Path, extras: list[str]) -> dict[str, str]:
    config = configparser.ConfigParser()
    config.read(setup_cfg)
    lines = config["options"]["install_requires"].splitlines()
    for extra in extras:
        lines += config["options.extras_require"][extra].splitlines()
    pins: dict[str, str] = {}
    for line in (line.strip() for line in lines):
        if not line:
            continue  # comment lines come out of configparser empty
        match = REQUIREMENT.match(line)
        if match is None:
            raise SystemExit(f"{setup_cfg.name}: {line!r} has no >= minimum to test")
        name = re.sub(r"[-_.]+", "-", match[1]).lower()
        version = match[2].rstrip(".")
        if name not in pins or release(version) > release(pins[name]):
            pins[name] = version
    return pins


def main(argv: list[str]) -> None:
    for name, version in sorted(minimums(SETUP_CFG, argv).items()):
        sys.stdout.write(f"{name}=={version}\n")


if __name__ == "__main__":
    main(sys.argv[1:])
