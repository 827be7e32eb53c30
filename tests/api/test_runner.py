"""The runners: photo calls in worker processes, light calls in the API process, a dead worker survived."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from facekeeper import contract
from facekeeper.api.runner import ProcessRunner, ThreadRunner, invoke
from facekeeper.errors import InvalidInput, ServiceUnavailable
from facekeeper.privacy import Actor
from facekeeper.service import Service
from tests.api.conftest import Root
from tests.conftest import london

ADMIN = Actor("ak_test", "admin", "acme")


def test_a_worker_killed_under_the_service_costs_one_503_then_the_pool_recovers(root: Root) -> None:
    runner = ProcessRunner(root.layout, 1)
    photo = london("001").read_bytes()
    try:
        (pid,) = runner.warm_up()
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
        with pytest.raises(ServiceUnavailable):
            asyncio.run(runner.call(ADMIN, contract.of(Service.detect), photo, 5))
        faces = asyncio.run(runner.call(ADMIN, contract.of(Service.detect), photo, 5))
        assert len(faces) == 1 and runner.worker_pids() != {pid}
        assert asyncio.run(runner.call(ADMIN, contract.of(Service.subjects))) == []  # a light call, in this process
    finally:
        runner.close()


def test_only_declared_operations_run_and_always_as_the_caller(root: Root) -> None:
    svc = Service.open(root.layout.data_dir("acme"))
    try:
        with pytest.raises(InvalidInput):
            invoke(svc, ADMIN, "_require", ("enroll",), {})
        with pytest.raises(InvalidInput):
            invoke(svc, ADMIN, "gallery", (), {})
        invoke(svc, ADMIN, "subjects", (), {"actor": Actor("someone-else", "admin", "acme")})
        last = svc.privacy.audit.entries()[-1]
        assert (last.actor, last.action) == ("ak_test", "subject.list")
    finally:
        svc.close()
    assert {op.name for op in contract.table() if op.cost == "photo"} == {
        "detect", "enroll", "enroll_dir", "verify", "identify", "liveness_submit"}


def test_thread_runner_reopens_a_tenant_when_its_settings_change(root: Root) -> None:
    runner = ThreadRunner(root.layout, 1)
    try:
        asyncio.run(runner.call(ADMIN, contract.of(Service.subjects)))
        asyncio.run(runner.call(ADMIN, contract.of(Service.set_notice), version="v2"))
        before = runner._pool("acme")._idle[0][0]
        os.utime(root.layout.data_dir("acme") / "facekeeper.toml", ns=(1, time.time_ns() + 10**9))
        asyncio.run(runner.call(ADMIN, contract.of(Service.subjects)))
        assert runner._pool("acme")._idle[0][0] is not before
    finally:
        runner.close()
