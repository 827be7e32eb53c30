"""The enrollment quality gate: a template is only as good as the photo it came from.

Each check measures one thing and, when it fails, names the reason and the measured value so the
operator knows whether to move closer, hold still or face the camera.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from facekeeper.engine.landmarks import eye_centres

# Yaw from the 5 points: the nose base's offset from the eyes' midpoint along the eye line, in eye distances,
# times this factor to put it on the jaw measure's scale (least squares over 1,247 real faces and their
# mirror images: jaw yaw = 2.04 x offset, residual sd 0.042). Too noisy to judge a turned head by itself...
EYES_NOSE_TO_JAW = 2.04
# ...but enough to clear a head that looks straight ahead. On a face HOG's front-looking filters found,
# an estimate within SCREEN_YAW of frontal had a jaw yaw of at most 0.23 on those faces (94% of them), less
# than half the default limit; such faces skip the 68-point model, which costs as much as detection. The
# screen applies only while the limit is at least SCREEN_MIN_LIMIT; a stricter site always measures the jaw.
SCREEN_YAW = 0.16
SCREEN_MIN_LIMIT = 0.4


@dataclass(frozen=True)
class QualityReport:
    eye_distance: float  # pixels, original image
    sharpness: float  # variance of the Laplacian of the grey chip
    yaw: float  # left/right asymmetry of the nose between the jaw edges, -1..1; 0 is frontal
    roll_degrees: float
    yaw_from: str = "jaw"  # "jaw" (68 points) or "eyes-nose" (the 5-point estimate of a clearly frontal face)

    def as_dict(self) -> dict[str, float | str]:
        return {
            "eye_distance": round(self.eye_distance, 1),
            "sharpness": round(self.sharpness, 1),
            "yaw": round(self.yaw, 3),
            "yaw_from": self.yaw_from,
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

    The 5-point model has no jaw; its estimate (``yaw_eyes_nose``) only screens out the faces that clearly
    look ahead, and every other face is judged on this measure.
    """
    nose, jaw_right, jaw_left = points68[30], points68[0], points68[16]
    a = float(np.linalg.norm(nose - jaw_right))
    b = float(np.linalg.norm(nose - jaw_left))
    return (a - b) / max(a + b, 1e-6)


def yaw_eyes_nose(points5: np.ndarray) -> float:
    """Yaw estimated from 5 landmarks, on the jaw measure's scale (same sign: positive when a > b)."""
    right_eye, left_eye, nose = eye_centres(points5)
    axis = left_eye - right_eye
    span = max(float(np.linalg.norm(axis)), 1e-6)
    offset = float(np.dot(nose - (left_eye + right_eye) / 2, axis)) / span**2
    return EYES_NOSE_TO_JAW * offset


def needs_jaw(points5: np.ndarray, frontal: bool | None, max_yaw: float) -> bool:
    """Whether the 68-point jaw line must be measured to judge this face against ``max_yaw``."""
    return not (frontal and max_yaw >= SCREEN_MIN_LIMIT and abs(yaw_eyes_nose(points5)) <= SCREEN_YAW)


def measure(points: np.ndarray, chip: np.ndarray, jaw: np.ndarray | None = None) -> QualityReport:
    """Size, blur and pose of a face from its landmarks (5 or 68) and its aligned chip.

    Yaw comes from the 68-point ``jaw`` (or ``points`` when they are 68) when given, else from the 5 points.
    """
    right_eye, left_eye, _ = eye_centres(points)
    dx, dy = left_eye - right_eye
    eye_distance = float(math.hypot(dx, dy))
    roll = math.degrees(math.atan2(dy, dx))
    if jaw is None and len(points) == 68:
        jaw = points
    if jaw is None:
        return QualityReport(eye_distance, sharpness(chip), yaw_eyes_nose(points), roll, "eyes-nose")
    return QualityReport(eye_distance, sharpness(chip), yaw(jaw), roll, "jaw")


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
