"""kill -9 of the service (API process and workers) in the middle of a load, then a restart: every
acknowledged enrollment is there, every acknowledged erasure is gone, and the audit chain verifies.

The same code as ``bench/service.py`` (its crash run), shorter and with fewer clients.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from facekeeper.publisher.testing import EvaluationVendor

BENCH = Path(__file__).resolve().parents[2] / "bench" / "service.py"


def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_service", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_service"] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_kill_9_under_load_loses_no_acknowledged_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    service = bench()
    vendor = EvaluationVendor(tmp_path / "vendor")
    monkeypatch.setenv("FACEKEEPER_EVALUATION_VENDOR_KEY", str(vendor.public_path))
    outcome = service.run("crash", tmp_path / "crash", vendor, clients=4, duration=8.0, workers=1, kill_at=0.5,
                          pool=4)
    assert outcome.kill_at is not None and outcome.tally.lost["refused"] + outcome.tally.lost["cut"] > 0
    assert outcome.present_ok > 0
    assert outcome.present_missing == [] and outcome.erased_found == []
    assert outcome.audit_ok
