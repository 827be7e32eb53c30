"""Accurate mode's score: dlib's distance and a side model's (SFace or FaceNet), each z-normalised, summed
with equal weights.

Two models err on different faces, so their agreement separates people better than either alone (issue 8:
on a public benchmark FNMR at FMR 1e-4 falls from 0.32 with dlib to 0.15 fused with FaceNet; issue 18: 0.020
fused with SFace). The fusion is one strategy object: which side model, its statistics and the fused
table; the signed bundle carries one, and its ``side`` names the model enrollment stores beside dlib's.
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


def fusion_model_id(side: str) -> str:
    """The id of the fused score of dlib with ``side``: what its calibration table is tagged with."""
    return f"fusion-{DLIB_MODEL_ID}+{side}"


FUSION_MODEL_ID = fusion_model_id(FACENET_MODEL_ID)

Mode = str  # "fast" (dlib alone) or "accurate" (dlib + a side model fused)
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
    """Everything accurate mode decides with: per-model z-norm statistics, the side model's centre (FaceNet
    only), the FMR table."""

    dlib: ModelStats
    side: ModelStats  # the side model's statistics; its model_id names the model
    centre: np.ndarray | None  # reference mean subtracted from the side model's embeddings, or None
    table: CalibrationTable  # FMR -> fused score

    @property
    def side_model(self) -> str:
        return self.side.model_id

    def side_distances(self, probe: np.ndarray, stored: np.ndarray, centre: np.ndarray | None = None) -> np.ndarray:
        """Side-model distances of ``probe`` (dim,) to each row of ``stored`` (n, dim).

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

    def score(self, dlib_distance: np.ndarray | float, side_distance: np.ndarray | float) -> np.ndarray:
        """The fused score: the sum of both z-normalised distances (lower is more alike)."""
        return self.dlib.z(dlib_distance) + self.side.z(side_distance)

    def to_dict(self) -> dict[str, Any]:
        return {"model_id": self.table.model_id,
                "models": [{"model_id": s.model_id, "impostor_mean": s.mean, "impostor_std": s.std, "weight": 1.0}
                           for s in (self.dlib, self.side)],
                "facenet_centre": None if self.centre is None else [round(float(v), 7) for v in self.centre],
                "table": self.table.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FusionCalibration:
        stats = {m["model_id"]: ModelStats(str(m["model_id"]), float(m["impostor_mean"]), float(m["impostor_std"]))
                 for m in data["models"]}
        sides = set(stats) - {DLIB_MODEL_ID}
        if DLIB_MODEL_ID not in stats or len(stats) != 2 or not sides <= set(SIDE_MODELS):
            raise ValueError(f"fusion needs {DLIB_MODEL_ID} and one of {', '.join(sorted(SIDE_MODELS))}")
        (side,) = sides
        if any(s.std <= 0 for s in stats.values()):
            raise ValueError("fusion needs positive standard deviations")
        if any(float(m.get("weight", 1.0)) != 1.0 for m in data["models"]):
            raise ValueError("fusion weights other than 1 are not supported")
        centre = data.get("facenet_centre")
        vec = None if centre is None else np.asarray(centre, np.float64)
        if vec is not None and vec.shape != (SIDE_MODELS[side],):
            raise ValueError(f"the centre of {side} must have {SIDE_MODELS[side]} values")
        table = CalibrationTable.from_dict(data["table"])
        if table.model_id != fusion_model_id(side):
            raise ValueError(f"the fused table is for {table.model_id}, expected {fusion_model_id(side)}")
        return cls(stats[DLIB_MODEL_ID], stats[side], vec, table)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FusionCalibration) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(self.table)


def _unit(v: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.maximum(norm, 1e-12)
