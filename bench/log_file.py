"""``GET /api/deployments/<id>/logs.txt`` on a long log: throughput and the worker's memory.

Usage: ``python bench/log_file.py [--lines 1000000] [--store sqlite|redis] [--runs 3]``

One deployment whose one step logged ``--lines`` lines (80 to 120 characters, some with
colour codes), written through the store's own write path in events of 1,000 lines.  The
hub serves that store under gunicorn with one gevent worker pinned to CPU 0; this process,
on CPU 1, downloads the whole file ``--runs`` times as it comes (64 KiB reads), plain and
with ``Accept-Encoding: br``, while a thread samples the worker's resident memory every
10 ms.  Printed per run: time to the first byte, the whole time, lines and MiB per second,
bytes on the wire, and the worker's resident memory before and at its highest during the
download: what streaming a page at a time keeps flat as the log grows.

Loopback only; every loop is bounded.  Figures are printed, nothing asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import platform
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.ingest import load_one  # noqa: E402
from bench.ingest import _tree, pinned  # noqa: E402
from ledger.events import Event  # noqa: E402
from ledger.timestamps import format_timestamp  # noqa: E402
from storage.factory import create_store  # noqa: E402
from storage.store import Batch, Store  # noqa: E402
from storage.url import StoreURL  # noqa: E402
from tests.e2e.server import HubServer  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402

DEPLOYMENT = "long-log"
LINES_PER_EVENT = 1000
EVENTS_PER_BATCH = 10
READ_BYTES = 65536
SAMPLE_SECONDS = 0.01


def text(n: int) -> str:
    """Line ``n``: a compiler's or test runner's line, every tenth one coloured."""
    body = f"[{n:>9}] compiling src/module_{n % 977:04d}/unit_{n % 31:02d}.c -O2 -Wall -fPIC"
    body += " " * (n % 40)
    return f"\x1b[32m{body}\x1b[0m" if n % 10 == 0 else body


def fill(store: Store, lines: int) -> float:
    """``lines`` log lines of one step; returns seconds taken."""
    began = time.perf_counter()
    start = datetime.now(UTC) - timedelta(hours=1)
    base = {"project": "bench", "deployment_id": DEPLOYMENT}
    events: list[Event] = [
        load_one({**base, "type": "deployment_started", "timestamp": format_timestamp(start)},
                 "deployment")
    ]  # fmt: skip
    for first in range(0, lines, LINES_PER_EVENT):
        message = "\n".join(text(n) for n in range(first, min(first + LINES_PER_EVENT, lines)))
        at = format_timestamp(start + timedelta(milliseconds=first))
        body = {**base, "type": "log_entry", "job": "build", "step": "compile",
                "message": message, "timestamp": at}  # fmt: skip
        events.append(load_one(body, "deployment"))
        if len(events) >= EVENTS_PER_BATCH:
            store.append(Batch(events))
            events = []
    if events:
        store.append(Batch(events))
    return time.perf_counter() - began


@contextlib.contextmanager
def store_url(kind: str, workdir: Path) -> Iterator[str]:
    if kind == "redis":
        redis = RedisServer(workdir / "redis").start()
        try:
            yield redis.url(prefix="bench")
        finally:
            redis.stop()
    else:
        yield f"sqlite:///{workdir / 'hub.sqlite3'}"


def rss(pid: int) -> int:
    """Resident memory of ``pid`` in bytes."""
    for row in Path(f"/proc/{pid}/status").read_text().splitlines():
        if row.startswith("VmRSS:"):
            return int(row.split()[1]) * 1024
    return 0


class Sampler(threading.Thread):
    """The highest resident memory of ``pid`` while it runs."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = rss(pid)
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(SAMPLE_SECONDS):
            self.peak = max(self.peak, rss(self.pid))


def download(port: int, worker: int, coding: str | None) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    headers = {"Accept-Encoding": coding} if coding else {}
    before = rss(worker)
    sampler = Sampler(worker)
    sampler.start()
    began = time.perf_counter()
    connection.request("GET", f"/api/deployments/{DEPLOYMENT}/logs.txt", headers=headers)
    response = connection.getresponse()
    first = response.read(READ_BYTES)
    to_first = time.perf_counter() - began
    size, newlines, chunk = len(first), first.count(b"\n"), first
    while chunk:
        chunk = response.read(READ_BYTES)
        size += len(chunk)
        newlines += chunk.count(b"\n")
    seconds = time.perf_counter() - began
    sampler.done.set()
    sampler.join()
    connection.close()
    counted = f"{newlines:,} lines" if not coding else f"{coding}"
    print(
        f"  {coding or 'plain':<6} first byte {to_first * 1000:6.1f} ms   whole {seconds:6.2f} s"
        f"   {size / 1048576:7.1f} MiB on the wire ({counted})"
        + (f"   {newlines / seconds:,.0f} lines/s" if not coding else "")
        + f"   worker RSS {before / 1048576:.0f} -> peak {sampler.peak / 1048576:.0f} MiB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--store", choices=("sqlite", "redis"), default="sqlite")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(
        f"bench/log_file.py: {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.2f}; {args.lines:,} lines, {args.store}"
    )
    with tempfile.TemporaryDirectory() as tmp, store_url(args.store, Path(tmp)) as url:
        store = create_store(StoreURL.parse(url))
        seconds = fill(store, args.lines)
        store.close()
        print(f"filled in {seconds:.0f} s")
        hub = pinned(
            HubServer(
                Path(tmp) / "hub",
                {"HUB_STORE_URL": url, "HUB_LOG_LEVEL": "WARNING", "HUB_RETENTION_DAYS": "0"},
            )
        )
        try:
            if hub.process is None:
                raise RuntimeError("the hub did not start")
            worker = _tree(hub.process.pid)[-1]
            for run in range(args.runs):
                print(f"run {run + 1}:")
                download(hub.port, worker, None)
                download(hub.port, worker, "br")
        finally:
            hub.stop()


if __name__ == "__main__":
    main()
