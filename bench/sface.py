"""Compare the recognition modes of issue 18 on descriptors from bench/sface_embed.py, choose, and write tables.

Usage: python bench/sface.py FACES94.npz LONDON.npz [--groups ../shared/faces/london/info.csv] [--write]

Fusion's normalisation (each model's impostor mean and spread) is fitted on half of faces94's people (even
positions in name order) and results are reported on the other half and on London, people it never saw.
Thresholds are measured on the reported data itself (FNMR at a measured FMR), with 95% Wilson intervals;
pairs share photos, so the intervals are optimistic. Only photos every variant has a template for are
compared; photos without a face are counted per detector. ``--write`` stores SFace's table (all of faces94, as the
shipped dlib table is measured) in ``src/facekeeper/data/calibration.json``; ``--write-fusion`` also replaces
accurate mode's fusion by dlib + SFace + FaceNet (normalisation from the fitting half, FMR table on all of
faces94). Re-sign the bundle after either. The shipped bundle keeps dlib + FaceNet (docs/accuracy.md: the
faces94 tables of SFace let London's strangers through at 6-10x the stated FMR).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from facekeeper import evaluation
from facekeeper.bundle.manifest import read_fusion
from facekeeper.fusion import (
    DLIB_MODEL_ID,
    FACENET_MODEL_ID,
    SFACE_MODEL_ID,
    FusionCalibration,
    ModelStats,
    fusion_model_id,
)
from facekeeper.matching import CalibrationTable

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "src" / "facekeeper" / "data" / "calibration.json"
FMRS = (1e-3, 1e-4, 1e-5)
MODELS = ("dlib_hog", "dlib_yunet", "sface", "facenet")
VARIANTS: dict[str, tuple[str, ...]] = {  # name -> descriptors whose z-normalised distances are summed
    "dlib, HOG (fast today)": ("dlib_hog",),
    "dlib, YuNet": ("dlib_yunet",),
    "SFace, YuNet": ("sface",),
    "FaceNet, YuNet": ("facenet",),
    "dlib + FaceNet, YuNet (accurate today, on YuNet)": ("dlib_yunet", "facenet"),
    "SFace + dlib, YuNet": ("sface", "dlib_yunet"),
    "SFace + FaceNet, YuNet": ("sface", "facenet"),
    "SFace + dlib + FaceNet, YuNet": ("sface", "dlib_yunet", "facenet"),
}

Data = dict[str, np.ndarray]


def load(path: Path) -> Data:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def subset(data: Data, keep: np.ndarray) -> Data:
    return {k: v[keep] for k, v in data.items()}


def stats(data: Data) -> dict[str, ModelStats]:
    """Each model's impostor-distance mean and standard deviation on ``data``."""
    out = {}
    for m in MODELS:
        _, imp = evaluation.all_pairs(data[m], data["labels"])
        out[m] = ModelStats(m, float(imp.mean()), float(imp.std()))
    return out


def scores(data: Data, models: tuple[str, ...], norm: dict[str, ModelStats]) -> tuple[np.ndarray, np.ndarray]:
    """Genuine and impostor scores: the distance for one model, the sum of z-normalised distances for more."""
    if len(models) == 1:
        return evaluation.all_pairs(data[models[0]], data["labels"])
    gen: np.ndarray | float = 0.0
    imp: np.ndarray | float = 0.0
    for m in models:
        g, i = evaluation.all_pairs(data[m], data["labels"])
        gen, imp = gen + norm[m].z(g), imp + norm[m].z(i)
    return np.asarray(gen), np.asarray(imp)


def cell(gen: np.ndarray, imp: np.ndarray, fmr: float) -> str:
    p = evaluation.operating_point(gen, imp, fmr)
    if p.fnmr is None:
        return "not measurable"
    errors = round(p.fnmr * len(gen))
    lo, hi = evaluation.wilson_interval(errors, len(gen))
    return f"{100 * p.fnmr:.2f}% ({errors}) [{100 * lo:.2f}, {100 * hi:.2f}]"


def report(name: str, data: Data, norm: dict[str, ModelStats]) -> None:
    print(f"\n### {name}: {len(np.unique(data['labels']))} people, {len(data['labels'])} photos\n")
    print("| variant | genuine / impostor pairs | " + " | ".join(f"FNMR at FMR {f:g}" for f in FMRS) + " | EER |")
    print("|---|---|" + "---|" * (len(FMRS) + 1))
    for variant, models in VARIANTS.items():
        gen, imp = scores(data, models, norm)
        eer, _ = evaluation.equal_error_rate(gen, imp)
        print(f"| {variant} | {len(gen):,} / {len(imp):,} | " + " | ".join(cell(gen, imp, f) for f in FMRS)
              + f" | {100 * eer:.3f}% |")


def groups_report(data: Data, groups: dict[str, dict[str, str]], tables: dict[str, CalibrationTable],
                  scorers: dict[str, Callable[[Data], tuple[np.ndarray, np.ndarray]]]) -> None:
    """FMR within each London group (both photos of a pair in it) at thresholds measured on faces94."""
    print("\n### London per group at faces94's thresholds (impostor pairs accepted / pairs; FNMR)\n")
    columns = [(mode, f) for mode in scorers for f in FMRS]
    print("| group | people | impostor pairs | " + " | ".join(f"{m} {f:g}" for m, f in columns) + " |")
    print("|---|---|---|" + "---|" * len(columns))
    names = [Path(str(p)).parent.name for p in data["paths"]]
    keys = sorted({v for row in groups.values() for k, v in row.items() if k in ("face_eth", "face_gender")})
    for key in [*keys, "all"]:
        keep = np.array([key == "all" or key in (groups.get(n, {}).get("face_eth"),
                                                 groups.get(n, {}).get("face_gender")) for n in names])
        sub = subset(data, keep)
        cells, pairs = [], 0
        for mode, f in columns:
            gen, imp = scorers[mode](sub)
            pairs = len(imp)
            t = tables[mode].threshold(f)[0]
            accepted = int((imp <= t).sum())
            cells.append(f"{accepted / max(len(imp), 1):.1e} ({accepted}); {np.mean(gen > t):.1%}")
        print(f"| {key} | {len(np.unique(sub['labels']))} | {pairs:,} | " + " | ".join(cells) + " |")


def table(model_id: str, gen: np.ndarray, imp: np.ndarray) -> CalibrationTable:
    """Measured points down to the lowest FMR the pairs support, and the impostor tail's fit below them."""
    return evaluation.calibration_table(model_id, "faces94 (University of Essex), 152 people; YuNet detection",
                                        gen, imp)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("faces94", type=Path)
    ap.add_argument("london", type=Path)
    ap.add_argument("--groups", type=Path)
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--write-fusion", action="store_true")
    args = ap.parse_args()
    f94, london = load(args.faces94), load(args.london)
    for name, data in (("faces94", f94), ("London", london)):
        hog_missing = int(np.isnan(data["dlib_hog"][:, 0]).sum())
        yunet_missing = int(np.isnan(data["sface"][:, 0]).sum())
        several = (data["faces"] > 1).sum(0)
        print(f"{name}: {len(data['labels'])} photos; no face: HOG {hog_missing}, YuNet {yunet_missing};"
              f" several faces: HOG {several[0]}, YuNet {several[1]}")
    f94 = subset(f94, np.all([np.isfinite(f94[m][:, 0]) for m in MODELS], axis=0))
    london = subset(london, np.all([np.isfinite(london[m][:, 0]) for m in MODELS], axis=0))
    people = np.unique(f94["labels"])
    fit = np.isin(f94["labels"], people[::2])
    norm = stats(subset(f94, fit))
    print("\nnormalisation (impostor mean ± std, fitting half of faces94): "
          + ", ".join(f"{m} {s.mean:.4f} ± {s.std:.4f}" for m, s in norm.items()))
    report("faces94, held-out half (odd positions)", subset(f94, ~fit), norm)
    report("London (held out)", london, norm)
    report("faces94, all (where the tables are measured)", f94, norm)

    accurate = ("dlib_yunet", "sface", "facenet")
    fused = FusionCalibration(ModelStats(DLIB_MODEL_ID, norm["dlib_yunet"].mean, norm["dlib_yunet"].std),
                              (ModelStats(SFACE_MODEL_ID, norm["sface"].mean, norm["sface"].std),
                               ModelStats(FACENET_MODEL_ID, norm["facenet"].mean, norm["facenet"].std)), None,
                              table(fusion_model_id(SFACE_MODEL_ID, FACENET_MODEL_ID), *scores(f94, accurate, norm)))
    sface_table = table(SFACE_MODEL_ID, *scores(f94, ("sface",), norm))
    shipped = {t["model_id"]: CalibrationTable.from_dict(t) for t in json.loads(TABLE.read_text())["tables"]}
    print(f"\nSFace table: {sface_table.points}\nfused table: {fused.table.points}")
    print("fused normalisation: " + json.dumps(fused.to_dict()["models"]))
    previous = read_fusion(TABLE)
    if args.groups:
        tables = {"fast (dlib)": shipped[DLIB_MODEL_ID], "new accurate (dlib + SFace + FaceNet)": fused.table}
        scorers: dict[str, Callable[[Data], tuple[np.ndarray, np.ndarray]]] = {
            "fast (dlib)": lambda d: scores(d, ("dlib_yunet",), norm),
            "new accurate (dlib + SFace + FaceNet)": lambda d: scores(d, accurate, norm)}
        if previous is not None and previous.side_models == (FACENET_MODEL_ID,):
            old = previous
            tables["old accurate (dlib + FaceNet)"] = old.table

            def old_scores(d: Data) -> tuple[np.ndarray, np.ndarray]:
                (dg, di), (fg, fi) = (evaluation.all_pairs(d[m], d["labels"]) for m in ("dlib_yunet", "facenet"))
                return old.score(dg, fg), old.score(di, fi)

            scorers["old accurate (dlib + FaceNet)"] = old_scores
        groups_report(london, evaluation.read_groups(args.groups), tables, scorers)
    for name, data in (("faces94", f94), ("London", london)):
        gen, imp = scores(data, ("dlib_yunet",), norm)
        print(f"\n{name}, dlib on YuNet at the shipped dlib (HOG) thresholds:")
        for f, t in shipped[DLIB_MODEL_ID].points:
            print(f"  FMR {f:g} at {t}: measured FMR {np.mean(imp <= t):.2e}, FNMR {np.mean(gen > t):.2%}")
    if args.write or args.write_fusion:
        raw = json.loads(TABLE.read_text())
        raw["tables"] = [t for t in raw["tables"] if t["model_id"] != SFACE_MODEL_ID] + [sface_table.to_dict()]
        if args.write_fusion:
            raw["fusion"] = fused.to_dict()
        TABLE.write_text(json.dumps(raw, indent=2) + "\n")
        print(f"wrote {TABLE.relative_to(ROOT)}: re-sign the bundle (facekeeper-vendor bundle sign)")


if __name__ == "__main__":
    main()
