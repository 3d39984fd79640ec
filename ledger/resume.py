"""Whether a client that resumes from an event id can be given everything it missed.

The WebSocket's ``subscribed`` frame, the SSE stream and the read API all
answer with this one decision (``recovered``), whatever the store.
"""

from __future__ import annotations

from dataclasses import dataclass

from ledger.ids import parse_event_id


@dataclass(frozen=True, slots=True)
class Resume:
    """Where a replay starts (``after``: a seq) and whether it reaches the client's point."""

    after: int
    recovered: bool

    def truncated(self, since: str | None) -> Resume:
        """The same replay cut short by its limit: it no longer reaches a given ``since``."""
        return Resume(self.after, self.recovered and since is None)


def seq_in(since: str, epoch: int) -> int | None:
    """The seq of event id ``since`` when this store of ``epoch`` issued it, else ``None``."""
    position = parse_event_id(since)
    return position[1] if position is not None and position[0] == epoch else None


def resume_from(since: str | None, *, epoch: int, upto: int, pruned_upto: int) -> Resume:
    """The replay for a client that last saw ``since`` (``None``: a fresh subscription).

    An id from another epoch, not issued by this hub or from the future
    (past ``upto``) cannot be placed: the replay starts over and says so.
    An id older than what pruning removed is placed, but the history no
    longer reaches back to it.
    """
    if since is None:
        return Resume(0, True)
    seq = seq_in(since, epoch)
    if seq is None or seq > upto:
        return Resume(0, False)
    return Resume(seq, seq >= pruned_upto)
