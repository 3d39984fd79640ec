"""An event's body as the stores keep it gives the event back exactly, whatever it held."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from ledger.events import Event, compact_payload, full_payload
from storage.bodies import event_of, pack, unpack

AT = "2025-03-01T10:00:00.000Z"


def event(kind: str = "step_completed", **payload: Any) -> Event:
    return Event(kind, "web", "d1", AT, full_payload(payload), "1-000000000001")


def back(raw: bytes, sent: Event, text: str | None = None) -> Event:
    return event_of(
        unpack(raw),
        event_type=sent.type,
        project=sent.project,
        deployment_id=sent.deployment_id,
        event_id=sent.id,
        text=text,
    )


@pytest.mark.parametrize(
    "sent",
    [
        event(source_format="step_completed", completed_at=AT, status="success"),
        event(source_format="github_workflow_job", started_at=AT, completed_at=AT),
        event(started_at="2025-03-01T09:59:00.000Z", completed_at=AT),
        event(),  # no source format at all
        event("log_entry", message="hello", level="info", source_format="log_entry"),
        event(extra={"version": "1.2"}, retry=True, duration_ms=0),
    ],
)
def test_a_packed_event_reads_back_exactly(sent: Event) -> None:
    assert back(pack(sent), sent).to_dict() == sent.to_dict()


def test_a_body_leaves_out_what_the_event_repeats() -> None:
    sent = event(source_format="step_completed", completed_at=AT, status="success")
    assert orjson.loads(pack(sent)) == {"t": AT, "q": {"status": "success"}, "a": 2}


def test_a_message_held_by_log_lines_is_taken_back_from_them() -> None:
    sent = event("log_entry", message="two\nlines", source_format="log_entry")
    raw = pack(sent, (7, 2))
    assert b"two" not in raw
    assert orjson.loads(raw)["l"] == [7, 2]
    assert back(raw, sent, text="two\nlines").to_dict() == sent.to_dict()


@pytest.mark.parametrize("keys", [("t", "p"), ("timestamp", "payload")])
def test_bodies_written_before_read_as_they_are(keys: tuple[str, str]) -> None:
    sent = event(source_format="step_completed", completed_at=AT, status="success")
    raw = orjson.dumps({keys[0]: AT, keys[1]: compact_payload(sent.payload)})
    assert back(raw, sent).to_dict() == sent.to_dict()
