"""At most N requests in flight per client address, counted until each response ends."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

from app.address_caps import AddressCaps

Started = list[tuple[str, list[tuple[str, str]]]]


def streaming_app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"part"
    yield b"rest"


def call(app: AddressCaps, address: str) -> tuple[str, list[bytes], Iterator[bytes]]:
    """Start a request: its status, the first part of its body, and the rest, unread."""
    started: Started = []
    result = iter(app({"REMOTE_ADDR": address}, lambda s, h: started.append((s, h))))
    first = [next(result, b"")]
    return started[0][0], first, result


def test_requests_beyond_the_cap_are_refused_with_the_contract_error() -> None:
    caps = AddressCaps(streaming_app, 2, limit_loopback=False)
    answering = [call(caps, "203.0.113.9") for _ in range(2)]  # both are being answered
    assert [status for status, _, _ in answering] == ["200 OK", "200 OK"]
    status, first, rest = call(caps, "203.0.113.9")
    assert status.startswith("429")
    answer = orjson.loads(b"".join([*first, *rest]))
    assert answer["error"]["code"] == "too_many_connections_from_address"
    assert answer["error"]["details"] == {"limit": 2, "retry_after": 5}
    assert call(caps, "203.0.113.10")[0] == "200 OK"  # another address is not affected


def test_a_finished_response_frees_its_place() -> None:
    caps = AddressCaps(streaming_app, 1, limit_loopback=False)
    _, first, rest = call(caps, "198.51.100.1")
    assert b"".join([*first, *rest]) == b"partrest"
    assert caps.in_flight == {}
    assert call(caps, "198.51.100.1")[0] == "200 OK"


def test_loopback_is_exempt_unless_limited_too() -> None:
    exempt = AddressCaps(streaming_app, 1, limit_loopback=False)
    assert [call(exempt, "127.0.0.1")[0] for _ in range(3)] == ["200 OK"] * 3
    limited = AddressCaps(streaming_app, 1, limit_loopback=True)
    held = call(limited, "127.0.0.1")  # still being answered while the next one comes
    assert held[0] == "200 OK"
    assert call(limited, "127.0.0.1")[0].startswith("429")
