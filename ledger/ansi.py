"""Terminal escape sequences taken out of log text, for reading and matching it.

Lines are stored byte for byte (colours included); whatever reads them as
words (the failing line, signatures, search) first takes the escapes out, so
that ``\\x1b[31mError:\\x1b[0m`` reads as ``Error:``.
"""

from __future__ import annotations

import re

#: CSI sequences (colours, cursor moves), OSC sequences (titles, links) ended by BEL or
#: ST, and the two-character escapes; a lone carriage return's earlier text is kept.
_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI: ESC [ parameters intermediates final
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC: ESC ] text (BEL | ESC \)
    r"|\x1b[@-Z\\-_]"  # two-character escapes
    r"|\x9b[0-?]*[ -/]*[@-~]"  # the one-byte CSI
)


def strip_ansi(text: str) -> str:
    """``text`` without terminal escape sequences (plain text is returned as it is)."""
    if "\x1b" not in text and "\x9b" not in text:
        return text
    return _ESCAPES.sub("", text)
