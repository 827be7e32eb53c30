"""Deployments whose galleries hold synthetic templates enrolled through ``Gallery.enroll``.

No photo is needed to calibrate: only templates. Each synthetic person is a random centre in the 128-D
descriptor space plus per-photo noise, scaled so distances fall where dlib's do (impostors ~0.75,
genuine ~0.35), so the tables measured on them look like real ones.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facekeeper.engine import Engine
from facekeeper.privacy import ConsentForm
from facekeeper.service import Service
from tests.conftest import ready

IMPROVE = "model-improvement"
FORM = ConsentForm("checkbox", "calibration test")


def synthetic_people(rng: np.random.Generator, people: int, photos: int, dim: int = 128) -> list[np.ndarray]:
    centres = rng.normal(0.0, 0.047, (people, dim))
    return [c + rng.normal(0.0, 0.025, (photos, dim)) for c in centres]


def site(root: Path, engine: Engine, vectors: list[np.ndarray], *, consent: bool = True,
         prefix: str = "p") -> Service:
    """A deployment holding ``vectors`` (one (photos, 128) array per person), model-improvement consented."""
    svc = Service.init(root / "data", root / "keys")
    svc.engine = engine
    ready(svc, ())
    for i, v in enumerate(vectors):
        sid = f"{prefix}{i:04d}"
        svc.grant_consent(sid, "access-control", FORM)
        if consent:
            svc.grant_consent(sid, IMPROVE, FORM)
        svc.gallery.enroll(sid, v, engine.model_id, pseudonym=svc.privacy.registry.find(sid))
    return svc
