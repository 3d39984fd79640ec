"""``scripts/notify-dashboard.sh`` refuses words the hub would refuse, and only those.

The script checks its arguments before it sends anything, against copies of
the hub's vocabularies (it runs on CI runners without the hub installed).
These tests read the copies out of the script's Python program, so a word
added to the hub but not to the script, or the other way round, fails here.
"""

from __future__ import annotations

import ast
import re
from functools import cache

from app.schemas import LEVEL_WORDS, SCHEMAS
from ledger.events import STATUS_WORDS
from tests.conftest import ROOT

SCRIPT = ROOT / "scripts" / "notify-dashboard.sh"


@cache
def script_constants() -> dict[str, object]:
    """The literal top-level assignments of the Python program the script runs."""
    program = re.search(r"<<'PY'[^\n]*\n(.*?)\nPY\n", SCRIPT.read_text(), re.DOTALL)
    assert program is not None, "the script's Python program was not found"
    constants: dict[str, object] = {}
    for node in ast.parse(program.group(1)).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name) and target.id.isupper():
                constants[target.id] = ast.literal_eval(node.value)
    return constants


def words(name: str) -> list[str]:
    value = script_constants()[name]
    assert isinstance(value, tuple)
    assert all(isinstance(word, str) for word in value)
    assert len(set(value)) == len(value), f"{name} of the script repeats a word"
    return sorted(value)


def test_the_scripts_status_words_are_the_hubs() -> None:
    assert words("STATUS_WORDS") == sorted(STATUS_WORDS)


def test_the_scripts_levels_are_the_hubs() -> None:
    assert words("LEVEL_WORDS") == sorted(LEVEL_WORDS)


def test_the_scripts_event_types_are_the_ones_the_ingest_route_loads() -> None:
    assert words("EVENT_TYPES") == sorted(SCHEMAS)
