"""Another commit of the hub, checked out for one benchmark run beside this one.

``--base REV`` in ``bench/ingest.py`` and ``bench/fanout.py`` runs the hub of
``REV`` in the same run as this checkout's, taking turns with it, so that a
"before and after" is read from one run on one machine-minute rather than from
two runs an hour apart.  The commit is checked out with ``git worktree add
--detach`` into a temporary directory and removed again afterwards; both
hubs use this checkout's interpreter and installed packages.
"""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def describe(rev: str) -> str:
    """``rev`` as a short commit id and subject, for the run's header."""
    return subprocess.run(
        ["git", "log", "-1", "--format=%h %s", rev],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


@contextlib.contextmanager
def checkout(rev: str) -> Iterator[Path]:
    """The tree of ``rev`` in a temporary worktree, for as long as the block runs."""
    with tempfile.TemporaryDirectory(prefix="hub-base-") as tmp:
        tree = Path(tmp) / "tree"
        subprocess.run(
            ["git", "worktree", "add", "--detach", "--quiet", str(tree), rev],
            cwd=ROOT,
            check=True,
        )
        try:
            yield tree
        finally:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=False
            )
