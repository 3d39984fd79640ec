"""The README stays true: its first lines show the two commands, its table every setting."""

from __future__ import annotations

import dataclasses

from app.config import PREFIX, Settings
from tests.conftest import ROOT


def test_readme_starts_with_the_two_commands() -> None:
    head = "\n".join((ROOT / "README.md").read_text().splitlines()[:6])
    assert "make run" in head
    assert "make test" in head


def test_readme_lists_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [
        f"{PREFIX}{f.name.upper()}"
        for f in dataclasses.fields(Settings)
        if f"`{PREFIX}{f.name.upper()}`" not in readme
    ]
    assert missing == []
