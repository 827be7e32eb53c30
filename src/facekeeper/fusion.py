"""Accurate mode's score: dlib's distance and its side models' (SFace, FaceNet), each z-normalised, summed
with equal weights.

Two models err on different faces, so their agreement separates people better than either alone (issue 8:
on a public benchmark FNMR at FMR 1e-4 falls from 0.32 with dlib to 0.15 fused with FaceNet; issue 18: 0.020
fused with SFace). The fusion is one strategy object: which side models, their statistics and the fused
table; the signed bundle carries one, and its ``side_models`` are the templates enrollment stores beside
dlib's.
Each model's distance is
put on one scale by the mean and spread of its *impostor* distances on the calibration set, so the fused
score reads "how many impostor standard deviations below a typical stranger"; lower is more alike.
Logistic regression gave near-equal weights, so the weights are fixed at 1.

All distances are Euclidean between unit vectors (a monotone map of the cosine SFace is usually compared
by). FaceNet may be centred: a reference mean (of the calibration set's FaceNet embeddings) is subtracted from
both vectors before their cosine. Templates are stored rotated by a secret orthogonal transform, which
keeps distances, so the centre is rotated by the same transform before it is subtracted.

The statistics and the fused FMR table ship in ``data/calibration.json`` under ``fusion`` and are signed in
the model bundle: accurate mode never decides with numbers the vendor did not sign.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from facekeeper.matching import CalibrationTable

DLIB_MODEL_ID = "dlib-resnet-v1"
FACENET_MODEL_ID = "facenet-20180408-102900"
SFACE_MODEL_ID = "sface-2021dec-int8bq"
# Models whose templates a gallery keeps beside its primary model's, unindexed, for accurate-mode re-ranking.
SIDE_MODELS = {FACENET_MODEL_ID: 512, SFACE_MODEL_ID: 128}


def fusion_model_id(*sides: str) -> str:
    """The id of the fused score of dlib with the ``sides`` models: what its calibration table is tagged with."""
    return "+".join((f"fusion-{DLIB_MODEL_ID}", *sides))


FUSION_MODEL_ID = fusion_model_id(FACENET_MODEL_ID)

Mode = str  # "fast" (dlib alone) or "accurate" (dlib + side models fused)
MODES = ("fast", "accurate")


@dataclass(frozen=True)
class ModelStats:
    """One model's impostor-distance mean and standard deviation on the calibration set."""

    model_id: str
    mean: float
    std: float

    def z(self, distance: np.ndarray | float) -> np.ndarray:
        return (np.asarray(distance, np.float64) - self.mean) / self.std


@dataclass(frozen=True)
class FusionCalibration:
    """Everything accurate mode decides with: per-model z-norm statistics (dlib's, then each side model's, in
    the order the fused table's id names them), FaceNet's centre, the FMR table."""

    dlib: ModelStats
    sides: tuple[ModelStats, ...]  # one per side model; each model_id names the model
    centre: np.ndarray | None  # reference mean subtracted from FaceNet's embeddings, or None
    table: CalibrationTable  # FMR -> fused score

    @property
    def side_models(self) -> tuple[str, ...]:
        return tuple(s.model_id for s in self.sides)

    def side_distances(self, model_id: str, probe: np.ndarray, stored: np.ndarray,
                       centre: np.ndarray | None = None) -> np.ndarray:
        """Distances of side model ``model_id``'s ``probe`` (dim,) to each row of ``stored`` (n, dim).

        Euclidean between unit vectors; for FaceNet with a centre, between the centred vectors re-normalised to
        unit length (a monotone map of their cosine). ``centre`` is the reference mean in the vectors' own space
        (rotated with them when they are protected templates); by default the calibration's.
        """
        p = np.asarray(probe, np.float64).ravel()
        s = np.asarray(stored, np.float64).reshape(-1, p.size)
        c = (self.centre if centre is None else centre) if model_id == FACENET_MODEL_ID else None
        if c is not None:
            p, s = _unit(p - c), _unit(s - c)
        return np.linalg.norm(s - p, axis=-1)

    def score(self, dlib_distance: np.ndarray | float, *side_distances: np.ndarray | float) -> np.ndarray:
        """The fused score: the sum of the z-normalised distances, side models in ``side_models`` order
        (lower is more alike)."""
        if len(side_distances) != len(self.sides):
            raise ValueError(f"fusion of {len(self.sides)} side model(s) got {len(side_distances)} distance(s)")
        total = self.dlib.z(dlib_distance)
        for stats, distance in zip(self.sides, side_distances, strict=True):
            total = total + stats.z(distance)
        return total

    def to_dict(self) -> dict[str, Any]:
        return {"model_id": self.table.model_id,
                "models": [{"model_id": s.model_id, "impostor_mean": s.mean, "impostor_std": s.std, "weight": 1.0}
                           for s in (self.dlib, *self.sides)],
                "facenet_centre": None if self.centre is None else [round(float(v), 7) for v in self.centre],
                "table": self.table.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FusionCalibration:
        listed = [ModelStats(str(m["model_id"]), float(m["impostor_mean"]), float(m["impostor_std"]))
                  for m in data["models"]]
        ids = [s.model_id for s in listed]
        sides = ids[1:]
        if ids[:1] != [DLIB_MODEL_ID] or not sides or len(set(ids)) != len(ids) or not set(sides) <= set(SIDE_MODELS):
            raise ValueError(f"fusion needs {DLIB_MODEL_ID} first, then some of {', '.join(sorted(SIDE_MODELS))}")
        if any(s.std <= 0 for s in listed):
            raise ValueError("fusion needs positive standard deviations")
        if any(float(m.get("weight", 1.0)) != 1.0 for m in data["models"]):
            raise ValueError("fusion weights other than 1 are not supported")
        centre = data.get("facenet_centre")
        vec = None if centre is None else np.asarray(centre, np.float64)
        if vec is not None and (FACENET_MODEL_ID not in ids or vec.shape != (SIDE_MODELS[FACENET_MODEL_ID],)):
            raise ValueError("a centre is FaceNet's and must have 512 values")
        table = CalibrationTable.from_dict(data["table"])
        if table.model_id != fusion_model_id(*ids[1:]):
            raise ValueError(f"the fused table is for {table.model_id}, expected {fusion_model_id(*ids[1:])}")
        return cls(listed[0], tuple(listed[1:]), vec, table)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FusionCalibration) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(self.table)


def _unit(v: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.maximum(norm, 1e-12)
