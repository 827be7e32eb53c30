"""The token bucket: a burst for a quiet key, then the steady rate, with an honest Retry-After."""

from __future__ import annotations

import pytest

from facekeeper.api.ratelimit import RateLimiter, TokenBucket
from facekeeper.errors import RateLimited


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_bucket_allows_a_burst_then_the_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=2.0, burst=3, clock=clock)
    assert [bucket.take() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take() == pytest.approx(0.5)
    clock.now += 0.5
    assert bucket.take() == 0.0
    clock.now += 100
    assert sum(bucket.take() == 0.0 for _ in range(5)) == 3  # never more than the burst


def test_limiter_is_per_key_and_says_when_to_retry() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=1.0, burst=2, clock=clock)
    limiter.check("a")
    limiter.check("a")
    with pytest.raises(RateLimited) as info:
        limiter.check("a")
    assert info.value.details["retry_after"] == 1
    limiter.check("b")  # another key has its own bucket
