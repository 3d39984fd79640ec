"""Events stored as senders deliver them: in any order, some twice, in writes of any size.

What the kept-versus-recomputed property tests of the stores' derived tables
(aggregates, step runs) share: each checks its table after every write and
after pruning.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TypeVar

from hypothesis import strategies as st

from ledger.events import Event
from storage.store import Batch, Store

S = TypeVar("S", bound=Store)

#: The sizes of the writes, taken in turn, and how many events retention keeps.
write_sizes = st.lists(st.integers(min_value=1, max_value=5), min_size=1, max_size=4)
kept_events = st.integers(min_value=0, max_value=40)


def batches(events: list[Event], sizes: list[int]) -> Iterator[list[Event]]:
    """``events`` in consecutive writes, their sizes taken from ``sizes`` in turn."""
    index, turn = 0, 0
    while index < len(events):
        size = sizes[turn % len(sizes)]
        yield events[index : index + size]
        index, turn = index + size, turn + 1


def store_checking(
    store: S,
    events: list[Event],
    data: st.DataObject,
    sizes: list[int],
    check: Callable[[S], None],
) -> None:
    """Store ``events`` in an order ``data`` draws, with up to four repeated, in writes of
    ``sizes``; ``check`` the store after each write and after pruning; then close it."""
    order = data.draw(st.permutations(events))
    repeats = data.draw(st.lists(st.sampled_from(events), max_size=4))
    try:
        for part in batches([*order, *repeats], sizes):
            store.append(Batch(part))
            check(store)
        store.prune()
        check(store)
    finally:
        store.close()
