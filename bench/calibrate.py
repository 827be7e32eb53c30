"""Measure the FMR → distance table shipped in ``src/facekeeper/data/calibration.json``.

Usage: python bench/calibrate.py [DATASET] [--backend dlib|onnx] [--write]
DATASET is a folder with one sub-folder per person (default: ../shared/faces/calibration/faces94).
Every pair of photos of different people is an impostor comparison; the threshold for an FMR is the
distance below which that fraction of impostor pairs falls (``facekeeper.evaluation``, the same code as
``facekeeper eval``), down to the lowest FMR the pairs support; below it the impostor tail's fit
(``facekeeper.tail``) is recorded in the table and its extrapolated thresholds are printed with their 95%
intervals. ``--write`` replaces this model's table in it (the others and the fusion stay). Bundle 1.3.0's tables
come from bench/sface.py instead (the strictest of every population). After ``--write`` the signed bundle no
longer matches and facekeeper refuses to start until the vendor re-signs it: ``facekeeper-vendor bundle sign``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from facekeeper import evaluation
from facekeeper.config import EngineSettings
from facekeeper.engine import Engine
from facekeeper.tail import METHOD

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SET = ROOT.parent / "shared" / "faces" / "calibration" / "faces94"
TABLE = ROOT / "src" / "facekeeper" / "data" / "calibration.json"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dataset", nargs="?", type=Path, default=DEFAULT_SET)
    ap.add_argument("--backend", default="dlib", choices=("dlib", "onnx"))
    ap.add_argument("--write", action="store_true", help="store the table as the shipped calibration")
    args = ap.parse_args()
    engine = Engine(EngineSettings(backend=args.backend))
    run = evaluation.evaluate_folder(engine, args.dataset)
    photos = run.images - len(run.not_acquired)
    print(f"dataset {args.dataset.name}: {run.people} people, {photos} photos, {len(run.not_acquired)} without a"
          f" face; {len(run.genuine)} genuine, {len(run.impostor)} impostor pairs")
    print("| FMR | distance | FNMR |\n|---|---|---|")
    for p in evaluation.calibration_points(run.genuine, run.impostor):
        print(f"| {p.target_fmr:g} | {p.threshold:.4f} | {p.fnmr:.4f} |")
    source = f"{args.dataset.name}: {run.people} people, {photos} photos (bench/calibrate.py)"
    table = evaluation.calibration_table(engine.model_id, source, run.genuine, run.impostor)
    if table.tail is not None:
        t = table.tail
        print(f"\nimpostor tail: {t.exceedances} lowest pairs (p_u {t.p_u:.2g}), xi {t.xi:.3f}; {METHOD}")
        print("| FMR | extrapolated distance | 95% interval | FNMR at the strict end |\n|---|---|---|---|")
        for exponent in range(round(-math.log10(table.min_fmr)) + 1, 10):
            th = table.threshold(10.0**-exponent)
            assert th.interval is not None
            fnmr = float((run.genuine > th.interval[0]).mean())
            print(f"| 1e-{exponent} | {th.value:.4f} | {th.interval[0]:.4f}-{th.interval[1]:.4f} | {fnmr:.4f} |")
    if args.write:  # replaces this model's table only: the other tables and the fusion stay as signed
        raw = json.loads(TABLE.read_text())
        raw["tables"] = [t for t in raw["tables"] if t["model_id"] != table.model_id] + [table.to_dict()]
        TABLE.write_text(json.dumps(raw, indent=2) + "\n")
        print(f"wrote {TABLE}; now re-sign the bundle: facekeeper-vendor bundle sign --key <vendor private key>",
              file=sys.stderr)


if __name__ == "__main__":
    main()
