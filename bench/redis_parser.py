"""Redis store reads with redis-py's Python reply parser against hiredis, in one run.

Usage: ``python bench/redis_parser.py [--deployments 6000] [--calls 10]``

redis-py parses replies with hiredis when it is installed (setup.cfg asks for
it) and with its own pure-Python parser otherwise.  This script fills one
real redis-server through ``Store.append`` (``bench/reads.py``'s five-event
deployments), then runs the same reads in two child processes, one with
hiredis hidden from the import system and one with it, taking turns twice,
and prints the CPU time per call of each read (median of ``--calls``) and the
ratio hiredis / Python.  Loopback only; every loop is bounded; nothing
asserted.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


#: The reads timed: the fan-out's tail, list pages, summaries and trend inputs.
READS: dict[str, Callable[[Any], object]] = {
    "read_after 1,000 events": lambda store: store.read_after(0, 1000),
    "list page of 50": lambda store: store.list_deployments(
        project=None, status=None, branch=None, limit=50, cursor=None
    ),
    "projects": lambda store: store.projects(),
    "recent_folds 1,000": lambda store: store.recent_folds(
        project=None, status=None, since="", limit=1000
    ),
    "step_runs 5,000": lambda store: store.step_runs(project=None, since="", limit=5000),
}


def child(url: str, calls: int, hide: bool) -> None:
    """Time each read in this process and print the medians as JSON."""
    if hide:
        sys.modules["hiredis"] = None  # type: ignore[assignment]
    import redis.utils

    from storage.factory import create_store
    from storage.url import StoreURL

    store = create_store(StoreURL.parse(url))
    medians: dict[str, Any] = {"hiredis": redis.utils.HIREDIS_AVAILABLE}
    for name, read in READS.items():
        read(store)
        spent = []
        for _ in range(calls):
            began = time.process_time()
            read(store)
            spent.append((time.process_time() - began) * 1000)
        medians[name] = statistics.median(spent)
    store.close()
    print(json.dumps(medians))


def run_child(url: str, calls: int, hide: bool) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", url, "--calls", str(calls)]
    if hide:
        command.append("--hide")
    done = subprocess.run(command, capture_output=True, text=True, check=True, timeout=600)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deployments", type=int, default=6000)
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--hide", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.calls, args.hide)
        return

    from bench.reads import fill
    from storage.factory import create_store
    from storage.url import StoreURL
    from tests.redis_server import RedisServer

    with tempfile.TemporaryDirectory() as tmp:
        redis = RedisServer(Path(tmp) / "redis").start()
        try:
            url = redis.url(prefix="bench")
            store = create_store(StoreURL.parse(url))
            fill(store, args.deployments, 100, 32)
            store.close()
            runs: dict[bool, list[dict[str, Any]]] = {True: [], False: []}
            for _ in range(2):
                for hide in (True, False):
                    runs[hide].append(run_child(url, args.calls, hide))
        finally:
            redis.stop()
    if not runs[False][0]["hiredis"]:
        sys.exit("hiredis is not installed: pip install -e . first")
    print(f"{args.deployments:,} five-event deployments; CPU ms per call, median of {args.calls}")
    print(f"  {'read':<26} {'Python parser':>15} {'hiredis':>15} {'ratio':>7}")
    for name in READS:
        python = min(run[name] for run in runs[True])
        fast = min(run[name] for run in runs[False])
        print(f"  {name:<26} {python:15.1f} {fast:15.1f} {fast / python:7.2f}")


if __name__ == "__main__":
    main()
