"""Federated calibration between local sites, over real Flower processes (SuperLink, SuperNodes, SecAgg+).

Usage:
  python bench/federation.py --demo [--workdir DIR]   one round between two sites of synthetic templates
  python bench/federation.py [--workdir DIR]          five sites: faces94 split in four + London (slow)

Each site is a complete facekeeper deployment (its own key, gallery, audit chain) whose people consented to
model-improvement; templates are enrolled as descriptors through ``Gallery.enroll``. The vendor runs
``facekeeper-vendor federate serve``, every site ``facekeeper federate join``, each in its own process. The
full run prints each site's own table (``facekeeper calibrate``), four federated rounds (no noise with the
self-calibration caps; no noise, epsilon 1 and epsilon 8 with the federation caps), and per site, at FMR
1e-2 and 1e-3, the real FMR and FNMR (every pair of the site's photos) at the thresholds of each table.
Needs the Flower environment (make flower-env). Prints markdown tables.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from facekeeper import evaluation  # noqa: E402
from facekeeper.config import EngineSettings  # noqa: E402
from facekeeper.engine import Engine  # noqa: E402
from facekeeper.federation.flower import ENV_FLOWER_BIN, free_port  # noqa: E402
from facekeeper.federation.join import Federation  # noqa: E402
from facekeeper.federation.pairs import PairPlan  # noqa: E402
from facekeeper.matching import CalibrationTable  # noqa: E402
from facekeeper.privacy import ConsentForm  # noqa: E402
from facekeeper.publisher.federate import Aggregate, tables_from_sum  # noqa: E402
from facekeeper.service import Service  # noqa: E402

FACES94 = ROOT.parent / "shared" / "faces" / "calibration" / "faces94"
LONDON = ROOT.parent / "shared" / "faces" / "london"
FLOWER = Path(os.environ.get(ENV_FLOWER_BIN) or ROOT / ".venv-flower" / "bin")
BIN = Path(sys.executable).parent
FORM = ConsentForm("checkbox", "federation benchmark")
NOTICE = {"version": "bench", "controller": "Bench site", "contact": "privacy@bench.invalid",
          "retention": "one year", "rights": "access, withdrawal, erasure"}


def synthetic(rng: np.random.Generator, people: int, photos: int) -> dict[str, np.ndarray]:
    centres = rng.normal(0.0, 0.047, (people, 128))
    return {f"person{i:04d}": c + rng.normal(0.0, 0.025, (photos, 128)) for i, c in enumerate(centres)}


def embedded(root: Path, cache: Path, engine: Engine) -> dict[str, np.ndarray]:
    """Descriptors per person of a folder of people (cached: embedding faces94 takes a few minutes)."""
    if cache.exists():
        data = np.load(cache)
        return {k: data[k] for k in data.files}
    samples = evaluation.labelled_folder(root)
    run = evaluation.embed_photos(engine, [p for p, _ in samples], workers=2)
    owner = dict(samples)
    people: dict[str, list[np.ndarray]] = {}
    for path, vec in zip(run.paths, run.vectors, strict=True):
        people.setdefault(owner[path], []).append(vec)
    out = {k: np.stack(v) for k, v in people.items()}
    np.savez(cache, **out)
    return out


def build_site(home: Path, people: dict[str, np.ndarray], engine: Engine, yearly: float = math.inf) -> Path:
    svc = Service.init(home / "data", home / "keys")
    svc.engine = engine
    svc.set_notice(**NOTICE)
    svc.settings.federation.yearly_epsilon = yearly
    svc.settings.federation.flower_bin = str(FLOWER)
    svc.settings.save()
    for sid, vectors in people.items():
        svc.grant_consent(sid, "access-control", FORM)
        svc.grant_consent(sid, "model-improvement", FORM)
        svc.gallery.enroll(sid, vectors, engine.model_id, pseudonym=svc.privacy.registry.find(sid))
    svc.close()
    return home / "data"


def set_round(home: Path, epsilon: float, plan: PairPlan) -> None:
    with Service.open(home) as svc:
        f = svc.settings.federation
        f.round_epsilon, f.partners, f.per_partner, f.genuine = epsilon, plan.partners, plan.per_partner, plan.genuine
        svc.settings.save()


def federated_round(homes: list[Path], work: Path, epsilon: float,
                    plan: PairPlan = PairPlan(8, 4, 6)) -> tuple[Aggregate, float]:
    for home in homes:
        set_round(home, epsilon, plan)
    port = free_port()
    started = time.monotonic()
    vendor = subprocess.Popen([str(BIN / "facekeeper-vendor"), "federate", "serve", "--sites", str(len(homes)),
                               "--work", str(work), "--port", str(port), "--insecure", "--epsilon", str(epsilon),
                               "--sensitivity", str(plan.sensitivity),
                               "--flower", str(FLOWER), "--timeout", "600"], text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    joins = [subprocess.Popen([str(BIN / "facekeeper"), "--home", str(h), "--json", "federate", "join",
                               "--superlink", f"127.0.0.1:{port}", "--insecure"], text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for h in homes]
    for j in joins:
        out, err = j.communicate(timeout=900)
        if j.returncode != 0:
            raise SystemExit(f"a site's join failed ({j.returncode}): {out}{err[-2000:]}")
    out, err = vendor.communicate(timeout=900)
    if vendor.returncode != 0:
        raise SystemExit(f"the vendor's round failed ({vendor.returncode}): {out}{err[-2000:]}")
    agg = Aggregate.from_dict(json.loads((work / "aggregate.json").read_text()))
    return agg, time.monotonic() - started


def real_rates(people: dict[str, np.ndarray], threshold: float | None) -> tuple[float | None, float | None]:
    """(FMR, FNMR) at ``threshold`` over every pair of the site's templates."""
    if threshold is None:
        return None, None
    labels = np.concatenate([[k] * len(v) for k, v in people.items()])
    genuine, impostor = evaluation.all_pairs(np.concatenate(list(people.values())), labels)
    return float(np.mean(impostor <= threshold)), float(np.mean(genuine > threshold))


def at(table: CalibrationTable | None, fmr: float) -> float | None:
    if table is None or not any(f == fmr for f, _ in table.points):
        return None
    return dict(table.points)[fmr]


def fmt(v: float | None, spec: str = ".4f") -> str:
    return "-" if v is None else format(v, spec)


def demo(workdir: Path) -> None:
    rng = np.random.default_rng(2026)
    engine = Engine(EngineSettings())
    homes = [build_site(workdir / name, synthetic(rng, n, 5), engine, yearly=4.0)
             for name, n in (("site-a", 80), ("site-b", 70))]
    agg, seconds = federated_round(homes, workdir / "vendor", 1.0)
    tables, prov = tables_from_sum(agg, epsilon=1.0, sensitivity=PairPlan(8, 4, 6).sensitivity)
    print(f"one round between {agg.sites} sites in {seconds:.0f} s (SuperLink, 2 SuperNodes, SecAgg+, epsilon 1)")
    print(f"vendor received the sum only: {prov['pairs']['fast']['impostor']} impostor pairs (noisy count);"
          f" tables: {json.dumps({k: t.points for k, t in tables.items()})}; withheld (noise error bound above"
          f" half the FMR): {json.dumps(prov['withheld'])}")
    for home in homes:
        with Service.open(home) as svc:
            e = [x for x in svc.privacy.audit.entries() if x.action == "federation.round"][-1]
            budget = Federation(svc.settings, svc.privacy, svc.calibration).budget(svc.clock())
            print(f"{home.parent.name}: audited release of {e.detail['bytes']} bytes, sha256"
                  f" {e.detail['sha256'][:16]}..., epsilon {e.detail['epsilon']}; spent"
                  f" {budget['spent_last_365_days']:g} of {budget['yearly_epsilon']:g} this year")


def full(workdir: Path) -> None:
    engine = Engine(EngineSettings(workers=2))
    workdir.mkdir(parents=True, exist_ok=True)
    f94 = embedded(FACES94, workdir / "faces94.npz", engine)
    london = embedded(LONDON, workdir / "london.npz", engine)
    names = sorted(f94)
    groups = {f"faces94-{i + 1}": {n: f94[n] for n in names[i::4]} for i in range(4)}
    groups["london"] = london
    homes = {name: build_site(workdir / name, people, engine) for name, people in groups.items()}

    site_tables: dict[str, CalibrationTable | None] = {}
    print("| site | people | photos | site table points (default caps) | refused |\n|---|---|---|---|---|")
    for name, home in homes.items():
        with Service.open(home) as svc:
            try:
                m = svc.calibration.measure(svc.actor, None, (1e-2, 1e-3, 1e-4))
                site_tables[name] = m.table
                refused = ", ".join(f"{r['fmr']:g}" for r in m.refused) or "-"
                points = ", ".join(f"{p.fmr:g}: {p.threshold:.4f}" for p in m.points)
            except Exception as exc:
                site_tables[name], points, refused = None, "-", str(exc)[:60]
        photos = sum(len(v) for v in groups[name].values())
        print(f"| {name} | {len(groups[name])} | {photos} | {points} | {refused} |")

    rounds = {}
    print("\n| round | caps (partners, pairs per partner, genuine) | sensitivity | seconds | impostor pairs"
          " (as the vendor sees them) | table |\n|---|---|---|---|---|---|")
    for label, eps, plan in (("pooled, no noise", math.inf, PairPlan(100, 16, 32)),
                             ("no noise", math.inf, PairPlan(8, 4, 6)), ("epsilon 1", 1.0, PairPlan(8, 4, 6)),
                             ("epsilon 8", 8.0, PairPlan(8, 4, 6))):
        agg, seconds = federated_round(list(homes.values()), workdir / f"vendor-{len(rounds)}", eps, plan)
        tables, prov = tables_from_sum(agg, epsilon=eps, sensitivity=plan.sensitivity)
        rounds[label] = tables.get("dlib-resnet-v1")
        points = ", ".join(f"{f:g}: {t:.4f}" for f, t in rounds[label].points) if rounds[label] else "-"
        points += "".join(f"; {w['fmr']:g} withheld (error bound {w['error_bound']:.2g})" for w in prov["withheld"])
        print(f"| {label} | {plan.partners}, {plan.per_partner}, {plan.genuine} | {plan.sensitivity} |"
              f" {seconds:.0f} | {prov['pairs']['fast']['impostor']} | {points} |")

    with Service.open(next(iter(homes.values()))) as svc:
        shipped = svc.bundle.table_for(svc.engine.model_id)
    columns = {"shipped": shipped, "site table": None, **rounds}
    for fmr in (1e-2, 1e-3):
        print(f"\nAt FMR {fmr:g}: threshold, then the real FMR / FNMR over every pair of the site's photos\n")
        print("| site | " + " | ".join(columns) + " |\n|---|" + "---|" * len(columns))
        for name in homes:
            cells = [name]
            for label, table in columns.items():
                t = at(site_tables[name] if label == "site table" else table, fmr)
                real_fmr, fnmr = real_rates(groups[name], t)
                cells.append("-" if t is None else f"{t:.4f}: {fmt(real_fmr, '.2g')} / {fmt(fnmr, '.3f')}")
            print("| " + " | ".join(cells) + " |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--demo", action="store_true", help="two synthetic sites, one round")
    ap.add_argument("--workdir", type=Path, default=Path("federation-bench"))
    args = ap.parse_args()
    if not (FLOWER / "flower-supernode").exists():
        raise SystemExit(f"no Flower environment at {FLOWER}: make flower-env (or set {ENV_FLOWER_BIN})")
    if args.workdir.exists() and any(p.is_dir() for p in args.workdir.iterdir()):
        raise SystemExit(f"{args.workdir} holds an earlier run: remove it first")
    (demo if args.demo else full)(args.workdir)


if __name__ == "__main__":
    main()
