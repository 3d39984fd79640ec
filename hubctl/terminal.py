"""Text from senders made safe to print to a terminal.

Whatever a pipeline sends (a step name, an error, a log line) ends up in
someone's terminal through ``hubctl tail`` and ``hubctl status``.  A terminal
obeys what it is sent: ``ESC ] 52`` writes the clipboard, ``ESC ] 0`` sets the
window title, ``ESC [ 2J`` clears the screen, ``ESC P`` starts a device
control string, and 8-bit C1 bytes (``\\x9b`` is a CSI of its own) do the same
on terminals that honour them.  So every sender-supplied text goes through
:func:`clean` first: it keeps printable text, tabs and newlines, and SGR
colour sequences (``ESC [ ... m``) only when colour is on, and drops every
other escape sequence and control character whole (an unterminated one up to
the end of the text), so none can start, end or smuggle a sequence.
"""

from __future__ import annotations

import re

#: One escape sequence or control character, in the order a terminal would read them.
_CONTROL = re.compile(
    r"""
      (?P<csi>(?:\x1b\[|\x9b)[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]?)
        # CSI: parameters, intermediates, final byte (absent when cut short)
    | (?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?
        # OSC, DCS, SOS, PM, APC: up to BEL or ST, or to the end when unterminated
    | \x1b[\x20-\x2f]*[\x30-\x7e]?
        # any other escape (ESC c, ESC ( B, a lone ST), or a lone ESC
    | [\x00-\x08\x0b-\x1f\x7f-\x9f]
        # C0 controls but tab and newline, DEL, C1 controls
    """,
    re.VERBOSE,
)
#: A colour (SGR) sequence in its 7-bit form: ``ESC [``, numbers, ``m``.
_SGR = re.compile(r"\x1b\[[0-9;:]*m")
RESET = "\x1b[0m"


def clean(text: str, *, colour: bool) -> str:
    """``text`` without escape sequences and control characters other than tab and newline;
    SGR colour sequences are kept when ``colour`` is on."""

    def keep(match: re.Match[str]) -> str:
        sequence = match.group(0)
        return sequence if colour and match.group("csi") and _SGR.fullmatch(sequence) else ""

    return _CONTROL.sub(keep, text)


def sender_text(value: object, *, colour: bool) -> str:
    """A sender's value as printable text; when it keeps colours, they end with it."""
    text = clean(str(value), colour=colour)
    if colour and _SGR.search(text) and not text.endswith(RESET):
        text += RESET
    return text


#: Characters JSON leaves as they are that a terminal would still act on.
_JSON_RAW_CONTROLS = re.compile(r"[\x7f-\x9f\u2028\u2029]")


def escape_json_controls(line: str) -> str:
    """A JSON text with DEL and C1 controls written as ``\\u`` escapes: the same JSON value,
    but nothing a terminal acts on (JSON itself escapes the C0 range)."""
    return _JSON_RAW_CONTROLS.sub(lambda m: f"\\u{ord(m.group(0)):04x}", line)
