"""The per-connection queue behaves exactly like a deque, through compactions and clears."""

from __future__ import annotations

from collections import deque

from hypothesis import given
from hypothesis import strategies as st

from broadcaster.hub import Fifo

OPS = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.integers(1, 3000)),
        st.tuples(st.just("popleft"), st.integers(1, 3000)),
        st.tuples(st.just("clear"), st.just(0)),
    ),
    max_size=30,
)


@given(OPS)
def test_fifo_matches_a_deque(ops: list[tuple[str, int]]) -> None:
    """Runs of thousands of appends and pops cross the compaction threshold."""
    fifo: Fifo[int] = Fifo()
    model: deque[int] = deque()
    counter = 0
    for op, n in ops:
        if op == "append":
            for _ in range(n):
                fifo.append(counter)
                model.append(counter)
                counter += 1
        elif op == "popleft":
            for _ in range(min(n, len(model))):
                assert fifo.first() == model[0]
                assert fifo.popleft() == model.popleft()
        else:
            fifo.clear()
            model.clear()
        assert len(fifo) == len(model)
    assert [fifo.popleft() for _ in range(len(fifo))] == list(model)


def test_an_empty_fifo_raises_index_error() -> None:
    fifo: Fifo[str] = Fifo()
    fifo.append("a")
    assert fifo.popleft() == "a"
    try:
        fifo.popleft()
    except IndexError:
        return
    raise AssertionError("popleft on an empty Fifo must raise IndexError")
