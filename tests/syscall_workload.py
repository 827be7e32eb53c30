"""The whole product at work, for the syscall-level no-egress test: run as ``python -m tests.syscall_workload
SPEC_JSON`` under ``strace -f``; prints one JSON line.

``facekeeper serve`` with two worker processes (forkserver) takes enroll, identify, verify and edge
(descriptor) calls over HTTP (``tests.api.workload``, whose edge terminal runs the engine in this process);
``facekeeper enroll-dir`` enrolls a folder with two worker processes; ``facekeeper eval`` measures accuracy
on a few photos in both modes (dlib, and FaceNet + MTCNN). Every facekeeper process is started with
``ORT_DISABLE_TELEMETRY=0``, so each must switch onnxruntime's telemetry off itself. The service then stays
up, idle, until ``idle`` seconds have passed since its sessions were made: onnxruntime's telemetry asks DNS
about ten seconds after a session is created, and would be in the trace by then.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from facekeeper.api.server import ServerProcess
from facekeeper.api.tenants import Layout
from tests.api import workload

TELEMETRY_ON = {"ORT_DISABLE_TELEMETRY": "0"}  # what each facekeeper process must override on its own


def facekeeper(*args: str) -> dict[str, Any]:
    """The installed ``facekeeper`` command (``python -m facekeeper.cli.main`` ignores ``--json`` in subcommands
    registered from other modules: they read the state of the imported copy of ``cli.main``, not ``__main__``)."""
    done = subprocess.run([str(Path(sys.executable).parent / "facekeeper"), "--json", *args], capture_output=True,
                          text=True, timeout=600, env={**os.environ, **TELEMETRY_ON})
    if done.returncode != 0:
        raise SystemExit(f"facekeeper {args[:3]} exited with {done.returncode}: {done.stderr[-2000:]}")
    return json.loads(done.stdout)


def main(spec: dict[str, Any]) -> dict[str, Any]:
    root = Path(spec["root"])
    with ServerProcess(Layout(root, Path(spec["key_root"])), args=["--workers", "2"], log=root / "serve.log",
                       env=TELEMETRY_ON) as server:
        out: dict[str, Any] = {"service": workload.run(server.url, spec["tokens"])}
        sessions_made = time.monotonic()
        bulk = facekeeper("--home", spec["site"], "enroll-dir", spec["people"], "--workers", "2",
                          "--consent", "checkbox:syscall test")
        out["bulk"] = {"subjects": bulk["subjects"], "templates": bulk["templates"]}
        report = facekeeper("eval", spec["people"], "--out", str(Path(spec["out"]) / "accuracy.md"),
                            "--modes", "both", "--no-plot")
        out["eval_pairs"] = report["genuine_pairs"]
        time.sleep(max(0.0, sessions_made + float(spec["idle"]) - time.monotonic()))
        out["idle_s"] = round(time.monotonic() - sessions_made, 1)
    return out


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))), flush=True)
