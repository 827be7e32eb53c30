"""Facial landmarks (dlib's 5- and 68-point shape predictors), as (N, 2) float arrays of (x, y) pixels.

5-point order: subject's left eye (outer, inner corner), subject's right eye (outer, inner), nose base;
the subject's right eye is on the left of the picture. The 68-point order is iBUG 300-W.
"""

from __future__ import annotations

import numpy as np

from facekeeper.engine import models
from facekeeper.errors import InvalidInput


class Landmarker:
    """Wraps one dlib shape predictor; ``points`` is 5 or 68."""

    def __init__(self, points: int) -> None:
        if points not in (5, 68):
            raise InvalidInput(f"landmarks must be 5 or 68 points, not {points}")
        self.points = points
        self._predictor = models.shape_predictor(models.SHAPE_5 if points == 5 else models.SHAPE_68)

    def shape(self, rgb: np.ndarray, box: tuple[int, int, int, int]):  # -> dlib.full_object_detection
        """The raw dlib shape, which ``align.chip`` consumes."""
        import dlib

        return self._predictor(rgb, dlib.rectangle(*box))

    def __call__(self, rgb: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
        return shape_to_array(self.shape(rgb, box))


def shape_to_array(shape) -> np.ndarray:
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)


def eye_centres(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (subject's right eye, subject's left eye, nose) centres from a 5- or 68-point array."""
    if len(points) == 5:
        return points[2:4].mean(0), points[0:2].mean(0), points[4]
    if len(points) == 68:
        return points[36:42].mean(0), points[42:48].mean(0), points[30]
    raise ValueError("expected 5 or 68 landmarks")
