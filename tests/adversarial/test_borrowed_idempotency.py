"""Idempotency keys that cannot be borrowed: by a replayer, or by another sender."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook

from tests.adversarial.conftest import Bystanders, assert_refused, post_from, stored_events
from tests.e2e.server import HubServer

pytestmark = pytest.mark.e2e

SECRET = "whsec_" + "c2VjcmV0LXNpZ25pbmcta2V5LW9mLTMyLWJ5dGVzISE="
TOKENS = ("token-a", "token-b", "token-bystander")
BYSTANDER = {"Authorization": "Bearer token-bystander"}


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[HubServer]:
    server = HubServer(
        tmp_path,
        env={
            "HUB_WEBHOOK_SECRETS": SECRET,
            "HUB_WEBHOOK_TOKENS": ",".join(TOKENS),
            "HUB_LOG_LEVEL": "WARNING",
        },
    ).start()
    yield server
    server.stop()


def standard(body: bytes, message_id: str) -> dict[str, str]:
    moment = datetime.now(UTC)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(moment.timestamp())),
        "webhook-signature": Webhook(SECRET).sign(message_id, moment, body.decode()),
    }


def test_a_captured_signed_request_replayed_with_a_fresh_key_is_not_stored_again(
    guarded: HubServer,
) -> None:
    event = {"type": "deployment_started", "project": "signed", "deployment_id": "s-1"}
    headers = standard(json.dumps(event).encode(), "msg_1")
    with Bystanders(guarded, headers=BYSTANDER):
        first = post_from(guarded, "127.0.0.1", event, headers)
        replays = [
            post_from(guarded, "127.0.0.1", event, {**headers, extra: "fresh-key"})
            for extra in ("Idempotency-Key", "X-GitHub-Delivery")
        ]
    assert first[0] == 200
    for status, answer in replays:
        assert (status, answer) == (200, {**first[1], "duplicate": True})
    assert len(stored_events(guarded, "signed")) == 1


def test_another_sender_cannot_make_this_senders_events_vanish(guarded: HubServer) -> None:
    """B posts first with A's Idempotency-Key and event_id; A's own events are still stored."""
    event = {
        "type": "deployment_started",
        "project": "shared",
        "deployment_id": "d-1",
        "event_id": "a-1",
    }

    def as_(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}", "Idempotency-Key": "key-of-a"}

    with Bystanders(guarded, headers=BYSTANDER):
        squatter = post_from(guarded, "127.0.0.1", event, as_("token-b"))
        real = post_from(guarded, "127.0.0.1", event, as_("token-a"))
    assert (squatter[0], squatter[1]["duplicate"]) == (200, False)
    assert (real[0], real[1]["duplicate"]) == (200, False)
    assert len(stored_events(guarded, "shared")) == 2


def test_a_key_reused_for_another_body_is_a_409_that_stores_nothing(guarded: HubServer) -> None:
    headers = {"Authorization": "Bearer token-a", "Idempotency-Key": "once"}
    first = {"type": "deployment_started", "project": "keys", "deployment_id": "k-1"}
    with Bystanders(guarded, headers=BYSTANDER):
        assert post_from(guarded, "127.0.0.1", first, headers)[0] == 200
        status, answer = post_from(guarded, "127.0.0.1", {**first, "deployment_id": "k-2"}, headers)
    assert_refused(status, answer, 409, "idempotency_conflict")
    assert [e["deployment_id"] for e in stored_events(guarded, "keys")] == ["k-1"]
