"""Bounded permessage-deflate: compressed messages inflate only up to the frame cap."""

from __future__ import annotations

from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Message, Request, TextMessage
from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import CloseReason

from broadcaster.deflate import bound

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
