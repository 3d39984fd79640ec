"""The worker's frame cache: an event framed once, a run joined once, for every connection."""

from __future__ import annotations

from app.ingest import load_one
from broadcaster.framing import FrameCache, text_frame
from broadcaster.hub import Envelope


def envelopes(first: int, count: int, message: str = "hello") -> list[Envelope]:
    body = {"type": "log_entry", "project": "web", "deployment_id": "1", "message": message}
    event = load_one(body, "deployment")
    return [Envelope(seq, event) for seq in range(first, first + count)]


def test_a_run_is_the_frames_of_its_events_in_order() -> None:
    frames = FrameCache(1 << 20)
    run = envelopes(1, 3)
    assert frames.joined(run, 1 << 20) == b"".join(text_frame(e.frame) for e in run)


def test_the_same_run_is_joined_once_for_every_connection() -> None:
    frames = FrameCache(1 << 20)
    run = envelopes(1, 10)
    first = frames.joined(run, 1 << 20)
    assert frames.joined(run, 1 << 20) is first


def test_another_run_is_joined_anew() -> None:
    """A run a type filter narrowed is a list of its own, and so is the next run."""
    frames = FrameCache(1 << 20)
    run = envelopes(1, 4)
    whole = frames.joined(run, 1 << 20)
    narrowed = frames.joined(run[1:], 1 << 20)
    assert narrowed == whole[len(frames.get(run[0])) :]
    assert frames.joined(envelopes(5, 2), 1 << 20) == b"".join(
        frames.get(e) for e in envelopes(5, 2)
    )


def test_a_run_over_the_limit_is_not_joined_nor_kept() -> None:
    frames = FrameCache(1 << 20)
    run = envelopes(1, 4, "x" * 1000)
    assert frames.joined(run, 3000) is None
    assert frames.joined(run, 3000) is None
    assert frames.joined(run[:2], 3000) is not None
