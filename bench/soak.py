"""Soak and faults: many WebSocket clients, steady ingest, drops, resumes and restarts.

Usage: ``python bench/soak.py [--seconds 240] [--clients 1000] [--rate 50] [--redis]``

One run, minutes long and bounded everywhere: the hub under gunicorn (SQLite,
or Redis with ``--redis``), ``--clients`` WebSocket clients spread over
``--projects`` projects, each subscribed before the first event; a publisher
posting ``--rate`` events a second (each with an ``Idempotency-Key``, so a
retry after a lost answer cannot store it twice); clients dropping at random
(``--drops`` a second, half with a close frame, half by cutting the socket)
and resuming with ``since`` = the last id they saw; the hub restarted
``--restarts`` times (SIGTERM: every client is told 1001 and resumes); with
``--redis``, Redis restarted once (append-only, fsync always).

It reports deliveries expected vs received, lost and duplicated ones, events
out of order, resumes (and any ``recovered: false``), p50/p99 latency from
post to delivery over time (live frames only; replays after a resume are
counted apart), and the hub's RSS over time, with its growth after warm-up
within each hub lifetime.  The goals: nothing lost, nothing duplicated, RSS
growth under 10 %.  Exit status 1 when a goal is missed.  Loopback only.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402 - gevent must patch before anything imports socket
import contextlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import urllib.error  # noqa: E402
import urllib.request  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import gevent  # noqa: E402
import gevent.event  # noqa: E402
import gevent.pool  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.fanout import _rss_kb, percentile  # noqa: E402
from bench.ingest import _tree  # noqa: E402
from tests.e2e.server import HubServer  # noqa: E402
from tests.e2e.wsclient import handshake, masked, split_frames  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402

#: Seconds a client waits for the hub (connect, handshake) before trying again.
CONNECT_TIMEOUT = 10.0
#: Longest a publisher retries one event before the run is declared broken.
POST_DEADLINE = 90.0
#: Longest the run waits, after the last event, for every client to catch up.
DRAIN_SECONDS = 90.0
SAMPLE_SECONDS = 5.0


@dataclass
class Stats:
    posted: dict[int, str] = field(default_factory=dict)  # seq -> event id
    post_retries: int = 0
    live_latencies: list[tuple[float, float]] = field(default_factory=list)  # (at, seconds)
    replayed: int = 0
    resumes: int = 0
    reconnect_attempts: int = 0
    error_frames: int = 0
    unrecovered: int = 0
    out_of_order: int = 0
    refused_connects: int = 0
    samples: list[dict[str, Any]] = field(default_factory=list)
    lifetimes: list[float] = field(default_factory=list)  # when each hub lifetime began


class SoakClient:
    """One subscriber that resumes with ``since`` whenever its connection ends."""

    def __init__(
        self,
        index: int,
        project: str,
        port: int,
        events: int,
        stats: Stats,
        *,
        heed_errors: bool = True,
    ) -> None:
        self.index = index
        self.heed_errors = heed_errors
        self.project = project
        self.port = port
        self.stats = stats
        self.counts = bytearray(events)  # deliveries per event seq
        self.last_id: str | None = None
        self.sock: socket.socket | None = None
        self.connected = False
        self.subscribed = gevent.event.Event()
        self.stopping = False

    def run(self) -> None:
        first = True
        while not self.stopping:
            with contextlib.suppress(OSError, ConnectionError, ValueError):
                self._session(first)
            self.connected = False
            if self.stopping:
                return
            if self.last_id is not None or self.subscribed.is_set():
                first = False
            self.stats.reconnect_attempts += 1
            gevent.sleep(random.uniform(0.05, 1.0))

    def _session(self, first: bool) -> None:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=CONNECT_TIMEOUT)
        self.sock = sock
        try:
            sock.sendall(handshake(self.port))
            buffer = bytearray()
            while b"\r\n\r\n" not in buffer:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("closed during the handshake")
                buffer += chunk
            head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 101"):
                self.stats.refused_connects += 1
                raise ConnectionError(head[:80].decode(errors="replace"))
            buffer = bytearray(rest)
            frame: dict[str, Any] = {"type": "subscribe_project", "project": self.project}
            if self.last_id is not None:
                frame["since"] = self.last_id
            sock.sendall(masked(json.dumps(frame)))
            sock.settimeout(None)
            self.connected = True
            live = False
            while True:
                for opcode, payload in split_frames(buffer):
                    if opcode == 0x9:
                        sock.sendall(masked(payload, 0xA))
                    elif opcode == 0x8:
                        return
                    elif opcode == 0x1:
                        live = self._frame(json.loads(payload), live, first)
                chunk = sock.recv(262144)
                if not chunk:
                    return
                buffer += chunk
        finally:
            sock.close()

    def _frame(self, frame: dict[str, Any], live: bool, first: bool) -> bool:
        kind = frame.get("type")
        if kind == "event":
            event = frame["event"]
            extra = event["payload"]["extra"]
            seq = extra["soak_seq"]
            if self.counts[seq] < 255:
                self.counts[seq] += 1
            if self.last_id is not None and event["id"] <= self.last_id:
                self.stats.out_of_order += 1  # ids increase in the order the hub stored them
            self.last_id = max(self.last_id or "", event["id"])
            if live:
                now = time.time()
                self.stats.live_latencies.append((now, now - extra["sent_at"]))
            else:
                self.stats.replayed += 1
        elif kind == "subscribed":
            if not first:
                self.stats.resumes += 1
                if self.last_id is not None and frame.get("recovered") is False:
                    self.stats.unrecovered += 1
        elif kind == "error":
            # e.g. "unavailable": the store did not answer the subscription; a careful
            # client starts over with since.  With --ignore-error-frames it does not, as
            # plain clients do not: the hub's own close (1013) must bring it back.
            self.stats.error_frames += 1
            if self.heed_errors:
                raise ConnectionError(f"hub answered {frame.get('code')}")
        elif kind == "replay_complete":
            self.subscribed.set()
            return True
        return live

    def drop(self) -> None:
        """End the connection from this side: a close frame or a cut socket, at random."""
        sock = self.sock
        if sock is None or not self.connected:
            return
        try:
            if random.random() < 0.5:
                sock.sendall(masked(b"\x03\xe8", 0x8))  # close 1000
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def publish(url: str, seq: int, project: str, stats: Stats) -> None:
    body = json.dumps(
        {
            "type": "log_entry",
            "project": project,
            "deployment_id": f"{project}-{seq // 200}",
            "message": f"soak line {seq}",
            "soak_seq": seq,
            "sent_at": time.time(),
        }
    ).encode()
    deadline = time.monotonic() + POST_DEADLINE
    while True:
        request = urllib.request.Request(  # noqa: S310 - the hub's own http:// URL
            url + "/api/webhooks/deployment",
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "Idempotency-Key": f"soak-{seq}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
                answer = json.loads(response.read())
            stats.posted[seq] = answer["ids"][0]
            return
        except (urllib.error.URLError, OSError, ValueError, KeyError):
            stats.post_retries += 1
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"event {seq} could not be posted for {POST_DEADLINE} s"
                ) from None
            gevent.sleep(0.2)


def publisher(url: str, rate: float, events: int, projects: list[str], stats: Stats) -> None:
    started = time.monotonic()
    pool = gevent.pool.Pool(8)  # a slow answer does not hold up the pace
    for seq in range(events):
        gevent.sleep(max(0.0, started + seq / rate - time.monotonic()))
        pool.spawn(publish, url, seq, projects[seq % len(projects)], stats)
    pool.join(timeout=POST_DEADLINE + 30)


def hub_rss_mb(server: HubServer) -> float:
    if server.process is None or server.process.poll() is not None:
        return float("nan")
    try:
        return sum(_rss_kb(pid) for pid in _tree(server.process.pid)) / 1024
    except (FileNotFoundError, ProcessLookupError):
        return float("nan")


def sampler(server: HubServer, clients: list[SoakClient], stats: Stats, until: float) -> None:
    start = time.time()
    consumed = 0
    while time.time() < until:
        gevent.sleep(SAMPLE_SECONDS)
        window = stats.live_latencies[consumed:]
        consumed += len(window)
        latencies = sorted(seconds for _, seconds in window)
        stats.samples.append(
            {
                "t": round(time.time() - start),
                "rss_mb": round(hub_rss_mb(server), 1),
                "connected": sum(c.connected for c in clients),
                "live_frames": len(latencies),
                "p50_ms": round(percentile(latencies, 50) * 1000, 1) if latencies else None,
                "p99_ms": round(percentile(latencies, 99) * 1000, 1) if latencies else None,
            }
        )
        sample = stats.samples[-1]
        print(
            f"  t={sample['t']:4d}s rss={sample['rss_mb']:7.1f} MB "
            f"connected={sample['connected']:5d} frames={sample['live_frames']:6d} "
            f"p50={sample['p50_ms']} ms p99={sample['p99_ms']} ms",
            flush=True,
        )


def chaos(
    server: HubServer,
    redis: RedisServer | None,
    args: argparse.Namespace,
    stats: Stats,
    run_start: float,
) -> None:
    """Restart the hub ``--restarts`` times, evenly spaced; Redis once, half-way."""
    moments = [(args.seconds * (i + 1) / (args.restarts + 1), "hub") for i in range(args.restarts)]
    if redis is not None:
        moments.append((args.seconds / 2 + 7, "redis"))
    for at, what in sorted(moments):
        gevent.sleep(max(0.0, run_start + at - time.time()))
        print(f"  t={time.time() - run_start:4.0f}s restarting {what}", flush=True)
        if what == "hub":
            server.restart()
            stats.lifetimes.append(time.time() - run_start)
        elif redis is not None:
            redis.stop()
            gevent.sleep(1.0)
            redis.start()


def dropper(clients: list[SoakClient], per_second: float, until: float) -> None:
    while time.time() < until and per_second > 0:
        gevent.sleep(random.expovariate(per_second))
        random.choice(clients).drop()


def rss_growth(stats: Stats, warmup: float) -> float:
    """Largest RSS growth within one hub lifetime, from ``warmup`` s into it to its end."""
    bounds = [*stats.lifetimes, float("inf")]
    worst = 0.0
    for begin, end in zip([0.0, *stats.lifetimes], bounds, strict=True):
        inside = [
            s["rss_mb"]
            for s in stats.samples
            if begin + warmup <= s["t"] < end and s["rss_mb"] == s["rss_mb"]
        ]
        if len(inside) >= 2:
            worst = max(worst, max(inside[-2:]) / inside[0] - 1)
    return worst


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=240.0, help="publishing time")
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--projects", type=int, default=20)
    parser.add_argument("--rate", type=float, default=50.0, help="events per second")
    parser.add_argument("--drops", type=float, default=3.0, help="client drops per second")
    parser.add_argument("--restarts", type=int, default=2, help="hub restarts")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--warmup", type=float, default=30.0, help="seconds per hub lifetime")
    parser.add_argument("--redis", action="store_true", help="Redis store, restarted once")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--ignore-error-frames",
        action="store_true",
        help="clients ignore error frames (as simple clients do) and rely on the hub's closes",
    )
    args = parser.parse_args()
    events = int(args.seconds * args.rate)
    projects = [f"soak-{n}" for n in range(args.projects)]
    stats = Stats()
    workdir = Path(tempfile.mkdtemp(prefix="hub-soak-"))
    redis = RedisServer(workdir / "redis", appendonly=True).start() if args.redis else None
    env = {"HUB_WS_PING_INTERVAL": "10", "HUB_LOG_LEVEL": "WARNING"}
    if redis is not None:
        env["HUB_STORE_URL"] = redis.url(prefix="soak")
    server = HubServer(workdir / "hub", env=env, workers=args.workers).start()
    clients = [
        SoakClient(
            i,
            projects[i % len(projects)],
            server.port,
            events,
            stats,
            heed_errors=not args.ignore_error_frames,
        )
        for i in range(args.clients)
    ]
    print(
        f"soak: {args.clients} clients over {args.projects} projects, {args.rate:g} events/s "
        f"for {args.seconds:g} s, {args.restarts} hub restarts"
        f"{', one Redis restart' if redis else ''}; {args.workers} workers; {workdir}",
        flush=True,
    )
    try:
        greenlets = []
        for start in range(0, len(clients), 100):
            greenlets += [gevent.spawn(c.run) for c in clients[start : start + 100]]
            gevent.sleep(0.2)
        waiting = time.monotonic() + 120
        for client in clients:
            client.subscribed.wait(timeout=max(0.1, waiting - time.monotonic()))
        ready = sum(c.subscribed.is_set() for c in clients)
        print(f"  {ready} clients subscribed; publishing", flush=True)
        stats.resumes = stats.reconnect_attempts = 0
        run_start = time.time()
        until = run_start + args.seconds
        background = [
            gevent.spawn(sampler, server, clients, stats, until + DRAIN_SECONDS),
            gevent.spawn(chaos, server, redis, args, stats, run_start),
            gevent.spawn(dropper, clients, args.drops, until),
        ]
        publisher(server.url, args.rate, events, projects, stats)
        wanted = {
            p: [s for s, _ in sorted(stats.posted.items()) if s % len(projects) == i]
            for i, p in enumerate(projects)
        }
        drain_until = time.monotonic() + DRAIN_SECONDS
        while time.monotonic() < drain_until:
            if all(all(c.counts[s] for s in wanted[c.project]) for c in clients):
                break
            gevent.sleep(1.0)
        background[0].kill()
        gevent.joinall(background[1:], timeout=60)
        for client in clients:
            client.stopping = True
            client.drop()
        gevent.killall(greenlets, timeout=10)
    finally:
        server.stop()
        if redis is not None:
            redis.stop()
    expected = sum(len(wanted[c.project]) for c in clients)
    received = sum(1 for c in clients for s in wanted[c.project] if c.counts[s])
    duplicated = sum(max(0, c.counts[s] - 1) for c in clients for s in wanted[c.project])
    unposted = [s for s in range(events) if s not in stats.posted]
    stray = sum(1 for c in clients for s in unposted if c.counts[s])
    lost_events: dict[int, list[int]] = {}  # seq -> clients that never got it
    for c in clients:
        for s in wanted[c.project]:
            if not c.counts[s]:
                lost_events.setdefault(s, []).append(c.index)
    latencies = sorted(seconds for _, seconds in stats.live_latencies)
    figures = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
        "store": "redis" if redis else "sqlite",
        "clients": args.clients,
        "projects": args.projects,
        "rate": args.rate,
        "seconds": args.seconds,
        "workers": args.workers,
        "events_posted": len(stats.posted),
        "post_retries": stats.post_retries,
        "expected": expected,
        "received": received,
        "lost": expected - received,
        "duplicated": duplicated,
        "stray": stray,
        "out_of_order": stats.out_of_order,
        "resumes": stats.resumes,
        "reconnect_attempts": stats.reconnect_attempts,
        "error_frames": stats.error_frames,
        "unrecovered": stats.unrecovered,
        "replayed_frames": stats.replayed,
        "live_frames": len(latencies),
        "p50_ms": round(percentile(latencies, 50) * 1000, 1),
        "p99_ms": round(percentile(latencies, 99) * 1000, 1),
        "rss_growth_pct": round(rss_growth(stats, args.warmup) * 100, 1),
        "lost_sample": [
            {
                "seq": seq,
                "id": stats.posted[seq],
                "clients": len(who),
                "of": args.clients // len(projects),
            }
            for seq, who in sorted(lost_events.items())[:20]
        ],
        "samples": stats.samples,
    }
    print(json.dumps({k: v for k, v in figures.items() if k != "samples"}, indent=1))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    ok = (
        figures["lost"] == 0
        and figures["duplicated"] == 0
        and figures["stray"] == 0
        and figures["out_of_order"] == 0
        and figures["rss_growth_pct"] < 10
    )
    if ok:
        shutil.rmtree(workdir, ignore_errors=True)
        print("goals met")
        return 0
    print(f"GOALS MISSED; the hub's log and store are kept in {workdir}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
