"""The enrollment quality gate: a template is only as good as the photo it came from.

Each check measures one thing and, when it fails, names the reason and the measured value so the
operator knows whether to move closer, hold still or face the camera.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from facekeeper.engine.landmarks import eye_centres


@dataclass(frozen=True)
class QualityReport:
    eye_distance: float  # pixels, original image
    sharpness: float  # variance of the Laplacian of the grey chip
    yaw: float  # left/right asymmetry of the nose between the jaw edges, -1..1; 0 is frontal
    roll_degrees: float

    def as_dict(self) -> dict[str, float]:
        return {
            "eye_distance": round(self.eye_distance, 1),
            "sharpness": round(self.sharpness, 1),
            "yaw": round(self.yaw, 3),
            "roll_degrees": round(self.roll_degrees, 1),
        }


@dataclass(frozen=True)
class QualityFailure:
    reason: str  # "face-too-small", "too-blurred", "head-turned", "head-tilted"
    value: float
    limit: float

    def message(self) -> str:
        words = {
            "face-too-small": "the face is too small (eye distance {v:.0f} px, need {l:.0f}): move closer",
            "too-blurred": "the photo is too blurred (sharpness {v:.1f}, need {l:.1f}): hold still, refocus",
            "head-turned": "the head is turned (yaw {v:.2f}, limit {l:.2f}): face the camera",
            "head-tilted": "the head is tilted ({v:.0f} degrees, limit {l:.0f}): hold the head level",
        }
        return words[self.reason].format(v=self.value, l=self.limit)


def sharpness(chip: np.ndarray) -> float:
    """Variance of the Laplacian on the grey chip; on the fixed-size chip it compares across photos."""
    import cv2

    grey = cv2.cvtColor(chip, cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def yaw(points68: np.ndarray) -> float:
    """How far the head is turned: (a - b) / (a + b) for the nose tip's distances a, b to the two jaw edges.

    The 5-point model has no jaw, and the nose-to-eye offset it allows barely moves with yaw, so the
    gate uses the 68-point model for this measure.
    """
    nose, jaw_right, jaw_left = points68[30], points68[0], points68[16]
    a = float(np.linalg.norm(nose - jaw_right))
    b = float(np.linalg.norm(nose - jaw_left))
    return (a - b) / max(a + b, 1e-6)


def measure(points68: np.ndarray, chip: np.ndarray) -> QualityReport:
    """Size, blur and pose of a face from its 68 landmarks and its aligned chip."""
    right_eye, left_eye, _ = eye_centres(points68)
    dx, dy = left_eye - right_eye
    eye_distance = float(math.hypot(dx, dy))
    roll = math.degrees(math.atan2(dy, dx))
    return QualityReport(eye_distance, sharpness(chip), yaw(points68), roll)


def check(
    report: QualityReport,
    *,
    min_eye_distance: float,
    min_sharpness: float,
    max_yaw: float,
    max_roll_degrees: float,
) -> QualityFailure | None:
    """Return the first failed check (size, blur, yaw, roll), or None when the face may be enrolled."""
    if report.eye_distance < min_eye_distance:
        return QualityFailure("face-too-small", report.eye_distance, min_eye_distance)
    if report.sharpness < min_sharpness:
        return QualityFailure("too-blurred", report.sharpness, min_sharpness)
    if abs(report.yaw) > max_yaw:
        return QualityFailure("head-turned", abs(report.yaw), max_yaw)
    if abs(report.roll_degrees) > max_roll_degrees:
        return QualityFailure("head-tilted", abs(report.roll_degrees), max_roll_degrees)
    return None
