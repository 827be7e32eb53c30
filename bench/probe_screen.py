"""Measure the face manifold that ``facekeeper.privacy.probes`` screens outside descriptors against.

    python bench/probe_screen.py ../shared/faces/calibration/faces94 ../shared/faces/london ../shared/faces/people

Computes the dlib descriptor of every photo with one face, then writes ``src/facekeeper/data/probe_screen.json``:
the population mean and an orthonormal basis of the directions real descriptors never take (the covariance's
eigenvectors past ``FACE_DIMENSIONS``), with what was measured, so the screen's thresholds can be checked
against the data they came from. Only these aggregates are written: no descriptor of anyone.
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path

import numpy as np

from facekeeper.config import EngineSettings, LimitSettings, QualitySettings
from facekeeper.engine import Engine
from facekeeper.errors import FacekeeperError
from facekeeper.privacy import probes

OUT = Path(__file__).resolve().parents[1] / "src" / "facekeeper" / "data" / "probe_screen.json"
SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}


def descriptors(roots: list[Path]) -> tuple[np.ndarray, list[str]]:
    engine = Engine(EngineSettings(), QualitySettings(), LimitSettings())
    out, sources = [], []
    for root in roots:
        before = len(out)
        for path in sorted(root.rglob("*")):
            if path.suffix.lower() not in SUFFIXES:
                continue
            try:
                out.append(engine.template(path)[0])
            except FacekeeperError:  # no face, several faces: not a probe a terminal would send
                continue
        sources.append(f"{root.name}: {len(out) - before} photos with one face")
    return np.asarray(out, dtype=np.float64), sources


def main() -> None:
    roots = [Path(p) for p in sys.argv[1:]]
    x, sources = descriptors(roots)
    mean = x.mean(axis=0)
    values, vectors = np.linalg.eigh(np.cov((x - mean).T))
    order = np.argsort(values)[::-1]
    values, vectors = values[order], vectors[:, order]
    outside = vectors[:, probes.FACE_DIMENSIONS:].astype(np.float32)
    residual = np.linalg.norm((x - mean) @ outside, axis=1)
    doc = {
        "model_id": "dlib-resnet-v1",
        "provenance": {
            "made_by": "bench/probe_screen.py",
            "descriptors": len(x),
            "sources": sources,
            "measured": {
                "norm": [round(float(np.linalg.norm(x, axis=1).min()), 4),
                         round(float(np.linalg.norm(x, axis=1).max()), 4)],
                "peak_share_max": round(float((np.abs(x).max(axis=1) / np.linalg.norm(x, axis=1)).max()), 4),
                "near_zero_components_max": int((np.abs(x) < probes.NEAR_ZERO).sum(axis=1).max()),
                "distance_to_mean_max": round(float(np.linalg.norm(x - mean, axis=1).max()), 4),
                "residual_max": round(float(residual.max()), 6),
                "variance_past_face_dimensions": float(values[probes.FACE_DIMENSIONS:].sum()),
                "variance_in_face_dimensions": float(values[:probes.FACE_DIMENSIONS].sum()),
            },
        },
        "mean": [round(float(v), 7) for v in mean],
        "outside": base64.b64encode(outside.astype("<f4").tobytes()).decode(),
        "outside_shape": list(outside.shape),
    }
    OUT.write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps(doc["provenance"], indent=1))


if __name__ == "__main__":
    main()
