"""``facekeeper federate join``: one federated calibration round, from the site's side.

Started by the site's operator only; nothing in facekeeper connects anywhere otherwise. In order:

1. policy: the actor may run it, ``model-improvement`` is a declared purpose, and at least one subject has a
   live consent for it (only those subjects are measured; none, and the site takes no part);
2. budget: the ε spent by rounds in the last 365 days (read back from the audit chain, so the accounting is
   as tamper-evident as the chain) plus this round's must stay within ``[federation] yearly_epsilon``;
3. release: per mode, the impostor and genuine histograms of the planned pairs (``pairs``: each person's
   share capped, sensitivity Δ = 3·partners·per_partner + genuine), plus discrete Laplace noise of scale
   Δ·modes/ε, clipped to what SecAgg+ carries. The release is audited *before* it leaves (what, its size,
   its SHA-256, ε, δ), and the ε counts as spent whether or not the round then completes;
4. the Flower SuperNode (a separate process from the Flower environment, see docs/federation.md) is given
   the release file and nothing else, joins the vendor's SuperLink, and takes part in SecAgg+: what it
   sends is masked. The round counts as completed only when this node finished SecAgg+'s last stage
   (``unmask``); the outcome is audited as a second entry.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path
from typing import Any

import numpy as np

from facekeeper.config import Settings
from facekeeper.errors import ConsentRequired, FederationError, InvalidInput, PrivacyBudgetSpent
from facekeeper.federation.calibrate import PURPOSE, SiteCalibration
from facekeeper.federation.flower import flower_bin, flower_env, free_port, stop_group
from facekeeper.federation.histogram import PROTOCOL, Layout, Mechanism, histogram
from facekeeper.federation.pairs import Mode, PairPlan
from facekeeper.privacy import Actor, Privacy

ROUND = "federation.round"
ROUND_END = "federation.round.end"
YEAR_SECONDS = 365 * 86_400.0
LINGER = 20.0  # seconds a node stays online after its last SecAgg+ stage (see run_supernode)
RETRY = 5.0  # seconds before a node turned away at the door tries again
CLIP = 2**24  # the ClientApp's bound (fk_calibration.CLIP): counts beyond it cannot be summed exactly


@dataclass(frozen=True)
class Release:
    """What leaves the site in a round (before SecAgg+ masks it): noisy integer counts, nothing else."""

    layout: Layout
    vector: np.ndarray  # int64, layout.length
    epsilon: float
    sensitivity: int
    scale: float
    at: float

    @property
    def delta(self) -> float:
        return 0.0

    @property
    def size(self) -> int:
        return int(self.vector.astype("<i8").nbytes)

    @property
    def digest(self) -> str:
        return sha256(self.vector.astype("<i8").tobytes()).hexdigest()


@dataclass(frozen=True)
class RoundResult:
    release: Release
    completed: bool
    stages: list[str]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"completed": self.completed, "stages": self.stages, "seconds": round(self.seconds, 1),
                "sent": {"modes": list(self.release.layout.modes), "counts": len(self.release.vector),
                         "bytes": self.release.size, "sha256": self.release.digest},
                "epsilon": self.release.epsilon, "delta": self.release.delta,
                "sensitivity": self.release.sensitivity}


class Federation:
    def __init__(self, settings: Settings, privacy: Privacy, calibration: SiteCalibration) -> None:
        self.settings = settings
        self.privacy = privacy
        self.calibration = calibration

    def plan(self) -> PairPlan:
        f = self.settings.federation
        return PairPlan(f.partners, f.per_partner, f.genuine)

    def spent(self, now: float) -> float:
        """ε released by this site's rounds in the last 365 days, from the audit chain."""
        return sum(float(e.detail.get("epsilon", 0.0)) for e in self.privacy.audit.entries(since=now - YEAR_SECONDS)
                   if e.action == ROUND and e.outcome == "released")

    def budget(self, now: float) -> dict[str, float]:
        spent = self.spent(now)
        yearly = self.settings.federation.yearly_epsilon
        return {"yearly_epsilon": yearly, "spent_last_365_days": spent, "left": max(yearly - spent, 0.0),
                "round_epsilon": self.settings.federation.round_epsilon}

    def prepare(self, actor: Actor, layout: Layout, superlink: str, *, epsilon: float | None = None,
                rng: np.random.Generator | None = None) -> Release:
        """Consent, budget, histograms, noise, audit: the release, charged to the budget before it leaves."""
        epsilon = self.settings.federation.round_epsilon if epsilon is None else epsilon
        if not epsilon > 0:
            raise InvalidInput("epsilon must be positive")
        plan = self.plan()
        rng = rng or np.random.default_rng()
        with self.privacy.operation(actor, ROUND, PURPOSE) as op:
            if not self.calibration.participants(op.now):
                raise ConsentRequired(f"no subject has a live {PURPOSE} consent: this site takes no part in"
                                      " federated calibration", purpose=PURPOSE)
            spent, yearly = self.spent(op.now), self.settings.federation.yearly_epsilon
            if spent + epsilon > yearly + 1e-12:
                raise PrivacyBudgetSpent(
                    f"this round would spend epsilon {epsilon:g}, and {spent:g} of the yearly {yearly:g} was spent"
                    " in the last 365 days: the site takes no part until older rounds age out (or the budget in"
                    " [federation] yearly_epsilon is raised, which weakens the guarantee)",
                    spent=spent, yearly=yearly)
            mech = Mechanism(epsilon, plan.sensitivity, len(layout.modes))
            parts = {}
            for name in layout.modes:
                mode = self._mode(name)
                d = self.calibration.distances(mode, plan, op.now)
                bins = PROTOCOL[name][1]
                parts[name] = (histogram(d.impostor, bins), histogram(d.genuine, bins))
            exact = layout.join(parts)
            vector = np.clip(exact + mech.noise(rng, len(exact)), -CLIP, CLIP).astype(np.int64)
            release = Release(layout, vector, epsilon, plan.sensitivity, mech.scale, op.now)
            self.privacy.record(op, "released", detail={
                "epsilon": epsilon, "delta": 0.0, "sensitivity": plan.sensitivity, "noise_scale": mech.scale,
                "modes": list(layout.modes), "counts": len(vector), "bytes": release.size,
                "sha256": release.digest, "superlink": superlink[:120], "spent_before": spent})
            return release

    def _mode(self, name: str) -> Mode:
        for mode in self.calibration.modes.values():
            if mode.name == name and mode.table_key == PROTOCOL[name][0]:
                return mode
        raise InvalidInput(f"this site cannot calibrate mode {name} for table {PROTOCOL[name][0]}")

    def join(self, actor: Actor, superlink: str, layout: Layout, *, insecure: bool = False,
             root_certificates: Path | None = None, auth_key: Path | None = None, timeout: float = 600.0,
             epsilon: float | None = None, rng: np.random.Generator | None = None) -> RoundResult:
        """Prepare the release, run a SuperNode until this node has finished the round, stop it, audit."""
        check_address(superlink)
        if not insecure and root_certificates is None:
            raise InvalidInput("give --root-certificates (the SuperLink's CA) or, on a test network, --insecure")
        bin_dir = flower_bin(self.settings.federation.flower_bin)
        release = self.prepare(actor, layout, superlink, epsilon=epsilon, rng=rng)
        started = time.monotonic()
        work = Path(tempfile.mkdtemp(prefix="round-", dir=self._work_root()))
        stages: list[str] = []
        try:
            stages = run_supernode(release, superlink, bin_dir, work, insecure=insecure,
                                   root_certificates=root_certificates, auth_key=auth_key, timeout=timeout)
        finally:
            completed = "unmask" in stages
            self.privacy.audit.record(actor, ROUND_END, "completed" if completed else "incomplete",
                                      at=self.privacy.clock(), purpose=PURPOSE,
                                      detail={"sha256": release.digest, "stages": stages})
            if completed:
                shutil.rmtree(work, ignore_errors=True)
        if not completed:
            raise FederationError(f"the round did not complete (stages done: {', '.join(stages) or 'none'}); the"
                                  f" epsilon stays spent. SuperNode log: {work / 'supernode.log'}",
                                  stages=stages)
        return RoundResult(release, True, stages, time.monotonic() - started)

    def _work_root(self) -> Path:
        root = self.settings.data_dir / "federation"
        root.mkdir(mode=0o700, exist_ok=True)
        return root


def check_address(address: str) -> None:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidInput(f"--superlink takes HOST:PORT, not {address!r}")


def run_supernode(release: Release, superlink: str, bin_dir: Path, work: Path, *, insecure: bool,
                  root_certificates: Path | None, auth_key: Path | None, timeout: float,
                  linger: float = LINGER) -> list[str]:
    """Run ``flower-supernode`` on the release until this node completed SecAgg+ (or it stops, or time is up).

    After its last stage the node stays online ``linger`` seconds: the SuperLink answers "node unavailable"
    for the reply of a node that went offline before the ServerApp collected it, and SecAgg+ then halts for
    everyone. A node that exits before any stage (turned away: its key not registered yet, the SuperLink not
    up yet) is started again until the deadline. Returns the SecAgg+ stages this node completed, in order.
    The node runs in its own process group, which is ended (SIGTERM, then SIGKILL) before this returns.
    """
    payload, status, log = work / "release.npy", work / "status.jsonl", work / "supernode.log"
    np.save(payload, release.vector)
    deadline = time.monotonic() + timeout
    stages: list[str] = []
    while time.monotonic() < deadline and not stages:
        cmd = [str(bin_dir / "flower-supernode"), "--superlink", superlink, "--port", str(free_port()),
               "--node-config", f'payload="{payload}" status="{status}"',
               "--max-wait-time", str(max(int(deadline - time.monotonic()), 1))]
        cmd += ["--insecure"] if insecure else ["--root-certificates", str(root_certificates)]
        if auth_key is not None:
            cmd += ["--auth-supernode-private-key", str(auth_key)]
        with log.open("ab") as out:
            proc = subprocess.Popen(cmd, env=flower_env(bin_dir, work / "flwr-home"), stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            while time.monotonic() < deadline:
                stages = read_stages(status)
                if "unmask" in stages or proc.poll() is not None:
                    break
                time.sleep(0.25)
            if "unmask" in stages:
                end = min(time.monotonic() + linger, deadline)
                while time.monotonic() < end and proc.poll() is None:
                    time.sleep(0.25)
            stages = read_stages(status)
        finally:
            stop_group(proc)
        if not stages and time.monotonic() < deadline:
            # the SuperLink turned the node away before the round started (e.g. its key is not registered
            # yet): try again until the deadline; a node that took part in a stage is never restarted
            time.sleep(min(RETRY, max(deadline - time.monotonic(), 0)))
    return stages


def read_stages(status: Path) -> list[str]:
    try:
        lines = status.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a line being written
        if entry.get("ok"):
            out.append(str(entry["stage"]))
    return out


