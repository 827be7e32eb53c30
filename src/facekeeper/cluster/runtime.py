"""Joining or starting a Ray cluster without letting Ray reach past the operator's network.

Left to itself, Ray 2.60 (measured with strace on this machine):
- learns its own IP with a UDP ``connect`` to 8.8.8.8:53, even when told 127.0.0.1 (it "resolves" a
  loopback address to a reachable one), unless it believes multi-node clusters are off;
- starts a dashboard process even with ``include_dashboard=False``, only to run the usage-stats module,
  which asks the cloud metadata services (169.254.169.254, metadata.google.internal) what it runs on and,
  on a ``ray start`` cluster, posts a "usage stats disabled" report to the vendor;
- writes its token under ``~/.ray`` and spills objects into the temp folder.
Each of those breaks a promise of this product (no outbound connection, nothing written outside the
deployment, no template on disk unprotected), so every Ray session facekeeper opens goes through
``connect``, and an operator's ``ray start`` gets the same environment from ``node_environment``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import secrets
import socket
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from facekeeper import telemetry
from facekeeper.errors import ConfigError

TOKEN_ENV = "RAY_AUTH_TOKEN_PATH"
DEFAULT_NAMESPACE = "facekeeper"
# A closed loopback port: an HTTP request that Python code in a Ray process makes through ``requests`` or
# urllib is refused here instead of leaving the machine. Ray's gRPC ignores these variables
# (``grpc.enable_http_proxy`` is off in Ray), so cluster traffic is unaffected.
DEAD_END = "http://127.0.0.1:9"


@dataclass(frozen=True)
class ClusterInfo:
    """What ``connect`` joined or started; ``started_here`` says whether ``disconnect`` stops a cluster."""

    address: str
    started_here: bool
    token_path: Path
    spill_dir: Path | None
    nodes: int


def ensure_token(path: Path) -> Path:
    """The cluster token at ``path`` (0600 in a 0700 folder), made once with 256 random bits.

    Ray would otherwise write its own under ``~/.ray``, outside the deployment. The operator copies this
    file to every node and points ``RAY_AUTH_TOKEN_PATH`` at it there.
    """
    private_dir(path.parent)
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    return path


def private_dir(path: Path) -> Path:
    """A folder only this user can enter (spill files could hold protected templates or photos)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def node_environment(token_path: Path, *, loopback_only: bool, local: Iterable[str] = ()) -> dict[str, str]:
    """The environment every Ray process of a facekeeper cluster needs (set it before ``ray start`` too).

    ``loopback_only``: a one-machine cluster, where Ray can be told multi-node is off so it never looks up
    a route of its own. ``local``: hosts or networks that HTTP may still reach directly (the nodes).
    """
    env = {
        "RAY_AUTH_MODE": "token",  # every RPC into the cluster must carry the token
        TOKEN_ENV: str(token_path),
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_USAGE_STATS_REPORT_URL": DEAD_END + "/",
        "RAY_DISABLE_IMPORT_WARNING": "1",
        # per-call bookkeeping sent to the GCS: it costs latency on every search and serves only dashboards
        "RAY_task_events_report_interval_ms": "0",
        "RAY_enable_metrics_collection": "0",
        "RAY_event_stats": "0",
        **telemetry.OFF,  # in every Ray process from its start, an operator's `ray start` node included
    }
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        env[name] = DEAD_END
    env["no_proxy"] = env["NO_PROXY"] = ",".join(["127.0.0.1", "localhost", "::1", *local])
    if loopback_only:
        env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    return env


@contextlib.contextmanager
def ray_environment(token_path: Path, *, loopback_only: bool, local: Iterable[str] = ()) -> Iterator[None]:
    """Ray processes started inside this block inherit ``node_environment``; this process keeps only the
    token settings afterwards, so the proxy dead end does not leak into the caller's own HTTP clients."""
    env = node_environment(token_path, loopback_only=loopback_only, local=local)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    os.environ.pop("RAY_AUTH_TOKEN", None)
    from ray._private import ray_constants
    from ray._raylet import AuthenticationTokenLoader, Config

    cluster_flag = ray_constants.ENABLE_RAY_CLUSTER
    if loopback_only:
        ray_constants.ENABLE_RAY_CLUSTER = False  # read at call time here; children read the environment
    # Ray's C++ core caches the auth mode and token; an explicitly set mode is never re-read by Ray itself
    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = cluster_flag
        for key, value in saved.items():
            if key in ("RAY_AUTH_MODE", TOKEN_ENV, "RAY_USAGE_STATS_ENABLED"):
                continue  # the driver keeps talking to the cluster with these
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def local_ip_towards(host: str) -> str:
    """This machine's address on the route to ``host`` (a cluster node, never a public probe target).

    A UDP ``connect`` sends nothing; it only asks the kernel which interface it would use.
    """
    ip = ipaddress.ip_address(socket.gethostbyname(host))
    if ip.is_loopback:
        return "127.0.0.1"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((str(ip), 9))
        return str(s.getsockname()[0])


def connect(address: str | None, *, state_dir: Path, num_cpus: int | None = None, spill: bool = False,
            token_path: Path | None = None, node_ip: str | None = None, object_store_memory: int | None = None,
            namespace: str = DEFAULT_NAMESPACE) -> ClusterInfo:
    """Join the cluster at ``address`` (``ray://host:port`` client or ``host:port`` GCS), or start a
    one-machine head on 127.0.0.1 when it is None.

    ``state_dir`` is the deployment's Ray folder (made 0700): the token file ``auth_token`` (created for a
    local head; copied there by the operator to join a cluster; ``token_path`` overrides) and, for a local
    head, the ``spill`` folder. A local head keeps spilling off unless ``spill``: a full object store is
    then an error rather than objects on disk; either way plasma's overflow files go to that folder, not
    /tmp. ``node_ip``: this machine's address in the cluster (default: the local address on the route to
    the head). In this process Ray logs warnings only and never copies workers' output to the driver.
    """
    import ray

    state_dir = Path(state_dir)
    token = Path(token_path or state_dir / "auth_token")
    if ray.is_initialized():
        return _info(address or "local", False, token, None)
    private_dir(state_dir)
    if address is None:
        ensure_token(token)
    elif not token.exists():
        raise ConfigError(f"no Ray token at {token}: copy the cluster's token file there (0600)")
    quiet = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING,
             "namespace": namespace}
    if address is None:
        spill_dir = private_dir(state_dir / "spill")
        with ray_environment(token, loopback_only=node_ip in (None, "127.0.0.1")):
            ray.init(address="local", num_cpus=num_cpus, _node_ip_address=node_ip or "127.0.0.1",
                     object_store_memory=object_store_memory, object_spilling_directory=str(spill_dir),
                     _system_config={"automatic_object_spilling_enabled": spill}, **quiet)
        return _info("local", True, token, spill_dir)
    if num_cpus is not None:
        raise ConfigError("num_cpus is set on each node with `ray start`, not when joining a cluster")
    host = address.removeprefix("ray://").rsplit(":", 1)[0].strip("[]")
    me = node_ip or local_ip_towards(host)
    with ray_environment(token, loopback_only=me == "127.0.0.1", local=[host, me]):
        if address.startswith("ray://"):
            ray.init(address=address, **quiet)
        else:
            ray.init(address=address, _node_ip_address=me, **quiet)
    return _info(address, False, token, None)


def _info(address: str, started_here: bool, token_path: Path, spill_dir: Path | None) -> ClusterInfo:
    import ray

    nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
    return ClusterInfo(address, started_here, token_path, spill_dir, nodes)


def disconnect() -> None:
    """Leave the cluster (and stop it, when this process started it)."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
