"""The matching modes a site calibrates, each as "which models' distances, combined how" (``pairs.Mode``).

``fast``: the engine's model alone, decided with the bundle's table for that model. ``accurate`` (when the
signed bundle carries the fusion calibration): the same template pairs measured by dlib and by each side model,
each distance z-normalised with the signed statistics and summed (``fusion.FusionCalibration.score``);
its table is the fused one. Only subjects holding both templates for every photo take part in it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from facekeeper.bundle import Bundle
from facekeeper.federation.pairs import Mode
from facekeeper.fusion import DLIB_MODEL_ID, FACENET_MODEL_ID
from facekeeper.gallery.gallery import Gallery


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def site_modes(model_id: str, bundle: Bundle, gallery: Gallery) -> list[Mode]:
    modes = [Mode("fast", model_id, (model_id,))]
    fusion = bundle.fusion
    if fusion is None or model_id != DLIB_MODEL_ID:
        return modes
    # templates are stored rotated, so FaceNet's centre (if the fusion centres) is rotated the same way
    centre = (None if fusion.centre is None or FACENET_MODEL_ID not in fusion.side_models
              else gallery.protect(fusion.centre, FACENET_MODEL_ID).astype(np.float64))

    def prepare(source: str, vectors: np.ndarray) -> np.ndarray:
        return _unit(vectors - centre) if source == FACENET_MODEL_ID and centre is not None else vectors

    def combine(distances: Sequence[np.ndarray]) -> np.ndarray:
        dlib, *sides = distances
        return np.asarray(fusion.score(dlib, *sides), np.float64)

    modes.append(Mode("accurate", fusion.table.model_id, (DLIB_MODEL_ID, *fusion.side_models), combine, prepare))
    return modes
