"""Per-key rate limiting: a token bucket per API key, in the API process.

A bucket holds up to ``burst`` tokens and refills at ``rate`` per second; each request takes one. A gate
that is quiet for a while can then serve a queue of people at once (the burst), while a runaway client
or a stolen key is held to the steady rate. The answer to an empty bucket is 429 with ``Retry-After``:
the time until one token is back. Buckets live in memory, so a restart forgets them (erring towards
serving), and they are checked before the request body is read.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from facekeeper.errors import RateLimited


class TokenBucket:
    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._at = clock()

    def take(self) -> float:
        """0.0 when a token was taken, else the seconds until one will be there."""
        now = self._clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.rate


class RateLimiter:
    """One bucket per key id; ``check`` raises ``RateLimited`` with ``retry_after`` (whole seconds, >= 1)."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()

    def check(self, key_id: str) -> None:
        with self._lock:
            bucket = self._buckets.get(key_id)
            if bucket is None:
                bucket = self._buckets[key_id] = TokenBucket(self.rate, self.burst, self._clock)
            wait = bucket.take()
        if wait > 0:
            raise RateLimited(f"over the limit of {self.rate:g} requests per second for this key: retry later",
                              retry_after=max(1, int(wait + 0.999)))
