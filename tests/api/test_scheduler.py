"""Face work is shared fairly between tenants: one tenant's queue of slow photos never holds another
tenant's call for more than about one call. Asserted on the order calls start and finish, never on time."""

from __future__ import annotations

import asyncio
import functools
import time
from pathlib import Path

import pytest

from facekeeper.api.runner import ProcessRunner, ThreadRunner
from facekeeper.api.scheduler import FairScheduler
from facekeeper.api.tenants import Layout


class Calls:
    """Calls that start when the scheduler lets them and finish when the test says so."""

    def __init__(self, scheduler: FairScheduler) -> None:
        self.scheduler = scheduler
        self.started: list[str] = []
        self._done: dict[str, asyncio.Event] = {}

    def submit(self, tenant: str, tag: str) -> asyncio.Task[str]:
        self._done[tag] = asyncio.Event()

        async def work() -> str:
            self.started.append(tag)
            await self._done[tag].wait()
            return tag

        return asyncio.create_task(self.scheduler.run(tenant, work))

    async def finish(self, tag: str) -> None:
        self._done[tag].set()
        for _ in range(5):  # let the freed slot's next call start
            await asyncio.sleep(0)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_a_tenant_arriving_behind_a_flood_gets_the_next_free_slot() -> None:
    async def scenario() -> list[str]:
        calls = Calls(FairScheduler(1))
        flood = [calls.submit("noisy", f"n{i}") for i in range(5)]
        await settle()
        quiet = calls.submit("quiet", "q0")
        await settle()
        assert calls.started == ["n0"] and calls.scheduler.waiting("noisy") == 4
        for tag in ("n0", "q0", "n1", "n2", "n3", "n4"):
            await calls.finish(tag)
        await asyncio.gather(*flood, quiet)
        return calls.started

    assert asyncio.run(scenario()) == ["n0", "q0", "n1", "n2", "n3", "n4"]


def test_slots_go_to_the_tenant_with_fewest_calls_running_and_round_robin_between_equals() -> None:
    async def scenario() -> list[str]:
        calls = Calls(FairScheduler(2))
        tasks = [calls.submit("a", f"a{i}") for i in range(4)]
        await settle()
        tasks += [calls.submit("b", f"b{i}") for i in range(2)] + [calls.submit("c", f"c{i}") for i in range(2)]
        await settle()
        assert calls.started == ["a0", "a1"]
        for i in range(8):  # the call that started first finishes first
            await calls.finish(calls.started[i])
        await asyncio.gather(*tasks)
        return calls.started

    # a holds both slots; b and c (none running) get the next two, then the tenant served longest ago
    assert asyncio.run(scenario()) == ["a0", "a1", "b0", "c0", "a2", "b1", "c1", "a3"]


def test_a_call_given_up_while_waiting_or_failing_frees_its_place() -> None:
    async def scenario() -> list[str]:
        calls = Calls(FairScheduler(1))
        first = calls.submit("a", "a0")
        gone = calls.submit("a", "a1")
        await settle()
        gone.cancel()
        await settle()
        later = calls.submit("b", "b0")
        await settle()
        await calls.finish("a0")

        async def boom() -> None:
            raise ValueError("failed")

        await calls.finish("b0")
        with pytest.raises(ValueError):
            await calls.scheduler.run("a", boom)
        last = calls.submit("a", "a2")
        await calls.finish("a2")
        await asyncio.gather(first, later, last)
        return calls.started

    assert asyncio.run(scenario()) == ["a0", "b0", "a2"]


def flood_then_one(runner: ThreadRunner | ProcessRunner, seconds: float, flood: int) -> list[str]:
    """``flood`` slow calls of tenant 'noisy', then one of 'quiet': the order in which they finish."""

    async def scenario() -> list[str]:
        finished: list[str] = []

        async def one(tenant: str, tag: str) -> None:
            await runner.submit(tenant, "photo", functools.partial(time.sleep, seconds))
            finished.append(tag)

        tasks = [asyncio.create_task(one("noisy", f"n{i}")) for i in range(flood)]
        tasks.append(asyncio.create_task(one("quiet", "q")))
        await asyncio.gather(*tasks)
        return finished

    return asyncio.run(scenario())


def test_worker_processes_serve_a_quiet_tenant_after_one_of_a_noisy_tenants_calls(tmp_path: Path) -> None:
    runner = ProcessRunner(Layout(tmp_path / "root", tmp_path / "keys"), 1)
    try:
        runner.warm_up()
        finished = flood_then_one(runner, 0.2, 5)
    finally:
        runner.close()
    assert finished.index("q") == 1, finished  # one call of the flood was already running; no more


def test_threads_serve_a_quiet_tenant_after_one_of_a_noisy_tenants_calls(tmp_path: Path) -> None:
    runner = ThreadRunner(Layout(tmp_path / "root", tmp_path / "keys"), 1)
    try:
        finished = flood_then_one(runner, 0.05, 5)
    finally:
        runner.close()
    assert finished.index("q") == 1, finished


def test_light_calls_do_not_wait_for_photo_turns(tmp_path: Path) -> None:
    runner = ThreadRunner(Layout(tmp_path / "root", tmp_path / "keys"), 1)

    async def scenario() -> list[str]:
        order: list[str] = []

        async def one(cost: str, tag: str, seconds: float) -> None:
            await runner.submit("acme", cost, functools.partial(time.sleep, seconds))  # type: ignore[arg-type]
            order.append(tag)

        photos = [asyncio.create_task(one("photo", f"p{i}", 0.2)) for i in range(3)]
        await asyncio.sleep(0)
        await one("light", "light", 0.0)
        await asyncio.gather(*photos)
        return order

    try:
        assert asyncio.run(scenario())[0] == "light"
    finally:
        runner.close()
