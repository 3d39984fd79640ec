"""hubctl's pure parts: signing, batching, error text, replay bodies, rendering, rate limits."""

from __future__ import annotations

import io
import json
import re
from email.message import Message
from typing import Any

import pytest

from app.auth import verify_request
from app.legacy import PROJECT_STATUS, SUMMARY
from app.schemas import load_typed_event, load_with
from hubctl.cli import _stdin_events, main
from hubctl.hub import (
    BATCH_BYTES,
    BATCH_EVENTS,
    DEFAULT_HUB,
    CommandError,
    HubClient,
    batches,
    encode,
    flatten_details,
    hub_from_env,
    sign,
)
from hubctl.render import (
    Painter,
    deployment_tree,
    duration,
    event_lines,
    highlighted,
    search_hit_lines,
    use_colour,
)
from hubctl.replay import to_bodies
from hubctl.watch import next_link, rate_limit_wait


def test_signatures_verify_with_the_hubs_own_check() -> None:
    body = encode({"type": "test", "project": "部署", "logs": '\x1b[31m"\\'})
    headers = {"X-Hub-Signature-256": sign("s3cret", body)}
    sender = verify_request(headers, body, secrets=("old", "s3cret"), tokens=())
    assert sender.identity == "secret#1"


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, DEFAULT_HUB),
        ({"DASHBOARD_HUB": "https://hub.example"}, "https://hub.example"),
        (
            {"DASHBOARD_URL": "https://x.cn/project-dashboard/api/webhooks/deployment"},
            "https://x.cn/project-dashboard",
        ),
        ({"DASHBOARD_URL": "https://x.cn/somewhere"}, DEFAULT_HUB),
    ],
    ids=["default", "hub", "script-url", "unrelated-url"],
)
def test_the_hub_url_comes_from_the_environment(environ: dict[str, str], expected: str) -> None:
    assert hub_from_env(environ) == expected


def test_urls_are_built_under_the_base() -> None:
    client = HubClient("https://hub.example/project-dashboard/")
    assert client.api_url("/events", {"project": "a b", "since": None}) == (
        "https://hub.example/project-dashboard/api/events?project=a+b"
    )
    assert client.ws_url() == "wss://hub.example/project-dashboard/ws"
    assert HubClient("http://127.0.0.1:8000").ws_url() == "ws://127.0.0.1:8000/ws"


def test_batches_stay_within_count_and_size() -> None:
    small = [{"type": "log_entry", "message": str(i)} for i in range(BATCH_EVENTS + 1)]
    assert [len(chunk) for chunk in batches(small)] == [BATCH_EVENTS, 1]
    big = [{"message": "x" * (BATCH_BYTES // 3)} for _ in range(4)]
    chunks = list(batches(big))
    assert [len(chunk) for chunk in chunks] == [2, 2]
    huge = [{"message": "x" * (BATCH_BYTES * 2)}]
    assert list(batches(huge)) == [huge]


def test_nested_field_errors_become_path_lines() -> None:
    details = {
        "index": 1,
        "events": {"1": {"status": ["Unknown status.", "Really."]}},
        "_schema": ["Bad."],
    }
    assert flatten_details(details) == [
        "index: 1",
        "events.1.status: Unknown status. Really.",
        "_schema: Bad.",
    ]
    assert flatten_details({}) == []


def test_command_errors_print_their_details_indented() -> None:
    assert str(CommandError("refused", ["a: b"])) == "refused\n  a: b"


TYPED = [
    {
        "type": "deployment_started",
        "project": "p",
        "deployment_id": "1",
        "branch": "main",
        "commit": "abc",
        "actor": "mose",
        "run_url": "https://x",
        "custom": "kept",
        "timestamp": "2025-08-12T11:20:00Z",
    },
    {
        "type": "step_started",
        "project": "p",
        "deployment_id": "1",
        "step_name": "build / cc",
        "step_number": 2,
        "timestamp": "2025-08-12T11:20:01Z",
    },
    {
        "type": "step_completed",
        "project": "p",
        "deployment_id": "1",
        "job": "build",
        "step": "cc",
        "status": "failed",
        "duration": 3.5,
        "error": "boom",
        "started_at": "2025-08-12T11:20:01Z",
        "completed_at": "2025-08-12T11:20:04.5Z",
    },
    {
        "type": "step_manual",
        "project": "p",
        "deployment_id": "1",
        "step_name": "retry me",
        "step_status": "retrying",
        "timestamp": "2025-08-12T11:20:05Z",
    },
    {
        "type": "log_entry",
        "project": "p",
        "deployment_id": "1",
        "job": "build",
        "step": "cc",
        "level": "warn",
        "message": "第一行\n\x1b[33mwarn\x1b[0m",
        "log_stream_id": "s1",
    },
    {
        "type": "metrics_update",
        "project": "p",
        "deployment_id": "1",
        "metrics": {"cpu_percent": 12.5, "status": "ok"},
    },
    {
        "type": "deployment_completed",
        "project": "p",
        "deployment_id": "1",
        "status": "failure",
        "duration_ms": 9000,
        "logs": "tail",
        "errorMessage": "bad",
        "deployType": "static",
    },
    {
        "type": "deployment_rollback",
        "project": "p",
        "deployment_id": "2",
        "from_deployment_id": "1",
        "reason": "broken",
    },
    {"type": "test", "project": "p", "anything": [1, 2]},
]


@pytest.mark.parametrize("typed", TYPED, ids=[t["type"] for t in TYPED])
def test_a_replayed_event_loads_into_the_same_normalised_event(typed: dict[str, Any]) -> None:
    original = load_typed_event(typed).with_(id="1795000000000-000000000042")
    ((route, body),) = to_bodies(original.to_dict())
    assert route == "deployment"
    again = load_typed_event(json.loads(json.dumps(body)))
    assert again.dedup_key == "replay-1795000000000-000000000042"
    expected = dict(original.payload)
    if typed["type"] == "step_manual":  # recorded as the step_started it resolved to
        expected["source_format"] = again.payload["source_format"]
    assert (again.type, again.project, again.deployment_id, again.timestamp) == (
        original.type,
        original.project,
        original.deployment_id,
        original.timestamp,
    )
    assert again.payload == expected


def test_a_summary_is_replayed_with_its_steps() -> None:
    summary = load_with(
        SUMMARY,
        {
            "project": "p",
            "status": "success",
            "step_details": {"deploy_project": "success", "configure_nginx": "failure"},
        },
    )
    bodies = to_bodies(summary.with_(id="7").to_dict())
    assert [(body["type"], body.get("step"), body.get("status")) for _, body in bodies] == [
        ("deployment_completed", None, "success"),
        ("step_completed", "Deploy project", "success"),
        ("step_completed", "Configure nginx", "failure"),
    ]


def test_a_project_status_is_replayed_to_its_own_route() -> None:
    note = load_with(PROJECT_STATUS, {"project": "p", "status_type": "health", "status": "ok"})
    ((route, body),) = to_bodies(note.with_(id="8").to_dict())
    assert route == "project-status"
    again = load_with(PROJECT_STATUS, body)
    assert again.payload["extra"] == {"status_type": "health", "status": "ok"}


def test_typed_bodies_are_replayed_as_they_are() -> None:
    body = {"type": "test", "project": "p"}
    assert to_bodies(body) == [("deployment", body)]


@pytest.mark.parametrize(
    ("text", "count"),
    [
        ('{"type": "test"}', 1),
        ('[{"type": "test"}, {"type": "test"}]', 2),
        ('{"events": [{"type": "test"}]}', 1),
        ('{"type": "test"}\n{"type": "test"}\n', 2),
    ],
    ids=["one", "list", "batch", "json-lines"],
)
def test_stdin_takes_every_usual_shape(text: str, count: int) -> None:
    assert len(_stdin_events(text)) == count


@pytest.mark.parametrize(
    "text", ["", "nope", "[1]", "{}\n[]"], ids=["empty", "text", "list", "mixed"]
)
def test_stdin_that_holds_no_events_is_refused(text: str) -> None:
    with pytest.raises(CommandError):
        _stdin_events(text)


@pytest.mark.parametrize(
    ("millis", "text"),
    [
        (None, ""),
        (0, "0ms"),
        (850, "850ms"),
        (12345, "12.3s"),
        (245000, "4m 05s"),
        (3720000, "1h 02m"),
    ],
)
def test_durations_are_short(millis: int | None, text: str) -> None:
    assert duration(millis) == text


def test_colour_follows_the_terminal_and_no_color() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert use_colour("auto", Terminal(), {}) is True
    assert use_colour("auto", Terminal(), {"NO_COLOR": "1"}) is False
    assert use_colour("auto", io.StringIO(), {}) is False
    assert use_colour("always", io.StringIO(), {"NO_COLOR": "1"}) is True


def test_event_lines_show_steps_and_every_log_line() -> None:
    paint = Painter(False)
    step = {
        "type": "step_completed",
        "project": "p",
        "deployment_id": "9",
        "timestamp": "2025-08-12T11:20:04.500Z",
        "payload": {
            "job": "build",
            "step": "cc",
            "status": "failure",
            "duration_ms": 3500,
            "error": "boom\nsecond",
        },
    }
    assert event_lines(step, paint) == [
        "11:20:04.500 p #9 step_completed build / cc failure 3.5s boom",
        " " * 13 + "second",
    ]
    log = {
        "type": "log_entry",
        "project": "p",
        "deployment_id": "9",
        "timestamp": "2025-08-12T11:20:05.000Z",
        "payload": {"job": "build", "step": "cc", "level": "error", "message": "a\nb"},
    }
    assert event_lines(log, paint) == [
        "11:20:05.000 p #9 build / cc a",
        "11:20:05.000 p #9 build / cc b",
    ]
    assert "\x1b[31ma\x1b[0m" in event_lines(log, Painter(True))[0]


def test_the_tree_lists_jobs_and_steps_in_order() -> None:
    view = {
        "project": "p",
        "deployment_id": "9",
        "status": "success",
        "duration_ms": 61000,
        "branch": "main",
        "jobs": [
            {
                "name": "build",
                "status": "success",
                "duration_ms": 3000,
                "steps": [
                    {"name": "checkout", "status": "success", "duration_ms": 1000},
                    {"name": "compile it", "status": "skipped", "duration_ms": None},
                ],
            }
        ],
    }
    assert deployment_tree(view, Painter(False)) == [
        "p #9  success  1m 01s",
        "  branch main",
        "  build  success  3.0s",
        "    ✓ checkout    success    1.0s",
        "    - compile it  skipped",
    ]
    assert deployment_tree({"project": "p", "deployment_id": "1"}, Painter(False))[-1] == (
        "  (no steps reported)"
    )


def headers(**values: str) -> Message:
    message = Message()
    for name, value in values.items():
        message[name.replace("_", "-")] = value
    return message


@pytest.mark.parametrize(
    ("status", "given", "wait"),
    [
        (429, {"Retry_After": "7"}, 7.0),
        (403, {"Retry_After": "3"}, 3.0),
        (403, {"x_ratelimit_remaining": "0", "x_ratelimit_reset": "1010"}, 11.0),
        (403, {"x_ratelimit_remaining": "0", "x_ratelimit_reset": "900"}, 1.0),
        (429, {}, 60.0),
        (403, {"x_ratelimit_remaining": "12"}, None),
        (404, {"Retry_After": "3"}, None),
        (200, {}, None),
    ],
    ids=[
        "429-retry-after",
        "403-secondary",
        "primary-reset",
        "reset-passed",
        "429-bare",
        "403-permission",
        "404",
        "ok",
    ],
)
def test_rate_limits_are_read_from_githubs_headers(
    status: int, given: dict[str, str], wait: float | None
) -> None:
    assert rate_limit_wait(status, headers(**given), now=1000.0) == wait


def test_the_next_page_comes_from_the_link_header() -> None:
    link = (
        '<https://api.github.com/repositories/1/actions/runs/2/jobs?page=2>; rel="next", '
        '<https://api.github.com/repositories/1/actions/runs/2/jobs?page=5>; rel="last"'
    )
    assert next_link(headers(Link=link)) == (
        "https://api.github.com/repositories/1/actions/runs/2/jobs?page=2"
    )
    assert next_link(headers(Link='<https://x/?page=1>; rel="prev"')) is None
    assert next_link(headers()) is None


@pytest.mark.parametrize(
    "args",
    [
        ["tail", "--project", "p", "--count", "0"],
        ["--timeout", "-1", "status", "1"],
        ["github", "watch", "--repo", "o/r", "--run-id", "1", "--interval", "-5"],
        ["github", "watch", "--repo", "o/r", "--run-id", "1", "--max-wait", "nan"],
    ],
    ids=["count", "timeout", "interval", "max-wait"],
)
def test_numbers_that_make_no_sense_are_usage_errors(args: list[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(args, environ={}, stderr=io.StringIO())
    assert caught.value.code == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--field", "novalue"], "--field wants KEY=VALUE, not 'novalue'"),
        (["--json-field", "=1"], "--json-field wants KEY=JSON, not '=1'"),
        (["--json-field", "cpu=12,5"], "--json-field cpu: not JSON: '12,5'"),
    ],
    ids=["field", "json-field-key", "json-field-value"],
)
def test_bad_send_fields_are_named_before_anything_is_sent(args: list[str], message: str) -> None:
    err = io.StringIO()
    code = main(
        ["--hub", "http://127.0.0.1:9", "send", "--type", "test", *args],
        environ={},
        stdout=io.StringIO(),
        stderr=err,
    )
    assert (code, err.getvalue()) == (1, f"hubctl: {message}\n")


def test_a_search_hit_shows_where_its_match_and_its_link() -> None:
    hit = {
        "id": "7",
        "deployment_id": "d1",
        "project": "web",
        "job": "build",
        "step": "compile",
        "level": "error",
        "timestamp": "2025-03-01T10:00:03.000Z",
        "text": "错误 Error: connect refused",
        "match": [[3, 8], [18, 25]],
        "link": "#/deployments/d1?job=build&step=compile&line=7",
    }
    plain = search_hit_lines(hit, Painter(False), "http://hub")
    assert plain == [
        "2025-03-01T10:00:03.000Z web d1 build / compile ERROR",
        "  错误 Error: connect refused",
        "  http://hub/#/deployments/d1?job=build&step=compile&line=7",
    ]
    coloured = search_hit_lines(hit, Painter(True), "http://hub")
    assert "\x1b[1mError\x1b[0m" in coloured[1]
    assert "\x1b[1mrefused\x1b[0m" in coloured[1]
    assert highlighted("abc", [], Painter(True)) == "abc"


#: Sender text a terminal would act on: clipboard write, window title, clear screen, a device
#: control string, an 8-bit CSI, a bell and a NUL, around a legitimate colour.
HOSTILE = "\x1b[31mred\x1b[0m\x1b]52;c;aGk=\x07\x1b]0;owned\x07\x1b[2J\x1bP1|x\x1b\\\x9b2J\x07\x00!"
TERMINAL_ACTS_ON = ("\x1b]", "\x1b[2J", "\x1bP", "\x9b", "\x07", "\x00")


def hostile_lines(paint: Painter) -> list[str]:
    payload = {"job": f"j{HOSTILE}", "step": f"s{HOSTILE}", "status": "failure"}
    event = {"type": "step_completed", "project": f"p{HOSTILE}", "deployment_id": "9"}
    log = {"type": "log_entry", "project": "p", "deployment_id": "9"}
    view = {
        "project": f"p{HOSTILE}",
        "deployment_id": f"9{HOSTILE}",
        "status": "failure",
        "branch": f"b{HOSTILE}",
        "error": f"e{HOSTILE}",
        "jobs": [
            {
                "name": f"j{HOSTILE}",
                "status": "failure",
                "steps": [{"name": f"s{HOSTILE}", "status": "failure", "error": HOSTILE}],
            }
        ],
    }
    hit = {
        "deployment_id": f"9{HOSTILE}",
        "project": f"p{HOSTILE}",
        "job": f"j{HOSTILE}",
        "step": f"s{HOSTILE}",
        "level": "error",
        "timestamp": f"t{HOSTILE}",
        "text": f"x{HOSTILE}y",
        "match": [[0, 4], [len(HOSTILE) + 1, len(HOSTILE) + 2]],
        "link": f"#/deployments/9?line=1{HOSTILE}",
    }
    return [
        *event_lines({**event, "payload": {**payload, "error": f"e{HOSTILE}\nl{HOSTILE}"}}, paint),
        *event_lines({**event, "payload": {"metrics": {f"k{HOSTILE}": f"v{HOSTILE}"}}}, paint),
        *event_lines({**log, "payload": {"message": f"m{HOSTILE}\nn{HOSTILE}"}}, paint),
        *deployment_tree(view, paint),
        *search_hit_lines(hit, paint, "http://hub"),
    ]


def test_sender_text_reaches_the_terminal_without_control_sequences() -> None:
    plain = hostile_lines(Painter(False))
    assert all("\x1b" not in line for line in plain), plain
    assert "red!" in plain[0]
    coloured = hostile_lines(Painter(True))
    for line in coloured:
        assert not any(bad in line for bad in TERMINAL_ACTS_ON), repr(line)
    assert "\x1b[31mred\x1b[0m" in coloured[0]


def test_step_names_with_colours_still_line_up() -> None:
    view = {
        "project": "p",
        "deployment_id": "1",
        "status": "success",
        "jobs": [
            {
                "name": "j",
                "status": "success",
                "steps": [
                    {"name": "\x1b[32mgreen\x1b[0m", "status": "success", "duration_ms": 5},
                    {"name": "longer name", "status": "success", "duration_ms": 5},
                ],
            }
        ],
    }
    lines = deployment_tree(view, Painter(True))
    strip = lambda line: re.sub(r"\x1b\[[0-9;]*m", "", line)  # noqa: E731
    assert strip(lines[-2]).index("success") == strip(lines[-1]).index("success")


def test_json_output_escapes_the_controls_json_leaves_raw(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Client:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            pass

        def get(self, path: str) -> dict[str, Any]:
            return {"project": "p", "error": "a\x9b2J\x7fb"}

    monkeypatch.setattr("hubctl.cli.HubClient", Client)
    out = io.StringIO()
    assert main(["status", "1", "--json"], environ={}, stdout=out, stderr=io.StringIO()) == 0
    text = out.getvalue()
    assert "\\u009b2J\\u007fb" in text
    assert json.loads(text)["error"] == "a\x9b2J\x7fb"


def test_logs_search_output_goes_through_the_sanitiser(monkeypatch: pytest.MonkeyPatch) -> None:
    hit = {
        "id": "7",
        "deployment_id": "d\x9b2J1",
        "project": "web",
        "job": "build",
        "step": "s\x1b]0;owned\x07",
        "level": "error",
        "timestamp": "2025-03-01T10:00:03.000Z",
        "text": "bell\x07 Error: refused\x7f",
        "match": [[6, 11]],
        "link": "#/deployments/d1?line=7",
    }

    class Client:
        base_url = "http://hub"

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            pass

        def get(self, path: str, params: dict[str, Any]) -> dict[str, Any]:
            return {"items": [hit], "next_cursor": None, "truncated": False}

    monkeypatch.setattr("hubctl.cli.HubClient", Client)
    out = io.StringIO()
    argv = ["logs", "search", "error", "--color", "always"]
    assert main(argv, environ={}, stdout=out, stderr=io.StringIO()) == 0
    text = out.getvalue()
    assert not any(bad in text for bad in ("\x9b", "\x1b]", "\x07", "\x7f")), repr(text)
    assert "d1 build / s ERROR" in re.sub(r"\x1b\[[0-9;]*m", "", text)
    assert "bell \x1b[1mError\x1b[0m: refused" in text
    out = io.StringIO()
    assert main([*argv, "--json"], environ={}, stdout=out, stderr=io.StringIO()) == 0
    assert "\\u009b2J1" in out.getvalue()
    assert json.loads(out.getvalue())["deployment_id"] == "d\x9b2J1"
