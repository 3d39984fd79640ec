"""Numbers past 64 bits: the sender gets a 422, and nobody else notices."""

from __future__ import annotations

import concurrent.futures
from typing import Any

import pytest

from tests.adversarial.conftest import (
    Bystanders,
    assert_refused,
    post_from,
    stored_events,
)
from tests.e2e.server import HubServer

pytestmark = pytest.mark.e2e

POISON = [
    {"type": "step_completed", "step_name": "s", "step_status": "success", "duration_ms": 2**70},
    {"type": "step_completed", "step_name": "s", "step_status": "success", "duration": 1e300},
    {"type": "step_completed", "step_name": "s", "step_status": "success", "step_number": 1e300},
    {"type": "deployment_completed", "status": "success", "duration": "1e300"},
]


def test_poison_bodies_sent_with_valid_ones_fail_alone(hub: HubServer) -> None:
    """Posted at once from many threads: every valid body is stored, no poison is."""

    def poison(index: int) -> tuple[int, Any]:
        body = {**POISON[index % len(POISON)], "project": "poison", "deployment_id": "p"}
        return post_from(hub, "127.0.0.1", body)

    def valid(index: int) -> tuple[int, Any]:
        body = {
            "type": "log_entry",
            "project": "valid",
            "deployment_id": "v",
            "message": str(index),
        }
        return post_from(hub, "127.0.0.1", body)

    with Bystanders(hub), concurrent.futures.ThreadPoolExecutor(16) as pool:
        poisoned = [pool.submit(poison, i) for i in range(100)]
        valids = [pool.submit(valid, i) for i in range(300)]
        answers = [future.result() for future in poisoned]
        accepted = [future.result() for future in valids]
    for status, answer in answers:
        assert_refused(status, answer, 422, "validation_failed")
        (field,) = answer["error"]["details"]
        assert "Must be between 0 and" in answer["error"]["details"][field][0]
    assert [status for status, _ in accepted] == [200] * 300
    assert stored_events(hub, "poison") == []
    assert len(stored_events(hub, "valid")) == 300


@pytest.mark.parametrize("body", POISON, ids=["ms-2**70", "seconds-1e300", "step-1e300", "string"])
def test_the_same_poison_gets_the_same_answer_on_every_store(
    hub: HubServer, body: dict[str, Any]
) -> None:
    with Bystanders(hub):
        status, answer = post_from(
            hub, "127.0.0.1", {**body, "project": "poison", "deployment_id": "p"}
        )
    assert_refused(status, answer, 422, "validation_failed")
    assert stored_events(hub, "poison") == []
