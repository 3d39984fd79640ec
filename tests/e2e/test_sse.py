"""``GET /api/stream``: filters, ``Last-Event-ID`` resumption, keep-alives, bad queries."""

from __future__ import annotations

import http.client
import json
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.contract import check_frame
from tests.e2e.server import HubServer, checked
from tests.e2e.wsclient import WAIT, log_event, post

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubServer]:
    hub = HubServer(tmp_path_factory.mktemp("sse"), env={"HUB_WS_PING_INTERVAL": "0.2"}).start()
    yield hub
    hub.stop()


class Stream:
    """One SSE response, read record by record (a record ends at a blank line)."""

    def __init__(
        self,
        server: HubServer,
        query: dict[str, str],
        headers: dict[str, str] | None = None,
        path: str = "/api/stream",
    ) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=WAIT)
        self.target = f"{path}?{urlencode(query)}"
        self.connection.request("GET", self.target, headers=headers or {})
        self.response = self.connection.getresponse()
        if self.response.status == 200:  # the frames are checked one by one (frame)
            checked("GET", self.target, self.response, b"")

    def error(self) -> dict[str, Any]:
        """The body of a refused request, once it is checked against the OpenAPI document."""
        body: dict[str, Any] = json.loads(
            checked("GET", self.target, self.response, self.response.read())
        )
        return body

    def record(self) -> dict[str, str]:
        fields: dict[str, str] = {}
        while True:
            line = self.response.readline().decode()
            if not line:
                raise EOFError("stream ended")
            line = line.rstrip("\n")
            if not line:
                if fields:
                    return fields
                continue
            name, _, value = line.partition(":")
            fields[name or "comment"] = value.removeprefix(" ")

    def frame(self) -> tuple[str | None, dict[str, Any]]:
        """The next data record (keep-alives and ``retry:`` skipped): ``(id, frame)``.

        Each frame is held to ``docs/frames.schema.json#/$defs/sseFrame``.
        """
        while "data" not in (record := self.record()):
            pass
        frame: dict[str, Any] = json.loads(record["data"])
        check_frame(frame, "sseFrame")
        return record.get("id"), frame

    def replay(self) -> tuple[dict[str, Any], list[str]]:
        """``subscribed`` and the replayed event ids, through ``replay_complete``."""
        _, subscribed = self.frame()
        assert subscribed["type"] == "subscribed", subscribed
        ids: list[str] = []
        while True:
            event_id, frame = self.frame()
            if frame["type"] == "replay_complete":
                return subscribed, ids
            assert frame["type"] == "event"
            assert frame["event"]["id"] == event_id
            ids.append(frame["event"]["id"])

    def close(self) -> None:
        self.connection.close()


def test_stream_sends_headers_replay_then_live_events(server: HubServer) -> None:
    ids = post(server, *[log_event("sse-web", "s-1", str(i)) for i in range(3)])
    stream = Stream(server, {"project": "sse-web"})
    assert stream.response.status == 200
    assert stream.response.headers["Content-Type"].startswith("text/event-stream")
    assert stream.response.headers["Cache-Control"] == "no-cache"
    assert stream.record() == {"retry": "2000"}
    subscribed, replayed = stream.replay()
    assert subscribed == {
        "type": "subscribed",
        "project": "sse-web",
        "replayed": 3,
        "recovered": True,
    }
    assert replayed == ids
    [live] = post(server, log_event("sse-web", "s-2", "live 实时"))
    event_id, frame = stream.frame()
    assert event_id == live
    assert frame["event"]["payload"]["message"] == "live 实时"
    stream.close()


def test_stream_is_served_under_the_public_prefix(server: HubServer) -> None:
    stream = Stream(server, {"deployment_id": "nothing"}, path="/project-dashboard/api/stream")
    assert stream.replay()[0]["deployment_id"] == "nothing"
    stream.close()


def test_deployment_and_type_filters_narrow_the_stream(server: HubServer) -> None:
    step = {
        "type": "step_started",
        "project": "sse-f",
        "deployment_id": "f-1",
        "step_name": "deploy",
        "step_status": "started",
    }
    first = post(server, log_event("sse-f", "f-1"), log_event("sse-f", "f-2"), step)
    by_deployment = Stream(server, {"deployment_id": "f-1"})
    by_type = Stream(server, {"project": "sse-f", "types": "step_started, deployment_*"})
    assert by_deployment.replay()[1] == [first[0], first[2]]
    subscribed, replayed = by_type.replay()
    assert subscribed["types"] == [
        "deployment_completed",
        "deployment_rollback",
        "deployment_started",
        "step_started",
    ]
    assert replayed == [first[2]]
    second = post(server, log_event("sse-f", "f-2"), log_event("sse-f", "f-1"), step)
    assert [by_deployment.frame()[0], by_deployment.frame()[0]] == [second[1], second[2]]
    assert by_type.frame()[0] == second[2]
    by_deployment.close()
    by_type.close()


def test_last_event_id_resumes_exactly_after_it(server: HubServer) -> None:
    ids = post(server, *[log_event("sse-resume", "r-1", str(i)) for i in range(5)])
    by_header = Stream(server, {"project": "sse-resume"}, {"Last-Event-ID": ids[1]})
    by_query = Stream(server, {"project": "sse-resume", "last_event_id": ids[2]})
    header_wins = Stream(
        server, {"project": "sse-resume", "last_event_id": ids[0]}, {"Last-Event-ID": ids[3]}
    )
    assert by_header.replay() == (
        {"type": "subscribed", "project": "sse-resume", "replayed": 3, "recovered": True},
        ids[2:],
    )
    assert by_query.replay()[1] == ids[3:]
    assert header_wins.replay()[1] == ids[4:]
    lost = Stream(
        server, {"project": "sse-resume"}, {"Last-Event-ID": "0000000000001-000000000001"}
    )
    subscribed, replayed = lost.replay()
    assert subscribed["recovered"] is False
    assert replayed == ids
    for stream in (by_header, by_query, header_wins, lost):
        stream.close()


def test_an_idle_stream_gets_keep_alive_comments(server: HubServer) -> None:
    stream = Stream(server, {"project": "sse-idle"})
    stream.replay()
    assert stream.record() == {"comment": "keep-alive"}
    assert stream.record() == {"comment": "keep-alive"}
    [event_id] = post(server, log_event("sse-idle", "i-1"))
    assert stream.frame()[0] == event_id
    stream.close()


@pytest.mark.parametrize(
    ("query", "headers", "field"),
    [
        ({}, {}, "project"),
        ({"project": "a", "deployment_id": "b"}, {}, "project"),
        ({"project": "p" * 201}, {}, "project"),
        ({"deployment_id": "d", "types": "log_entry,nope"}, {}, "types"),
        ({"deployment_id": "d", "types": ","}, {}, "types"),
        ({"deployment_id": "d", "types": "steps_*"}, {}, "types"),
        ({"project": "a", "last_event_id": "9" * 65}, {}, "last_event_id"),
        ({"project": "a"}, {"Last-Event-ID": "9" * 65}, "Last-Event-ID"),
    ],
    ids=[
        "no-filter",
        "two-filters",
        "long-project",
        "unknown-type",
        "empty-types",
        "unknown-pattern",
        "long-query-id",
        "long-header-id",
    ],
)
def test_a_bad_stream_request_is_a_400_naming_the_parameter(
    server: HubServer, query: dict[str, str], headers: dict[str, str], field: str
) -> None:
    stream = Stream(server, query, headers)
    body = stream.error()
    assert stream.response.status == 400
    assert body["success"] is False
    assert body["error"]["code"] == "bad_request"
    assert field in body["error"]["details"]
    stream.close()


def test_shutdown_ends_streams_with_a_going_away_frame(tmp_path: Path) -> None:
    hub = HubServer(tmp_path).start()
    stream = Stream(hub, {"project": "bye"})
    stream.replay()
    stopper = threading.Thread(target=hub.stop, args=(signal.SIGTERM,))
    stopper.start()
    try:
        _, last = stream.frame()
        assert last["type"] == "error"
        assert last["code"] == "going_away"
        with pytest.raises(EOFError):
            stream.record()
    finally:
        stream.close()
        stopper.join()


def test_a_stream_of_every_project(server: HubServer) -> None:
    stream = Stream(server, {"all": "true", "types": "deployment_started"})
    assert stream.response.status == 200
    subscribed, _ = stream.replay()
    assert subscribed["all"] is True
    project = f"sse-all-{time.monotonic_ns()}"
    [live] = post(server, {"type": "deployment_started", "project": project, "deployment_id": "a"})
    event_id, frame = stream.frame()
    assert (event_id, frame["event"]["project"]) == (live, project)
    stream.close()
