"""Fair sharing of face work between tenants.

Photo calls cost from milliseconds to seconds (a 6000x6000 PNG is cheap to send and slow to decode), and
a worker runs one at a time. A single first-come queue let one tenant, within its rate limit, fill the
queue and hold another tenant's gate for seconds. ``FairScheduler`` keeps one queue per tenant instead:
at most ``slots`` calls run at once (one per worker), and each slot that frees goes to the waiting tenant
with the fewest calls running, ties going to the tenant served longest ago (round robin). A tenant that
arrives while another fills every slot therefore waits for the first call to finish, never behind the
other's queue; within a tenant, calls keep their order.

The scheduler takes the tenant and a ``Cost`` class as plain values, so any dispatcher can use it. It is
safe across threads and event loops (tests drive a runner from successive ``asyncio.run`` calls).
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")


@dataclass(eq=False)
class _Waiter:
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[None]
    granted: bool = field(default=False)


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class FairScheduler:
    """At most ``slots`` calls at once, shared out between tenants as the module says."""

    def __init__(self, slots: int) -> None:
        if slots < 1:
            raise ValueError("a scheduler needs at least one slot")
        self.slots = slots
        self._busy = 0
        self._running: dict[str, int] = {}
        self._last_turn: dict[str, int] = {}
        self._waiting: dict[str, deque[_Waiter]] = {}
        self._turns = itertools.count()
        self._lock = threading.Lock()

    async def run(self, tenant: str, work: Callable[[], Awaitable[T]]) -> T:
        """``await work()`` once ``tenant`` has a slot; the slot is freed when it returns or raises."""
        await self._acquire(tenant)
        try:
            return await work()
        finally:
            self._release(tenant)

    def waiting(self, tenant: str) -> int:
        """Calls of ``tenant`` queued for a slot (metrics, tests)."""
        with self._lock:
            return len(self._waiting.get(tenant, ()))

    def _take(self, tenant: str) -> None:
        self._busy += 1
        self._running[tenant] = self._running.get(tenant, 0) + 1
        self._last_turn[tenant] = next(self._turns)

    async def _acquire(self, tenant: str) -> None:
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._busy < self.slots and not self._waiting:
                self._take(tenant)
                return
            waiter = _Waiter(loop, loop.create_future())
            self._waiting.setdefault(tenant, deque()).append(waiter)
        try:
            await waiter.future
        except asyncio.CancelledError:
            with self._lock:
                granted = waiter.granted
                if not granted:
                    queue = self._waiting[tenant]
                    queue.remove(waiter)
                    if not queue:
                        del self._waiting[tenant]
            if granted:  # the slot was handed over as the caller gave up: pass it on
                self._release(tenant)
            raise

    def _release(self, tenant: str) -> None:
        with self._lock:
            self._busy -= 1
            self._running[tenant] -= 1
            if not self._running[tenant]:
                del self._running[tenant]
            while self._waiting:
                nxt = min(self._waiting, key=lambda t: (self._running.get(t, 0), self._last_turn.get(t, -1)))
                queue = self._waiting[nxt]
                waiter = queue.popleft()
                if not queue:
                    del self._waiting[nxt]
                waiter.granted = True
                self._take(nxt)
                try:
                    waiter.loop.call_soon_threadsafe(_wake, waiter.future)
                    return
                except RuntimeError:  # its event loop has closed: nobody is waiting there any more
                    self._busy -= 1
                    self._running[nxt] -= 1
                    if not self._running[nxt]:
                        del self._running[nxt]
