"""A small local stand-in for GitHub's Actions REST API, in the documented shapes.

It serves, over real HTTP on 127.0.0.1, the endpoints ``hubctl github watch``
reads: a run (``/repos/{o}/{r}/actions/runs/{id}``), its jobs with steps
(``.../runs/{id}/jobs``, paginated with ``Link`` headers and ``page``/``per_page``,
at most :attr:`FakeGitHub.page_size` per page), and a job's log
(``.../actions/jobs/{id}/logs``: a 302 to a signed download URL that, like
real blob storage, refuses requests that carry an ``Authorization`` header).
It also answers with the rate-limit responses GitHub documents (403 with
``x-ratelimit-remaining: 0``/``x-ratelimit-reset``, 429 with ``Retry-After``)
when told to.

A run advances one stage each time it is fetched: at stage k of n, steps whose
(fake) times fall before k/n of the run's span are done, the next is in
progress, and the log of a job is offered once the job is done.  The same
builder also makes the ``workflow_run``/``workflow_job`` webhook payloads, so
the webhook tests and the watcher tests describe runs the same way.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

BASE_TIME = datetime(2025, 8, 12, 11, 20, 0, tzinfo=UTC)
OWNER_REPO = "MoseLu/axi-star-cloud"
TOKEN = "gh-test-token"


def iso(moment: datetime) -> str:
    """GitHub's spelling of step and job times: whole seconds, ``Z``."""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class FakeStep:
    name: str
    conclusion: str
    started: datetime | None
    completed: datetime | None
    number: int
    #: Log text lines as printed (no timestamps), including the runner's headers.
    lines: list[str] = field(default_factory=list)


@dataclass
class FakeJob:
    id: int
    name: str
    steps: list[FakeStep]

    @property
    def started(self) -> datetime:
        return min(s.started for s in self.steps if s.started is not None)

    @property
    def completed(self) -> datetime:
        return max(s.completed for s in self.steps if s.completed is not None)

    @property
    def conclusion(self) -> str:
        conclusions = {s.conclusion for s in self.steps}
        for word in ("failure", "cancelled"):
            if word in conclusions:
                return word
        return "success"


@dataclass
class FakeRun:
    """One workflow run; ``stages`` fetches take it from start to its conclusion."""

    id: int
    jobs: list[FakeJob]
    conclusion: str
    name: str = "Deploy Project"
    repo: str = OWNER_REPO
    attempt: int = 1
    stages: int = 4
    fetches: int = 0

    @property
    def started(self) -> datetime:
        return min(job.started for job in self.jobs)

    @property
    def completed(self) -> datetime:
        return max(job.completed for job in self.jobs) + timedelta(seconds=1)

    def cutoff(self) -> datetime | None:
        """The fake "now" of the current stage; ``None`` once the run is over."""
        if self.fetches >= self.stages:
            return None
        span = self.completed - self.started
        return self.started + span * self.fetches / self.stages

    def run_json(self) -> dict[str, Any]:
        cutoff = self.cutoff()
        owner, name = self.repo.split("/")
        return {
            "id": self.id,
            "name": self.name,
            "run_number": 7,
            "run_attempt": self.attempt,
            "event": "push",
            "status": "completed" if cutoff is None else "in_progress",
            "conclusion": self.conclusion if cutoff is None else None,
            "workflow_id": 555,
            "head_branch": "main",
            "head_sha": "0123456789abcdef0123456789abcdef01234567",
            "html_url": f"https://github.com/{self.repo}/actions/runs/{self.id}",
            "created_at": iso(self.started - timedelta(seconds=2)),
            "run_started_at": iso(self.started),
            "updated_at": iso(self.completed if cutoff is None else cutoff),
            "actor": {"login": "mose"},
            "triggering_actor": {"login": "mose"},
            "head_commit": {"id": "0123456", "timestamp": "2025-08-12T11:19:00Z"},
            "repository": {"full_name": self.repo, "name": name, "owner": {"login": owner}},
        }

    def job_json(self, job: FakeJob, cutoff: datetime | None = None) -> dict[str, Any]:
        steps = []
        for step in job.steps:
            if cutoff is None or (step.completed is not None and step.completed <= cutoff):
                status, conclusion = "completed", step.conclusion
                started, completed = step.started, step.completed
            elif step.started is not None and step.started <= cutoff:
                status, conclusion, started, completed = "in_progress", None, step.started, None
            else:
                status, conclusion, started, completed = "queued", None, None, None
            steps.append(
                {
                    "name": step.name,
                    "status": status,
                    "conclusion": conclusion,
                    "number": step.number,
                    "started_at": iso(started) if started else None,
                    "completed_at": iso(completed) if completed else None,
                }
            )
        done = all(s["status"] == "completed" for s in steps)
        running = any(s["status"] != "queued" for s in steps)
        return {
            "id": job.id,
            "run_id": self.id,
            "run_attempt": self.attempt,
            "workflow_name": self.name,
            "head_branch": "main",
            "name": job.name,
            "status": "completed" if done else "in_progress" if running else "queued",
            "conclusion": job.conclusion if done else None,
            "started_at": iso(job.started),
            "completed_at": iso(job.completed) if done else None,
            "steps": steps,
            "runner_name": "GitHub Actions 2",
            "labels": ["ubuntu-latest"],
        }

    def job_done(self, job: FakeJob) -> bool:
        cutoff = self.cutoff()
        return cutoff is None or job.completed <= cutoff

    def log_text(self, job: FakeJob) -> str:
        """The job's log as GitHub serves it: BOM, then ``<time with 7 digits>Z text`` lines."""
        out = []
        for step in job.steps:
            if step.started is None:
                continue
            for index, line in enumerate(step.lines):
                moment = step.started + timedelta(milliseconds=100 + 10 * index)
                out.append(moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z " + line)
        return "\ufeff" + "\n".join(out) + "\n"

    def webhook_run(self, action: str) -> dict[str, Any]:
        """A ``workflow_run`` delivery body at the current stage."""
        run = self.run_json()
        return {
            "action": action,
            "workflow_run": run,
            "repository": run["repository"],
            "sender": {"login": "mose"},
        }

    def webhook_job(self, job: FakeJob, action: str) -> dict[str, Any]:
        """A ``workflow_job`` delivery body; ``completed`` shows the finished job."""
        cutoff = None if action == "completed" else self.cutoff()
        return {
            "action": action,
            "workflow_job": self.job_json(job, cutoff),
            "repository": self.run_json()["repository"],
            "sender": {"login": "mose"},
        }


def build_run(
    run_id: int,
    jobs: list[tuple[str, list[tuple[str, str, int]]]],
    *,
    conclusion: str,
    first_job_id: int = 1000,
    stages: int = 4,
) -> FakeRun:
    """A run whose jobs run one after another, each with "Set up job" and "Complete job".

    Each step is ``(name, conclusion, seconds)``.  A step starts the second its
    predecessor ended (the tie the log splitter must get right), except the
    runner's own last step, which GitHub starts a second later.  Steps that ran
    print the runner's ``##[group]Run`` header, a user ``::group::``, output with
    quotes, Chinese and ANSI codes, and an ``##[error]`` line when they fail.
    """
    moment = BASE_TIME
    fake_jobs = []
    for offset, (job_name, steps) in enumerate(jobs):
        fake_steps = [
            FakeStep(
                "Set up job",
                "success",
                moment,
                moment + timedelta(seconds=1),
                1,
                ["Current runner version: '2.327.1'", "Operating System", "  Ubuntu 24.04"],
            )
        ]
        moment += timedelta(seconds=1)
        for number, (name, result, seconds) in enumerate(steps, start=2):
            if result == "skipped":
                fake_steps.append(FakeStep(name, "skipped", moment, moment, number))
                continue
            lines = [
                f"##[group]Run {name.lower()} --flag",
                f"{name.lower()} --flag",
                "##[endgroup]",
                "##[group]details",
                f'output of "{name}" \\ 中文 \x1b[32mok\x1b[0m',
                "##[endgroup]",
                "",
            ]
            if result == "failure":
                lines.append("##[error]Process completed with exit code 1.")
            if result == "cancelled":
                lines.append("##[error]The operation was canceled.")
            end = moment + timedelta(seconds=seconds)
            fake_steps.append(FakeStep(name, result, moment, end, number, lines))
            moment = end
        moment += timedelta(seconds=1)
        fake_steps.append(
            FakeStep(
                "Complete job",
                "success",
                moment,
                moment + timedelta(seconds=1),
                len(fake_steps) + 1,
                ["Cleaning up orphan processes"],
            )
        )
        moment += timedelta(seconds=2)
        fake_jobs.append(FakeJob(first_job_id + offset, job_name, fake_steps))
    return FakeRun(run_id, fake_jobs, conclusion, stages=stages)


class FakeGitHub:
    """The HTTP server; tests add runs and read what was asked of it."""

    def __init__(self, token: str = TOKEN, page_size: int = 2) -> None:
        self.token = token
        self.page_size = page_size
        self.runs: dict[int, FakeRun] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.refused_downloads = 0
        #: Responses to give before serving normally: "reset", "retry-after" or "secondary".
        self.limits: list[str] = []
        #: Log requests per job to answer 404 before the log is offered.
        self.log_delays: dict[int, int] = {}
        #: Path -> (status, JSON body) answered instead of the real thing: broken answers.
        self.overrides: dict[str, tuple[int, Any]] = {}
        self._lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"fake": self})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> FakeGitHub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def add(self, run: FakeRun) -> FakeRun:
        self.runs[run.id] = run
        return run

    def paths(self) -> list[str]:
        return [path for path, _ in self.requests]


class _Handler(BaseHTTPRequestHandler):
    fake: FakeGitHub
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the tests read :attr:`FakeGitHub.requests` instead."""

    def do_GET(self) -> None:
        fake = self.fake
        parts = urlsplit(self.path)
        with fake._lock:
            fake.requests.append((self.path, dict(self.headers.items())))
            if parts.path.startswith("/download/"):
                self._download(parts.path)
                return
            if self.headers.get("Authorization") != f"Bearer {fake.token}":
                self._json(401, {"message": "Bad credentials"})
                return
            if fake.limits:
                self._limit(fake.limits.pop(0))
                return
            if parts.path in fake.overrides:
                self._json(*fake.overrides[parts.path])
                return
            self._api(parts.path, parse_qs(parts.query))

    def _api(self, path: str, query: dict[str, list[str]]) -> None:
        fake = self.fake
        segments = path.strip("/").split("/")
        if len(segments) < 5 or segments[:1] != ["repos"] or segments[3] != "actions":
            self._json(404, {"message": "Not Found"})
            return
        repo = "/".join(segments[1:3])
        rest = segments[4:]
        if rest[:1] == ["runs"] and len(rest) >= 2 and rest[1].isdigit():
            run = fake.runs.get(int(rest[1]))
            if run is None or run.repo != repo:
                self._json(404, {"message": "Not Found"})
            elif len(rest) == 2:
                run.fetches += 1
                self._json(200, run.run_json())
            elif rest[2:] == ["jobs"]:
                self._jobs(run, path, query)
            else:
                self._json(404, {"message": "Not Found"})
            return
        if rest[:1] == ["jobs"] and len(rest) == 3 and rest[2] == "logs" and rest[1].isdigit():
            self._log(repo, int(rest[1]))
            return
        self._json(404, {"message": "Not Found"})

    def _jobs(self, run: FakeRun, path: str, query: dict[str, list[str]]) -> None:
        per_page = min(int(query.get("per_page", ["30"])[0]), self.fake.page_size)
        page = int(query.get("page", ["1"])[0])
        cutoff = run.cutoff()
        visible = [job for job in run.jobs if cutoff is None or job.started <= cutoff]
        chunk = visible[(page - 1) * per_page : page * per_page]
        headers = {}
        last = max(1, -(-len(visible) // per_page))
        links = []
        if page < last:
            links.append(
                f"<{self.fake.url}{path}?filter=latest&per_page={per_page}"
                f'&page={page + 1}>; rel="next"'
            )
        links.append(
            f'<{self.fake.url}{path}?filter=latest&per_page={per_page}&page={last}>; rel="last"'
        )
        headers["Link"] = ", ".join(links)
        self._json(
            200,
            {"total_count": len(visible), "jobs": [run.job_json(job, cutoff) for job in chunk]},
            headers,
        )

    def _log(self, repo: str, job_id: int) -> None:
        fake = self.fake
        for run in fake.runs.values():
            for job in run.jobs:
                if job.id == job_id and run.repo == repo:
                    if not run.job_done(job):
                        self._json(404, {"message": "Not Found"})
                        return
                    if fake.log_delays.get(job_id, 0) > 0:
                        fake.log_delays[job_id] -= 1
                        self._json(404, {"message": "Not Found"})
                        return
                    self._send(
                        302,
                        b"",
                        {
                            "Location": f"{fake.url}/download/{run.id}/{job_id}"
                            "?sig=signed-and-short-lived"
                        },
                    )
                    return
        self._json(404, {"message": "Not Found"})

    def _download(self, path: str) -> None:
        if self.headers.get("Authorization"):
            self.fake.refused_downloads += 1
            self._send(
                400,
                b"<Error>Authorization header not allowed on a signed URL</Error>",
                {"Content-Type": "application/xml"},
            )
            return
        _, _, run_id, job_id = path.split("/")
        run = self.fake.runs[int(run_id)]
        job = next(job for job in run.jobs if job.id == int(job_id))
        self._send(200, run.log_text(job).encode(), {"Content-Type": "text/plain"})

    def _limit(self, kind: str) -> None:
        if kind == "reset":
            self._json(
                403,
                {"message": "API rate limit exceeded"},
                {
                    "x-ratelimit-limit": "5000",
                    "x-ratelimit-remaining": "0",
                    "x-ratelimit-reset": str(int(time.time()) + 1),
                },
            )
        elif kind == "retry-after":
            self._json(429, {"message": "Too many requests"}, {"Retry-After": "1"})
        else:
            self._json(
                403, {"message": "You have exceeded a secondary rate limit"}, {"Retry-After": "1"}
            )

    def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        self._send(
            status,
            json.dumps(body).encode(),
            {"Content-Type": "application/json; charset=utf-8", **(headers or {})},
        )

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
