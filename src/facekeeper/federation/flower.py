"""Starting and stopping Flower's programs, shared by the site (``join``) and the vendor (``vendor.federate``).

Flower runs from its own environment (``make flower-env``: ``.venv-flower``), because flwr 1.42.0 pins
protobuf, typer, rich, fastapi, starlette and uvicorn below facekeeper's; facekeeper only starts its
programs. Three Flower defaults reach the network or the package index, and are switched off for every
process started here (``FLOWER_ENV``), with facekeeper's list of third-party telemetry (``telemetry.OFF``).
Each process runs in a session of its own and is ended with everything it started.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
from pathlib import Path

from facekeeper import telemetry
from facekeeper.errors import FederationError

ENV_FLOWER_BIN = "FACEKEEPER_FLOWER_BIN"
FLOWER_ENV = {"FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1",
              "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1", **telemetry.OFF}


def flower_bin(configured: str = "") -> Path:
    """The folder holding Flower's programs: ``[federation] flower_bin``, env, then ``PATH``."""
    for candidate in (configured, os.environ.get(ENV_FLOWER_BIN, "")):
        if candidate:
            path = Path(candidate)
            if (path / "flower-supernode").exists():
                return path
            raise FederationError(f"no flower-supernode in {path}: install the Flower environment there"
                                  " (make flower-env, see docs/federation.md)")
    found = shutil.which("flower-supernode")
    if found is None:
        raise FederationError("Flower is not installed: create its environment (make flower-env) and set"
                              f" [federation] flower_bin or {ENV_FLOWER_BIN} to its bin folder")
    return Path(found).parent


def flower_env(bin_dir: Path, flwr_home: Path) -> dict[str, str]:
    """The environment of a Flower process: network defaults off, its own Flower home, its helpers on PATH."""
    env = {**os.environ, **FLOWER_ENV, "FLWR_HOME": str(flwr_home)}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"  # Flower starts its own helpers by name
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` now (Linux ``/proc``): Flower starts some in sessions of their own."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def stop_group(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """End a process we started in its own session, with everything it started (even in other sessions:
    Flower's SuperExec detaches the apps it runs, which would otherwise outlive a SuperLink stopped mid-round)."""
    below = descendants(proc.pid)
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    for pid in below:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def node_keypair(folder: Path) -> tuple[Path, Path]:
    """A SuperNode key pair for SuperLink authentication: ``supernode.key`` (0600) and ``supernode.pub``
    (OpenSSH, EC P-384), the public half for the vendor to register."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP384R1())
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    private, public = folder / "supernode.key", folder / "supernode.pub"
    if private.exists():
        raise FederationError(f"{private} exists already: keep it, or remove it to make a new pair")
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                   serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                                     serialization.PublicFormat.OpenSSH) + b"\n")
    return private, public
