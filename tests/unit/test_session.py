"""The WebSocket protocol without a socket: every frame form, every refusal, the replay frames."""

from __future__ import annotations

import json
from typing import Any

import pytest

from broadcaster.codes import ErrorCode
from broadcaster.hub import Envelope
from broadcaster.limits import Limits
from broadcaster.session import (
    HEARTBEAT_ACK,
    PONG,
    Output,
    Session,
    Subscribe,
    Unsubscribe,
    replay,
)
from ledger.events import EVENT_TYPES, Event
from ledger.filters import Filter
from ledger.ids import make_event_id
from storage.store import History

LIMITS = Limits(
    heartbeat_interval=7.5,
    max_subscriptions=3,
    max_frame_bytes=4096,
    send_queue=50,
    replay_project_limit=20,
    replay_max_events=500,
)


@pytest.fixture
def session() -> Session:
    return Session(LIMITS, version="1.2.3", connection_id="c1")


def frame(text: Output | Envelope) -> dict[str, Any]:
    assert isinstance(text, str)
    value: dict[str, Any] = json.loads(text)
    return value


def only(outputs: list[Output]) -> Output:
    assert len(outputs) == 1
    return outputs[0]


def error_code(outputs: list[Output]) -> str:
    answer = frame(only(outputs))
    assert answer["type"] == "error"
    assert answer["message"]
    code: str = answer["code"]
    return code


def event(seq: int, deployment_id: str = "42") -> Event:
    return Event(
        type="log_entry",
        project="web",
        deployment_id=deployment_id,
        timestamp="2025-08-12T11:20:00.000Z",
        id=make_event_id(1700000000000, seq),
    )


def test_welcome_names_the_server_and_its_limits(session: Session) -> None:
    welcome = json.loads(session.welcome())
    assert welcome == {
        "type": "welcome",
        "server": "deploy-dashboard-hub",
        "version": "1.2.3",
        "protocol": 2,
        "connection_id": "c1",
        "limits": {
            "heartbeat_interval": 7.5,
            "max_subscriptions": 3,
            "max_frame_bytes": 4096,
            "send_queue": 50,
            "replay_project_limit": 20,
            "replay_max_events": 500,
        },
        "stale_after": 3600.0,
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"type": "subscribe_project", "project": "web"}', Filter(project="web")),
        ('{"type": "subscribe:project", "project": "web"}', Filter(project="web")),
        ('["subscribe_project", "web"]', Filter(project="web")),
        ('["subscribe:project", "web"]', Filter(project="web")),
        ('{"type": "subscribe_deployment", "deployment_id": "42"}', Filter(deployment_id="42")),
        ('{"type": "subscribe:deployment", "deployment_id": "42"}', Filter(deployment_id="42")),
        ('["subscribe_deployment", "42"]', Filter(deployment_id="42")),
        ('["subscribe:deployment", "42"]', Filter(deployment_id="42")),
        ('["subscribe:deployment", 42]', Filter(deployment_id="42")),
    ],
    ids=[
        "object",
        "colon-object",
        "array",
        "colon-array",
        "deployment-object",
        "deployment-colon-object",
        "deployment-array",
        "deployment-colon-array",
        "numeric-run-id",
    ],
)
def test_every_subscribe_form_asks_the_hub_for_the_same_filter(
    session: Session, text: str, expected: Filter
) -> None:
    request = only(session.feed(text))
    assert isinstance(request, Subscribe)
    assert request.match == expected
    assert request.since is None
    assert request.replaces is None


@pytest.mark.parametrize(
    ("subscribe", "unsubscribe"),
    [
        ('["subscribe_project", "web"]', '{"type": "unsubscribe_project", "project": "web"}'),
        ('["subscribe_project", "web"]', '{"type": "unsubscribe:project", "project": "web"}'),
        ('["subscribe_project", "web"]', '["unsubscribe:project", "web"]'),
        ('["subscribe_deployment", "7"]', '["unsubscribe_deployment", "7"]'),
        ('["subscribe_deployment", "7"]', '{"type": "unsubscribe:deployment", "deployment_id": 7}'),
    ],
    ids=["object", "colon-object", "colon-array", "deployment-array", "deployment-colon-object"],
)
def test_every_unsubscribe_form_stops_the_subscription(
    session: Session, subscribe: str, unsubscribe: str
) -> None:
    request = only(session.feed(subscribe))
    assert isinstance(request, Subscribe)
    stop, answer = session.feed(unsubscribe)
    assert stop == Unsubscribe(request.match)
    assert frame(answer) == {
        "type": "unsubscribed",
        **({"project": "web"} if request.match.project else {"deployment_id": "7"}),
    }
    assert session.subscriptions == {}


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ('{"type": "ping"}', PONG),
        ('["ping"]', PONG),
        ('{"type": "heartbeat"}', HEARTBEAT_ACK),
        ('["heartbeat"]', HEARTBEAT_ACK),
        ('["heartbeat", {"at": 1}]', HEARTBEAT_ACK),
    ],
    ids=["ping", "ping-array", "heartbeat", "heartbeat-array", "heartbeat-with-payload"],
)
def test_pings_and_heartbeats_are_answered(session: Session, text: str, answer: str) -> None:
    assert session.feed(text) == [answer]
    assert json.loads(PONG) == {"type": "pong"}
    assert json.loads(HEARTBEAT_ACK) == {"type": "heartbeat:ack"}


def test_since_and_types_narrow_a_subscription(session: Session) -> None:
    request = only(
        session.feed(
            json.dumps(
                {
                    "type": "subscribe_project",
                    "project": "web",
                    "since": "1700000000000-000000000005",
                    "types": ["log_entry", "step_completed", "log_entry"],
                }
            )
        )
    )
    assert request == Subscribe(
        Filter(project="web", types=frozenset({"log_entry", "step_completed"})),
        "1700000000000-000000000005",
        LIMITS.replay_max_events,
    )


@pytest.mark.parametrize(
    ("types", "expected"),
    [
        (
            ["deployment_*", "step_*"],
            {
                "deployment_started",
                "deployment_completed",
                "deployment_rollback",
                "step_started",
                "step_completed",
            },
        ),
        (["log_*", "log_entry"], {"log_entry"}),
        (["*"], set(EVENT_TYPES)),
        (["project_*", "test"], {"project_status", "test"}),
    ],
)
def test_type_patterns_stand_for_every_type_of_a_family(
    session: Session, types: list[str], expected: set[str]
) -> None:
    request = only(session.feed(json.dumps({"type": "subscribe_all", "types": types})))
    assert isinstance(request, Subscribe)
    assert request.match.types == frozenset(expected)


@pytest.mark.parametrize(
    ("text", "limit"),
    [
        ('["subscribe_project", "web"]', 20),
        ('{"type": "subscribe_project", "project": "web", "since": "x"}', 500),
        ('{"type": "subscribe_project", "project": "web", "since": ""}', 20),
        ('["subscribe_deployment", "42"]', 500),
        ('{"type": "subscribe_project", "project": "web", "limit": 0}', 0),
        ('{"type": "subscribe_deployment", "deployment_id": "42", "limit": 5}', 5),
    ],
    ids=[
        "project-latest",
        "project-resume",
        "empty-since-is-none",
        "deployment-all",
        "no-replay",
        "client-limit",
    ],
)
def test_replay_size_depends_on_target_and_since(session: Session, text: str, limit: int) -> None:
    request = only(session.feed(text))
    assert isinstance(request, Subscribe)
    assert request.limit == limit


def test_subscribing_again_replaces_the_earlier_subscription(session: Session) -> None:
    first = only(session.feed('["subscribe_project", "web"]'))
    second = only(
        session.feed(
            json.dumps({"type": "subscribe:project", "project": "web", "types": ["log_entry"]})
        )
    )
    assert isinstance(first, Subscribe)
    assert isinstance(second, Subscribe)
    assert second.replaces == first.match
    assert session.subscriptions == {"project:web": second.match}


def test_the_subscription_limit_is_an_error_and_the_session_goes_on(session: Session) -> None:
    for project in ("a", "b", "c"):
        assert isinstance(only(session.feed(f'["subscribe_project", "{project}"]')), Subscribe)
    assert error_code(session.feed('["subscribe_project", "d"]')) == "too_many_subscriptions"
    assert isinstance(only(session.feed('["subscribe_project", "a"]')), Subscribe)
    assert len(session.feed('["unsubscribe_project", "a"]')) == 2
    assert isinstance(only(session.feed('["subscribe_deployment", "d"]')), Subscribe)


@pytest.mark.parametrize(
    ("data", "code"),
    [
        ("not json", ErrorCode.INVALID_JSON),
        ("", ErrorCode.INVALID_JSON),
        (b'{"type": "ping"}', ErrorCode.BINARY_NOT_SUPPORTED),
        ("42", ErrorCode.INVALID_FRAME),
        ('"subscribe_project"', ErrorCode.INVALID_FRAME),
        ("[]", ErrorCode.INVALID_FRAME),
        ("[1, 2]", ErrorCode.INVALID_FRAME),
        ('["subscribe_project"]', ErrorCode.INVALID_FRAME),
        ('["subscribe_project", "a", "b"]', ErrorCode.INVALID_FRAME),
        ("{}", ErrorCode.MISSING_FIELD),
        ('{"type": 5}', ErrorCode.INVALID_FIELD),
        ('{"type": "subscribe"}', ErrorCode.UNKNOWN_TYPE),
        ('["subscribe:projects", "web"]', ErrorCode.UNKNOWN_TYPE),
        ('{"type": "subscribe_project"}', ErrorCode.MISSING_FIELD),
        ('{"type": "subscribe_project", "deployment_id": "1"}', ErrorCode.MISSING_FIELD),
        ('{"type": "subscribe_project", "project": ""}', ErrorCode.INVALID_FIELD),
        ('{"type": "subscribe_project", "project": true}', ErrorCode.INVALID_FIELD),
        ('{"type": "subscribe_project", "project": ["web"]}', ErrorCode.INVALID_FIELD),
        ('{"type": "subscribe_project", "project": "' + "p" * 201 + '"}', ErrorCode.INVALID_FIELD),
        ('{"type": "subscribe_project", "project": "web", "since": 5}', ErrorCode.INVALID_FIELD),
        (
            '{"type": "subscribe_project", "project": "web", "since": "' + "1" * 65 + '"}',
            ErrorCode.INVALID_FIELD,
        ),
        ('{"type": "subscribe_project", "project": "web", "types": []}', ErrorCode.INVALID_FIELD),
        (
            '{"type": "subscribe_project", "project": "web", "types": "log_entry"}',
            ErrorCode.INVALID_FIELD,
        ),
        (
            '{"type": "subscribe_project", "project": "web", "types": ["nope"]}',
            ErrorCode.INVALID_FIELD,
        ),
        ('{"type": "subscribe_project", "project": "web", "types": [{}]}', ErrorCode.INVALID_FIELD),
        (
            '{"type": "subscribe_project", "project": "web", "types": ["zzz_*"]}',
            ErrorCode.INVALID_FIELD,
        ),
        (
            '{"type": "subscribe_project", "project": "web", "types": ["step*"]}',
            ErrorCode.INVALID_FIELD,
        ),
        (
            '{"type": "subscribe_project", "project": "web", "types": '
            + '["*"'
            + ', "*"' * 32
            + "]}",
            ErrorCode.INVALID_FIELD,
        ),
        ('{"type": "subscribe_project", "project": "web", "limit": -1}', ErrorCode.INVALID_FIELD),
        ('{"type": "subscribe_project", "project": "web", "limit": 501}', ErrorCode.INVALID_FIELD),
        ('{"type": "subscribe_project", "project": "web", "limit": "5"}', ErrorCode.INVALID_FIELD),
        ('{"type": "subscribe_project", "project": "web", "limit": true}', ErrorCode.INVALID_FIELD),
        ('["unsubscribe_project", "web"]', ErrorCode.NOT_SUBSCRIBED),
    ],
    ids=lambda value: value.decode() if isinstance(value, bytes) else str(value)[:60],
)
def test_a_bad_frame_gets_one_error_frame_and_changes_nothing(
    session: Session, data: str | bytes, code: ErrorCode
) -> None:
    assert error_code(session.feed(data)) == code.value
    assert session.subscriptions == {}
    assert session.feed('{"type": "ping"}') == [PONG]


def test_error_messages_do_not_echo_unbounded_input(session: Session) -> None:
    answer = frame(only(session.feed(json.dumps({"type": "x" * 10_000}))))
    assert answer["code"] == "unknown_type"
    assert len(answer["message"]) < 500


def test_replay_frames_announce_replay_and_close_the_history(session: Session) -> None:
    request = only(
        session.feed(
            json.dumps(
                {"type": "subscribe_deployment", "deployment_id": "42", "types": ["log_entry"]}
            )
        )
    )
    assert isinstance(request, Subscribe)
    events = [event(3), event(5)]
    announce, first, second, done = replay(request, History(events, recovered=True))
    assert frame(announce) == {
        "type": "subscribed",
        "deployment_id": "42",
        "types": ["log_entry"],
        "replayed": 2,
        "recovered": True,
    }
    assert isinstance(first, Envelope)
    assert isinstance(second, Envelope)
    assert [first.event, second.event] == events
    assert [first.seq, second.seq] == [3, 5]
    assert json.loads(first.frame) == {"type": "event", "event": events[0].to_dict()}
    assert frame(done) == {
        "type": "replay_complete",
        "deployment_id": "42",
        "replayed": 2,
        "last_event_id": events[1].id,
    }


def test_an_empty_unrecovered_replay_says_so(session: Session) -> None:
    request = only(session.feed('{"type": "subscribe:project", "project": "web", "since": "x"}'))
    assert isinstance(request, Subscribe)
    announce, done = replay(request, History([], recovered=False))
    assert frame(announce) == {
        "type": "subscribed",
        "project": "web",
        "replayed": 0,
        "recovered": False,
    }
    assert frame(done) == {
        "type": "replay_complete",
        "project": "web",
        "replayed": 0,
        "last_event_id": None,
    }


def test_a_failed_subscription_is_forgotten_and_reported(session: Session) -> None:
    request = only(session.feed('["subscribe_project", "web"]'))
    assert isinstance(request, Subscribe)
    answer = json.loads(session.failed(request, "disk I/O error"))
    assert answer["code"] == "unavailable"
    assert "disk I/O error" in answer["message"]
    assert session.subscriptions == {}


@pytest.mark.parametrize(
    ("target", "since", "limit"),
    [
        (Filter(project="web"), None, 20),
        (Filter(project="web"), "1-1", 500),
        (Filter(deployment_id="42"), None, 500),
    ],
    ids=["project", "project-since", "deployment"],
)
def test_replay_limit_is_shared_with_the_sse_stream(
    target: Filter, since: str | None, limit: int
) -> None:
    assert LIMITS.replay_limit(target, since) == limit


@pytest.mark.parametrize("length", [0, 125, 126, 65535, 65536, 70000])
def test_prebuilt_text_frames_parse_at_every_length_boundary(length: int) -> None:
    """The writer's own framing (used without compression) is what any client parses."""
    from wsproto import ConnectionType, WSConnection
    from wsproto.events import AcceptConnection, Request, TextMessage

    from broadcaster.framing import text_frame

    client = WSConnection(ConnectionType.CLIENT)
    server = WSConnection(ConnectionType.SERVER)
    server.receive_data(client.send(Request(host="hub", target="/ws")))
    assert isinstance(next(server.events()), Request)
    client.receive_data(server.send(AcceptConnection()))
    list(client.events())
    text = "é" * (length // 2) + "x" * (length % 2)  # `length` bytes of UTF-8
    client.receive_data(text_frame(text.encode()))
    messages = [m for m in client.events() if isinstance(m, TextMessage)]
    assert messages[-1].message_finished
    assert "".join(m.data for m in messages) == text


@pytest.mark.parametrize(
    "frame",
    [
        '{"type": "subscribe_all"}',
        '["subscribe_all"]',
        '{"type": "subscribe_all", "types": ["deployment_started", "deployment_completed"]}',
    ],
    ids=["object", "array", "narrowed"],
)
def test_a_client_may_subscribe_to_every_project(session: Session, frame: str) -> None:
    [request] = session.feed(frame)
    assert isinstance(request, Subscribe)
    assert (request.match.project, request.match.deployment_id) == (None, None)
    assert request.match.topic == "all"
    assert request.limit == LIMITS.replay_project_limit  # bounded like a project's replay
    assert request.match.matches(
        Event("deployment_started", "brand-new", "d", "2026-01-01T00:00:00.000Z")
    )
    subscribed = json.loads(replay(request, History([], True))[0])  # type: ignore[arg-type]
    assert subscribed["all"] is True


def test_unsubscribe_all_undoes_it_and_says_when_there_was_nothing(session: Session) -> None:
    session.feed('{"type": "subscribe_all"}')
    [undo, answer] = session.feed('{"type": "unsubscribe_all"}')
    assert isinstance(undo, Unsubscribe)
    assert json.loads(str(answer)) == {"type": "unsubscribed", "all": True}
    [error] = session.feed('["unsubscribe_all"]')
    assert json.loads(str(error))["code"] == "not_subscribed"
