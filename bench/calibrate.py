"""Measure the FMR → distance table shipped in ``src/facekeeper/data/calibration.json``.

Usage: python bench/calibrate.py [DATASET] [--backend dlib|onnx] [--write]
DATASET is a folder with one sub-folder per person (default: ../shared/faces/calibration/faces94).
Every pair of photos of different people is an impostor comparison; the threshold for an FMR is the
distance below which that fraction of impostor pairs falls. Prints one table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from facekeeper.config import EngineSettings
from facekeeper.engine import Engine
from facekeeper.errors import FacekeeperError

FMRS = (1e-2, 1e-3, 1e-4, 1e-5)
ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SET = ROOT.parent / "shared" / "faces" / "calibration" / "faces94"
TABLE = ROOT / "src" / "facekeeper" / "data" / "calibration.json"


def descriptors(engine: Engine, root: Path) -> tuple[np.ndarray, np.ndarray, int]:
    vecs, labels, failed = [], [], 0
    for person in sorted(p for p in root.iterdir() if p.is_dir()):
        for photo in sorted(person.iterdir()):
            try:
                face = engine.single_face(engine.decode(photo), enrollment=False)
            except FacekeeperError:
                failed += 1
                continue
            vecs.append(engine.embed([face.chip])[0])
            labels.append(person.name)
    return np.stack(vecs), np.asarray(labels), failed


def pair_distances(vecs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All genuine and impostor distances (upper triangle), computed in row blocks to bound memory."""
    genuine, impostor = [], []
    v = vecs.astype(np.float64)
    for i in range(len(v) - 1):
        d = np.linalg.norm(v[i + 1 :] - v[i], axis=1)
        same = labels[i + 1 :] == labels[i]
        genuine.append(d[same])
        impostor.append(d[~same])
    return np.concatenate(genuine), np.concatenate(impostor)


def table(genuine: np.ndarray, impostor: np.ndarray) -> list[tuple[float, float, float]]:
    """(fmr, threshold, fnmr) for each FMR the number of impostor pairs can support (>= 10 false matches)."""
    imp = np.sort(impostor)
    rows = []
    for fmr in FMRS:
        n_false = int(fmr * len(imp))
        if n_false < 10:
            continue
        threshold = float(imp[n_false - 1])
        rows.append((fmr, threshold, float(np.mean(genuine > threshold))))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dataset", nargs="?", type=Path, default=DEFAULT_SET)
    ap.add_argument("--backend", default="dlib", choices=("dlib", "onnx"))
    ap.add_argument("--write", action="store_true", help="store the table as the shipped calibration")
    args = ap.parse_args()
    engine = Engine(EngineSettings(backend=args.backend))
    vecs, labels, failed = descriptors(engine, args.dataset)
    genuine, impostor = pair_distances(vecs, labels)
    rows = table(genuine, impostor)
    print(f"dataset {args.dataset.name}: {len(set(labels))} people, {len(vecs)} photos, {failed} without a face;"
          f" {len(genuine)} genuine, {len(impostor)} impostor pairs")
    print("| FMR | distance | FNMR |\n|---|---|---|")
    for fmr, thr, fnmr in rows:
        print(f"| {fmr:g} | {thr:.4f} | {fnmr:.4f} |")
    if args.write:
        data = {"tables": [{
            "model_id": engine.model_id,
            "source": f"{args.dataset.name}: {len(set(labels))} people, {len(vecs)} photos (bench/calibrate.py)",
            "impostor_pairs": len(impostor), "genuine_pairs": len(genuine),
            "points": [[fmr, round(thr, 4)] for fmr, thr, _ in rows],
        }]}
        TABLE.write_text(json.dumps(data, indent=2) + "\n")
        print(f"wrote {TABLE}", file=sys.stderr)


if __name__ == "__main__":
    main()
