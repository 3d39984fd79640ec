"""A small keep-alive HTTP load generator on gevent, for loopback benchmarks only.

Raw sockets and pre-built requests keep the generator's own cost low; every
run is bounded by a request count and a deadline.  It reports its own CPU
time, because a saturated generator caps the figure it measures.
"""

from __future__ import annotations

import resource
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

import gevent


@dataclass
class Result:
    requests: int
    errors: int
    seconds: float
    latencies: list[float]
    cpu_seconds: float

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


def _read_response(sock: socket.socket, buffer: bytearray) -> int:
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        buffer += chunk
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    body = bytearray(rest)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        body += chunk
    buffer[:] = body[length:]
    return status


def run(
    port: int,
    path: str,
    body_for: Callable[[int], bytes],
    *,
    total: int,
    concurrency: int,
    deadline: float,
) -> Result:
    """POST ``total`` bodies over ``concurrency`` keep-alive connections, or stop at deadline."""
    counter = iter(range(total))
    latencies: list[float] = []
    errors = 0
    stop_at = time.monotonic() + deadline

    def worker() -> None:
        nonlocal errors
        sock = socket.create_connection(("127.0.0.1", port))
        buffer = bytearray()
        for index in counter:
            if time.monotonic() > stop_at:
                break
            body = body_for(index)
            request = (
                f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode() + body
            started = time.perf_counter()
            sock.sendall(request)
            status = _read_response(sock, buffer)
            latencies.append(time.perf_counter() - started)
            if status != 200:
                errors += 1
        sock.close()

    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    gevent.joinall([gevent.spawn(worker) for _ in range(concurrency)], raise_error=True)
    elapsed = time.perf_counter() - started
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    return Result(len(latencies), errors, elapsed, latencies, cpu)
