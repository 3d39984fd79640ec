"""Routes that walk a whole log, on every store: ``logs.txt`` (the log as a file) and
``logs?before=`` (the page before a line, with its number)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.api import READ_PAGE
from app.config import Settings
from server.app import PUBLIC_PREFIX, create_app
from storage.store import Page, Store
from tests.redis_server import RedisServer


@pytest.fixture(params=["memory", "sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def store_app(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Flask]:
    """The app on each kind of store, with a read token."""
    urls = {"memory": "memory://", "sqlite": f"sqlite:///{tmp_path / 'hub.db'}"}
    if request.param == "redis":
        redis: RedisServer = request.getfixturevalue("redis_server")
        urls["redis"] = redis.url(prefix=f"test-{uuid.uuid4().hex}")
    application = create_app(Settings(store_url=urls[request.param], read_tokens=("reader",)))
    yield application
    application.extensions["hub"].stop()
    application.extensions["hub_context"].store.close()


@pytest.fixture
def reader(store_app: Flask) -> FlaskClient:
    client = store_app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = "Bearer reader"
    return client


def post(client: FlaskClient, *events: dict[str, Any]) -> None:
    response = client.post(
        "/api/webhooks/deployment",
        data=json.dumps({"events": list(events)}),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.get_data(as_text=True)


def event(kind: str, second: int, **body: Any) -> dict[str, Any]:
    return {
        "type": kind,
        "project": "web",
        "deployment_id": "d1",
        "timestamp": f"2026-03-01T10:00:{second:02d}.000Z",
        **body,
    }


def test_every_line_in_order_with_its_time_level_and_place_without_escapes(
    reader: FlaskClient,
) -> None:
    post(
        reader,
        event("deployment_started", 0),
        event("log_entry", 1, message="fetching\n\x1b[32mfetched\x1b[0m"),
        event("log_entry", 2, step_name="build / compile", message="cc -O2"),
        event(
            "step_completed",
            3,
            step_name="build / test",
            step_status="failure",
            logs="1 failed",
            error="\x1b[31mexit 2\x1b[0m",
        ),
        event("log_entry", 4, step_name="build / test", level="warning", message="<b>&amp;</b>"),
    )
    for prefix in ("", PUBLIC_PREFIX):
        response = reader.get(f"{prefix}/api/deployments/d1/logs.txt")
        assert response.status_code == 200
        assert response.mimetype == "text/plain"
        assert response.headers["Content-Disposition"] == 'attachment; filename="d1.log"'
        assert response.get_data(as_text=True) == (
            "2026-03-01T10:00:01.000Z INFO    fetching\n"
            "2026-03-01T10:00:01.000Z INFO    fetched\n"
            "2026-03-01T10:00:02.000Z INFO    [build / compile] cc -O2\n"
            "2026-03-01T10:00:03.000Z INFO    [build / test] 1 failed\n"
            "2026-03-01T10:00:03.000Z ERROR   [build / test] exit 2\n"
            "2026-03-01T10:00:04.000Z WARNING [build / test] <b>&amp;</b>\n"
        )
    one_step = reader.get("/api/deployments/d1/logs.txt?job=build&step=test")
    assert one_step.headers["Content-Disposition"] == 'attachment; filename="d1-build-test.log"'
    assert one_step.get_data(as_text=True).count("\n") == 3


def test_a_log_with_no_lines_is_an_empty_file(reader: FlaskClient) -> None:
    post(reader, event("deployment_started", 0))
    # the plain client: openapi-core takes an empty body for a missing one
    response = FlaskClient.open(reader, "/api/deployments/d1/logs.txt")
    assert (response.status_code, response.get_data()) == (200, b"")


def test_an_unknown_deployment_is_the_json_404(reader: FlaskClient) -> None:
    for prefix in ("", PUBLIC_PREFIX):
        response = reader.get(f"{prefix}/api/deployments/nope/logs.txt")
        assert response.status_code == 404
        assert response.get_json()["error"]["code"] == "not_found"


def test_a_bad_parameter_is_the_json_400(reader: FlaskClient) -> None:
    post(reader, event("deployment_started", 0))
    response = reader.get(f"/api/deployments/d1/logs.txt?step={'x' * 201}")
    assert response.status_code == 400
    assert response.get_json()["error"]["details"] == {"step": ["At most 200 characters."]}


def test_it_needs_a_read_token_like_every_read(store_app: Flask, reader: FlaskClient) -> None:
    post(reader, event("log_entry", 1, message="secret build output"))
    stranger = store_app.test_client()
    for prefix in ("", PUBLIC_PREFIX):
        refused = stranger.get(f"{prefix}/api/deployments/d1/logs.txt")
        assert refused.status_code == 401
        assert b"secret build output" not in refused.get_data()
        wrong = stranger.get(f"{prefix}/api/deployments/d1/logs.txt?token=guess")
        assert wrong.status_code == 401
        # a download link carries the token in its query, as the dashboard's does
        linked = stranger.get(f"{prefix}/api/deployments/d1/logs.txt?token=reader")
        assert linked.status_code == 200
        assert b"secret build output" in linked.get_data()


def test_the_file_name_keeps_to_safe_characters(reader: FlaskClient) -> None:
    post(reader, event("log_entry", 1, deployment_id='../a "b";c', message="x"))
    response = reader.get("/api/deployments/..%2Fa%20%22b%22%3Bc/logs.txt")
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers["Content-Disposition"] == 'attachment; filename="a_b_c.log"'


def test_a_huge_log_is_read_a_page_at_a_time_while_it_is_sent(
    store_app: Flask, reader: FlaskClient
) -> None:
    """25,000 lines: each page is read from the store only when the one before was sent."""
    total = 25 * READ_PAGE
    for chunk in range(5):
        text = "\n".join(f"line {n}" for n in range(chunk * 5000, (chunk + 1) * 5000))
        post(reader, event("log_entry", chunk, step_name="build / big", message=text))
    store: Store = store_app.extensions["hub_context"].store
    reads: list[int] = []
    original = store.logs

    def counted(deployment_id: str, **kwargs: Any) -> Page[Any]:
        page = original(deployment_id, **kwargs)
        reads.append(len(page.items))
        return page

    store.logs = counted  # type: ignore[method-assign]
    # the plain client: the checked one reads the whole answer before handing it over
    response = FlaskClient.open(reader, "/api/deployments/d1/logs.txt", buffered=False)
    assert response.status_code == 200
    assert response.is_streamed
    chunks = iter(response.response)
    first = next(chunks)
    assert reads == [READ_PAGE]  # one page read, one page sent
    assert first.count(b"\n") == READ_PAGE
    rest = b"".join(chunks)
    response.close()
    lines = (first + rest).decode().splitlines()
    assert len(lines) == total
    assert lines[0].endswith("[build / big] line 0")
    assert lines[-1].endswith(f"[build / big] line {total - 1}")
    assert max(reads) == READ_PAGE
    assert sum(reads) == total


def every_id(client: FlaskClient, query: str) -> list[str]:
    ids: list[str] = []
    after = ""
    while True:
        page = client.get(f"/api/deployments/d1/logs?limit=1000{query}{after}").get_json()
        ids += [row["id"] for row in page["lines"]]
        if page["next_cursor"] is None:
            return ids
        after = f"&after={page['next_cursor']}"


def test_the_page_before_a_line_comes_with_the_number_of_its_first(
    reader: FlaskClient,
) -> None:
    """Line numbers count a job's or step's own lines: other steps' lines between them and
    lines past the one asked for do not count."""
    for chunk in range(3):
        post(
            reader,
            event(
                "log_entry",
                chunk,
                step_name="build / a",
                message="\n".join(f"a{n}" for n in range(chunk * 1500, (chunk + 1) * 1500)),
            ),
            event("log_entry", chunk, step_name="build / b", message=f"b{chunk}"),
        )
    ids = every_id(reader, "&job=build&step=a")
    assert len(ids) == 4500
    for number in (1, 2, 1000, 1001, 2345, 4500):
        target = ids[number - 1]
        page = reader.get(
            f"/api/deployments/d1/logs?job=build&step=a&before={int(target) + 1}&limit=300"
        ).get_json()
        messages = [row["message"] for row in page["lines"]]
        assert messages[-1] == f"a{number - 1}"
        assert len(messages) == min(300, number)
        assert page["first_number"] == number - len(messages) + 1
        if number < 4500:  # reading on from next_cursor gives the line after it
            assert page["next_cursor"] is not None
            after = reader.get(
                f"/api/deployments/d1/logs?job=build&step=a&after={page['next_cursor']}&limit=1"
            ).get_json()
            assert after["lines"][0]["message"] == f"a{number}"
        else:
            assert page["next_cursor"] is None
    # past every line: the last page, the way to the end of a log
    last = reader.get(f"/api/deployments/d1/logs?before={2**63 - 1}&limit=2").get_json()
    assert [row["message"] for row in last["lines"]] == ["a4499", "b2"]
    assert (last["first_number"], last["next_cursor"]) == (4502, None)
    # before the first line: nothing, numbered from 1
    first = reader.get(f"/api/deployments/d1/logs?before={ids[0]}").get_json()
    assert (first["lines"], first["first_number"]) == ([], 1)
    assert first["next_cursor"] is not None


def test_before_and_after_together_are_a_400(reader: FlaskClient) -> None:
    post(reader, event("log_entry", 1, message="x"))
    response = reader.get("/api/deployments/d1/logs?after=1&before=5")
    assert response.status_code == 400
    assert response.get_json()["error"]["details"] == {"before": ["Not together with after."]}
    assert reader.get("/api/deployments/d1/logs?before=0").status_code == 400
    assert reader.get("/api/deployments/nope/logs?before=5").status_code == 404
