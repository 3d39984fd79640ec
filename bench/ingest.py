"""Ingest throughput of the real hub vs. the bare gunicorn/gevent/Flask ceiling.

Usage: ``python bench/ingest.py [--seconds 4] [--concurrency 16] [--rounds 6] [--base REV]``

Starts, in this one run, a bare JSON endpoint (bench/bare_app.py) and the hub,
each as gunicorn with one gevent worker pinned to CPU 0, and drives them from
this process pinned to CPU 1, in rounds of short phases: the ceiling, then the
hub with single events, then the hub with batches of log lines (and with
``--base REV``, the same two on the hub of that commit, bench/base.py).  Adjacent
phases share whatever the machine's speed is doing that minute, so the ratio
is taken per round, and the medians are printed with every round's figures
(requests/s, p50, p99, the load generator's CPU).  Loopback only; every loop
is bounded.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402 - gevent must patch before anything imports socket
import contextlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import base  # noqa: E402
from bench.loadgen import Result, run  # noqa: E402
from tests.e2e.server import HubServer  # noqa: E402

BATCH = 100


def single_event(index: int) -> bytes:
    return json.dumps(
        {
            "type": "step_completed",
            "project": "bench",
            "deployment_id": f"d{index // 50}",
            "step_name": f"job / step {index % 50}",
            "step_status": "success",
            "duration": 3,
        }
    ).encode()


def log_batch(index: int) -> bytes:
    return json.dumps(
        {
            "events": [
                {
                    "type": "log_entry",
                    "project": "bench",
                    "deployment_id": f"logs{index // 100}",
                    "message": f"line {index}.{i} \x1b[32mok\x1b[0m 部署",
                }
                for i in range(BATCH)
            ]
        }
    ).encode()


def pinned(server: HubServer) -> HubServer:
    """Start ``server`` with gunicorn pinned to CPU 0 (this process moves to CPU 1)."""
    server.start()
    if server.process is not None and hasattr(os, "sched_setaffinity") and os.cpu_count() != 1:
        for pid in _tree(server.process.pid):
            os.sched_setaffinity(pid, {0})
    return server


def _tree(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children")
    kids = [int(c) for c in children.read_text().split()] if children.exists() else []
    return [pid] + [p for kid in kids for p in _tree(kid)]


def show(name: str, result: Result, unit: float = 1.0) -> None:
    print(
        f"  {name:<28} {result.rate * unit:>10.0f}/s  p50 {result.percentile(50) * 1e3:6.2f} ms"
        f"  p99 {result.percentile(99) * 1e3:6.2f} ms  errors {result.errors}"
        f"  loadgen CPU {result.cpu_seconds / result.seconds * 100:5.1f}%"
    )


PATH = "/api/webhooks/deployment"


class Phases:
    """Runs workloads for ``--seconds`` each; no phase repeats an earlier one's deployments."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.posted = 10**6  # above the warm-up's indexes

    def run(self, server: HubServer, body_for: Callable[[int], bytes]) -> Result:
        offset = self.posted
        result = run(
            server.port,
            PATH,
            lambda index: body_for(offset + index),
            total=10**6,
            concurrency=self.args.concurrency,
            deadline=self.args.seconds,
        )
        self.posted += result.requests + self.args.concurrency
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--base", metavar="REV", help="also run the hub of this commit")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})
    print(
        f"machine: {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}; server on CPU 0, load generator on CPU 1"
    )
    ratios: dict[str, list[float]] = {}
    lines: dict[str, list[float]] = {}
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        hubs = {"hub": HubServer(tmp / "hub", {"HUB_LOG_LEVEL": "WARNING"})}
        if args.base:
            tree = stack.enter_context(base.checkout(args.base))
            print(f"hub@base: {base.describe(args.base)}")
            hubs["hub@base"] = HubServer(tmp / "base", {"HUB_LOG_LEVEL": "WARNING"}, root=tree)
        servers = [HubServer(tmp / "bare", app_spec="bench.bare_app:create_app()"), *hubs.values()]
        for server in servers:
            pinned(server)
            stack.callback(server.stop)
        for server in servers:  # warm-up
            run(server.port, PATH, single_event, total=500, concurrency=16, deadline=5)
        print(f"one gevent worker each, {args.rounds} rounds of {args.seconds:g} s phases:")
        phases = Phases(args)
        for round_ in range(1, args.rounds + 1):
            print(f"round {round_}:")
            ceiling = phases.run(servers[0], single_event)
            show("ceiling: bare JSON endpoint", ceiling)
            for name, hub in hubs.items():
                single = phases.run(hub, single_event)
                batched = phases.run(hub, log_batch)
                show(f"{name}: single event", single)
                show(f"{name}: batched logs (lines)", batched, unit=BATCH)
                ratios.setdefault(name, []).append(single.rate / ceiling.rate)
                lines.setdefault(name, []).append(batched.rate * BATCH)
    for name in hubs:
        shown = ", ".join(f"{r:.2f}" for r in ratios[name])
        print(f"{name}: single-event ingest / ceiling by round: {shown}")
        print(f"  median {statistics.median(ratios[name]):.2f} x ceiling (goal >= 0.50)")
        print(
            f"  batched log ingest: median {statistics.median(lines[name]):,.0f} lines/s "
            "(goal >= 10,000)"
        )


if __name__ == "__main__":
    main()
