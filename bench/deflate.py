"""permessage-deflate: what each ``HUB_WS_DEFLATE`` mode costs the worker, and saves the wire.

Usage: ``python bench/deflate.py [--clients 100] [--events 1000] [--rate 200] [--idle 1000]``

For each mode (``off``: the client offers nothing; ``shared``: frames deflated
once per worker, without context; ``connection``: wsproto's compressor per
connection), a fresh hub (gunicorn, one gevent worker pinned to CPU 0; this
process on CPU 1) gets ``--clients`` subscribers of one project that inflate
what they receive, then ``--events`` ~300-byte ``log_entry`` events posted one
per request at ``--rate``.  Printed per mode: server CPU per delivery, bytes
per event frame on the wire, lost and duplicated deliveries, and the worker's
RSS per idle subscribed connection (``--idle`` of them, after a warm-up round).

Loopback only; every loop is bounded.  Figures are printed, nothing asserted.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402 - gevent must patch before anything imports socket
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import zlib  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402
import gevent.event  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.fanout import Usage  # noqa: E402
from bench.ingest import pinned  # noqa: E402
from bench.loadgen import run  # noqa: E402
from tests.e2e.server import HubServer  # noqa: E402
from tests.e2e.wsclient import handshake, masked  # noqa: E402

OFFER = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
MODES = {"off": ("off", ""), "shared": ("shared", OFFER), "connection": ("connection", OFFER)}
TEXT = "INFO deploy: uploaded artifact web-frontend-1.42.0.tar.gz to s3://releases/web (12.4 MB)"


class Subscriber:
    """A raw-socket subscriber that inflates compressed frames, as a browser does."""

    def __init__(self, port: int, extra: str, project: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.sock.sendall(handshake(port, "/ws", extra))
        buffer = b""
        while b"\r\n\r\n" not in buffer:
            buffer += self.sock.recv(65536)
        head, _, rest = buffer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head[:200]  # noqa: S101 - a bench client
        self.buffer = bytearray(rest)
        self.inflater = zlib.decompressobj(-15)  # keeps its context: inflates either mode
        self.wire_bytes = 0
        self.events: list[int] = []
        self.ready = gevent.event.Event()
        self.sock.sendall(masked(json.dumps(["subscribe_project", project])))
        self.greenlet = gevent.spawn(self._read)

    def _read(self) -> None:
        while True:
            while len(self.buffer) >= 2:
                first, length = self.buffer[0], self.buffer[1] & 0x7F
                start = 2 + {126: 2, 127: 8}.get(length, 0)
                if len(self.buffer) < start:
                    break
                if length >= 126:
                    length = int.from_bytes(self.buffer[2:start], "big")
                if len(self.buffer) < start + length:
                    break
                payload = bytes(self.buffer[start : start + length])
                del self.buffer[: start + length]
                self._frame(first, payload, start + length)
            try:
                chunk = self.sock.recv(262144)
            except OSError:
                return
            if not chunk:
                return
            self.buffer += chunk

    def _frame(self, first: int, payload: bytes, size: int) -> None:
        if first & 0x0F == 0x9:
            self.sock.sendall(masked(payload, 0xA))
            return
        if first & 0x40:  # RSV1: compressed
            payload = self.inflater.decompress(payload + b"\x00\x00\xff\xff")
        if payload.startswith(b'{"type":"replay_complete"'):
            self.ready.set()
        elif payload.startswith(b'{"type":"event"'):
            self.wire_bytes += size
            self.events.append(json.loads(payload)["event"]["payload"]["extra"]["n"])

    def close(self) -> None:
        self.greenlet.kill()
        self.sock.close()


def connect(port: int, extra: str, project: str, count: int) -> list[Subscriber]:
    subscribers: list[Subscriber] = []
    for start in range(0, count, 200):
        group = [
            gevent.spawn(Subscriber, port, extra, project) for _ in range(min(200, count - start))
        ]
        gevent.joinall(group, raise_error=True)
        subscribers += [g.value for g in group]
    for subscriber in subscribers:
        if not subscriber.ready.wait(timeout=60):
            raise RuntimeError("a subscription was never confirmed")
    return subscribers


def deliveries(server: HubServer, extra: str, args: argparse.Namespace) -> dict[str, float]:
    subscribers = connect(server.port, extra, "zip", args.clients)
    started = time.perf_counter()

    def one(index: int) -> bytes:
        gevent.sleep(max(0.0, started + index / args.rate - time.perf_counter()))
        body = {"type": "log_entry", "project": "zip", "deployment_id": f"zip-{index // 100}"}
        return json.dumps({**body, "message": f"{TEXT} #{index}", "n": index}).encode()

    usage = Usage(server)
    run(
        server.port,
        "/api/webhooks/deployment",
        one,
        total=args.events,
        concurrency=16,
        deadline=args.events / args.rate + 30,
    )
    expected = args.clients * args.events
    deadline = time.perf_counter() + 15
    while sum(len(s.events) for s in subscribers) < expected and time.perf_counter() < deadline:
        gevent.sleep(0.05)
    seconds, server_cpu, _ = usage.finish()
    received = sum(len(s.events) for s in subscribers)
    unique = sum(len(set(s.events)) for s in subscribers)
    wire = sum(s.wire_bytes for s in subscribers)
    for subscriber in subscribers:
        subscriber.close()
    return {
        "server CPU µs/delivery": server_cpu / 100 * seconds / max(received, 1) * 1e6,
        "bytes/frame": wire / max(received, 1),
        "lost": expected - unique,
        "duplicated": received - unique,
    }


def idle_kb(server: HubServer, extra: str, count: int) -> float:
    for subscriber in connect(server.port, extra, "idle", 50):  # load what loads lazily
        subscriber.close()
    usage = Usage(server)
    gevent.sleep(2)
    before = usage.rss_mb()
    subscribers = connect(server.port, extra, "idle", count)
    gevent.sleep(2)
    after = usage.rss_mb()
    for subscriber in subscribers:
        subscriber.close()
    return (after - before) * 1024 / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--idle", type=int, default=1000)
    args = parser.parse_args()
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, load {os.getloadavg()[0]:.1f}"
    )
    for name, (mode, extra) in MODES.items():
        env = {
            "HUB_WS_DEFLATE": mode,
            "HUB_LOG_LEVEL": "WARNING",
            "HUB_WORKER_CONNECTIONS": "5000",
            "HUB_WS_MAX_CONNECTIONS": "5000",
        }
        with tempfile.TemporaryDirectory() as workdir:
            server = pinned(HubServer(Path(workdir), env))
            try:
                figures = deliveries(server, extra, args)
                figures["idle KB/connection"] = idle_kb(server, extra, args.idle)
            finally:
                server.stop()
        shown = "  ".join(f"{key} {value:,.1f}" for key, value in figures.items())
        print(f"{name:<11} {shown}", flush=True)


if __name__ == "__main__":
    main()
