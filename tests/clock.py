"""A clock tests can move: every facade and store takes its time from an injected callable."""

from __future__ import annotations


class Clock:
    def __init__(self, now: float = 1_900_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
