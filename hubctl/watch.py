"""Follow a GitHub Actions run through the REST API and send its steps and logs to the hub.

Polls the run (``GET /repos/{owner}/{repo}/actions/runs/{id}``), its jobs with
their steps (``.../runs/{id}/jobs``, every page of them, following ``Link``
headers), and each finished job's log (``.../actions/jobs/{id}/logs``, which
answers with a redirect to a signed download URL).  What it sends is what
``senders/github.py`` makes of those objects, the same translation the hub's
``/api/webhooks/github`` route uses, so every event has a stable
``event_id``: events already sent are not sent again within one watch, and a
restarted watcher's repeats are recognised by the hub and stored once.

GitHub's rate limits are waited out (``Retry-After``, or
``x-ratelimit-remaining: 0`` until ``x-ratelimit-reset``) up to a bound;
5xx answers and dropped connections are retried with backoff; a hub that is
briefly down only delays the events, since unsent ones are sent next poll.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.message import Message
from typing import Any

from hubctl.http import Response, Unreachable, request
from hubctl.hub import CommandError, HubClient, HubUnreachable
from senders.github import job_events, log_events, run_events

DEFAULT_API_URL = "https://api.github.com"
#: GitHub asks clients to wait at least a minute on a secondary rate limit without headers.
SECONDARY_LIMIT_WAIT = 60.0
MAX_PAGES = 100
_NEXT_LINK = re.compile(r'<([^>]+)>\s*;\s*rel="next"')


class GitHubError(CommandError):
    """GitHub refused or failed a request in a way waiting will not fix."""

    exit_code = 4


def rate_limit_wait(status: int, headers: Message, now: float) -> float | None:
    """Seconds to wait before asking again, or ``None`` when this is not a rate limit.

    GitHub signals limits with 403 or 429 and either ``Retry-After`` or
    ``x-ratelimit-remaining: 0`` with the reset time (epoch seconds); a 429
    with neither is a secondary limit, for which it asks for a minute.
    """
    if status not in (403, 429):
        return None
    retry_after = headers.get("Retry-After")
    if retry_after is not None:
        try:
            return max(float(retry_after), 0.0)
        except ValueError:
            pass
    if headers.get("x-ratelimit-remaining") == "0":
        try:
            return max(float(headers.get("x-ratelimit-reset") or 0) - now, 0.0) + 1.0
        except ValueError:
            return SECONDARY_LIMIT_WAIT
    return SECONDARY_LIMIT_WAIT if status == 429 else None


def next_link(headers: Message) -> str | None:
    match = _NEXT_LINK.search(headers.get("Link") or "")
    return match[1] if match else None


@dataclass
class GitHub:
    """The few Actions endpoints the watcher reads, for one repository."""

    repo: str
    token: str | None = None
    api_url: str = DEFAULT_API_URL
    timeout: float = 30.0
    max_wait: float = 900.0
    attempts: int = 5
    notice: Callable[[str], None] = lambda _: None
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        self.api_url = self.api_url.rstrip("/")
        if not re.fullmatch(r"[\w.-]+/[\w.-]+", self.repo):
            raise CommandError(f"--repo must be OWNER/REPO, not {self.repo[:100]!r}")

    def run(self, run_id: str) -> dict[str, Any]:
        answer = self.get(f"/repos/{self.repo}/actions/runs/{run_id}", f"run {run_id}")
        data = self._json(answer)
        if not _whole(data.get("id")):
            raise GitHubError(
                f"GitHub's answer for run {run_id} is not a run: {answer.text(120)!r}"
            )
        return data

    def jobs(self, run_id: str) -> list[dict[str, Any]]:
        """Every job of the run's latest attempt, across all pages."""
        url: str | None = (
            f"{self.api_url}/repos/{self.repo}/actions/runs/{run_id}/jobs"
            "?filter=latest&per_page=100"
        )
        jobs: list[dict[str, Any]] = []
        for _ in range(MAX_PAGES):
            if url is None:
                return jobs
            if not url.startswith(self.api_url + "/"):  # the token goes only to the API
                raise GitHubError(f"GitHub's next page is outside {self.api_url}: {url[:200]}")
            answer = self.get(url, f"jobs of run {run_id}")
            page = self._json(answer).get("jobs")
            if not isinstance(page, list):
                raise GitHubError(f"GitHub's jobs answer has no job list: {answer.text(120)!r}")
            for job in page:
                if not (
                    isinstance(job, dict) and _whole(job.get("id")) and _whole(job.get("run_id"))
                ):
                    raise GitHubError(
                        f"GitHub's jobs answer holds something that is not a job: "
                        f"{str(job)[:120]!r}"
                    )
                jobs.append(job)
            url = next_link(answer.headers)
        raise GitHubError(f"run {run_id} has more than {MAX_PAGES} pages of jobs")

    def job_log(self, job_id: int) -> str | None:
        """The job's log text; ``None`` while GitHub has not made it available yet."""
        path = f"/repos/{self.repo}/actions/jobs/{job_id}/logs"
        answer = self.get(path, f"log of job {job_id}", missing_ok=True)
        if answer.status == 404:
            return None
        if answer.status == 410:
            self.notice(f"the log of job {job_id} has expired on GitHub; skipping it")
            return ""
        text = answer.body.decode("utf-8", errors="replace")
        if answer.truncated:
            self.notice(f"the log of job {job_id} is very large; only its start is sent")
        return text

    def get(self, path_or_url: str, what: str, *, missing_ok: bool = False) -> Response:
        """GET with rate limits waited out and transient failures retried."""
        url = path_or_url if "://" in path_or_url else self.api_url + path_or_url
        headers = {
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
            "User-Agent": "hubctl",
        }
        private = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        failures, waited, reason = 0, 0.0, ""
        while True:
            try:
                answer = request(
                    "GET", url, headers=headers, private_headers=private, timeout=self.timeout
                )
            except Unreachable as exc:
                answer, reason = None, str(exc)
            if answer is not None:
                wait = rate_limit_wait(answer.status, answer.headers, self.clock())
                if wait is not None:
                    if waited + wait > self.max_wait:
                        raise GitHubError(
                            f"GitHub rate limit on {what}: would wait {wait:.0f}s more, over "
                            f"--max-wait {self.max_wait:.0f}s"
                        )
                    self.notice(f"GitHub rate limit on {what}; waiting {wait:.0f}s")
                    waited += wait
                    self.sleep(wait)
                    continue
                if answer.status < 500:
                    return self._check(answer, what, missing_ok)
                reason = f"HTTP {answer.status}"
            failures += 1
            if failures >= self.attempts:
                raise GitHubError(
                    f"cannot get {what} from GitHub: {reason} (after {failures} attempts)"
                )
            self.sleep(min(0.5 * 2**failures, 30.0))

    def _check(self, answer: Response, what: str, missing_ok: bool) -> Response:
        if answer.status == 200 or (missing_ok and answer.status in (404, 410)):
            return answer
        try:
            message = str(answer.json().get("message"))
        except (ValueError, AttributeError):
            message = answer.text(120)
        hint = {
            401: "; check GITHUB_TOKEN",
            403: "; the token may lack the actions:read permission",
            404: f"; does {self.repo} have it, and can the token see the repository?",
        }.get(answer.status, "")
        raise GitHubError(f"GitHub answered {answer.status} for {what}: {message}{hint}")

    def _json(self, answer: Response) -> dict[str, Any]:
        data = answer.json_object()
        if data is None:
            raise GitHubError(f"GitHub sent something other than JSON: {answer.text(120)!r}")
        return data


@dataclass
class Watcher:
    """Polls one run until it ends (or once), sending each event the hub has not had."""

    github: GitHub
    hub: HubClient
    run_id: str
    project: str | None = None
    interval: float = 10.0
    #: Polls a finished job's log is waited for before it is given up.
    log_attempts: int = 6
    say: Callable[[str], None] = lambda _: None
    sleep: Callable[[float], None] = time.sleep
    sent: set[str] = field(default_factory=set)
    logs_done: set[int] = field(default_factory=set)
    log_tries: Counter[int] = field(default_factory=Counter)
    settle_polls: int = 0
    #: Events sent per type, and events the hub already had (a restarted watch).
    counts: Counter[str] = field(default_factory=Counter)
    repeated: int = 0

    def watch(self, *, once: bool = False) -> dict[str, Any]:
        """Poll until the run and everything about it has been sent; return the run."""
        while True:
            run, finished = self.poll()
            if finished or once:
                return run
            self.sleep(self.interval)

    def poll(self) -> tuple[dict[str, Any], bool]:
        """One look at the run; ``True`` once it ended and all of it reached the hub."""
        run = self.github.run(self.run_id)
        project = self.project or _repository_name(run, self.github.repo)
        started, *completed = run_events(run, project)
        bodies = [started]
        jobs = self.github.jobs(self.run_id)
        for job in jobs:
            bodies += job_events(job, project)
        waiting_for_logs = False
        for job in jobs:
            if job.get("status") != "completed" or job["id"] in self.logs_done:
                continue
            text = self.github.job_log(job["id"])
            if text is None:
                self.log_tries[job["id"]] += 1
                if self.log_tries[job["id"]] < self.log_attempts:
                    waiting_for_logs = True
                    continue
                self.say(f"the log of job {job.get('name')!r} never became available; skipped")
            self.logs_done.add(job["id"])
            bodies += log_events(job, project, text or "")
        unsettled = any(job.get("status") != "completed" for job in jobs) or waiting_for_logs
        if completed and unsettled and self.settle_polls < self.log_attempts:
            self.settle_polls += 1  # GitHub may list the run done before its jobs and logs
            completed = []
        bodies += completed
        finished = bool(completed)
        new = [body for body in bodies if body["event_id"] not in self.sent]
        if new:
            try:
                posted = self.hub.post_events(new)
            except HubUnreachable as exc:
                if finished:
                    raise
                self.say(f"{exc.message}; will send again next poll")
                return run, False
            self.sent.update(body["event_id"] for body in new)
            if posted.duplicate:
                self.repeated += len(new)
                self.say(
                    f"run {self.run_id} {run.get('status')}: the hub already had {len(new)} events"
                )
            else:
                self.counts.update(body["type"] for body in new)
                self.say(f"run {self.run_id} {run.get('status')}: sent {len(new)} events")
        return run, finished


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _repository_name(run: Mapping[str, Any], repo: str) -> str:
    repository = run.get("repository")
    if isinstance(repository, Mapping) and repository.get("name"):
        return str(repository["name"])
    return repo.rpartition("/")[2]
