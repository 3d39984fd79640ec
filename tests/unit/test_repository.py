"""The repository carries everything it needs: nothing tracked points outside it.

A user's clone has nothing beside it, so a document, test or script that
names a file outside the checkout is broken for everyone but its author.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT

#: Markdown links and images: ``[text](target)``.
MARKDOWN_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def tracked_files() -> list[Path]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    listing = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    return [ROOT / name for name in listing.decode().split("\0") if name]


def text_of(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
        return None


def sibling_mentions() -> re.Pattern[str]:
    """The shared folder beside the checkout by its relative path, and any folder beside
    the checkout by its absolute path.

    Only the siblings themselves: the checkout may sit in ``/tmp``, which
    documents rightly name when they speak of temporary paths in general.
    """
    siblings = sorted(re.escape(f"{entry}") for entry in ROOT.parent.iterdir() if entry != ROOT)
    names = [re.escape(f"..{'/'}shared"), *siblings]
    return re.compile(f"(?:{'|'.join(names)})(?![\\w.-])")


def test_no_tracked_file_names_a_sibling_of_the_checkout() -> None:
    """No sibling folder of the checkout is named, relatively or by its absolute path."""
    outside = sibling_mentions()
    offenders = []
    for path in tracked_files():
        text = text_of(path)
        if text is None:
            continue
        offenders += [f"{path.relative_to(ROOT)} mentions {m}" for m in outside.findall(text)]
    assert offenders == []


def test_the_sibling_check_finds_what_it_looks_for(tmp_path: Path) -> None:
    outside = sibling_mentions()
    assert outside.search(f"see ..{'/'}shared/CONTRACT.md")
    for entry in list(ROOT.parent.iterdir())[:20]:
        if entry != ROOT:
            assert outside.search(f"read {entry}/x"), entry
            assert not outside.search(f"read {entry}-other")
    assert not outside.search(f"a temporary path such as {ROOT.parent}/{tmp_path.name}-new/x")


def test_every_relative_markdown_link_resolves_inside_the_repository() -> None:
    broken = []
    for path in tracked_files():
        if path.suffix != ".md" or "fixtures" in path.parts:
            continue
        for target in MARKDOWN_LINK.findall(text_of(path) or ""):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue  # a URL or an anchor on the same page
            resolved = (path.parent / target.split("#", 1)[0]).resolve()
            if not resolved.is_relative_to(ROOT) or not resolved.exists():
                broken.append(f"{path.relative_to(ROOT)} -> {target}")
    assert broken == []


def test_the_captured_payloads_live_in_the_repository() -> None:
    manifest = ROOT / "tests" / "fixtures" / "original-payloads" / "manifest.json"
    assert manifest.is_file()
    assert manifest.relative_to(ROOT) in {path.relative_to(ROOT) for path in tracked_files()}
