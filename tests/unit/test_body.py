"""Request bodies are read whole or refused: size, deadline, transfer coding, broken streams."""

from __future__ import annotations

import io
import socket
from typing import Any

import gevent
import pytest

from app.body import read_body
from app.errors import BadRequest, PayloadTooLarge, RequestTimeout, UnsupportedCoding


class Trickle(io.RawIOBase):
    """A body that arrives one byte per ``delay`` seconds."""

    def __init__(self, data: bytes, delay: float) -> None:
        self.data, self.delay = data, delay

    def read(self, size: int = -1) -> bytes:
        gevent.sleep(self.delay)
        chunk, self.data = self.data[:1], self.data[1:]
        return chunk


class Broken(io.RawIOBase):
    def read(self, size: int = -1) -> bytes:
        raise ValueError("Invalid chunk size: 'zz'")


def environ(stream: Any, **headers: str) -> dict[str, Any]:
    return {"wsgi.input": stream, **headers}


def test_a_body_within_the_limit_is_read_whole() -> None:
    assert read_body(environ(io.BytesIO(b"x" * 1000)), limit=1000, deadline=5) == b"x" * 1000


def test_a_chunked_body_over_the_limit_is_refused_not_cut() -> None:
    """No Content-Length (chunked): the cap is found while reading, never a truncated body."""
    with pytest.raises(PayloadTooLarge):
        read_body(environ(io.BytesIO(b"x" * 1001)), limit=1000, deadline=5)


def test_a_declared_length_over_the_limit_is_refused_before_reading() -> None:
    stream = io.BytesIO(b"")
    with pytest.raises(PayloadTooLarge):
        read_body(environ(stream, CONTENT_LENGTH="1001"), limit=1000, deadline=5)


def test_a_body_slower_than_its_deadline_is_refused() -> None:
    with pytest.raises(RequestTimeout) as caught:
        read_body(environ(Trickle(b"{}" * 10, 0.05)), limit=1000, deadline=0.2)
    assert caught.value.status == 408


@pytest.mark.parametrize("coding", ["gzip, chunked", "deflate", "br"])
def test_transfer_codings_other_than_chunked_are_not_implemented(coding: str) -> None:
    with pytest.raises(UnsupportedCoding) as caught:
        read_body(environ(io.BytesIO(b"{}"), HTTP_TRANSFER_ENCODING=coding), limit=10, deadline=5)
    assert caught.value.status == 501


def test_a_stream_the_server_cannot_decode_is_a_bad_request() -> None:
    with pytest.raises(BadRequest, match="could not be read"):
        read_body(environ(Broken()), limit=10, deadline=5)


def test_a_refused_body_is_never_read_further() -> None:
    """The connection's read side is shut, so gunicorn cannot drain a slow sender."""
    ours, theirs = socket.socketpair()
    try:
        refused = environ(io.BytesIO(b"x" * 11), **{"gunicorn.socket": ours})
        with pytest.raises(PayloadTooLarge):
            read_body(refused, limit=10, deadline=5)
        assert ours.recv(10) == b""  # at its end, whatever the sender still has
    finally:
        ours.close()
        theirs.close()
