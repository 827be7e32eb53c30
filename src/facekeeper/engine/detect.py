"""Face detectors. Boxes are (left, top, right, bottom) in pixels of the image passed in.

Detection is the costly step of the pipeline, so it runs on a copy scaled to a working size and the boxes
are mapped back; landmarks and the chip are then taken at full resolution, where the detail is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from facekeeper.engine import models


@dataclass(frozen=True)
class Detection:
    """A found face: box (left, top, right, bottom) in original-image pixels, and the detector's score."""

    box: tuple[int, int, int, int]
    score: float

    @property
    def width(self) -> int:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> int:
        return self.box[3] - self.box[1]

    @property
    def area(self) -> int:
        return max(self.width, 0) * max(self.height, 0)


class Detector(Protocol):
    name: str

    def detect(self, rgb: np.ndarray, upsample: int) -> list[Detection]: ...


class HogDetector:
    """dlib's HOG + linear SVM frontal face detector: fast on a CPU, the default."""

    name = "hog"

    def __init__(self) -> None:
        import dlib

        self._det = dlib.get_frontal_face_detector()

    def detect(self, rgb: np.ndarray, upsample: int) -> list[Detection]:
        rects, scores, _ = self._det.run(rgb, upsample, 0.0)
        return [
            Detection((r.left(), r.top(), r.right(), r.bottom()), float(s))
            for r, s in zip(rects, scores, strict=True)
        ]


class CnnDetector:
    """dlib's MMOD CNN detector: finds harder faces, but takes seconds per image on a CPU."""

    name = "cnn"

    def __init__(self) -> None:
        import dlib

        self._det = dlib.cnn_face_detection_model_v1(str(models.model_path(models.MMOD)))

    def detect(self, rgb: np.ndarray, upsample: int) -> list[Detection]:
        found = self._det(rgb, upsample)
        return [
            Detection((d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom()), float(d.confidence))
            for d in found
        ]


def working_copy(rgb: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """Return the image scaled so its longer side is at most ``max_side``, and the scale applied."""
    import cv2

    h, w = rgb.shape[:2]
    longest = max(h, w)
    if longest <= max_side:
        return rgb, 1.0
    scale = max_side / longest
    small = cv2.resize(rgb, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    return small, scale


def detect_faces(detector: Detector, rgb: np.ndarray, *, upsample: int, max_side: int) -> list[Detection]:
    """Detect on a working copy, map boxes back to full resolution, clip to the image, largest first."""
    small, scale = working_copy(rgb, max_side)
    h, w = rgb.shape[:2]
    out = []
    for d in detector.detect(small, upsample):
        left, top, right, bottom = (round(v / scale) for v in d.box)
        box = (max(left, 0), max(top, 0), min(right, w - 1), min(bottom, h - 1))
        if box[2] > box[0] and box[3] > box[1]:
            out.append(Detection(box, d.score))
    out.sort(key=lambda d: d.area, reverse=True)
    return out
