"""Accurate mode's score: dlib and FaceNet distances, each z-normalised, summed with equal weights.

Two models err on different faces, so their agreement separates people better than either alone (issue 8:
on a public benchmark FNMR at FMR 1e-4 falls from 0.32 with dlib to 0.15 fused). Each model's distance is
put on one scale by the mean and spread of its *impostor* distances on the calibration set, so the fused
score reads "how many impostor standard deviations below a typical stranger"; lower is more alike.
Logistic regression gave near-equal weights, so the weights are fixed at 1.

FaceNet may be centred: a reference mean (of the calibration set's FaceNet embeddings) is subtracted from
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
FUSION_MODEL_ID = f"fusion-{DLIB_MODEL_ID}+{FACENET_MODEL_ID}"
# Models whose templates a gallery keeps beside its primary model's, unindexed, for accurate-mode re-ranking.
SIDE_MODELS = {FACENET_MODEL_ID: 512}

Mode = str  # "fast" (dlib alone) or "accurate" (dlib + FaceNet fused)
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
    """Everything accurate mode decides with: per-model z-norm statistics, the FaceNet centre, the FMR table."""

    dlib: ModelStats
    facenet: ModelStats
    centre: np.ndarray | None  # (512,) reference mean subtracted from FaceNet embeddings, or None
    table: CalibrationTable  # FMR -> fused score

    def facenet_distances(self, probe: np.ndarray, stored: np.ndarray, centre: np.ndarray | None = None) -> np.ndarray:
        """FaceNet distances of ``probe`` (512,) to each row of ``stored`` (n, 512).

        Euclidean between unit vectors; when centring, between the centred vectors re-normalised to unit
        length (a monotone map of their cosine). ``centre`` is the reference mean in the vectors' own space
        (rotated with them when they are protected templates); by default the calibration's.
        """
        p = np.asarray(probe, np.float64).ravel()
        s = np.asarray(stored, np.float64).reshape(-1, p.size)
        c = self.centre if centre is None else centre
        if c is not None:
            p, s = _unit(p - c), _unit(s - c)
        return np.linalg.norm(s - p, axis=-1)

    def score(self, dlib_distance: np.ndarray | float, facenet_distance: np.ndarray | float) -> np.ndarray:
        """The fused score: the sum of both z-normalised distances (lower is more alike)."""
        return self.dlib.z(dlib_distance) + self.facenet.z(facenet_distance)

    def to_dict(self) -> dict[str, Any]:
        return {"model_id": self.table.model_id,
                "models": [{"model_id": s.model_id, "impostor_mean": s.mean, "impostor_std": s.std, "weight": 1.0}
                           for s in (self.dlib, self.facenet)],
                "facenet_centre": None if self.centre is None else [round(float(v), 7) for v in self.centre],
                "table": self.table.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FusionCalibration:
        stats = {m["model_id"]: ModelStats(str(m["model_id"]), float(m["impostor_mean"]), float(m["impostor_std"]))
                 for m in data["models"]}
        if set(stats) != {DLIB_MODEL_ID, FACENET_MODEL_ID} or any(s.std <= 0 for s in stats.values()):
            raise ValueError(f"fusion needs positive statistics for {DLIB_MODEL_ID} and {FACENET_MODEL_ID}")
        if any(float(m.get("weight", 1.0)) != 1.0 for m in data["models"]):
            raise ValueError("fusion weights other than 1 are not supported")
        centre = data.get("facenet_centre")
        vec = None if centre is None else np.asarray(centre, np.float64)
        if vec is not None and vec.shape != (SIDE_MODELS[FACENET_MODEL_ID],):
            raise ValueError("the FaceNet centre must have 512 values")
        table = CalibrationTable.from_dict(data["table"])
        if table.model_id != FUSION_MODEL_ID:
            raise ValueError(f"the fused table is for {table.model_id}, expected {FUSION_MODEL_ID}")
        return cls(stats[DLIB_MODEL_ID], stats[FACENET_MODEL_ID], vec, table)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FusionCalibration) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(self.table)


def _unit(v: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.maximum(norm, 1e-12)
