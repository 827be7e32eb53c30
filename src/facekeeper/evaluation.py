"""Accuracy a customer can check on its own labelled photos: ``facekeeper eval``.

Distances are the scores (smaller = more alike); a pair is accepted as the same person when its distance
is at or below the threshold. From a folder of people (one sub-folder each, every pair of photos
compared once) or a pairs file (LFW ``pairs.txt`` or a CSV ``a,b,same``) this measures what ISO/IEC
19795-1 asks for: failure-to-acquire and failure-to-enrol rates, genuine and impostor distance
distributions, FNMR at fixed FMRs (only where the number of impostor comparisons can support the FMR),
the EER, the accuracy at the best threshold, a DET curve, and how the thresholds shipped in the signed
bundle behave on this population, per demographic group when a CSV of attributes is given.
``bench/calibrate.py`` builds the shipped calibration table from the same functions.

With a fusion calibration the same photos are also scored in accurate mode (prepared again as accurate mode
detects them, then dlib and the side model z-normalised and summed; ``facekeeper.fusion``), and the report
puts both modes side by side on the same pairs, for a folder or a pairs file.

Beside the plain rates (pairs that were compared) it reports the generalized ones of ISO/IEC 19795-1: a pair
the product could not have compared counts as a rejection when genuine and as a non-match when impostor. A
pair cannot be compared when either photo yields no face (or, as a probe, several with none chosen), or when
neither photo could be enrolled (both fail the enrollment gate): the product enrolls one photo and probes
with the other. An LFW ``pairs.txt`` with its ``folds n`` header is also scored by the 10-fold protocol.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facekeeper.engine import Engine, pipeline
from facekeeper.errors import ConfigError, InvalidInput
from facekeeper.fusion import FACENET_MODEL_ID, FusionCalibration
from facekeeper.matching import CalibrationTable
from facekeeper.tail import fit_tail

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}  # what engine.image decodes
REPORT_FMRS = (1e-2, 1e-3, 1e-4)
GENERALIZED_RULE = ("a pair counts as a rejection (genuine) or a non-match (impostor) when either photo yields no"
                    " usable face, or neither passes the enrollment gate")
CALIBRATION_FMRS = (1e-2, 1e-3, 1e-4, 1e-5)
TABLE_FMRS = tuple(10.0**-e for e in range(2, 10))  # a table goes as deep as its impostor pairs support
MIN_FALSE_MATCHES = 10  # a shipped threshold rests on at least this many impostor comparisons below it
MATPLOTLIB_PIN = "matplotlib==3.11.2"

MISSING = {"", "NA", "N/A", "na", "n/a", "nan", "unknown"}  # attribute values that form no group

Progress = Callable[[int, int], None]


# -- inputs ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Pair:
    a: Path
    b: Path
    same: bool
    fold: int | None = None  # the LFW protocol's fold (``pairs.txt`` with a ``folds n`` header)


def labelled_folder(root: Path) -> list[tuple[Path, str]]:
    """(photo, person) for a folder with one sub-folder per person; the sub-folder name is the label."""
    if not root.is_dir():
        raise InvalidInput(f"{root} is not a folder of people (one sub-folder per person)")
    samples = [(photo, person.name) for person in sorted(p for p in root.iterdir() if p.is_dir())
               for photo in sorted(person.iterdir()) if photo.suffix.lower() in IMAGE_SUFFIXES]
    if not samples:
        raise InvalidInput(f"{root} holds no photos in per-person sub-folders")
    return samples


def read_pairs(path: Path, images: Path | None = None) -> list[Pair]:
    """Pairs from an LFW ``pairs.txt`` or a CSV ``a,b,same``; relative paths are under ``images``.

    ``images`` defaults to the pairs file's folder (for LFW: the folder holding ``<name>/<name>_0001.jpg``).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read the pairs file {path} ({exc})") from None
    root = images or path.parent
    first = next((line for line in text.splitlines() if line.strip()), "")
    pairs = parse_csv_pairs(text, root) if "," in first else parse_lfw_pairs(text, root)
    if not pairs:
        raise InvalidInput(f"{path} holds no pairs")
    return pairs


def parse_lfw_pairs(text: str, root: Path) -> list[Pair]:
    """LFW format: an optional header of counts, then ``name n1 n2`` (same) or ``name1 n1 name2 n2`` lines."""

    def photo(name: str, number: str) -> Path:
        return root / name / f"{name}_{int(number):04d}.jpg"

    pairs: list[Pair] = []
    per_fold = None  # "10 300": 10 folds of 300 same then 300 different pairs
    for lineno, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields or (lineno == 1 and all(f.isdigit() for f in fields)):
            if len(fields) == 2:
                per_fold = 2 * int(fields[1])
            continue
        fold = len(pairs) // per_fold if per_fold else None
        try:
            if len(fields) == 3:
                pairs.append(Pair(photo(fields[0], fields[1]), photo(fields[0], fields[2]), True, fold))
            elif len(fields) == 4:
                pairs.append(Pair(photo(fields[0], fields[1]), photo(fields[2], fields[3]), False, fold))
            else:
                raise ValueError(f"{len(fields)} fields")
        except ValueError as exc:
            raise InvalidInput(f"line {lineno} of the LFW pairs file is not 'name n1 n2' or"
                               f" 'name1 n1 name2 n2' ({exc})") from None
    return pairs


_TRUE = {"1", "true", "yes", "same", "genuine", "match"}
_FALSE = {"0", "false", "no", "different", "impostor", "nonmatch"}


def parse_csv_pairs(text: str, root: Path) -> list[Pair]:
    """CSV rows ``a,b,same`` (header optional); ``same`` is 1/0, true/false, yes/no or same/different."""
    pairs = []
    for lineno, row in enumerate(csv.reader(io.StringIO(text)), 1):
        if not row or not "".join(row).strip():
            continue
        if len(row) != 3:
            raise InvalidInput(f"line {lineno} of the pairs CSV has {len(row)} columns, expected a,b,same")
        a, b, same = (c.strip() for c in row)
        flag = same.lower()
        if not pairs and not {Path(a).suffix.lower(), Path(b).suffix.lower()} & IMAGE_SUFFIXES:
            continue  # a header: its first two columns name no photos
        if flag not in _TRUE | _FALSE:
            raise InvalidInput(f"line {lineno} of the pairs CSV: cannot read same={same!r} (use 1 or 0)")
        pairs.append(Pair(root / a, root / b, flag in _TRUE))
    return pairs


def read_groups(path: Path) -> dict[str, dict[str, str]]:
    """Attributes per person from a CSV whose first column is the person's folder name (e.g. info.csv)."""
    try:
        rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InvalidInput(f"cannot read the groups file {path} ({exc})") from None
    if not rows:
        raise InvalidInput(f"{path} holds no rows")
    id_column = next(iter(rows[0]))
    return {row[id_column]: {k: v for k, v in row.items() if k != id_column} for row in rows}


# -- descriptors ------------------------------------------------------------------------------------
@dataclass
class Embedded:
    """Descriptors of the photos that yielded a usable face; the others, with why not."""

    vectors: np.ndarray  # (n, dim) float32, in the order of ``paths``
    paths: list[Path]
    not_acquired: list[tuple[Path, str]] = field(default_factory=list)  # no usable face: (photo, error code)
    quality_rejected: list[tuple[Path, str]] = field(default_factory=list)  # usable, but not enrollable
    side: dict[str, np.ndarray] | None = None  # each side model's (n, dim) descriptors, accurate mode only
    picked: list[tuple[Path, int]] = field(default_factory=list)  # probes with several faces: (photo, faces)

    def index(self) -> dict[Path, int]:
        return {p: i for i, p in enumerate(self.paths)}

    def unenrollable(self) -> np.ndarray:
        """(n,) bool in the order of ``paths``: the photo has a face but fails the enrollment gate."""
        rejected = {p for p, _ in self.quality_rejected}
        return np.asarray([p in rejected for p in self.paths], bool)


def embed_photos(engine: Engine, photos: Sequence[Path], progress: Progress | None = None,
                 workers: int | None = None, accurate: bool = False) -> Embedded:
    """The probe path of the product (``single_face(enrollment=False)``), on the bulk pipeline.

    Photos are prepared on ``workers`` processes and embedded in batches. A face that is found but fails
    the enrollment quality gate is still compared (it is a fair probe) and counted for the failure-to-enrol
    rate.
    """
    vectors: list[np.ndarray] = []
    side: dict[str, list[np.ndarray]] = {}
    kept: list[Path] = []
    result = Embedded(np.zeros((0, 0), np.float32), [])
    prepared = pipeline.prepare(engine, photos, enrollment=False, workers=workers, accurate=accurate, embed=True)
    for done, item in enumerate(prepared, 1):
        if item.error is not None:
            result.not_acquired.append((item.path, item.error.code))
        else:
            assert item.descriptor is not None
            if item.rejected is not None:
                result.quality_rejected.append((item.path, item.rejected))
            if item.faces_found > 1:
                result.picked.append((item.path, item.faces_found))
            vectors.append(item.descriptor)
            for model_id, vec in item.side_descriptors.items():
                side.setdefault(model_id, []).append(vec)
            kept.append(item.path)
        if progress:
            progress(done, len(photos))
    result.vectors = np.stack(vectors) if vectors else np.zeros((0, 128), np.float32)
    if accurate:
        result.side = {m: np.stack(v) for m, v in side.items()}
    result.paths = kept
    return result


# -- metrics ----------------------------------------------------------------------------------------
def all_pairs(vectors: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Genuine and impostor distances of every unordered pair of different photos (upper triangle)."""
    genuine, impostor = [], []
    v = np.asarray(vectors, np.float64)
    for i in range(len(v) - 1):
        d = np.linalg.norm(v[i + 1 :] - v[i], axis=1)
        same = labels[i + 1 :] == labels[i]
        genuine.append(d[same])
        impostor.append(d[~same])
    if not genuine:
        return np.zeros(0), np.zeros(0)
    return np.concatenate(genuine), np.concatenate(impostor)


def both_flagged(flags: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(genuine, impostor) masks in ``all_pairs``' order: both photos of the pair are flagged."""
    genuine, impostor = [], []
    for i in range(len(flags) - 1):
        both = flags[i + 1 :] & flags[i]
        same = labels[i + 1 :] == labels[i]
        genuine.append(both[same])
        impostor.append(both[~same])
    if not genuine:
        return np.zeros(0, bool), np.zeros(0, bool)
    return np.concatenate(genuine), np.concatenate(impostor)


def centred(side: np.ndarray, fusion: FusionCalibration, model_id: str) -> np.ndarray:
    """Side-model vectors as accurate mode compares them: FaceNet's minus the fusion's centre, back to unit
    length."""
    v = np.asarray(side, np.float64)
    if fusion.centre is not None and model_id == FACENET_MODEL_ID:
        v = v - fusion.centre
        v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v


def fused_pairs(dlib: np.ndarray, side: dict[str, np.ndarray], labels: np.ndarray,
                fusion: FusionCalibration) -> tuple[np.ndarray, np.ndarray]:
    """Genuine and impostor fused scores of every pair, as ``all_pairs`` orders them; ``side`` holds each side
    model's descriptors of the same photos."""
    dg, di = all_pairs(dlib, labels)
    sides = [all_pairs(centred(side[m], fusion, m), labels) for m in fusion.side_models]
    return fusion.score(dg, *(g for g, _ in sides)), fusion.score(di, *(i for _, i in sides))


def wilson_interval(errors: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson interval of a rate. Pairs that share photos are not independent, so it is optimistic."""
    if trials == 0:
        return (math.nan, math.nan)
    p = errors / trials
    den = 1 + z * z / trials
    mid = (p + z * z / (2 * trials)) / den
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / den
    return max(0.0, mid - half), min(1.0, mid + half)


def error_rates(genuine: np.ndarray, impostor: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FMR, FNMR) when accepting distances <= each threshold."""
    imp, gen = np.sort(impostor), np.sort(genuine)
    fmr = np.searchsorted(imp, thresholds, side="right") / max(len(imp), 1)
    fnmr = 1.0 - np.searchsorted(gen, thresholds, side="right") / max(len(gen), 1)
    return fmr, fnmr


@dataclass(frozen=True)
class OperatingPoint:
    """FNMR at a target FMR; ``threshold`` is None when too few impostor pairs exist to measure that FMR."""

    target_fmr: float
    threshold: float | None
    fnmr: float | None
    false_matches: int  # impostor pairs at or below the threshold
    impostor_pairs: int

    @property
    def measured_fmr(self) -> float | None:
        return None if self.threshold is None else self.false_matches / self.impostor_pairs


def operating_point(genuine: np.ndarray, impostor: np.ndarray, fmr: float,
                    min_false_matches: int = 1) -> OperatingPoint:
    """The largest threshold that lets at most ``fmr`` of the impostor pairs through, and the FNMR there.

    With ``n = floor(fmr * impostors)`` the threshold is the ``n``-th smallest impostor distance; fewer than
    ``min_false_matches`` such pairs and the FMR is not measurable on this data.
    """
    imp = np.sort(impostor)
    allowed = math.floor(fmr * len(imp) + 1e-9)
    if allowed < max(min_false_matches, 1):
        return OperatingPoint(fmr, None, None, 0, len(imp))
    threshold = float(imp[allowed - 1])
    false_matches = int(np.searchsorted(imp, threshold, side="right"))
    return OperatingPoint(fmr, threshold, float(np.mean(genuine > threshold)), false_matches, len(imp))


def equal_error_rate(genuine: np.ndarray, impostor: np.ndarray) -> tuple[float, float]:
    """(EER, threshold): where FMR and FNMR cross, the mean of the two at the closest threshold."""
    thresholds = np.unique(np.concatenate([genuine, impostor]))
    fmr, fnmr = error_rates(genuine, impostor, thresholds)
    i = int(np.argmin(np.abs(fmr - fnmr)))
    return float((fmr[i] + fnmr[i]) / 2), float(thresholds[i])


def best_accuracy(genuine: np.ndarray, impostor: np.ndarray) -> tuple[float, float]:
    """(accuracy, threshold): the share of all pairs decided right at the best single threshold."""
    thresholds = np.unique(np.concatenate([genuine, impostor]))
    fmr, fnmr = error_rates(genuine, impostor, thresholds)
    correct = (1 - fnmr) * len(genuine) + (1 - fmr) * len(impostor)
    i = int(np.argmax(correct))
    return float(correct[i] / (len(genuine) + len(impostor))), float(thresholds[i])


def ten_fold(scores: np.ndarray, same: np.ndarray, folds: np.ndarray) -> list[float]:
    """LFW's protocol: per fold, the accuracy at the threshold that is best on the other folds (midway to the next
    score, so a fold's accuracy does not hang on the training folds' single worst genuine pair)."""
    out = []
    for f in np.unique(folds):
        test = folds == f
        train_gen, train_imp = scores[~test & same], scores[~test & ~same]
        if not len(train_gen) or not len(train_imp):
            continue
        _, best = best_accuracy(train_gen, train_imp)
        train = scores[~test]
        above = train[train > best]
        threshold = (best + float(above.min())) / 2 if len(above) and np.isfinite(above.min()) else best
        out.append(float(np.mean((scores[test] <= threshold) == same[test])))
    return out


def calibration_points(genuine: np.ndarray, impostor: np.ndarray,
                       fmrs: Sequence[float] = TABLE_FMRS) -> list[OperatingPoint]:
    """The points of a calibration table: each FMR the data supports with >= ``MIN_FALSE_MATCHES`` pairs."""
    points = [operating_point(genuine, impostor, f, MIN_FALSE_MATCHES) for f in fmrs]
    return [p for p in points if p.threshold is not None]


def calibration_table(model_id: str, source: str, genuine: np.ndarray, impostor: np.ndarray, *,
                      tail: bool = True) -> CalibrationTable:
    """Measured points down to the lowest FMR the impostor pairs support, and (``tail``) the fit of the impostor
    tail that extrapolates below them (``facekeeper.tail``; None when too few pairs to fit)."""
    points = calibration_points(genuine, impostor)
    if not points:
        raise InvalidInput(f"too few impostor pairs ({len(impostor)}) for a calibration table: need at least"
                           f" {math.ceil(MIN_FALSE_MATCHES / max(CALIBRATION_FMRS))}")
    return CalibrationTable(model_id, source, len(impostor), len(genuine),
                            tuple(sorted((p.target_fmr, round(float(p.threshold or 0.0), 4)) for p in points)),
                            fit_tail(impostor) if tail else None)


def det_points(genuine: np.ndarray, impostor: np.ndarray, count: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """(FMR, FNMR) along the DET curve, dense in both tails: thresholds at log-spaced ranks of each side."""
    imp, gen = np.sort(impostor), np.sort(genuine)
    imp_ranks = np.unique(np.logspace(0, np.log10(len(imp)), count).astype(int)) - 1
    gen_ranks = len(gen) - np.unique(np.logspace(0, np.log10(len(gen)), count).astype(int))
    thresholds = np.unique(np.concatenate([imp[imp_ranks], gen[gen_ranks]]))
    return error_rates(genuine, impostor, thresholds)


# -- evaluation -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GroupResult:
    """Errors within one demographic group (both photos of every pair in the group), at shipped thresholds."""

    attribute: str
    value: str
    people: int
    genuine_pairs: int
    impostor_pairs: int
    at_shipped: tuple[tuple[float, float, float | None, float | None], ...]  # (fmr, threshold, FNMR, FMR)


@dataclass
class Evaluation:
    dataset: str
    mode: str  # "folder" or "pairs"
    model_id: str
    backend: str
    images: int
    genuine: np.ndarray
    impostor: np.ndarray
    not_acquired: list[tuple[Path, str]]
    quality_rejected: list[tuple[Path, str]]
    people: int | None = None
    command: str | None = None  # how to reproduce the run
    skipped_pairs: int = 0
    shipped: CalibrationTable | None = None
    bundle_version: str | None = None
    groups: list[GroupResult] = field(default_factory=list)
    accurate: Evaluation | None = None  # the same photos scored in accurate mode (fused), when asked
    # pairs the product could not have compared (generalized rates): a rejection when genuine, a non-match
    # when impostor; the masks drop compared pairs that count so (both photos fail the enrollment gate)
    unusable_genuine: int = 0
    unusable_impostor: int = 0
    usable_genuine: np.ndarray | None = None
    usable_impostor: np.ndarray | None = None
    folds: list[tuple[float, float]] | None = None  # LFW 10-fold accuracy per fold: (plain, generalized)
    # photos with several faces, compared with the one ``face_choice`` picked (enrollment would refuse them)
    picked: list[tuple[Path, int]] = field(default_factory=list)
    face_choice: str = "largest"

    def generalized(self, threshold: float | None) -> tuple[float | None, float | None]:
        """(generalized FMR, generalized FNMR) when accepting scores <= ``threshold`` (ISO/IEC 19795-1)."""
        if threshold is None:
            return None, None
        gen = self.genuine if self.usable_genuine is None else self.genuine[self.usable_genuine]
        imp = self.impostor if self.usable_impostor is None else self.impostor[self.usable_impostor]
        gen_tries = len(self.genuine) + self.unusable_genuine
        imp_tries = len(self.impostor) + self.unusable_impostor
        rejected = int(np.sum(gen > threshold)) + gen_tries - len(gen)
        return (float(np.sum(imp <= threshold)) / imp_tries if imp_tries else None,
                rejected / gen_tries if gen_tries else None)

    def generalized_counts(self) -> tuple[int, int]:
        """(genuine, impostor) attempted pairs counted without a comparison."""
        drop_g = 0 if self.usable_genuine is None else int(np.sum(~self.usable_genuine))
        drop_i = 0 if self.usable_impostor is None else int(np.sum(~self.usable_impostor))
        return self.unusable_genuine + drop_g, self.unusable_impostor + drop_i

    @property
    def fta_rate(self) -> float:
        return len(self.not_acquired) / max(self.images, 1)

    @property
    def fte_rate(self) -> float:
        return (len(self.not_acquired) + len(self.quality_rejected)) / max(self.images, 1)

    def operating_points(self) -> list[OperatingPoint]:
        return [operating_point(self.genuine, self.impostor, f) for f in REPORT_FMRS]

    def at_shipped(self) -> list[tuple[float, float, float | None, float | None]]:
        """(target FMR, shipped threshold, FNMR here, FMR here) for each point of the shipped table."""
        return shipped_rates(self.shipped, self.genuine, self.impostor) if self.shipped else []

    def summary(self) -> dict[str, Any]:
        both = len(self.genuine) > 0 and len(self.impostor) > 0
        eer, eer_thr = equal_error_rate(self.genuine, self.impostor) if both else (None, None)
        acc, acc_thr = best_accuracy(self.genuine, self.impostor) if both else (None, None)
        return {
            "dataset": self.dataset, "mode": self.mode, "model_id": self.model_id, "backend": self.backend,
            "bundle_version": self.bundle_version, "images": self.images, "people": self.people,
            "failure_to_acquire": {"count": len(self.not_acquired), "rate": self.fta_rate},
            "failure_to_enrol": {"count": len(self.not_acquired) + len(self.quality_rejected),
                                 "rate": self.fte_rate},
            "several_faces": {"count": len(self.picked), "rate": len(self.picked) / max(self.images, 1),
                              "face_choice": self.face_choice},
            "genuine_pairs": len(self.genuine), "impostor_pairs": len(self.impostor),
            "skipped_pairs": self.skipped_pairs,
            "genuine_distance": distribution(self.genuine), "impostor_distance": distribution(self.impostor),
            "fnmr_at_fmr": [{"target_fmr": p.target_fmr, "threshold": p.threshold, "fnmr": p.fnmr,
                             "false_matches": p.false_matches, "impostor_pairs": p.impostor_pairs,
                             **dict(zip(("generalized_fmr", "generalized_fnmr"), self.generalized(p.threshold),
                                        strict=True))}
                            for p in self.operating_points()],
            "generalized": {"rule": GENERALIZED_RULE, "unusable_genuine_pairs": self.generalized_counts()[0],
                            "unusable_impostor_pairs": self.generalized_counts()[1]},
            **({"ten_fold": ten_fold_summary(self.folds)} if self.folds else {}),
            "eer": {"rate": eer, "threshold": eer_thr},
            "best_accuracy": {"accuracy": acc, "threshold": acc_thr},
            "shipped_thresholds": [{"target_fmr": f, "threshold": t, "fnmr": fnmr, "fmr": fmr}
                                   for f, t, fnmr, fmr in self.at_shipped()],
            "groups": [{"attribute": g.attribute, "value": g.value, "people": g.people,
                        "genuine_pairs": g.genuine_pairs, "impostor_pairs": g.impostor_pairs,
                        "at_shipped": [{"target_fmr": f, "threshold": t, "fnmr": fnmr, "fmr": fmr}
                                       for f, t, fnmr, fmr in g.at_shipped]} for g in self.groups],
            **({"accurate": self.accurate.summary()} if self.accurate else {}),
        }


def ten_fold_summary(folds: list[tuple[float, float]]) -> dict[str, Any]:
    plain, generalized = np.asarray([f[0] for f in folds]), np.asarray([f[1] for f in folds])
    return {"folds": len(folds), "accuracy_mean": float(plain.mean()), "accuracy_std": float(plain.std()),
            "generalized_accuracy_mean": float(generalized.mean()),
            "generalized_accuracy_std": float(generalized.std()), "per_fold": [list(f) for f in folds]}


def distribution(values: np.ndarray) -> dict[str, float | int]:
    if len(values) == 0:
        return {"count": 0}
    q = np.percentile(values, [1, 50, 99])
    return {"count": len(values), "mean": float(values.mean()), "std": float(values.std()),
            "min": float(values.min()), "p01": float(q[0]), "median": float(q[1]), "p99": float(q[2]),
            "max": float(values.max())}


def shipped_rates(table: CalibrationTable, genuine: np.ndarray,
                  impostor: np.ndarray) -> list[tuple[float, float, float | None, float | None]]:
    rows = []
    for fmr, threshold in table.points:
        rows.append((fmr, threshold,
                     float(np.mean(genuine > threshold)) if len(genuine) else None,
                     float(np.mean(impostor <= threshold)) if len(impostor) else None))
    return rows


def measure(data: Path, *, images: Path | None = None, groups: Path | None = None, dataset: str | None = None,
            detector: str | None = None, quick_face: float | None = None, backend: str | None = None,
            modes: str = "both", progress: Callable[[int, int], None] | None = None) -> Evaluation:
    """``facekeeper eval``'s measurement: a folder of people or a pairs file, with the shipped models and
    tables (interfaces call this; they never build an engine themselves)."""
    from facekeeper.bundle import load_trusted_bundle
    from facekeeper.bundle.manifest import default_calibration_path, read_fusion
    from facekeeper.config import EngineSettings

    bundle = load_trusted_bundle()
    settings = EngineSettings() if detector is None else EngineSettings(detector=detector)  # default: the product's
    if quick_face is not None:
        if not 0 <= quick_face <= 1:
            raise InvalidInput("--quick-face is a fraction of the shorter side, between 0 and 1")
        settings.quick_face = quick_face
    settings.backend = backend or settings.backend
    if modes not in ("fast", "both"):
        raise InvalidInput("--modes is 'fast' or 'both'")
    engine = Engine(settings)
    shipped = bundle.table_for(engine.model_id)
    # measuring needs the z-norm statistics, not a signed decision: the unsigned file serves until re-signed
    fusion = (bundle.fusion or read_fusion(default_calibration_path())) if modes == "both" else None
    if data.is_dir():
        attrs = read_groups(groups) if groups else None
        ev = evaluate_folder(engine, data, shipped=shipped, groups=attrs, progress=progress, dataset=dataset,
                             fusion=fusion)
    elif data.is_file():
        if groups:
            raise InvalidInput("--groups needs a folder of people, not a pairs file")
        ev = evaluate_pairs(engine, read_pairs(data, images), shipped=shipped, progress=progress,
                            dataset=dataset or data.name, fusion=fusion)
    else:
        raise InvalidInput(f"{data} is neither a folder of people nor a pairs file")
    ev.bundle_version = bundle.version
    ev.command = " ".join(["facekeeper", f"--backend {settings.backend}", "eval", str(data),
                           *([f"--images {images}"] if images else []),
                           *([f"--groups {groups}"] if groups else []),
                           *([f"--detector {detector}"] if detector is not None else []),
                           *([f"--quick-face {quick_face}"] if quick_face is not None else []),
                           *(["--modes fast"] if modes == "fast" else [])])
    return ev


def evaluate_folder(engine: Engine, root: Path, *, shipped: CalibrationTable | None = None,
                    groups: dict[str, dict[str, str]] | None = None, progress: Progress | None = None,
                    dataset: str | None = None, fusion: FusionCalibration | None = None) -> Evaluation:
    """Every photo against every other: genuine pairs within a person, impostor pairs across people.

    With ``fusion`` the photos are embedded a second time as accurate mode prepares them (dlib and the side
    model, on accurate mode's detection) and ``accurate`` holds the fused evaluation of the same photos; each
    mode counts its own failures to acquire.
    """
    samples = labelled_folder(root)
    label_of = dict(samples)
    photos = [p for p, _ in samples]
    all_labels = [label for _, label in samples]
    passes = 2 if fusion is not None else 1
    emb = embed_photos(engine, photos, _share(progress, 0, passes))
    labels = np.asarray([label_of[p] for p in emb.paths])
    genuine, impostor = all_pairs(emb.vectors, labels)
    people = len(set(all_labels))
    ev = Evaluation(dataset or root.name, "folder", engine.model_id, engine.settings.backend, len(samples),
                    genuine, impostor, emb.not_acquired, emb.quality_rejected, people=people, shipped=shipped,
                    picked=emb.picked, face_choice=engine.settings.face_choice)
    unusable_folder_pairs(ev, all_labels, emb.unenrollable(), labels)
    if groups and shipped:
        ev.groups = group_results(emb.vectors, labels, groups, shipped)
    if fusion is not None:
        acc = embed_photos(engine, photos, _share(progress, 1, passes), accurate=True)
        assert acc.side is not None
        side, acc_labels = acc.side, np.asarray([label_of[p] for p in acc.paths])
        fused = fused_pairs(acc.vectors, side, acc_labels, fusion)
        ev.accurate = Evaluation(ev.dataset, "folder", fusion.table.model_id, engine.settings.backend, len(samples),
                                 *fused, acc.not_acquired, acc.quality_rejected, people=people, shipped=fusion.table,
                                 picked=acc.picked, face_choice=engine.settings.face_choice)
        unusable_folder_pairs(ev.accurate, all_labels, acc.unenrollable(), acc_labels)
        if groups:
            ev.accurate.groups = group_results(
                acc.vectors, acc_labels, groups, fusion.table,
                lambda m: fused_pairs(acc.vectors[m], {k: v[m] for k, v in side.items()}, acc_labels[m], fusion))
    return ev


def _share(progress: Progress | None, part: int, parts: int) -> Progress | None:
    """``progress`` for pass ``part`` of ``parts`` over the same photos: one bar from 0 to the end."""
    if progress is None or parts == 1:
        return progress
    return lambda done, total: progress(part * total + done, parts * total)


def unusable_folder_pairs(ev: Evaluation, all_labels: list[str], unenrollable: np.ndarray,
                          labels: np.ndarray) -> dict[str, Any]:
    """Set (and return) ``ev``'s generalized-rate fields: every pair of photos in the folder was attempted."""
    sizes = np.unique(np.asarray(all_labels), return_counts=True)[1]
    same_tries = int(np.sum(sizes * (sizes - 1) // 2))
    all_tries = len(all_labels) * (len(all_labels) - 1) // 2
    out: dict[str, Any] = {"unusable_genuine": same_tries - len(ev.genuine),
                           "unusable_impostor": all_tries - same_tries - len(ev.impostor)}
    if unenrollable.any():
        both_genuine, both_impostor = both_flagged(unenrollable, labels)
        out |= {"usable_genuine": ~both_genuine, "usable_impostor": ~both_impostor}
    for name, value in out.items():
        setattr(ev, name, value)
    return out


def group_results(vectors: np.ndarray, labels: np.ndarray, groups: dict[str, dict[str, str]],
                  shipped: CalibrationTable,
                  pairs: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None) -> list[GroupResult]:
    """Per attribute value (numeric attributes such as age are skipped), pairs within the group only.

    ``pairs(mask)`` scores the pairs of the masked photos (default: distances of ``vectors``).
    """
    attributes = sorted({a for attrs in groups.values() for a in attrs})
    results = []
    for attribute in attributes:
        values = {groups.get(str(label), {}).get(attribute, "") for label in labels} - MISSING
        if all(_is_number(v) for v in values):
            continue
        for value in sorted(values):
            mask = np.asarray([groups.get(str(label), {}).get(attribute) == value for label in labels])
            genuine, impostor = pairs(mask) if pairs else all_pairs(vectors[mask], labels[mask])
            results.append(GroupResult(attribute, value, len(set(labels[mask])), len(genuine), len(impostor),
                                       tuple(shipped_rates(shipped, genuine, impostor))))
    return results


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def evaluate_pairs(engine: Engine, pairs: Sequence[Pair], *, shipped: CalibrationTable | None = None,
                   progress: Progress | None = None, dataset: str = "pairs",
                   fusion: FusionCalibration | None = None) -> Evaluation:
    """Only the listed pairs; a pair the product could not compare is skipped for the plain rates and counted
    for the generalized ones. With ``fusion``, ``accurate`` holds the fused scores of the same pairs, the
    photos prepared a second time as accurate mode prepares them."""
    photos = sorted({p for pair in pairs for p in (pair.a, pair.b)})
    same = np.asarray([pair.same for pair in pairs], bool)
    folds = np.asarray([-1 if pair.fold is None else pair.fold for pair in pairs])
    passes = 2 if fusion is not None else 1

    def evaluation(model_id: str, emb: Embedded, table: CalibrationTable | None,
                   score: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Evaluation:
        """``score(a, b)``: the scores of the pairs of rows ``a`` and ``b`` of ``emb``."""
        where = emb.index()
        unenrollable = emb.unenrollable()
        a = np.asarray([where.get(pair.a, -1) for pair in pairs])
        b = np.asarray([where.get(pair.b, -1) for pair in pairs])
        compared = (a >= 0) & (b >= 0)
        usable = compared.copy()
        usable[compared] = ~(unenrollable[a[compared]] & unenrollable[b[compared]])
        scores = np.full(len(pairs), np.inf)
        scores[compared] = score(a[compared], b[compared])
        ev = Evaluation(dataset, "pairs", model_id, engine.settings.backend, len(photos), scores[compared & same],
                        scores[compared & ~same], emb.not_acquired, emb.quality_rejected,
                        skipped_pairs=int(np.sum(~compared)), shipped=table,
                        unusable_genuine=int(np.sum(~compared & same)),
                        unusable_impostor=int(np.sum(~compared & ~same)),
                        usable_genuine=usable[compared & same], usable_impostor=usable[compared & ~same],
                        picked=emb.picked, face_choice=engine.settings.face_choice)
        if len(pairs) and (folds >= 0).all() and len(np.unique(folds)) > 1:
            plain = ten_fold(scores[compared], same[compared], folds[compared])
            general = ten_fold(np.where(usable, scores, np.inf), same, folds)
            ev.folds = list(zip(plain, general, strict=True)) if len(plain) == len(general) else None
        return ev

    def dlib(emb: Embedded) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
        return lambda a, b: np.linalg.norm(emb.vectors[a].astype(np.float64) - emb.vectors[b], axis=1)

    emb = embed_photos(engine, photos, _share(progress, 0, passes))
    ev = evaluation(engine.model_id, emb, shipped, dlib(emb))
    if fusion is not None:
        acc = embed_photos(engine, photos, _share(progress, 1, passes), accurate=True)
        assert acc.side is not None
        sides = [centred(acc.side[m], fusion, m) for m in fusion.side_models]
        def fused(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            return fusion.score(dlib(acc)(a, b), *(np.linalg.norm(s[a] - s[b], axis=1) for s in sides))

        ev.accurate = evaluation(fusion.table.model_id, acc, fusion.table, fused)
    return ev


# -- report -----------------------------------------------------------------------------------------
def _pct(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{100 * value:.{digits}f}%"


def _rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def plot(ev: Evaluation, path: Path) -> None:
    """DET curve (log FMR vs log FNMR) and the two distance histograms, as one PNG."""
    try:
        import matplotlib
    except ImportError:
        raise ConfigError(f"plotting needs matplotlib: pip install {MATPLOTLIB_PIN}") from None
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, (det, hist) = plt.subplots(1, 2, figsize=(12, 4.8), dpi=110)
    fmr, fnmr = det_points(ev.genuine, ev.impostor)
    floor_fmr, floor_fnmr = 0.5 / max(len(ev.impostor), 1), 0.5 / max(len(ev.genuine), 1)
    det.plot(np.maximum(fmr, floor_fmr), np.maximum(fnmr, floor_fnmr), lw=1.8,
             label=f"fast: {ev.model_id}" if ev.accurate else ev.model_id)
    if ev.accurate is not None and len(ev.accurate.genuine) and len(ev.accurate.impostor):
        afmr, afnmr = det_points(ev.accurate.genuine, ev.accurate.impostor)
        det.plot(np.maximum(afmr, floor_fmr), np.maximum(afnmr, floor_fnmr), lw=1.8, color="C2",
                 label="accurate: fused")
    for p in ev.operating_points():
        if p.fnmr is not None and p.measured_fmr is not None:
            det.plot(max(p.measured_fmr, floor_fmr), max(p.fnmr, floor_fnmr), "o", color="C3")
            det.annotate(f"FMR {p.target_fmr:g}", (max(p.measured_fmr, floor_fmr), max(p.fnmr, floor_fnmr)),
                         textcoords="offset points", xytext=(6, 6), fontsize=8)
    eer, _ = equal_error_rate(ev.genuine, ev.impostor)
    eer_label = f"EER {100 * eer:.2f}%"
    if ev.accurate is not None and len(ev.accurate.genuine) and len(ev.accurate.impostor):
        accurate_eer, _ = equal_error_rate(ev.accurate.genuine, ev.accurate.impostor)
        eer_label = f"EER fast {100 * eer:.2f}%, accurate {100 * accurate_eer:.3f}%"
    det.plot([floor_fmr, 1], [floor_fmr, 1], ":", color="grey", lw=0.8, label=eer_label)
    det.set(xscale="log", yscale="log", xlim=(floor_fmr, 1), ylim=(floor_fnmr, 1),
            xlabel="false match rate (FMR)", ylabel="false non-match rate (FNMR)",
            title=f"DET: {ev.dataset} ({len(ev.genuine):,} genuine, {len(ev.impostor):,} impostor pairs)")
    det.grid(True, which="both", alpha=0.3)
    det.legend(loc="upper right", fontsize=8)
    det.text(0.02, 0.02, "an FNMR of 0 is drawn on the bottom edge", transform=det.transAxes, fontsize=7,
             color="grey")
    bins = np.linspace(0, max(1.2, float(np.max(np.concatenate([ev.genuine, ev.impostor])))), 90)
    hist.hist(ev.genuine, bins=bins, density=True, alpha=0.6, label="genuine (same person)")
    hist.hist(ev.impostor, bins=bins, density=True, alpha=0.6, label="impostor (different people)")
    for fmr_target, threshold, _, _ in ev.at_shipped():
        hist.axvline(threshold, color="black", ls="--", lw=0.8)
        hist.annotate(f"{fmr_target:g}", (threshold, hist.get_ylim()[1] * 0.95), fontsize=7, rotation=90,
                      ha="right", va="top")
    hist.set(xlabel="distance (smaller = more alike)", ylabel="density",
             title="distance distributions (dashed: shipped thresholds by target FMR)")
    hist.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def markdown(ev: Evaluation, image_name: str | None) -> str:
    """The report: the data, every number, and what they mean and do not mean."""
    s = ev.summary()
    lines = [f"# Accuracy on {ev.dataset}", ""]
    lines += [f"Model `{ev.model_id}` ({ev.backend} backend), signed bundle {ev.bundle_version or 'n/a'};"
              " measured with `facekeeper eval`. Scores are distances between descriptors (smaller = more"
              " alike); a pair is accepted when its distance is at or below the threshold.", ""]
    if ev.command:
        lines += [f"Reproduce with: `{ev.command}`", ""]
    lines += ["## Data", "", "| | |", "|---|---|"]
    if ev.mode == "folder":
        lines.append(f"| people | {ev.people} |")
    lines += [f"| photos | {ev.images} |",
              f"| failure to acquire (no usable face) | {len(ev.not_acquired)} ({_pct(ev.fta_rate)}) |",
              f"| failure to enrol (no face, or fails the enrollment quality gate) | "
              f"{s['failure_to_enrol']['count']} ({_pct(ev.fte_rate)}) |",
              f"| several faces: compared with the {ev.face_choice} one (enrollment refuses these) | "
              f"{len(ev.picked)} ({_pct(s['several_faces']['rate'])}) |",
              f"| genuine comparisons | {len(ev.genuine):,} |", f"| impostor comparisons | {len(ev.impostor):,} |"]
    if ev.mode == "pairs":
        lines.append(f"| pairs skipped (a photo without a usable face) | {ev.skipped_pairs} |")
    reasons: dict[str, int] = {}
    for _, code in ev.not_acquired + ev.quality_rejected:
        reasons[code] = reasons.get(code, 0) + 1
    if reasons:
        lines += ["", "Reasons: " + ", ".join(f"{code} {n}" for code, n in sorted(reasons.items())) + ". Photos"
                  " that fail only the quality gate are still compared (they are fair probes)."]
    lines += ["", "## Distance distributions", "", "| | count | mean | std | min | 1% | median | 99% | max |",
              "|---|---|---|---|---|---|---|---|---|"]
    for name in ("genuine", "impostor"):
        d = s[f"{name}_distance"]
        if d["count"]:
            lines.append(f"| {name} | {d['count']:,} | {d['mean']:.4f} | {d['std']:.4f} | {d['min']:.4f} | "
                         f"{d['p01']:.4f} | {d['median']:.4f} | {d['p99']:.4f} | {d['max']:.4f} |")
    unusable_g, unusable_i = ev.generalized_counts()
    lines += ["", "## FNMR at fixed FMR (thresholds measured on this data)", "",
              "| target FMR | threshold | FNMR | impostor pairs accepted | of | generalized FNMR | generalized FMR |",
              "|---|---|---|---|---|---|---|"]
    for p in ev.operating_points():
        if p.threshold is None:
            lines.append(f"| {p.target_fmr:g} | not measurable: needs >= {math.ceil(1 / p.target_fmr):,} impostor"
                         f" pairs | | | {p.impostor_pairs:,} | | |")
        else:
            gfmr, gfnmr = ev.generalized(p.threshold)
            lines.append(f"| {p.target_fmr:g} | {p.threshold:.4f} | {_pct(p.fnmr)} | {p.false_matches:,} | "
                         f"{p.impostor_pairs:,} | {_pct(gfnmr)} | {_rate(gfmr)} |")
    lines += ["", "An FMR resting on fewer than 10 accepted impostor pairs is a rough estimate; one resting on"
              " none cannot be measured here.",
              f"Generalized rates (ISO/IEC 19795-1) count every attempted pair: {GENERALIZED_RULE}. Here"
              f" {unusable_g:,} genuine and {unusable_i:,} impostor pairs could not be compared.", ""]
    if ev.folds:
        lines += ten_fold_lines(ev)
    if s["eer"]["rate"] is not None:
        lines += [f"- **EER**: {_pct(s['eer']['rate'])} (threshold {s['eer']['threshold']:.4f})",
                  f"- **accuracy at the best single threshold**: {_pct(s['best_accuracy']['accuracy'], 3)}"
                  f" (threshold {s['best_accuracy']['threshold']:.4f}) over all"
                  f" {len(ev.genuine) + len(ev.impostor):,} comparisons; the threshold is chosen on the same"
                  " data, so this is optimistic", ""]
    if ev.shipped:
        lines += ["## The shipped thresholds on this data", "",
                  f"Calibration table in the signed bundle: {ev.shipped.source} ({ev.shipped.impostor_pairs:,}"
                  " impostor pairs). What the product would decide here:", "",
                  *_shipped_table(ev)]
        lines.append("")
    if ev.groups:
        lines += ["## Per group, at the shipped thresholds", "",
                  "Both photos of every pair belong to the group. Small groups give coarse rates: read the pair"
                  " counts.", "", *_group_table(ev)]
        lines.append("")
    if ev.accurate is not None:
        lines += side_by_side(ev, ev.accurate)
    if image_name:
        lines += ["## DET curve and distributions", "", f"![DET curve and distance distributions]({image_name})",
                  ""]
    return "\n".join(lines)


def ten_fold_lines(ev: Evaluation, label: str = "") -> list[str]:
    """LFW's 10-fold accuracy, plain (compared pairs only) and generalized (an uncompared pair decided 'different')."""
    t = ten_fold_summary(ev.folds or [])
    return [f"- **10-fold accuracy{label}** (threshold chosen on 9 folds, tested on the 10th): "
            f"{100 * t['accuracy_mean']:.2f}% ± {100 * t['accuracy_std']:.2f}% over the pairs compared;"
            f" {100 * t['generalized_accuracy_mean']:.2f}% ± {100 * t['generalized_accuracy_std']:.2f}% counting"
            " a pair the product could not compare as 'different'", ""]


def side_by_side(fast: Evaluation, accurate: Evaluation) -> list[str]:
    """Fast and accurate mode on the same pairs: FNMR at each FMR with its interval, EER, shipped thresholds."""
    lines = ["## Fast and accurate side by side", "",
             f"The same {len(fast.genuine):,} genuine and {len(fast.impostor):,} impostor pairs, scored by dlib"
             " alone (fast) and by the fused score of dlib and the side model (accurate). Thresholds are measured"
             " on this data; brackets are 95% Wilson intervals over genuine pairs (pairs share photos, so they are"
             " optimistic).",
             "", "| target FMR | fast FNMR [95% CI] | accurate FNMR [95% CI] | impostor pairs accepted"
             " (fast / accurate) |", "|---|---|---|---|"]
    for pf, pa in zip(fast.operating_points(), accurate.operating_points(), strict=True):
        if pf.threshold is None or pa.threshold is None:
            lines.append(f"| {pf.target_fmr:g} | not measurable with {pf.impostor_pairs:,} impostor pairs | | |")
            continue
        cells = []
        for ev, p in ((fast, pf), (accurate, pa)):
            errors = int(np.sum(ev.genuine > p.threshold))
            lo, hi = wilson_interval(errors, len(ev.genuine))
            cells.append(f"{_pct(p.fnmr)} [{_pct(lo)}, {_pct(hi)}]")
        lines.append(f"| {pf.target_fmr:g} | {cells[0]} | {cells[1]} | {pf.false_matches:,} / {pa.false_matches:,} |")
    both = len(fast.genuine) and len(fast.impostor)
    if both:
        ef, ea = equal_error_rate(fast.genuine, fast.impostor)[0], equal_error_rate(accurate.genuine,
                                                                                      accurate.impostor)[0]
        lines += ["", f"EER: fast {_pct(ef)}, accurate {_pct(ea)}."]
        general = []
        for pf, pa in zip(fast.operating_points(), accurate.operating_points(), strict=True):
            if pf.threshold is not None and pa.threshold is not None:
                general.append(f"{pf.target_fmr:g}: fast {_pct(fast.generalized(pf.threshold)[1])}, accurate"
                               f" {_pct(accurate.generalized(pa.threshold)[1])}")
        if general:
            lines += ["", "Generalized FNMR (a pair the product could not compare is a rejection) at FMR "
                      + "; ".join(general) + "."]
    if accurate.folds:
        lines += ["", *ten_fold_lines(accurate, " (accurate)")]
    if accurate.shipped:
        lines += ["", f"Accurate mode's shipped thresholds (fused score; {accurate.shipped.source}):", "",
                  *_shipped_table(accurate)]
    if accurate.groups:
        lines += ["", "Accurate mode per group, at its shipped thresholds:", "", *_group_table(accurate)]
    return [*lines, ""]


def _shipped_table(ev: Evaluation) -> list[str]:
    """What the shipped thresholds decide on this data: one row per target FMR."""
    lines = ["| target FMR | shipped threshold | FMR here | FNMR here |", "|---|---|---|---|"]
    for fmr, threshold, fnmr, measured in ev.at_shipped():
        lines.append(f"| {fmr:g} | {threshold:.4f} | {_rate(measured)} | {_pct(fnmr)} |")
    return lines


def _group_table(ev: Evaluation) -> list[str]:
    """FNMR and FMR per group at the shipped thresholds, with the pair counts that bound their precision."""
    fmrs = [f for f, _ in ev.shipped.points] if ev.shipped else []
    lines = ["| group | people | genuine pairs | impostor pairs | "
             + " | ".join(f"FNMR / FMR at {f:g}" for f in fmrs) + " |",
             "|---|---|---|---|" + "---|" * len(fmrs)]
    for g in ev.groups:
        cells = " | ".join(f"{_pct(fnmr, 1)} / {_rate(fmr)}" for _, _, fnmr, fmr in g.at_shipped)
        lines.append(f"| {g.attribute}={g.value} | {g.people} | {g.genuine_pairs:,} | {g.impostor_pairs:,} |"
                     f" {cells} |")
    return lines


def write_report(ev: Evaluation, path: Path, *, with_plot: bool = True) -> list[Path]:
    """Write the Markdown report (and its PNG beside it, same name); returns the files written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    written = []
    image = path.with_suffix(".png") if with_plot and len(ev.genuine) and len(ev.impostor) else None
    if image is not None:
        plot(ev, image)
        written.append(image)
    path.write_text(markdown(ev, image.name if image else None), encoding="utf-8")
    written.insert(0, path)
    return written
