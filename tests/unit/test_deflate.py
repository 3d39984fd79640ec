"""Bounded permessage-deflate: compressed messages inflate only up to the frame cap."""

from __future__ import annotations

import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Message, Request, TextMessage
from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import CloseReason

from app.ingest import load_one
from broadcaster.deflate import bound, shared_offer
from broadcaster.framing import deflated_frames, deflated_text_frame
from broadcaster.hub import Envelope

CAP = 65536


def pair(cap: int = CAP) -> tuple[WSConnection, WSConnection]:
    """A client and a server wsproto connection after a handshake that negotiated deflate."""
    client, server = WSConnection(ConnectionType.CLIENT), WSConnection(ConnectionType.SERVER)
    server.receive_data(
        client.send(Request(host="h", target="/ws", extensions=[PerMessageDeflate()]))
    )
    for event in server.events():
        if isinstance(event, Request):
            client.receive_data(server.send(AcceptConnection(extensions=[PerMessageDeflate()])))
    assert isinstance(next(client.events()), AcceptConnection)
    assert bound(server.connection, cap)
    return client, server


def received(server: WSConnection, data: bytes, chunk: int = 4096) -> list[object]:
    """Feed ``data`` in chunks, as a socket would; stop at the first close."""
    events: list[object] = []
    for at in range(0, len(data), chunk):
        server.receive_data(data[at : at + chunk])
        events += list(server.events())
        if any(isinstance(e, CloseConnection) for e in events):
            break
    return events


def text_of(events: list[object]) -> str:
    return "".join(e.data for e in events if isinstance(e, Message) and isinstance(e.data, str))


def test_messages_under_the_cap_arrive_whole_and_the_context_carries_over() -> None:
    client, server = pair()
    for text in ("hello " * 1000, "hello " * 1000 + "again", "x" * (CAP - 1)):
        assert text_of(received(server, client.send(TextMessage(data=text)))) == text


def test_a_bomb_closes_with_1009_before_more_than_the_cap_is_inflated() -> None:
    client, server = pair()
    events = received(server, client.send(TextMessage(data="0" * (64 << 20))))
    close = events[-1]
    assert isinstance(close, CloseConnection)
    assert close.code == CloseReason.MESSAGE_TOO_BIG
    assert len(text_of(events)) <= CAP


def test_a_message_split_into_frames_is_bounded_as_a_whole() -> None:
    """Each fragment is small; together they pass the cap."""
    client, server = pair()
    data = b"".join(
        client.send(TextMessage(data="0" * 20000, message_finished=index == 7))
        for index in range(8)
    )
    close = received(server, data)[-1]
    assert isinstance(close, CloseConnection)
    assert close.code == CloseReason.MESSAGE_TOO_BIG


def test_without_deflate_nothing_is_replaced() -> None:
    client, server = WSConnection(ConnectionType.CLIENT), WSConnection(ConnectionType.SERVER)
    server.receive_data(client.send(Request(host="h", target="/ws")))
    for event in server.events():
        if isinstance(event, Request):
            client.receive_data(server.send(AcceptConnection()))
    assert not bound(server.connection, CAP)


# -- the shared mode: frames compressed on their own, once per worker ----------------------


def test_shared_offer_keeps_no_context_on_either_side() -> None:
    shared = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
    assert shared_offer("permessage-deflate; client_max_window_bits") == shared
    assert shared_offer("x-webkit-deflate-frame, permessage-deflate") == shared
    assert (
        shared_offer("permessage-deflate; server_max_window_bits=10")
        == shared + "; server_max_window_bits=10"
    )
    # an 8-bit window is more than zlib can honour: the next offer, else none
    assert shared_offer("permessage-deflate; server_max_window_bits=8") is None
    assert shared_offer("permessage-deflate; server_max_window_bits=8, permessage-deflate") == (
        shared
    )
    assert shared_offer("permessage-deflate; server_max_window_bits=x") is None
    assert shared_offer("x-webkit-deflate-frame") is None
    assert shared_offer("") is None


def client_of(offered: str) -> WSConnection:
    """A client (wsproto, as browsers do) whose handshake the hub answered with ``offered``."""
    client, server = WSConnection(ConnectionType.CLIENT), WSConnection(ConnectionType.SERVER)
    server.receive_data(
        client.send(Request(host="h", target="/ws", extensions=[PerMessageDeflate()]))
    )
    extension = PerMessageDeflate()
    extension.accept(offered)  # what the hub's handshake does with the rewritten offer
    for event in server.events():
        if isinstance(event, Request):
            client.receive_data(server.send(AcceptConnection(extensions=[extension])))
    assert isinstance(next(client.events()), AcceptConnection)
    return client


@pytest.mark.parametrize(
    "offered",
    [
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
        "permessage-deflate",  # a client that keeps its context inflates them too
    ],
)
def test_frames_deflated_on_their_own_inflate_in_any_order(offered: str) -> None:
    client = client_of(offered)
    texts = [f'{{"type":"event","n":{n},"message":"{"日志 " * n}"}}' for n in range(40)]
    frames = [deflated_text_frame(text.encode(), 15) for text in texts]
    assert all(frame[0] == 0xC1 for frame in frames)  # FIN, RSV1 (compressed), text
    assert len(frames[-1]) < len(texts[-1].encode()) // 2
    client.receive_data(b"".join(frames + frames[::-1]))
    assert [e.data for e in client.events() if isinstance(e, Message)] == texts + texts[::-1]


def test_a_worker_deflates_each_event_once_per_window_size() -> None:
    envelope = Envelope(
        7,
        load_one(
            {"type": "log_entry", "project": "p", "deployment_id": "d", "message": "hello world"},
            "deployment",
        ),
    )
    cache = deflated_frames(12)
    assert deflated_frames(12) is cache
    assert deflated_frames(15) is not cache
    assert cache.get(envelope) is cache.get(envelope)
    client = client_of(shared_offer("permessage-deflate; server_max_window_bits=12") or "")
    client.receive_data(cache.get(envelope))
    (message,) = [e for e in client.events() if isinstance(e, Message)]
    assert message.data == envelope.frame.decode()
