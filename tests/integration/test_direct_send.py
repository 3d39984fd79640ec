"""What a slow client can make a worker hold when the fan-out writes to it directly.

``Connection._send_now`` writes live events from the fan-out's greenlet while
the connection's queue and output are empty.  A client whose socket takes
nothing must still be bounded as on the queue's path: a run longer than its
send queue overflows it (the client is told to reconnect), and a run longer
than one write batch is queued as the shared frames instead of copied into
the connection's own output.  Real sockets (a socket pair whose receiver
never reads), the real connection and frame cache.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from wsproto.connection import Connection as Protocol
from wsproto.connection import ConnectionType

from app.ingest import load_one
from broadcaster.connection import WRITE_BATCH_BYTES, Connection
from broadcaster.framing import FrameCache
from broadcaster.hub import Envelope, Subscriber
from broadcaster.limits import Limits

SMALL_BUFFER = 4096


class _Hub:
    """Only what an overflowing connection asks of its hub: to be dropped."""

    def __init__(self) -> None:
        self.dropped: list[Subscriber] = []

    def drop(self, subscriber: Subscriber) -> None:
        self.dropped.append(subscriber)


@pytest.fixture
def stalled() -> Iterator[tuple[socket.socket, socket.socket]]:
    """``(server side, client side)`` with small buffers; the client side never reads."""
    server, client = socket.socketpair()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUFFER)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_BUFFER)
    server.settimeout(0.0)  # as Connection.run sets it
    try:
        yield server, client
    finally:
        server.close()
        client.close()


def connection(sock: socket.socket, hub: _Hub, send_queue: int) -> Connection:
    return Connection(
        sock,
        Protocol(ConnectionType.SERVER),
        session=None,  # type: ignore[arg-type]  # not reached: nothing is read
        hub=hub,  # type: ignore[arg-type]
        limits=Limits(send_queue=send_queue),
        connection_id="c1",
        request_id="r1",
        frames=FrameCache(1 << 20),
    )


def run(count: int, message_bytes: int) -> list[Envelope]:
    body = {"type": "log_entry", "project": "web", "deployment_id": "1"}
    event = load_one({**body, "message": "x" * message_bytes}, "deployment")
    return [Envelope(seq, event) for seq in range(1, count + 1)]


def held(conn: Connection) -> int:
    """Bytes the connection keeps of its own (its unsent output)."""
    return len(conn._out) - conn._out_at


def test_a_run_longer_than_the_send_queue_overflows_a_stalled_client(
    stalled: tuple[socket.socket, socket.socket],
) -> None:
    hub = _Hub()
    conn = connection(stalled[0], hub, send_queue=10)
    conn.subscriber.offer(run(1000, 1000))
    assert conn.subscriber.overflowed
    assert hub.dropped == [conn.subscriber]
    assert held(conn) == 0
    assert conn.subscriber.live_pending == 10  # what fitted, sent before the close


def test_a_run_over_one_write_batch_is_queued_not_copied(
    stalled: tuple[socket.socket, socket.socket],
) -> None:
    conn = connection(stalled[0], _Hub(), send_queue=2000)
    events = run(1000, 1000)  # ~1.2 MB of frames: more than one write batch
    conn.subscriber.offer(events)
    assert not conn.subscriber.overflowed
    assert held(conn) == 0
    assert conn.subscriber.live_pending == len(events)


def test_a_small_run_is_written_at_once_and_the_rest_kept_in_order(
    stalled: tuple[socket.socket, socket.socket],
) -> None:
    server, client = stalled
    conn = connection(server, _Hub(), send_queue=2000)
    events = run(20, 1000)  # ~24 KB: one write batch, more than the socket takes
    conn.subscriber.offer(events)
    assert conn.subscriber.live_pending == 0
    kept = held(conn)
    assert 0 < kept <= WRITE_BATCH_BYTES
    frames = b"".join(conn.frames.get(envelope) for envelope in events)  # type: ignore[union-attr]
    received = b""
    client.settimeout(1.0)
    while len(received) < len(frames) - kept:
        received += client.recv(65536)
    assert received + bytes(conn._out[conn._out_at :]) == frames
