"""``facekeeper-vendor federate serve``: the vendor's side of a federated calibration round.

The vendor runs a Flower SuperLink and the ServerApp of ``flower_app`` (one round of SecAgg+ over every
site's release). What reaches the vendor is the sum over sites of their noisy histograms, and how many
sites took part; no site's own release (SecAgg+ masks each one with pairwise and private masks that only
cancel in the sum). ``tables_from_sum`` turns the sum into calibration tables, ``write_calibration`` puts
them with their provenance (sites, pair counts, ε, δ, mechanism) into ``calibration.json``, and
``facekeeper-vendor bundle sign`` signs them into the next bundle version, provenance included.

Like everything in ``vendor/`` this never imports the gallery, the privacy layer or the service.
"""

from __future__ import annotations

import json
import math
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from facekeeper.errors import FederationError, InvalidInput
from facekeeper.evaluation import CALIBRATION_FMRS
from facekeeper.federation.flower import flower_env, stop_group
from facekeeper.federation.histogram import PROTOCOL, Layout, fmr_error_bound, table_points
from facekeeper.matching import CalibrationTable

APP_DIR = Path(__file__).parent / "flower_app"
MIN_FALSE_MATCHES = 30  # as on a site: an FMR f needs 30/f impostor pairs (here: noisy pair counts)


@dataclass(frozen=True)
class Aggregate:
    """What the vendor learns from a round: the summed release and the number of sites in the sum."""

    layout: Layout
    vector: np.ndarray
    sites: int
    completed_at: float

    def to_dict(self) -> dict[str, Any]:
        return {"modes": list(self.layout.modes), "sites": self.sites, "completed_at": self.completed_at,
                "vector": [int(v) for v in self.vector]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Aggregate:
        return cls(Layout(tuple(data["modes"])), np.asarray(data["vector"], np.int64), int(data["sites"]),
                   float(data["completed_at"]))


def _wait_port(host: str, port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise FederationError(f"the SuperLink exited at start (code {proc.returncode})")
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            time.sleep(0.25)
    raise FederationError(f"the SuperLink did not open {host}:{port} within {timeout:g} s")


def serve(sites: int, layout: Layout, work: Path, bin_dir: Path, *, host: str = "127.0.0.1", port: int = 9092,
          timeout: float = 600.0, tls: tuple[Path, Path, Path] | None = None,
          node_keys: Sequence[Path] = ()) -> Aggregate:
    """Run a SuperLink on ``host:port``, submit one round for ``sites`` sites, return the sum when it completed.

    ``tls`` is (certificate, key, CA certificate); without it the SuperLink runs ``--insecure`` (loopback
    tests only). ``node_keys`` (public keys of the sites' SuperNodes, OpenSSH format; needs TLS) turns on
    SuperNode authentication: only those nodes may join. A round counts as completed only when the ServerApp
    wrote the sum of exactly ``sites`` releases: ``flwr run`` reports success as soon as the run is submitted,
    and exits 0 even when SecAgg+ halts, so its exit code proves nothing.
    """
    if sites < 2:
        raise InvalidInput("a round needs at least two sites: the sum of one site is that site's release")
    if node_keys and tls is None:
        raise InvalidInput("SuperNode authentication needs TLS (Flower refuses it over plaintext)")
    work.mkdir(parents=True, exist_ok=True)
    home = work / "flwr-home"
    home.mkdir(exist_ok=True)
    out = work / "aggregate.raw.json"
    out.unlink(missing_ok=True)
    connection = [f'address = "{host}:{port}"']
    connection.append(f'root-certificates = "{tls[2]}"' if tls else "insecure = true")
    (home / "config.toml").write_text('[superlink]\ndefault = "vendor"\n\n[superlink.vendor]\n'
                                      + "\n".join(connection) + "\n", encoding="utf-8")
    env = flower_env(bin_dir, home)
    cmd = [str(bin_dir / "flower-superlink"), "--host", host, "--port", str(port)]
    cmd += ["--ssl-certfile", str(tls[0]), "--ssl-keyfile", str(tls[1]), "--ssl-ca-certfile", str(tls[2])] if tls \
        else ["--insecure"]
    if node_keys:
        cmd.append("--enable-supernode-auth")
    with (work / "superlink.log").open("wb") as log:
        link = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    try:
        _wait_port(host, port, link, 60.0)
        for key in node_keys:
            reg = subprocess.run([str(bin_dir / "flwr"), "supernode", "register", str(key), "vendor", "--format",
                                  "json"], env=env, capture_output=True, text=True, timeout=60,
                                 stdin=subprocess.DEVNULL)
            try:
                registered = json.loads(reg.stdout).get("success") is True
            except ValueError:
                registered = False
            if not registered:
                raise FederationError(f"could not register the SuperNode key {key}: {(reg.stdout + reg.stderr)[-300:]}")
        config = f'num-sites={sites} vector-length={layout.length} out="{out}" timeout={float(timeout)}'
        run = subprocess.run([str(bin_dir / "flwr"), "run", str(APP_DIR), "vendor", "--run-config", config,
                              "--format", "json"], env=env, capture_output=True, text=True, timeout=120,
                             stdin=subprocess.DEVNULL)
        try:
            submitted = json.loads(run.stdout).get("success") is True
        except ValueError:
            submitted = False
        if not submitted:
            raise FederationError(f"flwr run did not submit the round: {(run.stdout + run.stderr)[-500:]}")
        deadline = time.monotonic() + timeout
        while not out.exists() and time.monotonic() < deadline and link.poll() is None:
            time.sleep(0.5)
    finally:
        stop_group(link)
    if not out.exists():
        raise FederationError(f"the round did not complete within {timeout:g} s (fewer than {sites} sites, or"
                              f" SecAgg+ halted): see {work / 'superlink.log'}")
    raw = json.loads(out.read_text(encoding="utf-8"))
    if raw.get("halted"):
        raise FederationError("the round halted: SecAgg+ could not unmask the sum (a site dropped out, or went"
                              f" offline before its reply was collected), though flwr reported success: see {work}")
    if int(raw["sites"]) != sites:
        raise FederationError(f"the round summed {raw['sites']} sites, not {sites}")
    agg = Aggregate(layout, np.asarray(raw["vector"], np.int64), int(raw["sites"]), float(raw["completed_at"]))
    (work / "aggregate.json").write_text(json.dumps(agg.to_dict()) + "\n", encoding="utf-8")
    return agg


def tables_from_sum(agg: Aggregate, *, epsilon: float, sensitivity: int,
                    fmrs: Sequence[float] = CALIBRATION_FMRS) -> tuple[dict[str, CalibrationTable], dict[str, Any]]:
    """One table per mode from the summed histograms, and the provenance to sign with them.

    A point is kept only where the counts support it (``MIN_FALSE_MATCHES / f`` impostor pairs) and where
    the noise does: the stated error bound on its FMR (``histogram.fmr_error_bound``) must be at most half the
    FMR. Otherwise it is withheld, with its bound, in the provenance: a noisy threshold that lets through
    many times the stated rate must never be signed.
    """
    tables: dict[str, CalibrationTable] = {}
    pairs: dict[str, dict[str, int]] = {}
    withheld: list[dict[str, Any]] = []
    scale = 0.0 if math.isinf(epsilon) else sensitivity * len(agg.layout.modes) / epsilon
    date = datetime.fromtimestamp(agg.completed_at, UTC).strftime("%Y-%m-%d")
    for mode, (impostor, genuine) in agg.layout.split(agg.vector).items():
        table_key, bins = PROTOCOL[mode]
        imp_total, gen_total = max(int(impostor.sum()), 0), max(int(genuine.sum()), 0)
        pairs[mode] = {"impostor": imp_total, "genuine": gen_total}
        points = []
        for fmr, threshold in table_points(impostor, fmrs, bins, MIN_FALSE_MATCHES):
            below = max(math.ceil((threshold - bins.low) / bins.width), 1)
            error = fmr_error_bound(fmr, imp_total, below, bins.count, agg.sites, scale)
            if error <= fmr / 2:
                points.append((fmr, threshold))
            else:
                withheld.append({"mode": mode, "fmr": fmr, "error_bound": float(f"{error:.3g}")})
        if not points:
            continue
        tables[table_key] = CalibrationTable(
            table_key, f"federated calibration {date}: {agg.sites} sites, {imp_total} impostor pairs (noisy count),"
                       f" epsilon {epsilon:g} per site, delta 0", imp_total, gen_total, tuple(points))
    provenance = {"method": "federated: per-site DP histograms summed under SecAgg+ (Flower 1.42.0)",
                  "completed_at": datetime.fromtimestamp(agg.completed_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                  "sites": agg.sites, "modes": list(agg.layout.modes), "pairs": pairs,
                  "epsilon_per_site": None if math.isinf(epsilon) else epsilon, "delta": 0.0,
                  "mechanism": f"discrete Laplace per count, sensitivity {sensitivity} per person and mode",
                  "tables": sorted(tables), "withheld": withheld}
    return tables, provenance


def write_calibration(path: Path, tables: dict[str, CalibrationTable], provenance: dict[str, Any]) -> None:
    """Replace the named tables in ``calibration.json`` (others kept; a fused table inside ``fusion``) and
    record where they came from."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"cannot read the calibration tables {path} ({exc})") from None
    doc["tables"] = [tables[t["model_id"]].to_dict() if t["model_id"] in tables else t for t in doc["tables"]]
    fusion = doc.get("fusion")
    if fusion is not None and fusion.get("model_id") in tables:  # accurate mode's fused table lives there
        fusion["table"] = tables[fusion["model_id"]].to_dict()
    doc["provenance"] = provenance
    path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
