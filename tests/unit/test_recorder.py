"""The recorder: one set of rules for routing, folding and storing, whatever the order.

A plain in-memory book keeps what each write decided, as a store would, and
answers the recorder's questions from it; no store is involved.  The same
properties run against every real store in ``tests/integration/test_store_contract.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.ingest import load_one
from ledger.events import LIFECYCLE_TYPES, Event, Join
from ledger.fold import Fold
from ledger.recorder import Entry, Recorder, Stored, auto_deployment_id
from ledger.view import build_view, render
from tests.unit.test_fold import STORY

EPOCH = 1700000000000


@dataclass
class Book:
    """A store's memory of the ledger's decisions: folds, open deployments, lifecycles."""

    folds: dict[str, Fold] = field(default_factory=dict)
    metrics: dict[str, bytes] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    next_seq: int = 1

    # the Source the recorder reads
    def deployment(self, deployment_id: str) -> Stored | None:
        fold = self.folds.get(deployment_id)
        return None if fold is None else Stored(fold.copy(), self.metrics.get(deployment_id))

    def open_deployments(self, project: str, limit: int) -> list[tuple[str, str]]:
        rows = [
            (fold.sort_ts(), deployment_id)
            for deployment_id, fold in self.folds.items()
            if fold.project == project and fold.headline()[0] in ("running", "pending")
        ]
        return sorted(rows, reverse=True)[:limit]

    def lifecycle(self, deployment_id: str) -> list[Event]:
        return [
            e for e in self.events if e.deployment_id == deployment_id and e.type in LIFECYCLE_TYPES
        ]

    def write(self, events: list[Event], *, seqs_known: bool = True) -> list[Entry]:
        """One write: record every event, then keep what the recorder decided."""
        recorder = Recorder(self, epoch=EPOCH, next_seq=self.next_seq if seqs_known else None)
        entries = [recorder.record(event) for event in events]
        self.next_seq += len(events)
        self.events += [entry.event for entry in entries]
        for touched in recorder.deployments():
            self.folds[touched.key] = touched.fold
            if touched.metrics is not None:
                self.metrics[touched.key] = touched.metrics[0]
        return entries


def event(**body: Any) -> Event:
    return load_one({"project": "web", "deployment_id": "7", **body}, "deployment")


def legacy(status: str, timestamp: str, project: str = "site", **more: Any) -> Event:
    body = {"project": project, "status": status, "runId": "", "timestamp": timestamp, **more}
    return load_one(body, "deployment")


def view_of(book: Book, deployment_id: str) -> dict[str, Any]:
    return render(book.folds[deployment_id], deployment_id)


@settings(max_examples=150, deadline=None)
@given(
    st.permutations(STORY),
    st.lists(st.sampled_from(STORY), max_size=4),
    st.lists(st.integers(min_value=1, max_value=4), min_size=1, max_size=12),
)
def test_any_arrival_order_and_any_split_into_writes_folds_as_a_fresh_fold(
    ordering: list[Event], repeats: list[Event], sizes: list[int]
) -> None:
    """Late events, repeats and however the events are split into writes: one view."""
    book = Book()
    pending = ordering + repeats
    for size in sizes * len(pending):
        if not pending:
            break
        book.write(pending[:size])
        pending = pending[size:]
    assert view_of(book, "7") == build_view("7", STORY)


@settings(max_examples=60, deadline=None)
@given(st.permutations(STORY), st.integers(min_value=0, max_value=len(STORY)))
def test_a_fold_the_store_lost_track_of_is_folded_again_from_the_lifecycle(
    ordering: list[Event], cut: int
) -> None:
    """The fold decided from a snapshot and the one folded from the stored events agree."""
    book = Book()
    book.write(ordering[:cut])
    book.write(ordering[cut:])
    refolded = Fold.of(book.lifecycle("7"))
    assert render(refolded, "7") == view_of(book, "7")


def test_a_running_legacy_body_starts_a_deployment_named_after_its_seq() -> None:
    book = Book()
    [entry] = book.write([legacy("running", "2025-08-12T11:20:00Z")])
    assert entry.event.deployment_id == auto_deployment_id("site", entry.seq or 0)
    assert entry.event.join is Join.NEW


def test_a_completion_joins_the_newest_open_deployment_of_its_project() -> None:
    book = Book()
    [first] = book.write([legacy("running", "2025-08-12T11:20:00Z")])
    [second] = book.write([legacy("running", "2025-08-12T11:25:00Z")])
    book.write([legacy("running", "2025-08-12T11:26:00Z", project="other")])
    [done] = book.write([legacy("success", "2025-08-12T11:30:00Z", duration="60")])
    assert done.event.deployment_id == second.event.deployment_id
    [again] = book.write([legacy("failed", "2025-08-12T11:31:00Z", errorMessage="x")])
    assert again.event.deployment_id == first.event.deployment_id
    [alone] = book.write([legacy("success", "2025-08-12T11:32:00Z")])
    assert alone.new  # nothing of the project is open any more
    assert view_of(book, str(alone.event.deployment_id))["status"] == "success"


def test_joins_within_one_write_see_what_the_write_itself_opened_and_closed() -> None:
    """A write's later bodies join what its earlier ones left open, not the stored rows."""
    book = Book()
    [stored] = book.write([legacy("running", "2025-08-12T11:00:00Z")])
    entries = book.write(
        [
            legacy("running", "2025-08-12T11:20:00Z"),
            legacy("success", "2025-08-12T11:21:00Z"),  # closes the one just started
            legacy("failed", "2025-08-12T11:22:00Z"),  # then the stored one
            legacy("success", "2025-08-12T11:23:00Z"),  # nothing open: a new one
        ]
    )
    started, closing, failing, alone = entries
    assert closing.event.deployment_id == started.event.deployment_id
    assert failing.event.deployment_id == stored.event.deployment_id
    assert alone.new
    assert alone.event.deployment_id not in (
        started.event.deployment_id,
        stored.event.deployment_id,
    )


@pytest.mark.parametrize("seqs_known", [True, False], ids=["sqlite", "redis"])
def test_without_seqs_new_deployments_are_referred_to_by_their_first_event(
    seqs_known: bool,
) -> None:
    """A store that gives seqs while appending learns which event a body joins."""
    book = Book()
    started, joined = book.write(
        [legacy("running", "2025-08-12T11:20:00Z"), legacy("success", "2025-08-12T11:21:00Z")],
        seqs_known=seqs_known,
    )
    assert started.new
    if seqs_known:
        assert joined.joins is None
        assert joined.event.deployment_id == started.event.deployment_id
    else:
        assert joined.joins == 0
        assert started.event.deployment_id is None
        assert joined.event.deployment_id is None


def test_an_unknown_project_takes_the_deployments_real_one() -> None:
    book = Book()
    book.write([event(type="deployment_started", timestamp="2025-08-12T11:20:00Z")])
    [entry] = book.write([event(type="log_entry", project="unknown", message="hi")])
    assert entry.event.project == "web"
    [entry] = book.write([event(type="log_entry", project="", message="hi")])
    assert entry.event.project == "web"


def test_log_lines_and_metrics_leave_the_fold_alone() -> None:
    book = Book()
    book.write([event(type="deployment_started", timestamp="2025-08-12T11:20:00Z")])
    before = book.folds["7"].dumps()
    entries = book.write(
        [
            event(type="log_entry", message="one\ntwo", level="warning"),
            event(type="metrics_update", metrics={"cpu_percent": 5}, timestamp="2025-08-12T11:21Z"),
        ]
    )
    assert [line.text for line in entries[0].lines] == ["one", "two"]
    assert book.folds["7"].dumps() == before
    assert "7" in book.metrics


def test_older_metrics_never_replace_newer_ones() -> None:
    book = Book()
    book.write([event(type="metrics_update", metrics={"n": 2}, timestamp="2025-08-12T11:22Z")])
    newest = book.metrics["7"]
    book.write([event(type="metrics_update", metrics={"n": 1}, timestamp="2025-08-12T11:21Z")])
    assert book.metrics["7"] == newest
