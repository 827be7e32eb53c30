"""Compare the recognition modes of issue 18 on descriptors from bench/sface_embed.py, and build the tables.

Usage: python bench/sface.py DIR [--groups ../shared/faces/london/info.csv] [--accurate sface,facenet] [--write]

DIR holds ``faces94.npz``, ``london.npz``, ``people.npz`` from bench/sface_embed.py and, for the gate condition,
``faces94_gate.npz`` and ``london_gate.npz`` (the same photos through ``--probe-eyes 28 --jpeg 50``).

Comparison: fusion's normalisation (each model's impostor mean and spread) is fitted on half of faces94's
people (even positions in name order); results are reported on people it never saw: faces94's other half,
London, people/, and the gate condition (clean photo enrolled, its person's other photos as gate probes).
At each FMR the impostor pairs can measure (at least one pair allowed), the threshold is set on that data and
the FNMR is given with its errors and 95% Wilson interval, plain (pairs with two templates) and generalized
(ISO/IEC 19795-1: a genuine pair with a photo that gave no template is a false non-match).

Tables (``facekeeper.transfer``): at each FMR the strictest threshold of faces94, London and every London
group (ethnicity, gender), measured or extrapolated at the strict end of the tail fit's interval. Transfer is
checked by leaving a set out: the FMR on London of tables that never saw it, by the old rule (faces94 alone,
measured) and by the new one. ``--write`` merges the dlib, SFace and FaceNet tables and accurate mode's fusion
(``--accurate``: its side models) into ``src/facekeeper/data/calibration.json``; re-sign the bundle after it.
The .npz files hold research descriptors: keep them out of the repository and delete them after use.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facekeeper import evaluation
from facekeeper.fusion import (
    DLIB_MODEL_ID,
    FACENET_MODEL_ID,
    SFACE_MODEL_ID,
    FusionCalibration,
    ModelStats,
    fusion_model_id,
)
from facekeeper.matching import CalibrationTable
from facekeeper.transfer import Strictest, strictest_table

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "src" / "facekeeper" / "data" / "calibration.json"
MODELS = ("dlib_hog", "dlib_yunet", "dlib_fast", "sface", "facenet")
# dlib_yunet: dlib as accurate mode detects (YuNet's quick pass on the copy SFace was measured on); dlib_fast: as
# fast mode detects (the smaller copy, detect.YUNET_QUICK_FACE_PX)
MODEL_IDS = {"dlib_yunet": DLIB_MODEL_ID, "dlib_fast": DLIB_MODEL_ID, "sface": SFACE_MODEL_ID,
             "facenet": FACENET_MODEL_ID}
DECADES = tuple(10.0**-e for e in range(1, 10))
DEEP_FMRS = tuple(10.0**-e for e in range(6, 10))  # below the tables: where 1:N over large galleries decides
VARIANTS: dict[str, tuple[str, ...]] = {  # name -> descriptors whose z-normalised distances are summed
    "dlib (fast)": ("dlib_fast",),
    "dlib + FaceNet (accurate today)": ("dlib_yunet", "facenet"),
    "SFace": ("sface",),
    "SFace + dlib": ("sface", "dlib_yunet"),
    "SFace + FaceNet": ("sface", "facenet"),
    "SFace + dlib + FaceNet": ("sface", "dlib_yunet", "facenet"),
}
TODAY = "dlib + FaceNet (accurate today)"

Data = dict[str, np.ndarray]


@dataclass
class Scores:
    """Scores of the pairs where both photos have templates, and the counts of all pairs."""

    genuine: np.ndarray
    impostor: np.ndarray
    genuine_all: int  # genuine pairs including those with a photo without a template
    impostor_all: int


def load(path: Path) -> Data:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def subset(data: Data, keep: np.ndarray) -> Data:
    return {k: v[keep] for k, v in data.items()}


def distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distance of every row of ``a`` to every row of ``b`` (NaN where either is NaN)."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
    return np.sqrt(np.clip(d2, 0, None))


def scores(gallery: Data, models: tuple[str, ...], norm: Mapping[str, ModelStats],
           probe: Data | None = None) -> Scores:
    """The variant's scores: one model's distance, or the sum of its models' z-normalised distances.

    Without ``probe`` every unordered pair of ``gallery``'s photos; with it, each gallery photo against every
    other photo's probe version (same people, same order).
    """
    other = gallery if probe is None else probe
    total: np.ndarray | float = 0.0
    for m in models:
        d = distances(gallery[m], other[m])
        total = total + (d if len(models) == 1 else norm[m].z(d))
    total = np.asarray(total)
    labels = gallery["labels"]
    n = len(labels)
    pick = np.triu(np.ones((n, n), bool), 1) if probe is None else ~np.eye(n, dtype=bool)
    same = labels[:, None] == labels[None, :]
    valid = np.isfinite(total)
    return Scores(total[pick & same & valid], total[pick & ~same & valid], int((pick & same).sum()),
                  int((pick & ~same).sum()))


def stats(data: Data) -> dict[str, ModelStats]:
    """Each model's impostor-distance mean and standard deviation on ``data``."""
    out = {}
    for m in MODELS:
        s = scores(data, (m,), {})
        out[m] = ModelStats(MODEL_IDS.get(m, m), float(s.impostor.mean()), float(s.impostor.std()))
    return out


def rate(errors: int, trials: int) -> str:
    lo, hi = evaluation.wilson_interval(errors, trials)
    return f"{100 * errors / trials:.2f}% ({errors:,}/{trials:,}) [{100 * lo:.2f}, {100 * hi:.2f}]"


def fnmr_cells(s: Scores, threshold: float) -> tuple[str, str, int]:
    """Plain and generalized FNMR at ``threshold``, and the plain error count."""
    errors = int((s.genuine > threshold).sum())
    missing = s.genuine_all - len(s.genuine)
    return rate(errors, len(s.genuine)), rate(errors + missing, s.genuine_all), errors


def compare(name: str, runs: dict[str, Scores]) -> dict[float, dict[str, int]]:
    """Print the comparison on one set at each measurable FMR; returns plain errors per FMR and variant."""
    first = next(iter(runs.values()))
    print(f"\n### {name}: {len(first.genuine):,} genuine / {len(first.impostor):,} impostor pairs with templates"
          f" ({first.genuine_all:,} / {first.impostor_all:,} in all)\n")
    print("| FMR (impostor pairs allowed) | variant | threshold | FNMR (errors/pairs) [95%] | generalized FNMR |")
    print("|---|---|---|---|---|")
    out: dict[float, dict[str, int]] = {}
    for fmr in DECADES:
        allowed = math.floor(fmr * len(first.impostor) + 1e-9)
        if allowed < 1:
            break
        for variant, s in runs.items():
            point = evaluation.operating_point(s.genuine, s.impostor, fmr)
            assert point.threshold is not None
            plain, general, errors = fnmr_cells(s, point.threshold)
            out.setdefault(fmr, {})[variant] = errors
            print(f"| {fmr:g} ({allowed:,}) | {variant} | {point.threshold:.4f} | {plain} | {general} |")
    return out


def group_masks(data: Data, groups: dict[str, dict[str, str]]) -> dict[str, np.ndarray]:
    """London's groups (self-reported ethnicity and gender) as photo masks."""
    names = [Path(str(p)).parent.name for p in data["paths"]]
    out = {}
    for column in ("face_eth", "face_gender"):
        for value in sorted({row[column] for row in groups.values()}):
            out[value] = np.array([groups.get(n, {}).get(column) == value for n in names])
    return out


def populations(sets: Mapping[str, Data], gate: Mapping[str, Data], groups: dict[str, dict[str, str]] | None,
                models: tuple[str, ...], norm: Mapping[str, ModelStats]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(genuine, impostor) scores of each population a table must hold on: each set, London's groups, and each
    set's gate condition (clean enrolled against gate probes)."""
    out = {}
    for name, data in sets.items():
        s = scores(data, models, norm)
        out[name] = (s.genuine, s.impostor)
        if name == "London" and groups:
            for group, keep in group_masks(data, groups).items():
                g = scores(subset(data, keep), models, norm)
                out[f"London {group}"] = (g.genuine, g.impostor)
        if name in gate:
            g = scores(data, models, norm, gate[name])
            out[f"{name} gate"] = (g.genuine, g.impostor)
    return out


def cross_populations(sets: Mapping[str, Data],
                      norm: Mapping[str, ModelStats]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """dlib templates enrolled as accurate mode detects (an enrollment for payment, or any before bundle 1.3.1),
    probed as fast mode detects: each photo's accurate-detection descriptor against every other's fast one."""
    out = {}
    for name, data in sets.items():
        s = scores(data, ("dlib_yunet",), norm, {**data, "dlib_yunet": data["dlib_fast"]})
        out[f"{name} (enrolled accurate, probed fast)"] = (s.genuine, s.impostor)
    return out


def subgroups(pops: Mapping[str, object]) -> frozenset[str]:
    """London's groups: their pairs are London's, counted once."""
    return frozenset(n for n in pops if n.startswith("London ") and not n.startswith(("London gate", "London (")))


def fmr_check(table: CalibrationTable, s: Scores) -> str:
    """The impostor pairs ``table``'s thresholds let through on ``s`` at each of its FMRs and two deeper."""
    cells = []
    for fmr in (*(f for f, _ in table.points), *DEEP_FMRS[:2]):
        th = table.threshold(fmr)
        t = th.interval[0] if th.extrapolated and th.interval is not None else th.value
        accepted = int((s.impostor <= t).sum())
        cells.append(f"{fmr:g}: {accepted}/{len(s.impostor):,} ({accepted / len(s.impostor):.1e})")
    return "; ".join(cells)


def describe(st: Strictest) -> None:
    print(f"\n#### {st.table.model_id}: tail from {st.tail_from}\n")
    print("| FMR | threshold | set by | how |\n|---|---|---|---|")
    for r in st.chosen:
        print(f"| {r.fmr:g} | {r.threshold:.4f} | {r.population} | {r.how} |")
    if st.table.tail is not None:
        for fmr in DEEP_FMRS:
            th = st.table.threshold(fmr)
            assert th.interval is not None
            print(f"| {fmr:g} | {th.interval[0]:.4f} (strict end; fit {th.value:.4f}) | {st.tail_from} | tail |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dir", type=Path)
    ap.add_argument("--groups", type=Path)
    ap.add_argument("--accurate", default="facenet", help="accurate mode's side models: facenet, sface or both")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    raw = {n: load(args.dir / f"{n}.npz") for n in ("faces94", "london", "people")}
    gate = {n: load(args.dir / f"{n}_gate.npz") for n in ("faces94", "london") if (args.dir / f"{n}_gate.npz").exists()}
    groups = evaluation.read_groups(args.groups) if args.groups else None
    for name, data in (*raw.items(), *((f"{n} gate", d) for n, d in gate.items())):
        missing = {m: int(np.isnan(data[m][:, 0]).sum()) for m in ("dlib_hog", "sface")}
        several = (data["faces"] > 1).sum(0)
        print(f"{name}: {len(data['labels'])} photos; no template: HOG {missing['dlib_hog']}, YuNet"
              f" {missing['sface']}; several faces: HOG {several[0]}, YuNet {several[1]}")
    people = np.unique(raw["faces94"]["labels"])
    fit = np.isin(raw["faces94"]["labels"], people[::2])
    norm = stats(subset(raw["faces94"], fit))
    print("\nnormalisation (impostor mean ± std, faces94's even half): "
          + ", ".join(f"{m} {s.mean:.4f} ± {s.std:.4f}" for m, s in norm.items()))

    held_out = {"faces94, odd half": subset(raw["faces94"], ~fit), "London": raw["london"], "people/": raw["people"]}
    for name, data in held_out.items():
        compare(name, {v: scores(data, models, norm) for v, models in VARIANTS.items()})
    for name in gate:
        clean = raw[name]
        keep = ~fit if name == "faces94" else np.ones(len(clean["labels"]), bool)
        compare(f"{name} gate (clean enrolled, 28 px JPEG-50 probes)" + (", odd half" if name == "faces94" else ""),
                {v: scores(subset(clean, keep), models, norm, subset(gate[name], keep))
                 for v, models in VARIANTS.items()})

    sets = {"faces94": raw["faces94"], "London": raw["london"]}
    gates = {{"faces94": "faces94", "london": "London"}[n]: d for n, d in gate.items()}
    print("\n## Tables: strictest of faces94, London, the London groups and both gate conditions\n")
    shipped: dict[str, Strictest] = {}
    for variant, models in VARIANTS.items():
        if len(models) == 1:
            model_id = MODEL_IDS[models[0]]
        elif "dlib_yunet" in models:
            model_id = fusion_model_id(*(MODEL_IDS[m] for m in models if m != "dlib_yunet"))
        else:  # not a FusionCalibration (dlib comes first there): measured, never shipped
            model_id = "fusion-" + "+".join(MODEL_IDS[m] for m in models)
        pops = populations(sets, gates, groups, models, norm)
        if models == ("dlib_fast",):  # the fast table serves every detection dlib's templates come from
            pops |= {f"{k} (HOG)": v for k, v in populations(sets, gates, groups, ("dlib_hog",), norm).items()}
            pops |= {f"{k} (accurate detection)": v
                     for k, v in populations(sets, gates, groups, ("dlib_yunet",), norm).items()}
            pops |= cross_populations(sets, norm)
        detectors = "YuNet detection"
        if models == ("dlib_fast",):
            detectors = "YuNet detection as fast and as accurate mode detect, and HOG detection"
        source = ("strictest per FMR of faces94 (University of Essex, 152 people), London (Face Research Lab, 102"
                  " people), the London groups and both sets as gate probes (28 px between the eyes, JPEG 50);"
                  f" {detectors}; bench/sface.py")
        st = strictest_table(model_id, source, pops, subgroups=subgroups(pops))
        shipped[variant] = st
        describe(st)
        old = evaluation.calibration_table(model_id, "faces94", *pops["faces94"])
        without = strictest_table(model_id, "", {k: v for k, v in pops.items() if not k.startswith("London")})
        london = scores(raw["london"], models, norm)
        print(f"\ntransfer to London ({variant}): faces94 alone, measured: {fmr_check(old, london)}")
        print(f"  strictest rule without London: {fmr_check(without.table, london)}")
        print(f"  shipped (with London): {fmr_check(st.table, london)}")
        no_f94 = strictest_table(model_id, "", {k: v for k, v in pops.items() if not k.startswith("faces94")})
        f94 = scores(raw["faces94"], models, norm)
        print(f"  faces94 at the strictest rule without faces94: {fmr_check(no_f94.table, f94)}")
        print(f"  faces94 at the shipped table: {fmr_check(st.table, f94)}")
        print(f"  people/: {fmr_check(st.table, scores(raw['people'], models, norm))}")
        for n, probes in gate.items():
            print(f"  {n} gate: {fmr_check(st.table, scores(raw[n], models, norm, probes))}")
        for group, keep in (group_masks(raw["london"], groups) if groups else {}).items():
            s = scores(subset(raw["london"], keep), models, norm)
            if len(s.impostor):
                print(f"  London {group}: {fmr_check(st.table, s)}")

    print("\n## FNMR at the shipped (strictest) tables\n")
    print("| set | FMR | " + " | ".join(VARIANTS) + " |\n|---|---|" + "---|" * len(VARIANTS))
    evaluated = {**held_out, **{f"{n} gate": (raw[n], d) for n, d in gate.items()}}
    for name, data in evaluated.items():
        runs = {v: (scores(data[0], m, norm, data[1]) if isinstance(data, tuple) else scores(data, m, norm))
                for v, m in VARIANTS.items()}
        for fmr in (*(f for f, _ in shipped[TODAY].table.points), *DEEP_FMRS[:2]):
            cells = []
            for variant, s in runs.items():
                th = shipped[variant].table.threshold(fmr)
                t = th.interval[0] if th.extrapolated and th.interval is not None else th.value
                cells.append(fnmr_cells(s, t)[1])
            print(f"| {name} | {fmr:g} | " + " | ".join(cells) + " |")

    if args.write:
        sides = tuple({"facenet": FACENET_MODEL_ID, "sface": SFACE_MODEL_ID}[s] for s in args.accurate.split(","))
        short = {FACENET_MODEL_ID: "facenet", SFACE_MODEL_ID: "sface"}
        variant = next(v for v, m in VARIANTS.items() if set(m) == {"dlib_yunet", *(short[s] for s in sides)})
        fused = FusionCalibration(norm["dlib_yunet"], tuple(norm[short[s]] for s in sides), None,
                                  shipped[variant].table)
        assert fused.table.model_id == fusion_model_id(*sides)
        singles = {DLIB_MODEL_ID: "dlib (fast)", SFACE_MODEL_ID: "SFace"}
        pops = populations(sets, gates, groups, ("facenet",), norm)
        facenet = strictest_table(FACENET_MODEL_ID, shipped["SFace"].table.source, pops,
                                  subgroups=subgroups(pops)).table
        current = json.loads(TABLE.read_text())
        new = {**{m: shipped[v].table.to_dict() for m, v in singles.items()}, FACENET_MODEL_ID: facenet.to_dict()}
        current["tables"] = [new.pop(t["model_id"], t) for t in current["tables"]] + list(new.values())
        current["fusion"] = fused.to_dict()
        TABLE.write_text(json.dumps(current, indent=2) + "\n")
        print(f"merged into {TABLE.relative_to(ROOT)}: re-sign the bundle (facekeeper-vendor bundle sign)")


if __name__ == "__main__":
    main()
