# ruff: noqa: E501 - the tables of real-looking log lines are one line each
"""Log analysis at scale: search, failures and steps over a million lines; ingest with the index.

Usage: ``python bench/logs.py [--lines 1000000] [--deployments 2000] [--projects 20]
[--queries 200] [--ingest-seconds 4] [--ingest-rounds 4] [--redis-lines 1000000]
[--skip-embedded] [--skip-ingest] [--skip-redis]``

1. **Embedded store.** Writes ``--lines`` log lines across ``--deployments``
   deployments (five steps each, about a fifth of them failing with one of a
   few dozen real-looking errors whose details vary) into a SQLite file
   through the store's own write path (index and failure records included),
   then times the read API in process (Flask's test client): two-word searches
   with a project filter, other query shapes, ``/api/failures`` and
   ``/api/steps``.
2. **Ingest.** The hub under gunicorn (one gevent worker, pinned to CPU 0)
   with and without the search index (``bench/noindex_app.py``), in
   alternating phases of batched log lines (bench/ingest.py's batches) posted
   from CPU 1; the ratio is taken per round.
3. **Redis.** The same data in a fresh redis-server, then the same searches:
   cold (word filters built as searches need them) and warm, and
   ``/api/failures``; Redis' memory before and after the filters.

Every part is bounded by counts and deadlines; figures are printed, nothing asserted.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402 - gevent must patch before anything imports socket
import contextlib  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import sqlite3  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import urllib.parse  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.config import Settings  # noqa: E402
from app.ingest import load_one  # noqa: E402
from ledger.events import Event  # noqa: E402
from ledger.timestamps import format_timestamp  # noqa: E402
from server.app import create_app  # noqa: E402
from storage.factory import create_store  # noqa: E402
from storage.store import Batch, Store  # noqa: E402
from storage.url import StoreURL  # noqa: E402

STEPS = [
    ("build", "checkout"),
    ("build", "install"),
    ("build", "compile"),
    ("test", "unit"),
    ("deploy", "upload"),
]
PACKAGES = [
    "left-pad", "express", "react", "lodash", "webpack", "babel-core", "jest", "axios",
    "moment", "chalk", "commander", "debug", "uuid", "yargs", "typescript", "eslint",
    "requests", "numpy", "pandas", "flask", "django", "pytest", "boto3", "pyyaml",
    "serde", "tokio", "clap", "rand", "hyper", "reqwest", "gin", "cobra", "viper",
    "spring-core", "guava", "jackson", "netty", "log4j", "junit", "mockito",
]  # fmt: skip
MODULES = [
    "auth", "billing", "catalog", "checkout", "search", "users", "orders", "payments",
    "inventory", "shipping", "reports", "gateway", "notifications", "accounts", "cache",
]  # fmt: skip
WORDS = [
    "render", "parse", "validate", "encode", "decode", "fetch", "store", "load", "merge",
    "sort", "filter", "resolve", "retry", "flush", "sync", "index", "compact", "rotate",
]  # fmt: skip
HOSTS = ["db", "cache", "queue", "api", "registry", "storage"]


def _hex(rng: random.Random, size: int) -> str:
    return "".join(rng.choice("0123456789abcdef") for _ in range(size))


def _ip(rng: random.Random) -> str:
    return f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


LINES: list[Callable[[random.Random], str]] = [
    lambda r: f"Downloading {r.choice(PACKAGES)}-{r.randrange(1, 9)}.{r.randrange(30)}.{r.randrange(9)}.tar.gz ({r.randrange(2, 900)} kB)",
    lambda r: f"Resolving dependencies for {r.choice(PACKAGES)}",
    lambda r: f"Compiling {r.choice(MODULES)} v{r.randrange(1, 5)}.{r.randrange(20)}.0",
    lambda r: f"  Compiling src/{r.choice(MODULES)}/{r.choice(WORDS)}.rs",
    lambda r: f"[INFO] Building {r.choice(MODULES)} {r.randrange(1, 5)}.{r.randrange(20)}-SNAPSHOT",
    lambda r: f"Running {r.randrange(5, 400)} tests in {r.choice(MODULES)}",
    lambda r: f"test {r.choice(MODULES)}::{r.choice(WORDS)}_{r.choice(WORDS)} ... ok",
    lambda r: f"GET /api/v1/{r.choice(MODULES)}/{r.randrange(10**6)} 200 {r.randrange(1, 900)}ms",
    lambda r: f"warning: unused variable `{r.choice(WORDS)}_{r.randrange(9)}`",
    lambda r: f"\x1b[32m✓\x1b[0m {r.choice(WORDS)} {r.choice(MODULES)} passed ({r.randrange(1, 900)} ms)",
    lambda r: f"Uploading artefact {r.choice(MODULES)}-{_hex(r, 7)}.zip to s3://releases/{_hex(r, 12)}",
    lambda r: f"Connecting to {r.choice(HOSTS)}.internal:{r.choice([5432, 6379, 5672, 443])}",
    lambda r: f"Waiting for rollout of deployment/{r.choice(MODULES)} ({r.randrange(4)}/4 replicas ready)",
    lambda r: f"缓存命中 {r.choice(PACKAGES)} ({r.randrange(1, 500)} 个文件)",
    lambda r: f"Step {r.randrange(1, 12)}/12 : RUN npm ci --prefer-offline",
    lambda r: f"added {r.randrange(100, 1500)} packages in {r.randrange(2, 90)}s",
    lambda r: f"{format_timestamp(datetime.now(UTC))} DEBUG {r.choice(WORDS)} cache hit ratio {r.random():.3f}",
    lambda r: f"::group::{r.choice(WORDS).title()} {r.choice(MODULES)}",
    lambda r: "::endgroup::",
]  # fmt: skip
FAILURES: list[Callable[[random.Random], str]] = [
    lambda r: f"Error: connect ECONNREFUSED {_ip(r)}:{r.choice([5432, 6379])}",
    lambda r: f"Error: Cannot find module '{r.choice(PACKAGES)}'",
    lambda r: "fatal: unable to access 'https://github.com/acme/app.git/': Could not resolve host: github.com",
    lambda r: f"panic: runtime error: index out of range [{r.randrange(99)}] with length {r.randrange(99)}",
    lambda r: f"FAILED tests/test_{r.choice(MODULES)}.py::test_{r.choice(WORDS)} - AssertionError: assert {r.randrange(500)} == 200",
    lambda r: f"E: Unable to locate package {r.choice(PACKAGES)}",
    lambda r: f"npm ERR! 404 Not Found - GET https://registry.npmjs.org/{r.choice(PACKAGES)} - Not found",
    lambda r: 'ERROR: failed to solve: process "/bin/sh -c npm ci" did not complete successfully: exit code: 1',
    lambda r: f"error: timed out waiting for the condition on deployments/{r.choice(MODULES)}",
    lambda r: f"错误：部署失败，无法连接到服务器 {_ip(r)}:22",
    lambda r: "java.lang.OutOfMemoryError: Java heap space",
    lambda r: f"psycopg2.OperationalError: could not connect to server: Connection refused (request {_hex(r, 8)})",
]  # fmt: skip
#: Two-word queries, common and rare words alike.
QUERIES = [
    "connection refused",
    "unused variable",
    "cannot module",
    "timed out",
    "rollout replicas",
    "heap space",
    "npm ci",
    "downloading tar",
    "tests auth",
    "api 200",
    "compiling checkout",
    "artefact releases",
    "econnrefused 5432",
    "locate package",
    "cache hit",
]
OTHER_QUERIES = {
    "one word, no filter": "econnrefused",
    "phrase, no filter": '"could not connect"',
    "prefix, project filter": "rollo* replicas",
    "Chinese, project filter": "部署失败",
    "common word, deployment filter": "ok",
}


def deployment_events(
    rng: random.Random, index: int, count: int, projects: int, lines: int, now: datetime
) -> list[Event]:
    """One deployment's events: five steps of logs, a fifth of them failing at a random step."""
    project = f"proj-{index % projects:02d}"
    deployment = f"d{index:05d}"
    start = now - timedelta(days=29.5) + timedelta(days=29.4 * index / count)
    failing = rng.randrange(len(STEPS)) if rng.random() < 0.2 else None
    ran = STEPS[: (failing + 1 if failing is not None else len(STEPS))]
    per_step = max(1, lines // len(ran))
    base = {"project": project, "deployment_id": deployment}
    commit = _hex(rng, 40)
    at = start

    def stamp() -> str:
        return format_timestamp(at)

    events = [{**base, "type": "deployment_started", "timestamp": stamp(), "commit": commit}]
    for number, (job, step) in enumerate(ran):
        events.append(
            {**base, "type": "step_started", "job": job, "step": step, "timestamp": stamp()}
        )
        texts = [rng.choice(LINES)(rng) for _ in range(per_step)]
        if number == failing:
            texts[-3:] = [
                rng.choice(FAILURES)(rng),
                "    at main (index.js:12:5)",
                "npm ERR! code 1",
            ]
        for chunk in range(0, len(texts), 20):
            at += timedelta(seconds=rng.uniform(0.5, 3))
            events.append(
                {
                    **base,
                    "type": "log_entry",
                    "job": job,
                    "step": step,
                    "message": "\n".join(texts[chunk : chunk + 20]),
                    "timestamp": stamp(),
                }
            )
        at += timedelta(seconds=rng.uniform(1, 5))
        status = "failure" if number == failing else "success"
        events.append(
            {
                **base,
                "type": "step_completed",
                "job": job,
                "step": step,
                "status": status,
                "timestamp": stamp(),
                "error": "Process completed with exit code 1." if status == "failure" else None,
            }
        )
    events.append(
        {
            **base,
            "type": "deployment_completed",
            "status": "failure" if failing is not None else "success",
            "timestamp": stamp(),
        }
    )
    return [load_one(body, "deployment") for body in events]


def load(store: Store, args: argparse.Namespace, lines: int) -> tuple[float, int]:
    """Write the data set; seconds taken and lines written."""
    rng = random.Random(7)
    now = datetime.now(UTC)
    per_deployment = lines // args.deployments
    written = 0
    started = time.perf_counter()
    for index in range(args.deployments):
        events = deployment_events(rng, index, args.deployments, args.projects, per_deployment, now)
        store.append(Batch(events))
        written += sum(len(str(e.payload.get("message") or "").splitlines()) for e in events)
        written += sum(1 for e in events if e.payload.get("error"))
        if index % 200 == 199:
            rate = written / (time.perf_counter() - started)
            print(f"  {index + 1} deployments, {written:,} lines ({rate:,.0f} lines/s)", flush=True)
    return time.perf_counter() - started, written


def timed(client: Any, path: str) -> tuple[float, Any]:
    started = time.perf_counter()
    response = client.get(path)
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise RuntimeError(
            f"{path}: {response.status_code} {response.get_data(as_text=True)[:300]}"
        )
    return elapsed, response.get_json()


def figures(times: list[float]) -> str:
    ordered = sorted(times)

    def pick(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))] * 1e3

    return f"p50 {pick(50):7.1f} ms  p95 {pick(95):7.1f} ms  max {ordered[-1] * 1e3:7.1f} ms  (n={len(times)})"


def search_path(query: str, **params: str) -> str:
    return "/api/logs/search?" + urllib.parse.urlencode({"q": query, **params})


def measure_reads(client: Any, args: argparse.Namespace, label: str) -> dict[str, list[float]]:
    """The read API's latencies on one store; ``label`` heads the printed figures."""
    rng = random.Random(11)
    results: dict[str, list[float]] = {}
    two, hits, truncated = [], 0, 0
    for _ in range(args.queries):
        project = f"proj-{rng.randrange(args.projects):02d}"
        elapsed, body = timed(client, search_path(rng.choice(QUERIES), project=project))
        two.append(elapsed)
        hits += len(body["items"])
        truncated += body["truncated"]
    results["two-word search, project filter"] = two
    print(f"{label}: two-word search with a project filter (limit 50): {figures(two)}")
    print(f"  {hits / len(two):.1f} results per query on average, {truncated} truncated")
    for name, query in OTHER_QUERIES.items():
        params: dict[str, str] = {}
        if "project" in name:
            params["project"] = f"proj-{rng.randrange(args.projects):02d}"
        if "deployment" in name:
            params["deployment_id"] = f"d{rng.randrange(args.deployments):05d}"
        times = [timed(client, search_path(query, **params))[0] for _ in range(20)]
        results[name] = times
        print(f"  {name:<32} {figures(times)}")
    for name, path in (
        ("/api/failures?days=30", "/api/failures?days=30"),
        ("/api/failures, one project", "/api/failures?days=30&project=proj-03"),
        ("/api/steps?days=30", "/api/steps?days=30"),
        ("/api/steps, one project", "/api/steps?days=30&project=proj-03"),
    ):
        times = [timed(client, path)[0] for _ in range(20)]
        results[name] = times
        print(f"  {name:<32} {figures(times)}")
    _, body = timed(client, "/api/failures?days=30&limit=500")
    groups = body["items"]
    print(
        f"  failures: {sum(g['count'] for g in groups)} failed deployments in "
        f"{len(groups)} signatures (the top one {groups[0]['count']}x: {groups[0]['pattern'][:70]})"
    )
    return results


@contextlib.contextmanager
def app_on(url: str) -> Iterator[Any]:
    app = create_app(Settings(store_url=url, log_level="WARNING"))
    try:
        yield app.test_client()
    finally:
        app.extensions["hub"].stop()
        app.extensions["hub_context"].store.close()


def embedded(args: argparse.Namespace, tmp: Path) -> None:
    path = tmp / "logs.sqlite3"
    print(f"\n== embedded store: {args.lines:,} lines, {args.deployments:,} deployments ==")
    store = create_store(StoreURL.parse(f"sqlite:///{path}"))
    seconds, written = load(store, args, args.lines)
    store.close()
    size = path.stat().st_size + sum(p.stat().st_size for p in tmp.glob("logs.sqlite3-*"))
    print(
        f"loaded {written:,} lines in {seconds:.0f} s ({written / seconds:,.0f} lines/s, in process)"
    )
    print(f"file: {size / 2**20:,.0f} MiB{_space(path)}")
    with app_on(f"sqlite:///{path}") as client:
        measure_reads(client, args, "embedded")


def _space(path: Path) -> str:
    """How much of the file each table takes, when SQLite has ``dbstat``."""
    try:
        db = sqlite3.connect(path)
        rows = db.execute(
            "SELECT name, sum(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC LIMIT 6"
        ).fetchall()
        db.close()
    except sqlite3.Error:
        return ""
    return " (" + ", ".join(f"{name} {size / 2**20:,.0f} MiB" for name, size in rows) + ")"


def ingest(args: argparse.Namespace, tmp: Path) -> None:
    from bench.ingest import BATCH, PATH, log_batch, pinned
    from bench.loadgen import run
    from tests.e2e.server import HubServer

    print("\n== batched log ingest under gunicorn, with and without the search index ==")
    env = {"HUB_LOG_LEVEL": "WARNING"}
    with_index = pinned(HubServer(tmp / "with", env))
    without = pinned(
        HubServer(tmp / "without", env, app_spec="bench.noindex_app:app_without_search_index()")
    )
    ratios: list[float] = []
    rates: dict[str, list[float]] = {"with": [], "without": []}
    posted = 10**6
    try:
        for server in (with_index, without):
            run(server.port, PATH, log_batch, total=200, concurrency=16, deadline=5)
        for round_ in range(1, args.ingest_rounds + 1):
            order = [("with", with_index), ("without", without)]
            if round_ % 2 == 0:
                order.reverse()  # neither side always runs first in a round
            this: dict[str, float] = {}
            for name, server in order:
                offset = posted
                result = run(
                    server.port,
                    PATH,
                    lambda i, offset=offset: log_batch(offset + i),
                    total=10**6,
                    concurrency=16,
                    deadline=args.ingest_seconds,
                )
                posted += result.requests + 16
                this[name] = result.rate * BATCH
                rates[name].append(this[name])
            ratios.append(this["with"] / this["without"])
            print(
                f"round {round_}: with index {this['with']:,.0f} lines/s, without "
                f"{this['without']:,.0f} lines/s, ratio {ratios[-1]:.2f}"
            )
    finally:
        with_index.stop()
        without.stop()
    print(
        f"median: with {statistics.median(rates['with']):,.0f} lines/s, without "
        f"{statistics.median(rates['without']):,.0f} lines/s; ratio by round "
        f"{', '.join(f'{r:.2f}' for r in ratios)}, median {statistics.median(ratios):.2f} "
        "(goal >= 0.80)"
    )


def on_redis(args: argparse.Namespace, tmp: Path) -> None:
    import redis

    from tests.redis_server import RedisServer

    print(f"\n== Redis: {args.redis_lines:,} lines, {args.deployments:,} deployments ==")
    server = RedisServer(tmp / "redis").start()
    try:
        url = server.url(prefix="bench")
        store = create_store(StoreURL.parse(url))
        seconds, written = load(store, args, args.redis_lines)
        store.close()
        client = redis.Redis(port=server.port)
        before = int(client.info("memory")["used_memory"])
        print(
            f"loaded {written:,} lines in {seconds:.0f} s ({written / seconds:,.0f} lines/s, in process)"
        )
        with app_on(url) as api:
            rng = random.Random(5)
            cold: list[float] = []
            truncated = 0
            while len(cold) < 50:
                project = f"proj-{rng.randrange(args.projects):02d}"
                elapsed, body = timed(api, search_path(rng.choice(QUERIES), project=project))
                cold.append(elapsed)
                truncated += body["truncated"]
            built = int(client.hlen("bench:sxu"))
            print(
                f"redis, cold (filters built as searches need them): first search "
                f"{cold[0] * 1e3:,.0f} ms; first 50 searches {figures(cold)}; "
                f"{truncated} truncated; {built} deployments have a word filter"
            )
            elapsed, _ = timed(api, search_path("econnrefused"))
            print(f"  one word, no filter (builds the rest): {elapsed * 1e3:,.0f} ms")
            while True:  # until every filter is built (each search indexes a bounded share)
                elapsed, body = timed(api, search_path("econnrefused"))
                if not body["truncated"] and int(client.hlen("bench:sxu")) >= args.deployments:
                    break
            after = int(client.info("memory")["used_memory"])
            print(
                f"  memory: {before / 2**20:,.0f} MiB before the filters, {after / 2**20:,.0f} MiB "
                f"after ({(after - before) / args.deployments / 1024:,.1f} KiB per deployment)"
            )
            measure_reads(api, args, "redis, warm")
        # the same filters built ahead of searches, by the prune every process runs
        for key in client.scan_iter("bench:sxb:*", count=1000):
            client.delete(key)
        client.delete("bench:sxu")
        store = create_store(StoreURL.parse(url))
        passes = []
        while int(client.hlen("bench:sxu")) < args.deployments and len(passes) < 20:
            started = time.perf_counter()
            store.prune()
            passes.append(time.perf_counter() - started)
        store.close()
        print(
            f"  prune passes building every filter from scratch: {len(passes)}, "
            f"{', '.join(f'{p:.1f}' for p in passes)} s"
        )
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--deployments", type=int, default=2000)
    parser.add_argument("--projects", type=int, default=20)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--ingest-seconds", type=float, default=4.0)
    parser.add_argument("--ingest-rounds", type=int, default=4)
    parser.add_argument("--redis-lines", type=int, default=1_000_000)
    parser.add_argument("--skip-embedded", action="store_true")
    parser.add_argument("--skip-ingest", action="store_true")
    parser.add_argument("--skip-redis", action="store_true")
    args = parser.parse_args()
    # the apps measured in process are closed while their prune greenlet still sleeps
    logging.getLogger("server.app").setLevel(logging.CRITICAL)
    print(
        f"machine: {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}; "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_embedded:
            embedded(args, Path(tmp))
        if not args.skip_ingest:
            ingest(args, Path(tmp))
        if not args.skip_redis:
            on_redis(args, Path(tmp))


if __name__ == "__main__":
    main()
