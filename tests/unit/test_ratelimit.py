"""Token buckets: bursts, refill, Retry-After, bounded memory, loopback exemption."""

from __future__ import annotations

import pytest

from app.config import Settings
from app.errors import RateLimited
from app.ratelimit import RateLimits, TokenBuckets


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_is_allowed_then_the_rate_applies() -> None:
    clock = Clock()
    buckets = TokenBuckets(2.0, 3, clock=clock)
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a") == pytest.approx(0.5)
    clock.now += 0.5
    assert buckets.take("a") == 0.0
    assert buckets.take("a") > 0


def test_keys_have_their_own_buckets() -> None:
    buckets = TokenBuckets(1.0, 1, clock=Clock())
    assert buckets.take("a") == 0.0
    assert buckets.take("b") == 0.0
    assert buckets.take("a") > 0


def test_refill_never_exceeds_the_burst() -> None:
    clock = Clock()
    buckets = TokenBuckets(100.0, 2, clock=clock)
    buckets.take("a")
    clock.now += 3600
    assert [buckets.take("a") for _ in range(3)][2] > 0


def test_a_zero_rate_means_no_limit() -> None:
    buckets = TokenBuckets(0.0, 1, clock=Clock())
    assert all(buckets.take("a") == 0.0 for _ in range(1000))


def test_memory_is_bounded_by_forgetting_the_quietest_key() -> None:
    buckets = TokenBuckets(1.0, 1, max_keys=3, clock=Clock())
    for key in ("a", "b", "c", "d"):
        buckets.take(key)
    assert buckets.take("a") == 0.0  # forgotten, so it starts full again
    assert buckets.take("d") > 0  # still remembered


def limits(clock: Clock, **overrides: object) -> RateLimits:
    base: dict[str, object] = {
        "ingest_address_rate": 1.0,
        "ingest_address_burst": 1,
        "ingest_rate": 1.0,
        "ingest_burst": 1,
        "ws_connect_rate": 1.0,
        "ws_connect_burst": 1,
    }
    return RateLimits(Settings(**{**base, **overrides}), clock=clock)  # type: ignore[arg-type]


def test_refusal_carries_retry_after_in_whole_seconds() -> None:
    checks = limits(Clock(), ingest_address_rate=0.25)
    checks.check_ingest_address("203.0.113.7")
    with pytest.raises(RateLimited) as refused:
        checks.check_ingest_address("203.0.113.7")
    assert refused.value.headers == {"Retry-After": "4"}
    assert refused.value.details["limit"] == "ingest_address"
    assert refused.value.status == 429


@pytest.mark.parametrize("address", ["127.0.0.1", "127.8.9.10", "::1", None])
def test_loopback_clients_are_exempt_by_default(address: str | None) -> None:
    checks = limits(Clock())
    for _ in range(10):
        checks.check_ingest_address(address)
        checks.check_ingest_identity("token#0", address)
        checks.check_ws_connect(address)


def test_loopback_clients_are_limited_when_asked() -> None:
    checks = limits(Clock(), rate_limit_loopback=True)
    checks.check_ws_connect("127.0.0.1")
    with pytest.raises(RateLimited):
        checks.check_ws_connect("127.0.0.1")


def test_anonymous_senders_are_limited_by_address_only() -> None:
    """With no credentials configured every sender is "anonymous"; one bucket would starve all."""
    checks = limits(Clock())
    for _ in range(5):
        checks.check_ingest_identity("anonymous", "203.0.113.7")
    checks.check_ingest_identity("token#1", "203.0.113.7")
    with pytest.raises(RateLimited) as refused:
        checks.check_ingest_identity("token#1", "198.51.100.2")
    assert refused.value.details["limit"] == "ingest_identity"
