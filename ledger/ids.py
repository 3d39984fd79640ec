"""Event ids: ``<epoch>-<seq>``, increasing, and telling one store's history from another's."""

from __future__ import annotations


def make_event_id(epoch: int, seq: int) -> str:
    """Event ids are ``<epoch>-<seq>``, fixed width, so they compare as strings do.

    The epoch is the store's creation time in ms: a store that was wiped starts a
    newer epoch, so ids keep increasing and clients can tell history was lost.
    """
    return f"{epoch:013d}-{seq:012d}"


def parse_event_id(text: str) -> tuple[int, int] | None:
    """``(epoch, seq)`` of an id this hub issued, or ``None`` for anything else.

    Called for every event stored and dispatched, hence string tests instead of a
    regular expression: 13 ASCII digits, ``-``, 12 ASCII digits.
    """
    if len(text) != 26 or text[13] != "-" or not text.isascii():
        return None
    epoch, seq = text[:13], text[14:]
    if not (epoch.isdigit() and seq.isdigit()):
        return None
    return int(epoch), int(seq)
