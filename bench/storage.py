"""Bytes per stored event, on both stores, with every byte accounted for.

Usage: ``python bench/storage.py [--store sqlite,redis] [--mix five,logs]
[--deployments 10000] [--log-deployments 1500] [--projects 100]``

Each run fills a fresh store through ``Store.append`` with the filling code of
``bench/reads.py`` and prints its size per stored event and where the bytes
are.  Two mixes:

* ``five``: ``bench/reads.py``'s five events per deployment (started, two
  steps, one log line, completed).
* ``logs``: the log-heavy mix real pipelines send: three steps, each started,
  ten ``log_entry`` lines of realistic length (40-130 characters: installs,
  docker builds, test runs, rollouts) and completed, between the
  deployment's start and completion; 38 events, 30 of them log lines.

SQLite: the file after the store closed (its WAL checkpointed into it), split
by table and index with the ``dbstat`` virtual table (pages, and the payload
bytes they hold).  Redis: ``used_memory`` grown, split by key family (the key
name up to its first ``:`` after the prefix) with ``MEMORY USAGE ... SAMPLES 0``
on every key, and the encoding Redis chose for each family; what no key
accounts for is the keyspace's own overhead (dict entries, expiry table).
``txn:`` keys (each append's answer, for a retried call) expire after a
minute, so the size kept is also printed without them.

Figures are printed, nothing asserted.
"""

from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import sys
import tempfile
import time
from collections import Counter, defaultdict
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.ingest import load_one  # noqa: E402
from bench.machine import cpu_model  # noqa: E402
from bench.reads import ENVIRONMENTS, Maker, deployment, fill, footprint, store_url  # noqa: E402
from ledger.events import Event  # noqa: E402
from ledger.timestamps import format_timestamp  # noqa: E402
from storage.factory import create_store  # noqa: E402
from storage.redis_store import TOKEN_TTL_SECONDS  # noqa: E402
from storage.url import StoreURL  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402

STEPS = ("build / compile", "test / unit", "deploy / rollout")
LINES_PER_STEP = 10
#: Lines as CI runners print them; ``{p}`` project, ``{n}`` run number, ``{i}`` line number.
LOG_LINES = (
    "Run actions/checkout@v4 with repository acme/{p} ref refs/heads/main fetch-depth 1",
    "Collecting requests==2.31.0 (from -r requirements.txt (line {i}))",
    "  Downloading requests-2.31.0-py3-none-any.whl.metadata (4.6 kB)",
    "Successfully installed certifi-2024.2.2 idna-3.6 requests-2.31.0 urllib3-2.2.{i}",
    "#{i} [build 4/7] RUN npm ci --omit=dev --no-audit --no-fund",
    "#{i} DONE 38.4s",
    "npm WARN deprecated inflight@1.0.6: This module is not supported, and leaks memory.",
    "tests/test_api.py::test_list_deployments[sqlite-{i}] PASSED                    [ 42%]",
    "============ 412 passed, 3 skipped, 2 warnings in 61.27s (0:01:01) ============",
    "Pushing registry.example.com/{p}:{n:08x} (layer sha256:{n:016x}{i:04x} 14.2 MB)",
    "deployment.apps/{p} configured",
    'Waiting for deployment "{p}" rollout to finish: 2 of 3 updated replicas are available',
    "curl -fsS https://{p}.staging.example.com/healthz -> 200 OK in {i}1 ms",
)


def log_heavy(n: int, projects: int, start: datetime) -> list[Event]:
    """Deployment ``n`` of the log-heavy mix: 3 steps of 10 lines each (38 events)."""
    project = f"service-{n % projects:03d}"
    key = f"run-{n:07d}"
    status = "failure" if n % 10 == 7 else "success"
    bodies: list[dict[str, object]] = [
        {
            "type": "deployment_started",
            "branch": "main" if n % 3 else f"feature/{n % 50}",
            "commit": f"{n:040x}",
            "environment": ENVIRONMENTS[n % 2],
            "workflow_name": "Deploy",
        }
    ]
    for s, name in enumerate(STEPS):
        job, step = name.split(" / ")
        failed = status == "failure" and s == len(STEPS) - 1
        bodies.append({"type": "step_started", "step_name": name})
        for i in range(LINES_PER_STEP):
            text = LOG_LINES[(n + s * LINES_PER_STEP + i) % len(LOG_LINES)]
            bodies.append(
                {
                    "type": "log_entry",
                    "job": job,
                    "step": step,
                    "level": "error" if failed and i == LINES_PER_STEP - 1 else "info",
                    "message": text.format(p=project, n=n, i=i),
                }
            )
        bodies.append(
            {
                "type": "step_completed",
                "step_name": name,
                "step_status": "failure" if failed else "success",
                "duration": 40 + n % 30,
            }
        )
    bodies.append({"type": "deployment_completed", "status": status})
    base = {"project": project, "deployment_id": key}
    return [
        load_one(
            {**base, **body, "timestamp": format_timestamp(start + timedelta(seconds=2 * i))},
            "deployment",
        )
        for i, body in enumerate(bodies)
    ]


MIXES: dict[str, tuple[str, Maker]] = {
    "five": ("5 events per deployment", deployment),
    "logs": ("log-heavy, 38 events per deployment (30 log lines)", log_heavy),
}


def sqlite_breakdown(path: Path) -> list[tuple[str, int, int, int]]:
    """``(table or index, pages, bytes, payload bytes)``, largest first."""
    db = sqlite3.connect(path)
    try:
        rows = db.execute(
            "SELECT name, count(*), sum(pgsize), sum(payload) FROM dbstat "
            "GROUP BY name ORDER BY sum(pgsize) DESC"
        ).fetchall()
        free = db.execute("PRAGMA freelist_count").fetchone()[0]
        page = db.execute("PRAGMA page_size").fetchone()[0]
    finally:
        db.close()
    if free:
        rows.append(("(free pages)", free, free * page, 0))
    return [(str(name), int(p), int(b), int(u or 0)) for name, p, b, u in rows]


def redis_breakdown(server: RedisServer, prefix: str) -> tuple[list[tuple[str, int, int]], dict]:
    """``(family, keys, bytes)`` largest first, and each family's encodings."""
    client = server.client()
    sizes: dict[str, int] = defaultdict(int)
    counts: Counter[str] = Counter()
    encodings: dict[str, Counter[str]] = defaultdict(Counter)
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    for start in range(0, len(keys), 1000):
        part = keys[start : start + 1000]
        with client.pipeline(transaction=False) as pipe:
            for key in part:
                pipe.memory_usage(key, samples=0)
                pipe.object("encoding", key)
            replies = pipe.execute()
        for i, key in enumerate(part):
            name = key.decode()[len(prefix) + 1 :]
            family = name.split(":", 1)[0] + (":" if ":" in name else "")
            sizes[family] += int(replies[2 * i] or 0)
            counts[family] += 1
            encodings[family][(replies[2 * i + 1] or b"?").decode()] += 1
    rows = sorted(((f, counts[f], sizes[f]) for f in sizes), key=lambda row: -row[2])
    return rows, encodings


def measure(kind: str, mix: str, count: int, projects: int) -> None:
    title, make = MIXES[mix]
    with tempfile.TemporaryDirectory() as tmp, store_url(kind, Path(tmp)) as (url, redis):
        workdir = Path(tmp)
        before = footprint(kind, workdir, redis)
        store = create_store(StoreURL.parse(url))
        began = time.perf_counter()
        fill(store, count, projects, days=30.0, make=make)
        seconds = time.perf_counter() - began
        events = store.last_seq()
        store.close()
        size = footprint(kind, workdir, redis) - before
        print(
            f"\n{kind}, {title}: {count:,} deployments, {events:,} events, filled in "
            f"{seconds:.0f} s; {size / 1048576:.1f} MiB, {size / events:,.0f} bytes per event"
        )
        if redis is None:
            for name, pages, nbytes, payload in sqlite_breakdown(workdir / "hub.sqlite3"):
                print(
                    f"  {name:<28} {pages:7,} pages {nbytes / events:7.1f} B/event"
                    f"  (payload {payload / events:6.1f})"
                )
            return
        rows, encodings = redis_breakdown(redis, "bench")
        counted = 0
        for family, keys, nbytes in rows:
            counted += nbytes
            kinds = ", ".join(f"{e} {c:,}" for e, c in encodings[family].most_common())
            print(f"  {family:<10} {keys:7,} keys {nbytes / events:7.1f} B/event  ({kinds})")
        print(f"  {'(keyspace)':<10} {'':12} {(size - counted) / events:7.1f} B/event")
        answers = sum(nbytes for family, _, nbytes in rows if family == "txn:")
        print(
            f"  kept: {(size - answers) / events:,.0f} bytes per event without txn: (each "
            f"append's answer, kept {TOKEN_TTL_SECONDS} s for a retry, then expired)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default="sqlite,redis")
    parser.add_argument("--mix", default="five,logs")
    parser.add_argument("--deployments", type=int, default=10000, help="of the five-event mix")
    parser.add_argument("--log-deployments", type=int, default=1500, help="of the log-heavy mix")
    parser.add_argument("--projects", type=int, default=100)
    args = parser.parse_args()
    cpu = cpu_model()
    print(
        f"bench/storage.py: Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
        f"{os.cpu_count()} CPUs ({cpu})"
    )
    for kind in args.store.split(","):
        for mix in args.mix.split(","):
            count = args.deployments if mix == "five" else args.log_deployments
            measure(kind, mix, count, args.projects)


if __name__ == "__main__":
    main()
