"""Accurate mode's numbers: detector/crop variants, fusion vs dlib, the calibration, per-group FMR.

Usage: python bench/fusion.py FACES94.npz LONDON.npz [--groups info.csv] [--variant fn_hogw] [--centre]

Input: the outputs of bench/fusion_embed.py. faces94 (the calibration set) gives the z-normalisation
statistics, the FaceNet reference mean and the FMR -> threshold tables; London is held out and only
evaluated. It measured bundles 1.0-1.2's dlib + FaceNet fusion; bundle 1.3.0's tables and fusion (dlib + SFace)
come from bench/sface.py, so this script no longer writes data/calibration.json. Every comparison uses the photos where
HOG and the variant's detector both found a face, so fast and accurate are compared on the same pairs.
FNMR intervals are 95% Wilson intervals over genuine pairs (pairs share photos, so they are optimistic).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from facekeeper import evaluation
from facekeeper.fusion import DLIB_MODEL_ID, FACENET_MODEL_ID, FUSION_MODEL_ID, FusionCalibration, ModelStats
from facekeeper.matching import CalibrationTable

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "src" / "facekeeper" / "data" / "calibration.json"
VARIANTS = {"fn_hog": "HOG box", "fn_hogw": "HOG box reshaped to MTCNN framing",
            "fn_mt_centre": "MTCNN, face nearest the centre", "fn_mt_largest": "MTCNN, largest face"}
FMRS = (1e-2, 1e-3, 1e-4, 1e-5)


def pair_distances(v: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Genuine and impostor euclidean distances over the upper triangle (unit or centred-unit vectors)."""
    v = np.asarray(v, np.float64)
    sq = (v * v).sum(1)
    d = np.sqrt(np.maximum(sq[:, None] + sq[None] - 2 * v @ v.T, 0))
    iu = np.triu_indices(len(v), 1)
    same = (labels[:, None] == labels[None])[iu]
    flat = d[iu]
    return flat[same], flat[~same]


def centred(v: np.ndarray, centre: np.ndarray) -> np.ndarray:
    c = v - centre
    return c / np.linalg.norm(c, axis=1, keepdims=True)


def fnmr_cell(gen: np.ndarray, imp: np.ndarray, fmr: float) -> str:
    op = evaluation.operating_point(gen, imp, fmr)
    if op.threshold is None:
        return "n/a"
    k = int(np.sum(gen > op.threshold))
    lo, hi = evaluation.wilson_interval(k, len(gen))
    return f"{k / len(gen):.4f} [{lo:.4f}, {hi:.4f}]"


def load(path: Path) -> dict[str, np.ndarray]:
    z = np.load(path)
    return {k: z[k] for k in z.files}


def valid(data: dict[str, np.ndarray], variant: str) -> np.ndarray:
    return ~np.isnan(data["dlib"]).any(1) & ~np.isnan(data[variant]).any(1)


def scores(data: dict[str, np.ndarray], variant: str, mask: np.ndarray, centre: np.ndarray | None,
           stats: tuple[ModelStats, ModelStats] | None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    labels = data["labels"][mask]
    dl = pair_distances(data["dlib"][mask], labels)
    fn_raw = pair_distances(data[variant][mask], labels)
    out = {"fast (dlib)": dl, "FaceNet": fn_raw}
    fn = fn_raw
    if centre is not None:
        fn = pair_distances(centred(data[variant][mask], centre), labels)
        out["FaceNet centred"] = fn
    if stats is not None:
        out["accurate (fused)"] = (stats[0].z(dl[0]) + stats[1].z(fn[0]), stats[0].z(dl[1]) + stats[1].z(fn[1]))
    return out


def table_rows(name: str, data: dict[str, np.ndarray], variant: str, centre: np.ndarray | None,
               stats: tuple[ModelStats, ModelStats]) -> None:
    mask = valid(data, variant)
    print(f"\n### {name}: {int(mask.sum())} of {len(mask)} photos with a face for both models"
          f" ({len(set(data['labels'][mask]))} people), FaceNet crop: {VARIANTS[variant]}")
    sc = scores(data, variant, mask, centre, stats)
    gen, imp = next(iter(sc.values()))
    print(f"{len(gen)} genuine, {len(imp)} impostor pairs\n")
    print("| scorer | FNMR@FMR 1e-3 [95% CI] | FNMR@FMR 1e-4 [95% CI] | FNMR@FMR 1e-5 | EER |")
    print("|---|---|---|---|---|")
    for scorer, (g, i) in sc.items():
        eer, _ = evaluation.equal_error_rate(g, i)
        print(f"| {scorer} | {fnmr_cell(g, i, 1e-3)} | {fnmr_cell(g, i, 1e-4)} | {fnmr_cell(g, i, 1e-5)}"
              f" | {eer:.4f} |")


def fit(data: dict[str, np.ndarray], variant: str, use_centre: bool) -> FusionCalibration:
    mask = valid(data, variant)
    centre = data[variant][mask].astype(np.float64).mean(0) if use_centre else None
    labels = data["labels"][mask]
    dl = pair_distances(data["dlib"][mask], labels)
    vecs = data[variant][mask] if centre is None else centred(data[variant][mask], centre)
    fn = pair_distances(vecs, labels)
    stats = (ModelStats(DLIB_MODEL_ID, round(float(dl[1].mean()), 6), round(float(dl[1].std()), 6)),
             ModelStats(FACENET_MODEL_ID, round(float(fn[1].mean()), 6), round(float(fn[1].std()), 6)))
    fused = (stats[0].z(dl[0]) + stats[1].z(fn[0]), stats[0].z(dl[1]) + stats[1].z(fn[1]))
    source = (f"faces94 (University of Essex): {len(set(labels))} people, {int(mask.sum())} photos, dlib + FaceNet"
              f" ({VARIANTS[variant]}{', centred' if use_centre else ''}); bench/fusion.py")
    table = evaluation.calibration_table(FUSION_MODEL_ID, source, *fused)
    return FusionCalibration(stats[0], stats[1], centre, table)


def shipped_fast(table: dict[str, object]) -> CalibrationTable:
    for entry in table["tables"]:  # type: ignore[attr-defined]
        if entry["model_id"] == DLIB_MODEL_ID:
            return CalibrationTable.from_dict(entry)
    raise SystemExit("no dlib table in calibration.json")


def per_group(data: dict[str, np.ndarray], variant: str, groups: dict[str, dict[str, str]],
              fast: CalibrationTable, fusion: FusionCalibration) -> None:
    mask = valid(data, variant)
    labels = data["labels"][mask]
    print("\n### London per group at the shipped thresholds (impostor pairs within the group)\n")
    print("| group | people | impostor pairs | mode | FMR at 1e-2 | FMR at 1e-3 | FMR at 1e-4 | FNMR at 1e-4 |")
    print("|---|---|---|---|---|---|---|---|")
    attributes = sorted({a for attrs in groups.values() for a in attrs})
    for attribute in attributes:
        values = {groups.get(str(x), {}).get(attribute, "") for x in labels} - evaluation.MISSING
        if all(v.replace(".", "").isdigit() for v in values):
            continue
        for value in sorted(values):
            sel = np.zeros(len(data["labels"]), bool)
            sel[np.flatnonzero(mask)] = [groups.get(str(x), {}).get(attribute) == value for x in labels]
            sub = {k: v[sel] if isinstance(v, np.ndarray) and len(v) == len(sel) else v for k, v in data.items()}
            sc = scores(sub, variant, np.ones(int(sel.sum()), bool), fusion.centre, (fusion.dlib, fusion.facenet))
            for mode, key, table in (("fast", "fast (dlib)", fast), ("accurate", "accurate (fused)", fusion.table)):
                g, i = sc[key]
                cells = []
                for f in (1e-2, 1e-3, 1e-4):
                    t = table.threshold(f).value
                    cells.append(f"{int(np.sum(i <= t))} ({np.mean(i <= t):.2g})")
                t4 = table.threshold(1e-4).value
                print(f"| {attribute}={value} | {len(set(sub['labels']))} | {len(i)} | {mode} | {' | '.join(cells)}"
                      f" | {np.mean(g > t4):.3f} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("faces94", type=Path)
    ap.add_argument("london", type=Path)
    ap.add_argument("--groups", type=Path)
    ap.add_argument("--variant", default="fn_hogw", choices=sorted(VARIANTS))
    ap.add_argument("--centre", action="store_true", help="centre FaceNet on the faces94 mean")
    ap.add_argument("--compare", action="store_true", help="FaceNet alone for every crop variant first")
    args = ap.parse_args()
    f94, lon = load(args.faces94), load(args.london)
    if args.compare:
        print("| FaceNet crop | set | photos | FTA | FNMR@1e-3 | FNMR@1e-4 | EER |\n|---|---|---|---|---|---|---|")
        for variant, label in VARIANTS.items():
            for name, data in (("faces94", f94), ("london", lon)):
                mask = valid(data, variant)
                g, i = pair_distances(data[variant][mask], data["labels"][mask])
                eer, _ = evaluation.equal_error_rate(g, i)
                print(f"| {label} | {name} | {int(mask.sum())} | {int((~mask).sum())} | {fnmr_cell(g, i, 1e-3)}"
                      f" | {fnmr_cell(g, i, 1e-4)} | {eer:.4f} |")
    fusion = fit(f94, args.variant, args.centre)
    stats = (fusion.dlib, fusion.facenet)
    print(f"\nz-norm (faces94 impostors): dlib {fusion.dlib.mean:.4f} ± {fusion.dlib.std:.4f},"
          f" FaceNet {fusion.facenet.mean:.4f} ± {fusion.facenet.std:.4f}; centre: {args.centre}")
    print("fused table:", fusion.table.points)
    for name, data in (("faces94 (calibration set)", f94), ("London (held out)", lon)):
        table_rows(name, data, args.variant, fusion.centre, stats)
    current = json.loads(TABLE.read_text())
    if args.groups:
        per_group(lon, args.variant, evaluation.read_groups(args.groups), shipped_fast(current), fusion)


if __name__ == "__main__":
    main()
