"""Read routes as history grows: 10k, 40k and 160k deployments, every read route timed.

Usage: ``python bench/reads.py [--sizes 10000,40000,160000] [--projects 100]
[--requests 40] [--store sqlite|redis] [--days 32]``

For each size, a fresh store is filled through the store's own write path
(``Store.append``, batches of 20 deployments): five events per deployment
(started, two steps, a log line, completed), ``--projects`` projects, two
environments, about one in ten failing, start times spread evenly over the
last ``--days`` days (a team with 5,000 deployments a day keeps 150,000 in a
30-day window).  Then the hub serves that store under gunicorn with one
gevent worker pinned to CPU 0 and this process, pinned to CPU 1, asks each
read route ``--requests`` times over one keep-alive connection after two
warm-up requests, and prints p50/p95/max per route, the growth of each
route's p95 from the smallest size to the largest, and the store's size per
event (SQLite: the file with its WAL; Redis: ``used_memory``).

Loopback only; every loop is bounded.  Figures are printed, nothing asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.ingest import load_one  # noqa: E402
from bench.ingest import pinned  # noqa: E402
from ledger.events import Event  # noqa: E402
from ledger.timestamps import format_timestamp  # noqa: E402
from storage.factory import create_store  # noqa: E402
from storage.store import Batch, Store  # noqa: E402
from storage.url import StoreURL  # noqa: E402
from tests.e2e.server import HubServer  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402

BATCH_DEPLOYMENTS = 20
ENVIRONMENTS = ("staging", "production")


def deployment(n: int, projects: int, start: datetime) -> list[Event]:
    """Five events of deployment ``n``: started, two steps, a log line, completed."""
    project = f"service-{n % projects:03d}"
    key = f"run-{n:07d}"
    status = "failure" if n % 10 == 7 else "success"
    base = {"project": project, "deployment_id": key}
    bodies = [
        {
            "type": "deployment_started",
            "branch": "main" if n % 3 else f"feature/{n % 50}",
            "commit": f"{n:040x}",
            "environment": ENVIRONMENTS[n % 2],
            "workflow_name": "Deploy",
        },
        {"type": "step_completed", "step_name": "build / compile", "step_status": "success",
         "duration": 40 + n % 30},
        {"type": "log_entry", "job": "deploy", "step": "upload", "level": "info",
         "message": f"uploaded artifact {key} to {ENVIRONMENTS[n % 2]} in {n % 90} s"},
        {"type": "step_completed", "step_name": "deploy / upload", "step_status": status,
         "duration": 20 + n % 40, "error": "upload failed: HTTP 502" if n % 10 == 7 else None},
        {"type": "deployment_completed", "status": status},
    ]  # fmt: skip
    return [
        load_one(
            {**base, **body, "timestamp": format_timestamp(start + timedelta(seconds=30 * i))},
            "deployment",
        )
        for i, body in enumerate(bodies)
    ]


#: The events of deployment ``n`` of ``projects`` projects, starting at a time.
Maker = Callable[[int, int, datetime], list[Event]]


def fill(store: Store, count: int, projects: int, days: float, make: Maker = deployment) -> float:
    """``count`` deployments (each ``make``'s events) spread over the last ``days`` days;
    returns seconds taken."""
    began = time.perf_counter()
    newest = datetime.now(UTC) - timedelta(minutes=10)
    spacing = timedelta(days=days) / count
    for first in range(0, count, BATCH_DEPLOYMENTS):
        events: list[Event] = []
        for n in range(first, min(first + BATCH_DEPLOYMENTS, count)):
            events += make(n, projects, newest - spacing * (count - n))
        store.append(Batch(events))
    return time.perf_counter() - began


def routes(count: int) -> list[tuple[str, str]]:
    """``(name, path)`` of every read route, aimed at data that exists."""
    middle = f"run-{count // 2:07d}"
    return [
        ("projects", "/api/projects"),
        ("deployments", "/api/deployments"),
        ("deployments?project", "/api/deployments?project=service-042"),
        ("deployments?status", "/api/deployments?status=failure"),
        ("deployments?environment", "/api/deployments?environment=production"),
        ("deployment", f"/api/deployments/{middle}"),
        ("logs", f"/api/deployments/{middle}/logs"),
        ("events", "/api/events?project=service-042&limit=100"),
        ("delivery-metrics", "/api/delivery-metrics"),
        ("delivery-metrics?project", "/api/delivery-metrics?project=service-042"),
        ("environments", "/api/environments"),
        ("failures", "/api/failures"),
        ("steps", "/api/steps"),
        ("logs/search", "/api/logs/search?q=uploaded+production&project=service-042"),
        ("badge", "/api/projects/service-042/badge.svg"),
    ]


def time_route(connection: http.client.HTTPConnection, path: str, requests: int) -> list[float]:
    """Milliseconds per request, after two warm-up requests (keep-alive)."""
    timings: list[float] = []
    for i in range(requests + 2):
        began = time.perf_counter()
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"{path}: {response.status} {body[:200]!r}")
        if i >= 2:
            timings.append((time.perf_counter() - began) * 1000)
    return timings


@contextlib.contextmanager
def store_url(kind: str, workdir: Path) -> Iterator[tuple[str, RedisServer | None]]:
    if kind == "redis":
        redis = RedisServer(workdir / "redis").start()
        try:
            yield redis.url(prefix="bench"), redis
        finally:
            redis.stop()
    else:
        yield f"sqlite:///{workdir / 'hub.sqlite3'}", None


def footprint(kind: str, workdir: Path, redis: RedisServer | None) -> int:
    if redis is not None:
        info = redis.client().info("memory")
        return int(info["used_memory"])
    return sum(p.stat().st_size for p in workdir.glob("hub.sqlite3*"))


def measure(args: argparse.Namespace, count: int) -> dict[str, list[float]]:
    with tempfile.TemporaryDirectory() as tmp, store_url(args.store, Path(tmp)) as (url, redis):
        workdir = Path(tmp)
        before = footprint(args.store, workdir, redis)
        store = create_store(StoreURL.parse(url))
        seconds = fill(store, count, args.projects, args.days)
        events = store.last_seq()
        store.close()
        size = footprint(args.store, workdir, redis) - before
        print(
            f"\n{count:,} deployments, {events:,} events ({args.store}): "
            f"filled in {seconds:.0f} s; {size / 1048576:.1f} MiB, "
            f"{size / events:,.0f} bytes per event"
        )
        hub = pinned(
            HubServer(
                workdir / "hub",
                {"HUB_STORE_URL": url, "HUB_LOG_LEVEL": "WARNING", "HUB_RETENTION_DAYS": "0"},
            )
        )
        results: dict[str, list[float]] = {}
        try:
            connection = http.client.HTTPConnection("127.0.0.1", hub.port, timeout=120)
            for name, path in routes(count):
                results[name] = time_route(connection, path, args.requests)
                t = sorted(results[name])
                p95 = t[min(len(t) - 1, round(0.95 * (len(t) - 1)))]
                print(
                    f"  {name:<26} p50 {statistics.median(t):8.1f} ms   p95 {p95:8.1f} ms"
                    f"   max {t[-1]:8.1f} ms"
                )
            connection.close()
        finally:
            hub.stop()
        return results


def p95(timings: list[float]) -> float:
    ordered = sorted(timings)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,40000,160000")
    parser.add_argument("--projects", type=int, default=100)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--store", choices=("sqlite", "redis"), default="sqlite")
    parser.add_argument("--days", type=float, default=32.0)
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    print(
        f"bench/reads.py: {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.2f}; sizes {sizes}, {args.projects} projects"
    )
    runs = {count: measure(args, count) for count in sizes}
    smallest, largest = runs[sizes[0]], runs[sizes[-1]]
    print(f"\np95 growth from {sizes[0]:,} to {sizes[-1]:,} deployments:")
    for name in largest:
        print(f"  {name:<26} {p95(largest[name]) / p95(smallest[name]):5.2f}x")


if __name__ == "__main__":
    main()
