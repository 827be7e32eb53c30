"""Third-party telemetry is off in every process facekeeper runs or starts, whatever the caller's environment.

The syscall-level proof that nothing is sent is ``tests/test_syscall_egress.py``; these are the cheap checks
that each way a process starts carries the setting.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from facekeeper.cluster.runtime import node_environment
from facekeeper.federation.flower import flower_env


def test_importing_facekeeper_switches_onnxruntime_telemetry_off_before_onnxruntime_loads() -> None:
    code = ("import os, sys; import facekeeper.engine.dlib_onnx;"
            " print(os.environ['ORT_DISABLE_TELEMETRY'], 'onnxruntime' in sys.modules)")
    for inherited in ({"ORT_DISABLE_TELEMETRY": "0"}, {}):
        env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"} | inherited
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == ["1", "True"]


def test_flower_processes_and_ray_nodes_get_it_in_their_environment(monkeypatch: pytest.MonkeyPatch,
                                                                    tmp_path: Path) -> None:
    monkeypatch.setenv("ORT_DISABLE_TELEMETRY", "0")
    assert flower_env(tmp_path, tmp_path / "flwr")["ORT_DISABLE_TELEMETRY"] == "1"
    assert node_environment(tmp_path / "token", loopback_only=True)["ORT_DISABLE_TELEMETRY"] == "1"
