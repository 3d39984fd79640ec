"""Fan-out of the real hub vs. a Flask-SocketIO baseline, under the same gunicorn/gevent stack.

Usage: ``python bench/fanout.py [--paced 1000@100 100@500] [--seconds 20]
[--max-clients 10] [--max-seconds 10] [--rounds 5] [--idle 2000] [--repeat 1]
[--only hub|socketio] [--base REV] [--fanout-delay S] [--quick]``

Each server runs as gunicorn with one gevent worker pinned to CPU 0; this
process (the load generator: gevent, raw sockets, one greenlet per client)
is pinned to CPU 1 and reports its own CPU, since a saturated generator
would cap what it measures.  For the hub, the hub of commit ``REV`` when
``--base`` names one (bench/base.py), and the baseline (bench/socketio_app.py:
``emit`` to a room on webhook receipt, nothing stored), in one run, each case
on a fresh server:

* idle: the worker's RSS before and after N idle subscribed connections
  (for the hub also with permessage-deflate negotiated, as browsers do);
* frames: the bytes of the message a subscriber receives for a hello-world
  ``log_entry`` and for a typical ``step_completed``;
* paced: K subscribers of one project, ~300-byte events POSTed one per
  request at R/s, for each ``K@R`` of ``--paced``; with ``--repeat N`` the
  servers take turns N times, and the CPU per delivery of each against the
  baseline is printed by round with its median;
* max rate: 10 subscribers, events POSTed as fast as keep-alive connections
  allow, once in batches of 20 (4 connections) and once one event per
  request (16 connections); measured last, in rounds where the servers take
  turns, with the median of each and of the ratios per round.

Per case: deliveries/s, requests/s, end-to-end latency (POST sent -> frame
received) p50/p95/p99/max, lost and duplicated deliveries, server CPU and
RSS, the worker's CPU time per request and per delivery.  Loopback only;
every loop is bounded by a count and a deadline.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402 - gevent must patch before anything imports socket
import contextlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import resource  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import base  # noqa: E402
from bench.ingest import _tree, pinned  # noqa: E402
from bench.loadgen import Result, run  # noqa: E402
from bench.machine import cpu_model  # noqa: E402
from tests.e2e.server import HubServer  # noqa: E402
from tests.e2e.wsclient import handshake, masked, split_frames  # noqa: E402

SEQ = re.compile(rb'"message":"seq=([0-9]+)')
BATCH = 20
#: Keep-alive connections posting batches, and single events, at maximum rate.
BATCH_CONNECTIONS = 4
SINGLE_CONNECTIONS = 16
#: What pads a paced or single event's message to a ~300-byte body, as a pipeline's log line.
PADDING = " build step output: compiling module, linking, running checks" * 3
DRAIN_SECONDS = 15.0
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Target:
    """How to reach one server's fan-out: its app, its socket path, its subscribe frames."""

    name: str
    app_spec: str
    path: str
    env: dict[str, str] = field(default_factory=dict)
    root: Path = ROOT

    @property
    def socketio(self) -> bool:
        return self.app_spec.startswith("bench.socketio_app")

    def greeting(self) -> list[bytes]:
        """Frames a client sends after the upgrade, before subscribing."""
        return [masked("40")] if self.socketio else []

    def subscribe(self, project: str) -> bytes:
        if self.socketio:
            return masked("421" + json.dumps(["subscribe_project", project]))
        return masked(json.dumps(["subscribe_project", project]))

    def subscribed(self, payload: bytes) -> bool:
        """Whether ``payload`` confirms the subscription (the hub: its replay is done)."""
        if self.socketio:
            return payload.startswith(b"431")
        return payload.startswith(b'{"type":"replay_complete"')


HUB = Target("hub", "server.app:create_app()", "/ws", {"HUB_LOG_LEVEL": "WARNING"})
SOCKETIO = Target(
    "socketio", "bench.socketio_app:create_app()", "/socket.io/?EIO=4&transport=websocket"
)


@dataclass
class Tally:
    """What every client of one case received."""

    events: int
    sent: list[float]
    posted: int = 0
    latencies: list[float] = field(default_factory=list)
    unique: int = 0
    duplicates: int = 0
    closed: int = 0


class Client:
    """One subscriber on a raw socket: handshake, subscribe, then count event frames."""

    def __init__(
        self, target: Target, port: int, project: str, tally: Tally | None, extra: str = ""
    ) -> None:
        self.target = target
        self.tally = tally
        self.seen = bytearray(tally.events if tally else 0)
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.sock.sendall(handshake(port, target.path, extra))
        self.buffer = bytearray()
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed during the handshake")
            self.buffer += chunk
        head, _, rest = bytes(self.buffer).partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(head[:200].decode(errors="replace"))
        self.buffer = bytearray(rest)
        for frame in target.greeting():
            self.sock.sendall(frame)
        self.sock.sendall(target.subscribe(project))
        self.ready = gevent.event.Event()
        self.frames = 0
        self.now = time.perf_counter()
        self.closing = False
        self.kept: list[bytes] | None = None  # every message after the subscription, if set
        self.greenlet = gevent.spawn(self._read)

    def _read(self) -> None:
        while True:
            for opcode, payload in split_frames(self.buffer):
                self._frame(opcode, payload)
            try:
                chunk = self.sock.recv(262144)
            except OSError:
                break
            if not chunk:
                break
            self.buffer += chunk
            self.now = time.perf_counter()
        if self.tally is not None and not self.closing:
            self.tally.closed += 1

    def _frame(self, opcode: int, payload: bytes) -> None:
        if opcode == 0x9:
            self.sock.sendall(masked(payload, 0xA))
            return
        if opcode == 0x8:
            self.sock.close()
            return
        self.frames += 1
        if payload == b"2":  # Engine.IO ping
            self.sock.sendall(masked("3"))
            return
        if not self.ready.is_set():
            if self.target.subscribed(payload) or (self.tally is None and self.frames >= 3):
                self.ready.set()
            return
        if self.kept is not None:
            self.kept.append(payload)
        found = SEQ.search(payload)
        if found is None or self.tally is None:
            return
        seq = int(found[1])
        if self.seen[seq]:
            self.tally.duplicates += 1
            return
        self.seen[seq] = 1
        self.tally.unique += 1
        self.tally.latencies.append(self.now - self.tally.sent[seq])

    def close(self) -> None:
        self.closing = True
        self.greenlet.kill()
        self.sock.close()


def connect_all(
    target: Target, port: int, count: int, project: str, tally: Tally | None, extra: str = ""
) -> list[Client]:
    clients: list[Client] = []
    for start in range(0, count, 200):
        group = [
            gevent.spawn(Client, target, port, project, tally, extra)
            for _ in range(min(200, count - start))
        ]
        gevent.joinall(group, raise_error=True)
        clients.extend(g.value for g in group)
    for client in clients:
        if not client.ready.wait(timeout=60):
            raise RuntimeError("a client's subscription was never confirmed")
    return clients


def body(project: str, seqs: range, tally: Tally) -> bytes:
    """A batch of log lines, or one ~300-byte log line when ``seqs`` holds one."""
    now = time.perf_counter()
    events = []
    tally.posted = max(tally.posted, seqs.stop)
    for seq in seqs:
        tally.sent[seq] = now
        events.append(
            {
                "type": "log_entry",
                "project": project,
                "deployment_id": f"{project}-{seq // 100}",
                "message": f"seq={seq}",
            }
        )
    if len(events) == 1:
        one = events[0]
        one.update(
            message=f"seq={seq} {PADDING}",
            level="info",
            job_name="build",
            step_name="compile",
            timestamp=datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        )
        return json.dumps(one).encode()
    return json.dumps({"events": events}).encode()


class Usage:
    """CPU seconds and RSS of the server's processes, and this process's CPU, over a window."""

    def __init__(self, server: HubServer) -> None:
        if server.process is None:
            raise RuntimeError("the server is not running")
        self.pids = _tree(server.process.pid)[1:]  # the worker, not the idle master
        self.server_cpu = self._server_cpu()
        self.own = resource.getrusage(resource.RUSAGE_SELF)
        self.started = time.perf_counter()

    def _server_cpu(self) -> float:
        total = 0
        for pid in self.pids:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        return total / TICKS

    def rss_mb(self) -> float:
        return sum(_rss_kb(pid) for pid in self.pids) / 1024

    def finish(self) -> tuple[float, float, float]:
        """(seconds, server CPU seconds, load generator CPU seconds)."""
        seconds = time.perf_counter() - self.started
        own = resource.getrusage(resource.RUSAGE_SELF)
        mine = (own.ru_utime - self.own.ru_utime) + (own.ru_stime - self.own.ru_stime)
        return seconds, self._server_cpu() - self.server_cpu, mine


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def percentile(ordered: list[float], p: float) -> float:
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


def fan_out(
    target: Target,
    server: HubServer,
    clients: int,
    events: int,
    project: str,
    post: Callable[[int, Tally], Result],
) -> dict[str, object]:
    """Subscribe ``clients``, run ``post``, wait for the deliveries; the case's figures."""
    tally = Tally(events, [0.0] * events)
    subscribers = connect_all(target, server.port, clients, project, tally)
    warm_up = json.dumps(
        {"type": "log_entry", "project": project, "deployment_id": "warm-up", "message": "warm-up"}
    ).encode()  # no seq: the clients skip it
    run(
        server.port,
        "/api/webhooks/deployment",
        lambda _: warm_up,
        total=20,
        concurrency=1,
        deadline=30,
    )
    gevent.sleep(1)
    usage = Usage(server)
    posted = post(server.port, tally)
    _, posting_cpu, _ = usage.finish()
    deadline = time.perf_counter() + DRAIN_SECONDS
    while tally.unique < clients * tally.posted and time.perf_counter() < deadline:
        gevent.sleep(0.05)
    seconds, server_cpu, own_cpu = usage.finish()
    rss = usage.rss_mb()
    for client in subscribers:
        client.close()
    ordered = sorted(tally.latencies)
    return {
        "deliveries/s": tally.unique / seconds,
        "requests/s": posted.rate,
        "p50 ms": percentile(ordered, 50) * 1e3,
        "p95 ms": percentile(ordered, 95) * 1e3,
        "p99 ms": percentile(ordered, 99) * 1e3,
        "max ms": (ordered[-1] if ordered else 0) * 1e3,
        "events": tally.posted,
        "errors": posted.errors,
        "lost": clients * tally.posted - tally.unique,
        "duplicates": tally.duplicates,
        "closed by server": tally.closed,
        "server CPU %": server_cpu / seconds * 100,
        "server CPU % while posting": posting_cpu / posted.seconds * 100,
        "server CPU us/request": server_cpu / max(1, posted.requests) * 1e6,
        "server CPU us/delivery": server_cpu / max(1, tally.unique) * 1e6,
        "server RSS MB": rss,
        "loadgen CPU %": own_cpu / seconds * 100,
    }


def paced(project: str, rate: float, events: int) -> Callable[[int, Tally], Result]:
    """One event per request, R requests a second (16 in flight at most, so a slow answer
    does not lower the rate)."""

    def post(port: int, tally: Tally) -> Result:
        started = time.perf_counter()

        def one(index: int) -> bytes:
            gevent.sleep(max(0.0, started + index / rate - time.perf_counter()))
            return body(project, range(index, index + 1), tally)

        return run(
            port,
            "/api/webhooks/deployment",
            one,
            total=events,
            concurrency=16,
            deadline=events / rate + 30,
        )

    return post


def flat_out(
    project: str, seconds: float, events: int, batch: int
) -> Callable[[int, Tally], Result]:
    """Requests of ``batch`` events (one event: a plain event body, not a batch), as fast as
    the keep-alive connections go, for ``seconds``."""

    def post(port: int, tally: Tally) -> Result:
        def request(index: int) -> bytes:
            return body(project, range(index * batch, (index + 1) * batch), tally)

        return run(
            port,
            "/api/webhooks/deployment",
            request,
            total=events // batch,
            concurrency=BATCH_CONNECTIONS if batch > 1 else SINGLE_CONNECTIONS,
            deadline=seconds,
        )

    return post


def idle_memory(target: Target, server: HubServer, count: int, extra: str = "") -> float:
    """KB of worker RSS per idle subscribed connection.

    A first round of connections loads whatever the worker loads lazily (modules,
    caches) and is closed again, so that only the connections themselves are counted.
    """
    warm = connect_all(target, server.port, 50, "idle", None, extra)
    for client in warm:
        client.close()
    usage = Usage(server)
    gevent.sleep(2)
    before = usage.rss_mb()
    clients = connect_all(target, server.port, count, "idle", None, extra)
    gevent.sleep(2)
    after = usage.rss_mb()
    for client in clients:
        client.close()
    return (after - before) * 1024 / count


#: The bodies whose frames are weighed: a hello-world log line and a typical step's end.
FRAME_BODIES = {
    "log_entry B": {
        "type": "log_entry",
        "project": "frames",
        "deployment_id": "1042",
        "message": "hello world",
    },
    "step_completed B": {
        "type": "step_completed",
        "project": "frames",
        "deployment_id": "1042",
        "job_name": "deploy-project",
        "step_name": "deploy",
        "step_status": "success",
        "duration": 82,
        "logs": "deploy-project / deploy finished: success",
    },
}


def frame_sizes(target: Target, server: HubServer) -> dict[str, object]:
    """Bytes of the WebSocket message one subscriber receives for each of FRAME_BODIES."""
    (client,) = connect_all(target, server.port, 1, "frames", None)
    client.kept = []
    sizes: dict[str, object] = {}
    for name, event in FRAME_BODIES.items():
        client.kept.clear()
        run(
            server.port,
            "/api/webhooks/deployment",
            lambda _, event=event: json.dumps(event).encode(),
            total=1,
            concurrency=1,
            deadline=10,
        )
        deadline = time.perf_counter() + 10
        while not client.kept and time.perf_counter() < deadline:
            gevent.sleep(0.02)
        sizes[name] = len(client.kept[0]) if client.kept else "none"
    client.close()
    return sizes


def start(target: Target, workdir: Path) -> HubServer:
    """A fresh server for each measurement, so one case's garbage does not blur the next."""
    return pinned(
        HubServer(
            workdir,
            {
                **target.env,
                "HUB_WS_MAX_CONNECTIONS": "20000",
                "HUB_WORKER_CONNECTIONS": "20000",
                "HUB_MAX_BATCH_EVENTS": "1000",
            },
            app_spec=target.app_spec,
            root=target.root,
        )
    )


Case = Callable[[HubServer], dict[str, object]]


def cases(target: Target, args: argparse.Namespace) -> list[tuple[str, Case]]:
    """The cases measured once per server: idle memory, frame sizes, paced fan-out."""

    def idle(extra: str) -> Case:
        return lambda server: {"KB": idle_memory(target, server, args.idle, extra)}

    def paced_case(clients: int, rate: float) -> Case:
        events = int(rate * args.seconds)
        return lambda server: fan_out(
            target, server, clients, events, "paced", paced("paced", rate, events)
        )

    found: list[tuple[str, Case]] = [("idle KB/connection", idle(""))] if args.idle else []
    if args.idle and not target.socketio:
        found.append(
            (
                "idle KB/connection, deflate",
                idle("Sec-WebSocket-Extensions: permessage-deflate\r\n"),
            )
        )
    found.append(("frame bytes", lambda server: frame_sizes(target, server)))
    for clients, rate in args.paced:
        found.append((f"paced K={clients} R={rate:g}/s", paced_case(clients, rate)))
    return found


def measure(
    target: Target, args: argparse.Namespace, workdir: Path
) -> dict[str, dict[str, object]]:
    """Each per-server case once on a fresh server; their figures by case name."""
    print(f"\n{target.name} (load average {os.getloadavg()[0]:.2f}):")
    measured = {}
    for index, (name, case) in enumerate(cases(target, args)):
        server = start(target, workdir / f"{target.name}-{index}")
        try:
            figures = measured[name] = case(server)
        finally:
            server.stop()
        print(f"  {name:<32} {show(figures)}", flush=True)
    return measured


def paced_rounds(
    targets: list[Target], rounds: list[dict[str, dict[str, dict[str, object]]]]
) -> None:
    """CPU per delivery of each target against the last one's, paced case by case, by round
    (each round a turn of every server, so a drift in the machine's speed hits them alike)."""
    if len(targets) < 2:
        return
    reference = targets[-1].name
    print(f"\npaced cases, {len(rounds)} rounds, server CPU per delivery against {reference}:")
    for case in (name for name in rounds[0][reference] if name.startswith("paced")):
        for target in targets[:-1]:
            ratios = [
                number(measured[target.name][case], "server CPU us/delivery")
                / number(measured[reference][case], "server CPU us/delivery")
                for measured in rounds
            ]
            shown = ", ".join(f"{r:.2f}" for r in ratios)
            print(
                f"  {case}, {target.name} / {reference} by round: {shown}; "
                f"median {statistics.median(ratios):.2f}"
            )


def max_rate(
    target: Target, args: argparse.Namespace, workdir: Path, batch: int
) -> dict[str, object]:
    server = start(target, workdir)
    try:
        return fan_out(
            target,
            server,
            args.max_clients,
            10**6,
            "flat",
            flat_out("flat", args.max_seconds, 10**6, batch),
        )
    finally:
        server.stop()


#: The maximum-rate cases: their name, events per request, and the figure compared.
MAX_RATE_CASES = (
    ("batches of 20", BATCH, "deliveries/s"),
    ("one event per request", 1, "requests/s"),
)


def max_rates(targets: list[Target], args: argparse.Namespace, workdir: Path) -> None:
    """Every maximum-rate case in rounds, the servers taking turns within each round."""
    print(
        f"\nmax rate K={args.max_clients}, {args.rounds} rounds, the servers taking turns "
        "(a drift in the machine's speed hits them alike):"
    )
    figures: dict[tuple[str, str], list[float]] = {}
    cpu: dict[tuple[str, str], list[float]] = {}
    for round_ in range(1, args.rounds + 1):
        for case, batch, figure in MAX_RATE_CASES:
            for target in targets:
                name = f"{target.name}-{batch}-{round_}"
                result = max_rate(target, args, workdir / name, batch)
                figures.setdefault((case, target.name), []).append(number(result, figure))
                cpu.setdefault((case, target.name), []).append(
                    number(result, "server CPU us/request")
                )
                print(f"  round {round_} {case}, {target.name:<9} {show(result)}", flush=True)
    for case, _, figure in MAX_RATE_CASES:
        print(f"  {case}:")
        for target in targets:
            values = figures[(case, target.name)]
            print(
                f"    {target.name:<9} median {figure} {statistics.median(values):,.0f}, "
                f"server CPU {statistics.median(cpu[(case, target.name)]):,.0f} us/request"
            )
        reference = targets[-1].name
        for target in targets[:-1]:
            for what, taken in ((figure, figures), ("server CPU per request", cpu)):
                ratios = [
                    a / b
                    for a, b in zip(
                        taken[(case, target.name)], taken[(case, reference)], strict=True
                    )
                ]
                shown = ", ".join(f"{r:.2f}" for r in ratios)
                print(
                    f"    {what}, {target.name} / {reference} by round: {shown}; "
                    f"median {statistics.median(ratios):.2f}"
                )


def number(figures: dict[str, object], name: str) -> float:
    value = figures[name]
    assert isinstance(value, float)  # noqa: S101 - fan_out's figures
    return value


def show(figures: dict[str, object]) -> str:
    return "  ".join(
        f"{k} {v:,.1f}" if isinstance(v, float) else f"{k} {v}" for k, v in figures.items()
    )


def paced_spec(text: str) -> tuple[int, float]:
    """``K@R``: K subscribers, R events a second."""
    clients, _, rate = text.partition("@")
    return int(clients), float(rate)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--paced", type=paced_spec, nargs="*", default=[(1000, 100.0), (100, 500.0)]
    )
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--max-clients", type=int, default=10)
    parser.add_argument("--max-seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=5, help="0: no maximum-rate cases")
    parser.add_argument("--idle", type=int, default=2000, help="0: no idle cases")
    parser.add_argument(
        "--repeat", type=int, default=1, help="times the per-server cases run, servers in turn"
    )
    parser.add_argument("--only", choices=("hub", "socketio"))
    parser.add_argument("--base", metavar="REV", help="also run the hub of this commit")
    parser.add_argument(
        "--fanout-delay",
        type=float,
        metavar="S",
        help="also run the hub with HUB_FANOUT_DELAY=S (events joined per write)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="small figures, for trying the bench itself"
    )
    args = parser.parse_args()
    if args.quick:
        args.paced, args.seconds, args.max_seconds = [(100, 100.0)], 3.0, 3.0
        args.rounds, args.idle = 1, 200
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(hard, 4 * (max((k for k, _ in args.paced), default=0) + args.idle) + 1000)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})
    cpu = cpu_model()
    print(
        f"machine: {os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}; "
        "server on CPU 0, load generator on CPU 1"
    )
    with contextlib.ExitStack() as stack:
        targets = [HUB]
        if args.fanout_delay:
            delayed = {**HUB.env, "HUB_FANOUT_DELAY": str(args.fanout_delay)}
            targets.append(Target(f"hub+{args.fanout_delay:g}s", HUB.app_spec, HUB.path, delayed))
        if args.base:
            tree = stack.enter_context(base.checkout(args.base))
            print(f"hub@base: {base.describe(args.base)}")
            targets.append(Target("hub@base", HUB.app_spec, HUB.path, HUB.env, tree))
        if args.only == "socketio":
            targets = []
        if args.only != "hub":
            targets.append(SOCKETIO)  # last: the ratios are taken against it
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        rounds = [
            {target.name: measure(target, args, tmp) for target in targets}
            for _ in range(args.repeat)
        ]
        paced_rounds(targets, rounds)
        if args.rounds:
            max_rates(targets, args, tmp)


if __name__ == "__main__":
    main()
