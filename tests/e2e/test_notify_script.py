"""``scripts/notify-dashboard.sh`` run for real, with bash, against the real hub under gunicorn."""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from ledger.timestamps import duration_between
from tests.conftest import ROOT, TIMEOUT_FACTOR
from tests.e2e.server import HubServer, checked, free_port

pytestmark = pytest.mark.e2e

SCRIPT = ROOT / "scripts" / "notify-dashboard.sh"
INGEST = "/project-dashboard/api/webhooks/deployment"
SECRET = "script-secret"
TOKEN = "script-token"

HOSTILE = {
    "quotes": "he said \"deploy\" and 'ok'",
    "newlines": "line 1\nline 2\r\nline 3\n\nlast",
    "backslashes": 'C:\\path\\to\\new \\n is not a newline \\" \\',
    "command-substitution": "$(touch {marker}) `touch {marker}` ${{HOME}} $HOME",
    "chinese": "部署成功 ✅ 构建完成，耗时 45 秒",
    "ansi": "\x1b[31mERROR\x1b[0m \x1b[1;32mOK\x1b[0m \x1b]0;title\x07",
    "control": "".join(chr(c) for c in range(1, 32)) + "\x7f",
    "template": '", "errorMessage": "injected", "x": "',
}
_ids = itertools.count(1)


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubServer]:
    server = HubServer(
        tmp_path_factory.mktemp("notify-open"),
        env={"HUB_MAX_BODY_BYTES": str(16 * 1024 * 1024)},
    ).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def guarded_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubServer]:
    server = HubServer(
        tmp_path_factory.mktemp("notify-guarded"),
        env={"HUB_WEBHOOK_SECRETS": SECRET, "HUB_WEBHOOK_TOKENS": TOKEN},
    ).start()
    yield server
    server.stop()


def run_script(
    *args: str, url: str, env: dict[str, str] | None = None, stdin: bytes | None = None
) -> subprocess.CompletedProcess[str]:
    environ = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", str(ROOT)),
        "LANG": "C.UTF-8",
        "DASHBOARD_URL": url,
        "DASHBOARD_RETRY_DELAY": "0.01",
        **(env or {}),
    }
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        input=stdin.decode() if stdin is not None else None,
        capture_output=True,
        text=True,
        env=environ,
        timeout=60 * TIMEOUT_FACTOR,
        check=False,
    )


def run_id() -> str:
    return str(900000 + next(_ids))


def events_of(hub: HubServer, deployment_id: str) -> list[dict[str, Any]]:
    status, page = hub.request("GET", f"/api/events?deployment_id={deployment_id}&limit=1000")
    assert status == 200
    return list(page["events"])


def moved_text(events: list[dict[str, Any]], level: str = "info") -> str:
    """The text a lifecycle event's ``logs`` (level info) or ``error`` (level error)
    became: the log_entry stored right after it (docs/EVENTS.md, "Log text")."""
    lifecycle, *companions = events
    assert "logs" not in lifecycle["payload"]
    return next(
        e["payload"]["message"]
        for e in companions
        if e["type"] == "log_entry" and e["payload"]["level"] == level
    )


def test_the_script_passes_bash_n_and_shellcheck() -> None:
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed")
    result = subprocess.run(
        ["shellcheck", str(SCRIPT)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_logs_and_errors_arrive_byte_for_byte(
    hub: HubServer, tmp_path: Path, case: str
) -> None:
    marker = tmp_path / "executed"
    text = HOSTILE[case].format(marker=marker)
    deployment = run_id()
    result = run_script(
        "web",
        "failed",
        "45",
        "MoseLu/web",
        deployment,
        "backend",
        "example.com",
        text,
        "error: " + text,
        url=hub.url + INGEST,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("notify-dashboard: sent deployment failed of web")
    events = events_of(hub, deployment)
    event = events[0]
    assert [e["type"] for e in events] == ["deployment_completed", "log_entry", "log_entry"]
    assert moved_text(events) == text
    assert event["payload"]["error"] == moved_text(events, "error") == "error: " + text
    assert event["payload"]["duration_ms"] == 45000
    assert event["payload"]["repository"] == "MoseLu/web"
    assert event["payload"]["extra"] == {"deployType": "backend", "serverHost": "example.com"}
    assert not marker.exists()


@pytest.mark.parametrize("source", ["file", "stdin"])
def test_a_megabyte_of_logs_arrives_unchanged(hub: HubServer, tmp_path: Path, source: str) -> None:
    """1 MiB of hostile text is more than one argument may hold, hence --logs-file."""
    unit = "".join(HOSTILE[k] for k in sorted(HOSTILE)).replace("{marker}", "m")
    text = (unit * (1024 * 1024 // len(unit) + 1))[: 1024 * 1024]
    path = tmp_path / "deploy.log"
    path.write_text(text, encoding="utf-8", newline="")
    deployment = run_id()
    logs_file = str(path) if source == "file" else "-"
    result = run_script(
        "--logs-file",
        logs_file,
        "web",
        "success",
        "3",
        "",
        deployment,
        url=hub.url + INGEST,
        stdin=text.encode() if source == "stdin" else None,
    )
    assert result.returncode == 0, result.stderr
    assert moved_text(events_of(hub, deployment)) == text


def test_the_original_defaults_are_kept(hub: HubServer) -> None:
    deployment = run_id()
    result = run_script("web", "running", "", "", deployment, url=hub.url + INGEST)
    assert result.returncode == 0, result.stderr
    (event,) = events_of(hub, deployment)
    assert event["type"] == "deployment_started"
    assert event["payload"]["extra"] == {"deployType": "static", "serverHost": "redamancy.com.cn"}


def test_the_legacy_path_is_accepted_too(hub: HubServer) -> None:
    deployment = run_id()
    result = run_script(
        "web", "success", "1", "", deployment, url=hub.url + "/api/webhooks/deployment"
    )
    assert result.returncode == 0, result.stderr
    assert [e["type"] for e in events_of(hub, deployment)] == ["deployment_completed"]


@pytest.mark.parametrize(
    ("env", "accepted"),
    [
        ({"DASHBOARD_SECRET": SECRET}, True),
        ({"DASHBOARD_TOKEN": TOKEN}, True),
        ({"DASHBOARD_SECRET": "not-the-secret"}, False),
        ({"DASHBOARD_TOKEN": "not-the-token"}, False),
        ({}, False),
    ],
    ids=["signed", "bearer", "wrong-secret", "wrong-token", "unsigned"],
)
def test_posts_are_signed_or_carry_a_token(
    guarded_hub: HubServer, env: dict[str, str], accepted: bool
) -> None:
    deployment = run_id()
    text = HOSTILE["chinese"] + HOSTILE["ansi"]
    result = run_script(
        "web", "success", "1", "", deployment, "", "", text, url=guarded_hub.url + INGEST, env=env
    )
    assert result.returncode == 0
    if accepted:
        assert "sent deployment success of web" in result.stdout
        assert moved_text(events_of(guarded_hub, deployment)) == text
    else:
        assert result.stderr.startswith("notify-dashboard: not sent: ")
        assert "HTTP 401" in result.stderr
        assert events_of(guarded_hub, deployment) == []
        strict = run_script(
            "--strict", "web", "success", "1", "", deployment, url=guarded_hub.url + INGEST, env=env
        )
        assert strict.returncode == 1


def test_a_hub_that_is_down_is_retried_and_the_deploy_goes_on() -> None:
    url = f"http://127.0.0.1:{free_port()}{INGEST}"
    result = run_script("web", "success", url=url, env={"DASHBOARD_RETRIES": "2"})
    assert result.returncode == 0
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("notify-dashboard: not sent: deployment success of web after 3 attempts")
    assert "no answer from" in line
    strict = run_script("--strict", "web", "success", url=url, env={"DASHBOARD_RETRIES": "1"})
    assert strict.returncode == 1


def test_failures_become_a_warning_annotation_in_github_actions() -> None:
    url = f"http://127.0.0.1:{free_port()}{INGEST}"
    result = run_script(
        "web", "success", url=url, env={"DASHBOARD_RETRIES": "0", "GITHUB_ACTIONS": "true"}
    )
    assert result.returncode == 0
    assert result.stderr.startswith("::warning title=dashboard notification::notify-dashboard:")


class FlakyProxy:
    """Answers 503 to the first ``failures`` posts, then passes posts on to the hub.

    Of the posts passed on, the hub's answer to the first ``lost`` never comes back:
    the proxy closes the connection instead.  Headers named in ``drop`` are not
    passed on (``seen`` has what the script sent).
    """

    def __init__(
        self, target: str, failures: int = 0, lost: int = 0, drop: tuple[str, ...] = ()
    ) -> None:
        self.target = target
        self.failures = failures
        self.lost = lost
        self.drop = {name.lower() for name in drop}
        self.seen: list[tuple[bytes, dict[str, str]]] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() not in ("host", "content-length", "connection")
                }
                proxy.seen.append((body, headers))
                if len(proxy.seen) <= proxy.failures:
                    status, answer = (
                        503,
                        b'{"success": false, "error": {"code": "down", '
                        b'"message": "upstream restarting", "details": {}}}',
                    )
                else:
                    passed = {k: v for k, v in headers.items() if k.lower() not in proxy.drop}
                    request = urllib.request.Request(proxy.target, data=body, headers=passed)
                    with urllib.request.urlopen(request, timeout=10) as response:
                        status, answer = response.status, response.read()
                        checked("POST", INGEST, response, answer)
                    if len(proxy.seen) <= proxy.failures + proxy.lost:
                        self.close_connection = True
                        return
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{INGEST}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_5xx_answers_are_retried_with_the_same_body_and_idempotency_key(
    guarded_hub: HubServer,
) -> None:
    proxy = FlakyProxy(guarded_hub.url + INGEST, failures=2)
    try:
        deployment = run_id()
        result = run_script(
            "web",
            "success",
            "2",
            "",
            deployment,
            "",
            "",
            HOSTILE["newlines"],
            url=proxy.url,
            env={"DASHBOARD_SECRET": SECRET},
        )
    finally:
        proxy.close()
    assert result.returncode == 0, result.stderr
    assert "sent deployment success" in result.stdout
    assert len(proxy.seen) == 3
    assert len({body for body, _ in proxy.seen}) == 1
    assert len({headers["Idempotency-Key"] for _, headers in proxy.seen}) == 1
    # stored once: the deployment and the log_entry its logs became, no repeats
    assert [e["type"] for e in events_of(guarded_hub, deployment)] == [
        "deployment_completed",
        "log_entry",
    ]


@pytest.mark.parametrize(
    "args",
    [
        ("web", "success", "2", "", "{deployment}"),
        ("--type", "step_started", "--step", "build", "--deployment-id", "{deployment}", "web"),
    ],
    ids=["legacy", "typed"],
)
def test_a_signed_retry_after_a_lost_answer_is_stored_once(
    guarded_hub: HubServer, args: tuple[str, ...]
) -> None:
    """The signature covers the body only, so a hub may ignore the unsigned
    ``Idempotency-Key`` of a signed post.  The proxy drops it, as such a hub does:
    the key the body carries as ``event_id`` is what makes the retry a duplicate."""
    deployment = run_id()
    proxy = FlakyProxy(guarded_hub.url + INGEST, lost=1, drop=("Idempotency-Key",))
    try:
        result = run_script(
            *(arg.format(deployment=deployment) for arg in args),
            url=proxy.url,
            env={"DASHBOARD_SECRET": SECRET},
        )
    finally:
        proxy.close()
    assert result.returncode == 0, result.stderr
    assert "already accepted earlier" in result.stdout
    assert len(proxy.seen) == 2
    (body,) = {body for body, _ in proxy.seen}
    (key,) = {headers["Idempotency-Key"] for _, headers in proxy.seen}
    assert json.loads(body)["event_id"] == key
    assert len(events_of(guarded_hub, deployment)) == 1


@pytest.mark.parametrize(
    ("args", "env", "event_id"),
    [
        ((), {"DASHBOARD_SECRET": SECRET}, "a fresh key"),
        (("--event-id", "mine"), {"DASHBOARD_SECRET": SECRET}, "mine"),
        (("--type", "step_started", "--step", "x"), {"DASHBOARD_SECRET": SECRET}, "a fresh key"),
        ((), {"DASHBOARD_TOKEN": TOKEN}, None),
        ((), {}, None),
    ],
    ids=["signed", "signed-with-event-id", "signed-typed", "bearer", "unauthenticated"],
)
def test_only_signed_bodies_get_an_event_id_of_their_own(
    args: tuple[str, ...], env: dict[str, str], event_id: str | None
) -> None:
    bodies = []
    for _ in range(2):
        result = run_script(
            "--dry-run", *args, "web", "success", "1", url="http://127.0.0.1:9/", env=env
        )
        assert result.returncode == 0, result.stderr
        bodies.append(json.loads(result.stdout))
    if event_id == "a fresh key":
        first, second = (body["event_id"] for body in bodies)
        assert first != second
        assert re.fullmatch(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", first)
    else:
        assert [body.get("event_id") for body in bodies] == [event_id] * 2


def test_typed_step_events_build_the_deployment_tree(hub: HubServer) -> None:
    deployment = run_id()
    url = hub.url + INGEST
    steps = [
        ("--type", "deployment_started", "web"),
        ("--type", "step_started", "--step", "build / compile", "web"),
        ("--type", "log_entry", "--step", "build / compile", "--logs", HOSTILE["ansi"], "web"),
        (
            "--type",
            "step_completed",
            "--step",
            "build / compile",
            "--status",
            "success",
            "--duration",
            "3.5",
            "web",
        ),
        ("--type", "step_completed", "--job", "deploy", "--step", "upload", "web", "failed", "12"),
        ("--type", "deployment_completed", "--status", "failed", "--error", "upload failed", "web"),
    ]
    for args in steps:
        result = run_script(*args, "--deployment-id", deployment, url=url)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(f"notify-dashboard: sent {args[1]}")
    status, view = hub.request("GET", f"/api/deployments/{deployment}")
    assert status == 200
    assert (view["status"], view["error"]) == ("failure", "upload failed")
    assert [(j["name"], [(s["name"], s["status"]) for s in j["steps"]]) for j in view["jobs"]] == [
        ("build", [("compile", "success")]),
        ("deploy", [("upload", "failure")]),
    ]
    compile_, upload = view["jobs"][0]["steps"][0], view["jobs"][1]["steps"][0]
    # compile's start and end were both reported (as received): the times give its duration;
    # upload's start was not, so its reported 12 s places the start.
    assert compile_["duration_ms"] == duration_between(
        compile_["started_at"], compile_["completed_at"]
    )
    assert upload["duration_ms"] == 12000
    assert duration_between(upload["started_at"], upload["completed_at"]) == 12000
    status, page = hub.request("GET", f"/api/deployments/{deployment}/logs?job=build")
    assert [line["message"] for line in page["lines"]] == [HOSTILE["ansi"]]


def test_typed_events_default_to_the_runs_id_in_github_actions(hub: HubServer) -> None:
    deployment = run_id()
    result = run_script(
        "--type",
        "step_started",
        "--step",
        "lint",
        "web",
        url=hub.url + INGEST,
        env={"GITHUB_RUN_ID": deployment},
    )
    assert result.returncode == 0, result.stderr
    assert [e["payload"]["step"] for e in events_of(hub, deployment)] == ["lint"]


@pytest.mark.parametrize("typed", [("--type", "step_started", "--step", "lint"), ()])
def test_a_repeated_event_id_is_stored_once(hub: HubServer, typed: tuple[str, ...]) -> None:
    deployment = run_id()
    for _ in range(2):
        result = run_script(
            *typed,
            "--event-id",
            f"lint-{deployment}",
            "web",
            "running",
            "",
            "",
            deployment,
            url=hub.url + INGEST,
        )
        assert result.returncode == 0, result.stderr
    assert "already accepted earlier" in result.stdout
    assert len(events_of(hub, deployment)) == 1


def test_a_rejected_event_prints_the_hubs_field_errors(hub: HubServer) -> None:
    """A refusal is a delivery failure, not a usage mistake: soft unless --strict."""
    deployment = run_id()
    ten_thousand_years = str(10_000 * 365 * 86400)
    result = run_script("web", "success", ten_thousand_years, "", deployment, url=hub.url + INGEST)
    assert result.returncode == 0
    assert "HTTP 422" in result.stderr
    assert "duration: Must be between 0 and 315360000 seconds" in result.stderr
    assert len(result.stderr.splitlines()) == 1
    strict = run_script("--strict", "web", "success", ten_thousand_years, url=hub.url + INGEST)
    assert strict.returncode == 1


@pytest.mark.parametrize("word", ["SUCCESS", " Failed ", "Canceled", "in_progress", "QUEUED"])
def test_status_words_of_the_hubs_vocabulary_are_sent_in_any_case(word: str) -> None:
    result = run_script("--dry-run", "web", word, url="http://127.0.0.1:9/")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["status"] == word


USAGE_LINE = (
    "usage: notify-dashboard.sh [options] <project> <status> [duration] [sourceRepo] [runId]"
    " [deployType] [serverHost] [logs] [errorMessage] (see --help)"
)


@pytest.mark.parametrize(
    ("args", "what"),
    [
        (("web",), "a project and a status are required"),
        ((), "a project and a status are required"),
        (("--type", "step_started"), "a typed event needs a project or a deployment id"),
        (("--step",), "--step needs a value"),
        (("a", "b", *"123456789"), "at most 9 positional arguments, got 11"),
        (("--setp", "build", "web", "success"), "unknown option --setp"),
        (("--setp=build", "web", "success"), "unknown option --setp"),
        (("web", "success", "--dry-rum"), "unknown option --dry-rum"),
        (("web", "success", "--step"), "--step needs a value"),
        (
            ("--step", "--strict", "web", "success"),
            "--step needs a value, not the option --strict (for such a value: --step=VALUE)",
        ),
        (
            ("--logs", "--", "web", "success"),
            "--logs needs a value, not the option -- (for such a value: --logs=VALUE)",
        ),
        (("--strict=yes", "web", "success"), "--strict takes no value"),
        (
            ("web", "exploded"),
            "unknown status 'exploded'; one of (in any case): success, succeeded, completed,"
            " failed, failure, error, cancelled, canceled, skipped, running, started,"
            " in_progress, retrying, pending, queued",
        ),
        (("web", "success", "45s"), "duration must be a number of seconds, not '45s'"),
        (
            ("--duration", "-1", "web", "success"),
            "--duration must be a number of seconds, not '-1'",
        ),
        (("--duration=inf", "web", "success"), "--duration must be a number of seconds, not 'inf'"),
        (
            ("--type", "log_entry", "--level", "verbose", "--logs", "x", "web"),
            "unknown --level 'verbose'; one of (in any case): debug, info, warning, error,"
            " trace, notice, warn, err, critical, fatal",
        ),
        (
            ("--type", "step_begin", "web"),
            "unknown --type 'step_begin'; one of: deployment_started, deployment_completed,"
            " step_started, step_completed, step_manual, log_entry, metrics_update,"
            " deployment_rollback, test",
        ),
    ],
    ids=[
        "no-status",
        "nothing",
        "typed-without-project",
        "option-without-value",
        "too-many",
        "unknown-option",
        "unknown-option-with-value",
        "unknown-option-last",
        "option-last-without-value",
        "option-followed-by-an-option",
        "option-followed-by-the-end-of-options",
        "flag-with-a-value",
        "unknown-status",
        "non-numeric-duration",
        "negative-duration",
        "infinite-duration",
        "unknown-level",
        "unknown-type",
    ],
)
def test_a_usage_mistake_exits_2_with_or_without_strict(args: tuple[str, ...], what: str) -> None:
    """Nothing is sent (nothing listens at the URL, which would be a soft failure)."""
    url = f"http://127.0.0.1:{free_port()}{INGEST}"
    for strict in ((), ("--strict",)):
        result = run_script(*strict, *args, url=url)
        assert (result.returncode, result.stdout) == (2, "")
        assert result.stderr.splitlines() == [USAGE_LINE, "notify-dashboard: not sent: " + what]


def test_words_that_only_start_with_a_dash_and_all_after_the_double_dash_are_positional(
    hub: HubServer,
) -> None:
    deployment = run_id()
    url = hub.url + INGEST
    result = run_script(
        "web", "failed", "1", "", deployment, "", "", "--- build failed ---", "-x", url=url
    )
    assert result.returncode == 0, result.stderr
    after = run_id()
    positional = ("web", "", "", "", after, "", "", "--setp")  # logs: "--setp"
    result = run_script("--message=--force", "--type", "log_entry", "--", *positional, url=url)
    assert result.returncode == 0, result.stderr
    events = events_of(hub, deployment)
    assert (moved_text(events), events[0]["payload"]["error"]) == ("--- build failed ---", "-x")
    (event,) = events_of(hub, after)
    assert (event["payload"]["message"], event["payload"]["logs"]) == ("--force", "--setp")


def test_a_usage_mistake_is_an_error_annotation_in_github_actions() -> None:
    url = f"http://127.0.0.1:{free_port()}{INGEST}"
    for args in (("--step",), ("web",)):
        result = run_script(*args, url=url, env={"GITHUB_ACTIONS": "true"})
        assert result.returncode == 2
        usage, line = result.stderr.splitlines()
        assert usage == USAGE_LINE
        assert line.startswith("::error title=dashboard notification::notify-dashboard: not sent:")


@pytest.mark.parametrize(
    ("args", "sent"),
    [
        (("--type", "log_entry", "--logs", "x", "--level", "WARN", "web"), {"level": "WARN"}),
        (
            ("--type", "log_entry", "--logs", "x", "--level", "critical", "web"),
            {"level": "critical"},
        ),
        (("web", "success", "1e2"), {"duration": 100}),
        (("web", "success", " 2.5 "), {"duration": 2.5}),
        (("--duration", "", "web", "success"), {"duration": 0}),
        (("--type", "step_started", "--duration=", "--step", "x", "web"), {}),
    ],
    ids=["level-in-capitals", "level-alias", "exponent", "spaces", "empty", "typed-empty"],
)
def test_levels_and_durations_the_hub_takes_are_sent(
    args: tuple[str, ...], sent: dict[str, Any]
) -> None:
    result = run_script("--dry-run", *args, url="http://127.0.0.1:9/")
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert {key: body[key] for key in sent} == sent
    if not sent:
        assert "duration" not in body


def test_dry_run_prints_the_body_it_would_send() -> None:
    result = run_script(
        "--dry-run",
        "web",
        "failed",
        "7",
        "o/r",
        "5",
        "",
        "",
        HOSTILE["template"],
        url="http://127.0.0.1:9/",
    )
    body = json.loads(result.stdout)
    assert list(body) == [
        "project",
        "status",
        "duration",
        "timestamp",
        "sourceRepo",
        "runId",
        "deployType",
        "serverHost",
        "logs",
        "errorMessage",
    ]
    assert (body["logs"], body["errorMessage"], body["duration"]) == (HOSTILE["template"], "", 7)


def test_a_runner_without_python_is_told_so_and_the_deploy_goes_on(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    bash = shutil.which("bash")
    assert bash is not None
    (bin_dir / "bash").symlink_to(bash)
    for strict, code in (([], 0), (["--strict"], 1)):
        result = subprocess.run(
            [str(bin_dir / "bash"), str(SCRIPT), *strict, "web", "success"],
            capture_output=True,
            text=True,
            env={"PATH": str(bin_dir)},
            check=False,
            timeout=60 * TIMEOUT_FACTOR,
        )
        assert (result.returncode, result.stderr) == (
            code,
            "notify-dashboard: not sent: python3 is not installed\n",
        )
