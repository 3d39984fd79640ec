"""One version string: setup.cfg's, read through the installed distribution in one place."""

from __future__ import annotations

import re

from ledger import version
from tests.conftest import PACKAGES, ROOT, declared_version


def test_the_installed_version_is_the_one_setup_cfg_declares() -> None:
    """A stale install (setup.cfg bumped, not reinstalled) would report the old one."""
    assert version() == declared_version()


def test_the_version_is_a_release_number() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+", version())


def test_only_ledger_reads_the_distribution_version() -> None:
    """Everyone else asks ``ledger.version()``, so no two places can disagree."""
    readers = [
        str(path.relative_to(ROOT))
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if "importlib.metadata" in path.read_text(encoding="utf-8")
    ]
    assert readers == ["ledger/__init__.py"]


def test_the_changelog_has_an_entry_for_this_version() -> None:
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert re.search(rf"^## \[{re.escape(version())}\] - \d{{4}}-\d{{2}}-\d{{2}}$", changelog, re.M)
