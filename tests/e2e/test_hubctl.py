"""``hubctl`` send, status, tail and replay against the real hub, and what it says when refused."""

from __future__ import annotations

import io
import json
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hubctl.cli import main
from hubctl.render import duration
from ledger.timestamps import duration_between
from tests.conftest import ROOT, TIMEOUT_FACTOR
from tests.e2e.server import HubServer, free_port

pytestmark = pytest.mark.e2e

SECRET = "hubctl-secret"
READ_TOKEN = "reader"
WAIT = 30 * TIMEOUT_FACTOR


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubServer]:
    server = HubServer(
        tmp_path_factory.mktemp("hubctl"), env={"HUB_WEBHOOK_SECRETS": SECRET}
    ).start()
    yield server
    server.stop()


def hubctl(
    hub_url: str, *args: str, env: dict[str, str] | None = None, stdin: str = ""
) -> tuple[int, str, str]:
    """Run ``hubctl`` in this process, over real sockets; ``(exit code, stdout, stderr)``."""
    out, err = io.StringIO(), io.StringIO()
    environ = {"DASHBOARD_SECRET": SECRET, **(env or {})}
    code = main(
        ["--hub", hub_url, "--retries", "1", *args],
        environ=environ,
        stdin=io.StringIO(stdin),
        stdout=out,
        stderr=err,
    )
    return code, out.getvalue(), err.getvalue()


def send_steps(url: str, deployment: str, project: str = "shop") -> None:
    for args in (
        ["--type", "deployment_started", "--project", project],
        ["--type", "step_started", "--step", "build / compile", "--project", project],
        [
            "--type",
            "log_entry",
            "--step",
            "build / compile",
            "--message",
            "编译 \x1b[32mok\x1b[0m",
            "--project",
            project,
        ],
        [
            "--type",
            "step_completed",
            "--job",
            "build",
            "--step",
            "compile",
            "--status",
            "success",
            "--duration",
            "4.25",
            "--project",
            project,
        ],
        [
            "--type",
            "step_completed",
            "--step",
            "deploy / upload",
            "--status",
            "failed",
            "--duration",
            "61",
            "--error",
            "disk full",
            "--project",
            project,
        ],
        ["--type", "deployment_completed", "--status", "failure", "--project", project],
    ):
        code, out, err = hubctl(url, "send", "--deployment-id", deployment, *args)
        assert code == 0, err
        assert out.startswith("accepted 1 event: ")


def test_send_and_status_show_the_job_step_tree(hub: HubServer) -> None:
    url = hub.url + "/project-dashboard"
    send_steps(url, "501")
    code, out, _ = hubctl(url, "status", "501", "--json")
    compile_ = json.loads(out)["jobs"][0]["steps"][0]
    # Its start and end were both reported (as received): their span is its duration.
    took = duration_between(compile_["started_at"], compile_["completed_at"])
    assert compile_["duration_ms"] == took
    code, out, err = hubctl(url, "status", "501", "--color", "never")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("shop #501  failure")
    assert "\n  build  success" in out
    assert any("✓" in line and "compile" in line and duration(took) in line for line in lines)
    assert any("✗" in line and "upload" in line and "1m 01s" in line for line in lines)
    assert "disk full" in out


def test_status_is_coloured_when_asked(hub: HubServer) -> None:
    url = hub.url + "/project-dashboard"
    send_steps(url, "502")
    code, out, _ = hubctl(url, "--color", "always", "status", "502")
    assert code == 0
    assert "\x1b[31mfailure\x1b[0m" in out


@pytest.mark.parametrize(
    "stdin",
    [
        '{"type": "step_started", "project": "p", "deployment_id": "503", "step": "a"}',
        '{"events": [{"type": "step_started", "project": "p", "deployment_id": "503", '
        '"step": "a"}, {"type": "log_entry", "project": "p", "deployment_id": "503", '
        '"message": "x"}]}',
        '{"type": "step_started", "project": "p", "deployment_id": "503", "step": "a"}\n\n'
        '{"type": "log_entry", "project": "p", "deployment_id": "503", "message": "y"}\n',
    ],
    ids=["one", "batch", "json-lines"],
)
def test_send_takes_json_from_stdin(hub: HubServer, stdin: str) -> None:
    code, out, err = hubctl(hub.url, "send", "--json", stdin=stdin)
    assert code == 0, err
    assert out.startswith("accepted ")


def test_send_repeated_event_id_is_reported_as_already_accepted(hub: HubServer) -> None:
    args = ["send", "--type", "test", "--project", "p", "--event-id", "once-only"]
    first = hubctl(hub.url, *args)
    again = hubctl(hub.url, *args)
    assert first[1].startswith("accepted 1 event")
    assert again[1] == first[1].replace("accepted 1 event", "already accepted earlier (1 event)")


def test_a_rejected_event_prints_the_hubs_field_errors(hub: HubServer) -> None:
    stdin = json.dumps(
        {
            "events": [
                {"type": "log_entry", "project": "p", "deployment_id": "1", "message": "fine"},
                {
                    "type": "step_completed",
                    "project": "p",
                    "deployment_id": "1",
                    "step": "s",
                    "status": "exploded",
                },
            ]
        }
    )
    code, out, err = hubctl(hub.url, "send", "--json", stdin=stdin)
    assert (code, out) == (1, "")
    lines = err.splitlines()
    assert lines[0] == (
        "hubctl: the hub rejected the event (422 validation_failed): "
        "event 1 of the batch is invalid; nothing was stored"
    )
    assert "  index: 1" in lines
    assert any(line.startswith("  events.1.status: Unknown status 'exploded'") for line in lines)


@pytest.mark.parametrize(
    ("env", "hint"),
    [
        ({"DASHBOARD_SECRET": ""}, "set DASHBOARD_SECRET or DASHBOARD_TOKEN"),
        ({"DASHBOARD_SECRET": "wrong"}, "DASHBOARD_SECRET must be one of"),
        ({"DASHBOARD_SECRET": "", "DASHBOARD_TOKEN": "nope"}, "DASHBOARD_TOKEN must be one of"),
    ],
    ids=["unsigned", "bad-signature", "bad-token"],
)
def test_a_refused_signature_or_token_says_which_setting_to_fix(
    hub: HubServer, env: dict[str, str], hint: str
) -> None:
    code, _, err = hubctl(hub.url, "send", "--type", "test", "--project", "p", env=env)
    assert code == 1
    assert err.startswith("hubctl: the hub rejected the event (401 unauthorized): ")
    assert hint in err


def test_an_unreachable_hub_is_retried_then_reported() -> None:
    url = f"http://127.0.0.1:{free_port()}/project-dashboard"
    code, _, err = hubctl(url, "send", "--type", "test", "--project", "p")
    assert code == 3
    assert err.startswith(f"hubctl: cannot reach the hub at {url}: ")
    assert "(after 2 attempts)" in err


def test_something_that_is_not_the_hub_is_named(hub: HubServer) -> None:
    """A wrong base URL reaches the hub's 404 for a path it does not serve."""
    code, _, err = hubctl(hub.url + "/elsewhere", "status", "1")
    assert code == 1
    assert err.startswith("hubctl: GET /deployments/1 failed (404 not_found)")


def test_an_unknown_deployment_is_a_clear_404(hub: HubServer) -> None:
    code, _, err = hubctl(hub.url, "status", "no such deployment")
    assert code == 1
    assert "404 not_found" in err
    assert "no deployment 'no such deployment'" in err


def test_usage_errors_exit_2(hub: HubServer) -> None:
    with pytest.raises(SystemExit) as caught:
        hubctl(hub.url, "tail")
    assert caught.value.code == 2
    code, _, err = hubctl(hub.url, "send", "--project", "p")
    assert code == 1
    assert "give --type" in err


class TailProcess:
    """``python -m hubctl tail`` in a subprocess, its output lines read as they come."""

    def __init__(self, url: str, *args: str, env: dict[str, str] | None = None) -> None:
        environ = {k: v for k, v in os.environ.items() if not k.startswith(("HUB_", "DASHBOARD_"))}
        environ.update(PYTHONPATH=str(ROOT), **(env or {}))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "hubctl", "--hub", url, "tail", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environ,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        assert self.process.stdout is not None
        self.pump = threading.Thread(target=self._pump, args=(self.process.stdout,), daemon=True)
        self.pump.start()

    def _pump(self, stream: Any) -> None:
        for line in stream:
            self.lines.put(line.rstrip("\n"))

    def read(self, count: int) -> list[str]:
        return [self.lines.get(timeout=WAIT) for _ in range(count)]

    def finish(self) -> tuple[int, str]:
        """Wait for the tail to exit by itself; its exit code and stderr."""
        code = self.process.wait(timeout=WAIT)
        assert self.process.stderr is not None
        stderr = self.process.stderr.read()
        self.close()
        return code, stderr

    def close(self) -> None:
        """Kill the tail if it still runs, and release its pipes."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.pump.join(timeout=WAIT)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


def post(server: HubServer, deployment: str, message: str) -> str:
    status, answer = server.post_json(
        "/api/webhooks/deployment",
        {"type": "log_entry", "project": "live", "deployment_id": deployment, "message": message},
    )
    assert status == 200, answer
    return str(answer["ids"][0])


def test_tail_resumes_after_the_hub_restarts_without_losing_or_repeating(
    tmp_path: Path,
) -> None:
    server = HubServer(tmp_path / "hub").start()
    tail: TailProcess | None = None
    try:
        ids = [post(server, "600", f"before {i}") for i in range(3)]
        tail = TailProcess(
            server.url + "/project-dashboard", "--deployment", "600", "--json", "--until-complete"
        )
        seen = [json.loads(line)["id"] for line in tail.read(3)]
        assert seen == ids
        ids += [post(server, "600", "live")]
        assert json.loads(tail.read(1)[0])["id"] == ids[-1]
        server.restart()
        ids += [post(server, "600", f"while away {i}") for i in range(3)]
        status, answer = server.post_json(
            "/api/webhooks/deployment",
            {
                "type": "deployment_completed",
                "project": "live",
                "deployment_id": "600",
                "status": "success",
            },
        )
        assert status == 200
        ids += answer["ids"]
        code, stderr = tail.finish()
        assert code == 0, stderr
        rest = [json.loads(line)["id"] for line in tail.read(len(ids) - 4)]
        assert [*seen, ids[3], *rest] == ids
        assert tail.lines.empty()
        assert "reconnecting" in stderr
        assert f"resuming after {ids[3]}" in stderr
    finally:
        if tail is not None:
            tail.close()
        server.stop()


def test_tail_of_a_project_prints_readable_lines(hub: HubServer) -> None:
    """Events sent before the tail subscribes arrive too: a project replays its latest."""
    tail = TailProcess(hub.url, "--project", "tailed", "--count", "2", "--color", "never")
    try:
        url = hub.url
        assert (
            hubctl(
                url,
                "send",
                "--type",
                "step_completed",
                "--project",
                "tailed",
                "--deployment-id",
                "700",
                "--step",
                "build / compile",
                "--status",
                "success",
                "--duration",
                "2",
            )[0]
            == 0
        )
        assert (
            hubctl(
                url,
                "send",
                "--type",
                "log_entry",
                "--project",
                "tailed",
                "--deployment-id",
                "700",
                "--message",
                "第一行\nsecond line",
            )[0]
            == 0
        )
        code, stderr = tail.finish()
        assert code == 0, stderr
        lines = tail.read(3)
        assert "tailed #700 step_completed build / compile success 2.0s" in lines[0]
        assert lines[1].endswith(" tailed #700 log 第一行")
        assert lines[2].endswith(" tailed #700 log second line")
    finally:
        tail.close()


def test_tail_without_the_read_token_is_refused_clearly(tmp_path: Path) -> None:
    server = HubServer(tmp_path / "hub", env={"HUB_READ_TOKENS": READ_TOKEN}).start()
    try:
        tail = TailProcess(server.url, "--project", "p")
        code, stderr = tail.finish()
        assert code == 1
        assert "refused the WebSocket" in stderr
        assert "HTTP 401" in stderr
        assert "DASHBOARD_READ_TOKEN" in stderr
        code, _, err = hubctl(server.url, "status", "1")
        assert (code, "401 unauthorized" in err) == (1, True)
        assert "DASHBOARD_READ_TOKEN" in err
        send_steps(server.url, "42")
        code, out, _ = hubctl(server.url, "status", "42", env={"DASHBOARD_READ_TOKEN": READ_TOKEN})
        assert (code, out.startswith("shop #42")) == (0, True)
        tail = TailProcess(
            server.url,
            "--deployment",
            "42",
            "--until-complete",
            "--json",
            env={"DASHBOARD_READ_TOKEN": READ_TOKEN},
        )
        assert tail.finish()[0] == 0
    finally:
        server.stop()


def tree(server: HubServer, deployment: str) -> Any:
    status, view = server.request("GET", f"/api/deployments/{deployment}")
    assert status == 200
    return [view["status"], view["project"], view["jobs"], view["log_lines"], view["error"]]


def test_replay_from_a_tail_file_and_from_another_hub(hub: HubServer, tmp_path: Path) -> None:
    source_url = hub.url + "/project-dashboard"
    send_steps(source_url, "801", project="replayed")
    code, out, _ = hubctl(
        source_url,
        "send",
        "--type",
        "metrics_update",
        "--project",
        "replayed",
        "--deployment-id",
        "801",
        "--json-field",
        "cpu_percent=12.5",
        "--field",
        "note=manual",
    )
    assert code == 0, out
    tail = TailProcess(source_url, "--deployment", "801", "--json", "--count", "7")
    code, _ = tail.finish()
    assert code == 0
    dump = tmp_path / "events.jsonl"
    dump.write_text("\n".join(tail.read(7)) + "\n", encoding="utf-8")

    target = HubServer(tmp_path / "target").start()
    try:
        code, out, err = hubctl(target.url, "replay", str(dump), env={"DASHBOARD_SECRET": ""})
        assert code == 0, err
        assert out.startswith("replayed 7 events to ")
        assert tree(target, "801") == tree(hub, "801")
        code, out, _ = hubctl(target.url, "replay", str(dump), env={"DASHBOARD_SECRET": ""})
        assert out.startswith("replayed 7 events: all were already on")
        status, page = target.request("GET", "/api/events?limit=1000")
        assert (status, len(page["events"])) == (200, 7)

        send_steps(source_url, "802", project="replayed")
        code, out, err = hubctl(
            target.url,
            "replay",
            "--from-hub",
            source_url,
            "--deployment-id",
            "802",
            env={"DASHBOARD_SECRET": ""},
        )
        assert code == 0, err
        assert tree(target, "802") == tree(hub, "802")
    finally:
        target.stop()


@pytest.mark.parametrize(
    ("content", "message"),
    [("{not json\n", "line 1: not JSON"), ("[1, 2]\n", "line 1: an event must be a JSON object")],
    ids=["not-json", "not-an-object"],
)
def test_replay_names_the_bad_line(
    hub: HubServer, tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    code, _, err = hubctl(hub.url, "replay", str(path))
    assert code == 1
    assert message in err


def test_the_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "hubctl"
    if not script.exists():
        pytest.skip("the package is not installed in this environment")
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=False)
    assert result.returncode == 0
    assert "github" in result.stdout


def test_tail_says_so_when_history_no_longer_reaches_back(hub: HubServer) -> None:
    """An id from an epoch the hub no longer holds is answered with recovered: false."""
    code, _, err = hubctl(
        hub.url,
        "send",
        "--type",
        "log_entry",
        "--project",
        "live",
        "--deployment-id",
        "650",
        "--message",
        "still here",
    )
    assert code == 0, err
    tail = TailProcess(
        hub.url,
        "--deployment",
        "650",
        "--since",
        "0000000000001-000000000001",
        "--count",
        "1",
        "--json",
    )
    code, stderr = tail.finish()
    assert code == 0, stderr
    assert json.loads(tail.read(1)[0])["payload"]["message"] == "still here"
    assert "history no longer reaches back to 0000000000001-000000000001" in stderr


def test_status_and_tail_print_hostile_sender_text_harmlessly(hub: HubServer) -> None:
    """Free text the hub accepts as it is (errors, log lines) reaches the terminal cleaned."""
    hostile = (
        "\x1b[31mred\x1b[0m \x1b]52;c;aGk=\x07\x1b]0;owned\x07\x1b[2J\x1bP1|x\x1b\\\x9b2J\x07!"
    )
    acts = ("\x1b]", "\x1b[2J", "\x1bP", "\x9b", "\x07")
    project, deployment = "hostile-terminal", "900"
    bodies = [
        {"type": "deployment_started"},
        {"type": "step_started", "job": "ci", "step": "build"},
        {"type": "log_entry", "job": "ci", "step": "build", "message": hostile},
        {"type": "step_completed", "job": "ci", "step": "build", "status": "failure"},
        {"type": "deployment_completed", "status": "failure", "error": hostile},
    ]
    events = [{**body, "project": project, "deployment_id": deployment} for body in bodies]
    code, _, err = hubctl(hub.url, "send", "--json", stdin=json.dumps({"events": events}))
    assert code == 0, err
    for colour in ("never", "always"):
        code, out, err = hubctl(hub.url, "--color", colour, "status", deployment)
        assert code == 0, err
        assert not any(bad in out for bad in acts), repr(out)
        assert "red" in out
        assert ("\x1b[31mred\x1b[0m" in out) is (colour == "always")
        tail = TailProcess(hub.url, "--deployment", deployment, "--count", "5", "--color", colour)
        try:
            code, stderr = tail.finish()
            assert code == 0, stderr
            lines = tail.read(5)
        finally:
            tail.close()
        assert not any(bad in line for line in lines for bad in acts), lines
        assert any(line.endswith("ci / build red !") for line in lines) is (colour == "never")
