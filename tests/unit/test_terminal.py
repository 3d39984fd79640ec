"""Sender text reaches a terminal only as printable text and, when colour is on, SGR colours."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hubctl.terminal import clean, escape_json_controls, sender_text

RED, RESET = "\x1b[31m", "\x1b[0m"

HOSTILE = [
    ("clipboard (OSC 52, BEL)", "a\x1b]52;c;cm0gLXJmIH4=\x07b", "ab"),
    ("clipboard (OSC 52, ST)", "a\x1b]52;c;cm0gLXJmIH4=\x1b\\b", "ab"),
    ("window title", "a\x1b]0;owned\x07b", "ab"),
    ("unterminated OSC eats the rest", "a\x1b]0;owned b c", "a"),
    ("clear screen", "a\x1b[2Jb", "ab"),
    ("cursor moves", "a\x1b[1;1Hb\x1b[10Ac", "abc"),
    ("private mode", "a\x1b[?1049hb\x1b[?25l", "ab"),
    ("device control string", "a\x1bP1;2|secret\x1b\\b", "ab"),
    ("privacy message and APC", "a\x1b^pm\x1b\\b\x1b_apc\x07c", "abc"),
    ("8-bit CSI", "a\x9b31mb\x9b2Jc", "abc"),
    ("8-bit OSC and DCS", "a\x9d0;title\x9cb\x90data\x9cc", "abc"),
    ("other C1", "a\x85b\x8dc", "abc"),
    ("bell, NUL, backspace, CR", "a\x07b\x00c\x08d\re", "abcde"),
    ("DEL and vertical controls", "a\x7fb\x0bc\x0cd", "abcd"),
    ("other escapes", "a\x1bcb\x1b(Bc\x1b7d\x1b\\e", "abcde"),
    ("a lone ESC at the end", "abc\x1b", "abc"),
    ("a CSI cut short", "abc\x1b[12;", "abc"),
]


@pytest.mark.parametrize(
    ("text", "expected"), [h[1:] for h in HOSTILE], ids=[h[0] for h in HOSTILE]
)
@pytest.mark.parametrize("colour", [True, False], ids=["colour", "no-colour"])
def test_hostile_sequences_are_dropped_whole(text: str, expected: str, colour: bool) -> None:
    assert clean(text, colour=colour) == expected


def test_tabs_newlines_and_unicode_stay() -> None:
    text = "步骤\tok\nnext line ✓ \u00e9\u00a0x"
    assert clean(text, colour=False) == text


@pytest.mark.parametrize(
    "sgr",
    ["\x1b[31m", "\x1b[0m", "\x1b[m", "\x1b[1;32m", "\x1b[38;5;208m", "\x1b[38;2;10;20;30m"],
)
def test_colours_stay_only_when_colour_is_on(sgr: str) -> None:
    text = f"a{sgr}b"
    assert clean(text, colour=True) == text
    assert clean(text, colour=False) == "ab"


def test_colours_around_hostile_text_keep_and_the_rest_goes() -> None:
    text = f"{RED}red\x1b]0;title\x07{RESET} \x1b[2J\x9b1mdone"
    assert clean(text, colour=True) == f"{RED}red{RESET} done"
    assert clean(text, colour=False) == "red done"


def test_sender_colours_end_with_the_sender_text() -> None:
    assert sender_text(f"{RED}red", colour=True) == f"{RED}red{RESET}"
    assert sender_text(f"{RED}red{RESET}", colour=True) == f"{RED}red{RESET}"
    assert sender_text(f"{RED}red", colour=False) == "red"
    assert sender_text(42, colour=True) == "42"


@given(st.text(alphabet=st.characters(max_codepoint=0x2FF)))
def test_nothing_a_terminal_acts_on_survives(text: str) -> None:
    for colour in (True, False):
        out = clean(text, colour=colour)
        without_sgr = re.sub(r"\x1b\[[0-9;:]*m", "", out) if colour else out
        assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", without_sgr), repr(out)
        assert clean(out, colour=colour) == out


def test_json_lines_escape_what_json_leaves_raw() -> None:
    value = {"step": "a\x9b2J\x7fb\u2028", "error": "\x1b]0;t\x07"}
    line = escape_json_controls(json.dumps(value, ensure_ascii=False))
    assert json.loads(line) == value
    assert not re.search(r"[\x00-\x1f\x7f-\x9f\u2028]", line)
