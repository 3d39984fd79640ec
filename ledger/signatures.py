"""Failure signatures: the same failure, however its details vary, groups under one name.

A failing line carries details that change from run to run (times, ids,
numbers, temporary paths, durations, ports, the values of variables) around
the words that say what failed.  :func:`normalise` replaces each kind of
detail with a placeholder and keeps the words; :func:`signature` names the
result with a short stable digest.  Two lines that differ only in details get
one signature; lines that say different things get different ones
(``tests/unit/test_signatures.py``, with hypothesis varying the details).
"""

from __future__ import annotations

import hashlib
import re

from ledger.ansi import strip_ansi

#: Longest normalised text kept (and hashed): what a failure says fits well within it.
MAX_PATTERN = 300

#: CI markers in front of a line (GitHub's ``##[error]``, workflow commands).
_CI_PREFIX = re.compile(r"^\s*(?:##\[\w+\]|::\w+(?:\s[^:]*)?::)")

#: Each detail and its placeholder, applied in this order (earlier ones are more specific).
_DETAILS: tuple[tuple[re.Pattern[str], str], ...] = (
    # timestamps: ISO dates with times, then bare dates and clock times
    (
        re.compile(
            r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d(?::\d\d(?:[.,]\d+)?)?(?:\s?Z|\s?[+-]\d\d:?\d\d)?"
        ),
        "<time>",
    ),
    (re.compile(r"\b\d{4}[-/]\d\d[-/]\d\d\b"), "<date>"),
    (re.compile(r"\b\d{1,2}:\d\d:\d\d(?:[.,]\d+)?\b"), "<time>"),
    # ids
    (
        re.compile(
            r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"
        ),
        "<id>",
    ),
    (re.compile(r"\b0x[0-9a-fA-F]+\b"), "<hex>"),
    (re.compile(r"\b(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{7,}\b"), "<hex>"),
    # temporary paths, whole (their names are random)
    (
        re.compile(
            r"(?:(?<![\w/])(?:/private)?/(?:tmp|var/tmp|var/folders|dev/shm)(?:/[^\s'\"`:,;)\]]*)?"
            r"|/home/runner/_?work/_temp(?:/[^\s'\"`:,;)\]]*)?"
            r"|\b[A-Za-z]:\\Users\\[^\\\s]+\\AppData\\Local\\Temp(?:\\[^\s'\"`:,;)\]]*)?)"
        ),
        "<tmp>",
    ),
    # addresses and ports
    (re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}\b"), "<ip>"),
    (re.compile(r"(?<=[\w>\]]):\d{1,5}\b"), ":<port>"),
    # durations: 1.5s, 300 ms, 2m30s, 12 seconds
    (
        re.compile(
            r"(?<![\w.])(?:\d+(?:\.\d+)?(?:h|m|s|ms|us|µs|ns)){2,}\b"
            r"|(?<![\w.])\d+(?:\.\d+)?\s?(?:ms|us|µs|ns|s|secs?|seconds?|m|mins?|minutes?|h|hrs?|hours?)\b"
        ),
        "<duration>",
    ),
    # quoted values (a quote that opens after a letter is an apostrophe: can't)
    (re.compile(r"(?<!\w)'[^'\n]*'(?!\w)"), "<value>"),
    (re.compile(r'(?<!\w)"[^"\n]*"(?!\w)'), "<value>"),
    (re.compile(r"`[^`\n]*`"), "<value>"),
    (re.compile(r"“[^”\n]*”|‘[^’\n]*’|「[^」\n]*」|『[^』\n]*』"), "<value>"),
    # any other number standing on its own (E0425 and x86_64 are names, not numbers)
    (re.compile(r"(?<![A-Za-z_\d])\d+(?:[.,]\d+)*(?![A-Za-z_\d])"), "<n>"),
)
#: Placeholders and brackets a line may start with (its time stamp, a counter).
_LEADING = re.compile(r"^(?:[\[(]?\s*(?:<time>|<date>|<n>)\s*[\])]?[\s:|-]*)+")
_SPACE = re.compile(r"\s+")


def normalise(text: str) -> str:
    """The words of ``text`` that say what failed, with every detail as a placeholder."""
    plain = _CI_PREFIX.sub("", strip_ansi(text))
    for pattern, placeholder in _DETAILS:
        plain = pattern.sub(placeholder, plain)
    plain = _LEADING.sub("", plain.strip())
    return _SPACE.sub(" ", plain).strip().lower()[:MAX_PATTERN]


def signature(text: str) -> str:
    """A short, stable name of :func:`normalise`'s result: 16 hex digits."""
    return signature_of_pattern(normalise(text))


def signature_of_pattern(pattern: str) -> str:
    return hashlib.blake2b(pattern.encode(), digest_size=8).hexdigest()
