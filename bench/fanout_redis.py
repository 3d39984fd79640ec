"""Fan-out latency on Redis (two hubs x two workers) vs. the embedded default, in one run.

Usage: ``python bench/fanout_redis.py [--subscribers 1000] [--rate 100] [--seconds 10]
[--scale 100,1000,5000] [--scale-rate 20]``

Each scenario starts its hubs (gunicorn, gevent workers) and, for Redis, one
``redis-server``; opens K WebSocket subscribers to one project, spread over
the hubs; posts R events per second for the given seconds, alternating
between the hubs; and waits until every subscriber has every event.
Latency is post-to-receive, measured on 20 probe subscribers that decode
their frames (the others only count event frames, so the load generator
stays cheap); "lost" counts events a subscriber never got.  Server CPU is
the hubs' and redis-server's user+system time over the run, in cores.
Loopback only; every wait is bounded.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402 - gevent must patch before anything imports socket
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402
import gevent.pool  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.e2e.server import HubServer  # noqa: E402
from tests.e2e.wsclient import handshake, masked, split_frames  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402

PROBES = 20
MARKER = b'"type":"event"'
PROJECT = "bench"
#: The hubs under test: no rate limits, and pings rarer than any run lasts.
HUB_ENV = {
    "HUB_INGEST_RATE": "0",
    "HUB_INGEST_ADDRESS_RATE": "0",
    "HUB_WS_CONNECT_RATE": "0",
    "HUB_WS_PING_INTERVAL": "600",
    "HUB_LOG_LEVEL": "WARNING",
}


@dataclass
class Subscriber:
    """One raw WebSocket client; a probe decodes frames, the others only count events."""

    sock: socket.socket
    probe: bool
    events: int = 0
    latencies: list[float] = field(default_factory=list)
    buffer: bytearray = field(default_factory=bytearray)
    tail: bytes = b""

    def read(self) -> None:
        while True:
            data = self.sock.recv(262144)
            if not data:
                return
            now = time.perf_counter()
            if self.probe:
                self.buffer += data
                for opcode, payload in split_frames(self.buffer):
                    if opcode == 0x1 and payload.startswith(b'{"type":"event"'):
                        self.events += 1
                        sent = float(json.loads(payload)["event"]["payload"]["message"])
                        self.latencies.append(now - sent)
            else:
                chunk = self.tail + data
                self.events += chunk.count(MARKER)
                self.tail = chunk[-(len(MARKER) - 1) :]


def subscribe(port: int, probe: bool) -> Subscriber:
    """Connect, subscribe to the project, read through ``replay_complete``."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    sock.sendall(handshake(port))
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the hub closed the connection during the handshake")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101"):
        raise ConnectionError(head[:200].decode(errors="replace"))
    sock.sendall(masked(json.dumps({"type": "subscribe_project", "project": PROJECT})))
    buffer = bytearray(rest)
    while True:
        frames = split_frames(buffer)
        if any(b'"replay_complete"' in payload for _, payload in frames):
            break
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the hub closed the connection before the replay ended")
        buffer += chunk
    sock.settimeout(None)
    return Subscriber(sock, probe, buffer=buffer)


def cpu_seconds(pids: list[int]) -> float:
    """User+system seconds of these processes and their children (gunicorn's workers)."""
    ticks = os.sysconf("SC_CLK_TCK")
    wanted = set(pids)
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(stat.parent.name), int(fields[1])
        if pid in wanted or ppid in wanted:
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


class Sender:
    """Posts events at a fixed rate over one keep-alive connection per hub."""

    def __init__(self, ports: list[int]) -> None:
        self.socks = [socket.create_connection(("127.0.0.1", port)) for port in ports]
        self.errors = 0

    def post(self, index: int) -> None:
        sock = self.socks[index % len(self.socks)]
        body = json.dumps(
            {
                "type": "log_entry",
                "project": PROJECT,
                "deployment_id": "fan",
                "message": repr(time.perf_counter()),
            }
        ).encode()
        sock.sendall(
            b"POST /api/webhooks/deployment HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
            + body
        )
        response = b""
        while b"\r\n\r\n" not in response:
            response += sock.recv(65536)
        head, _, rest = response.partition(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        while len(rest) < length:
            rest += sock.recv(65536)
        if not head.startswith(b"HTTP/1.1 200"):
            self.errors += 1

    def run(self, rate: float, count: int) -> None:
        started = time.perf_counter()
        for index in range(count):
            delay = started + index / rate - time.perf_counter()
            if delay > 0:
                gevent.sleep(delay)
            self.post(index)

    def close(self) -> None:
        for sock in self.socks:
            sock.close()


@dataclass
class Outcome:
    name: str
    subscribers: int
    rate: float
    events: int
    latencies: list[float]
    lost: int
    duplicated: int
    post_errors: int
    server_cpu: float
    client_cpu: float
    seconds: float

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))] * 1000

    def row(self) -> str:
        return (
            f"| {self.name} | {self.subscribers} | {self.rate:g} | {self.percentile(50):.1f} | "
            f"{self.percentile(99):.1f} | {max(self.latencies, default=0) * 1000:.1f} | "
            f"{self.lost} | {self.server_cpu / self.seconds:.2f} | "
            f"{self.client_cpu / self.seconds:.2f} |"
        )


def measure(
    name: str,
    hubs: list[HubServer],
    extra_pids: list[int],
    subscribers: int,
    rate: float,
    seconds: float,
) -> Outcome:
    count = int(rate * seconds)
    pool = gevent.pool.Pool(200)
    ports = [hub.port for hub in hubs]
    crowd = list(
        pool.imap(lambda i: subscribe(ports[i % len(ports)], i < PROBES), range(subscribers))
    )
    readers = [gevent.spawn(sub.read) for sub in crowd]
    pids = [hub.process.pid for hub in hubs if hub.process is not None] + extra_pids
    cpu_before, usage_before = cpu_seconds(pids), resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    sender = Sender(ports)
    sender.run(rate, count)
    deadline = time.perf_counter() + 60
    while any(sub.events < count for sub in crowd) and time.perf_counter() < deadline:
        gevent.sleep(0.05)
    elapsed = time.perf_counter() - started
    usage_after = resource.getrusage(resource.RUSAGE_SELF)
    server_cpu = cpu_seconds(pids) - cpu_before
    client_cpu = (usage_after.ru_utime - usage_before.ru_utime) + (
        usage_after.ru_stime - usage_before.ru_stime
    )
    sender.close()
    gevent.killall(readers)
    for sub in crowd:
        sub.sock.close()
    return Outcome(
        name=name,
        subscribers=subscribers,
        rate=rate,
        events=count,
        latencies=[lat for sub in crowd if sub.probe for lat in sub.latencies],
        lost=sum(max(0, count - sub.events) for sub in crowd),
        duplicated=sum(max(0, sub.events - count) for sub in crowd),
        post_errors=sender.errors,
        server_cpu=server_cpu,
        client_cpu=client_cpu,
        seconds=elapsed,
    )


@contextmanager
def embedded(workdir: Path) -> Iterator[tuple[list[HubServer], list[int]]]:
    hub = HubServer(workdir / "embedded", env=HUB_ENV).start()
    try:
        yield [hub], []
    finally:
        hub.stop()


@contextmanager
def on_redis(
    workdir: Path, tag: str, hubs: int, workers: int
) -> Iterator[tuple[list[HubServer], list[int]]]:
    redis = RedisServer(workdir / f"redis-{tag}").start()
    env = {**HUB_ENV, "HUB_STORE_URL": redis.url(prefix=tag)}
    started = [
        HubServer(workdir / f"{tag}-{i}", env=env, workers=workers).start() for i in range(hubs)
    ]
    try:
        yield started, [redis.process.pid] if redis.process is not None else []
    finally:
        for hub in started:
            hub.stop()
        redis.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--scale", default="100,1000,5000")
    parser.add_argument("--scale-rate", type=float, default=20.0)
    args = parser.parse_args()
    print(f"# {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    outcomes = []
    k, r, t = args.subscribers, args.rate, args.seconds
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        with embedded(workdir) as (hubs, pids):
            outcomes.append(measure("embedded SQLite, 1 hub x 1 worker", hubs, pids, k, r, t))
        with on_redis(workdir, "hop", 1, 1) as (hubs, pids):
            outcomes.append(measure("Redis, 1 hub x 1 worker", hubs, pids, k, r, t))
        with on_redis(workdir, "out", 2, 2) as (hubs, pids):
            outcomes.append(measure("Redis, 2 hubs x 2 workers", hubs, pids, k, r, t))
        for count in (int(n) for n in args.scale.split(",") if n):
            with on_redis(workdir, f"scale{count}", 2, 2) as (hubs, pids):
                outcomes.append(
                    measure("Redis, 2 hubs x 2 workers", hubs, pids, count, args.scale_rate, t)
                )
    print(
        "| setup | subscribers | events/s | p50 ms | p99 ms | max ms | lost | "
        "server CPU (cores) | client CPU (cores) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for outcome in outcomes:
        print(outcome.row())
    base, hop, out = outcomes[:3]
    print(
        f"\nAt K={k}, R={r:g}: the Redis hop changes p99 by "
        f"{hop.percentile(99) - base.percentile(99):+.1f} ms on one worker; two hubs x two "
        f"workers change it by {out.percentile(99) - base.percentile(99):+.1f} ms."
    )
    problems = [o for o in outcomes if o.lost or o.duplicated or o.post_errors]
    for o in problems:
        print(
            f"!! {o.name} K={o.subscribers}: lost {o.lost}, duplicated {o.duplicated}, "
            f"failed posts {o.post_errors}"
        )
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
