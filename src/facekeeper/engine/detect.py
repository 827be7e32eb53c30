"""Face detectors. Boxes are (left, top, right, bottom) in pixels of the image passed in.

Detection is the costly step of the pipeline, so it runs on a copy scaled to a working size and the boxes
are mapped back; landmarks and the chip are then taken at full resolution, where the detail is.

HOG's cost grows with the pixels it scans, and each upsampling step quadruples them. Enrollment photos and
gate frames are framed on a person, so a quick pass first looks only for faces of at least ``quick_face`` of
the image's shorter side, on a copy just large enough for them (upsample 0). Only when it finds nothing does
the thorough pass run (``detect_max_side`` copy, ``upsample``), which finds faces down to ~40 px.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal, Protocol, runtime_checkable

import numpy as np

from facekeeper.engine import models


@dataclass(frozen=True)
class Detection:
    """A found face: box (left, top, right, bottom) in original-image pixels, and the detector's score.

    ``frontal`` says whether one of HOG's front-looking filters found it (None: the detector does not say).
    The quality gate uses it to decide whether a head may be turned. ``points`` are the detector's own five
    landmarks (YuNet: right eye, left eye, nose tip, right and left mouth corner, as seen in the picture's
    left-to-right order of the eyes; (5, 2) x, y pixels), or None for detectors without them.
    """

    box: tuple[int, int, int, int]
    score: float
    frontal: bool | None = None
    points: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def width(self) -> int:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> int:
        return self.box[3] - self.box[1]

    @property
    def area(self) -> int:
        return max(self.width, 0) * max(self.height, 0)


@runtime_checkable
class Detector(Protocol):
    name: str

    def detect(self, rgb: np.ndarray, upsample: int) -> list[Detection]: ...


# dlib's frontal face detector is five HOG filters: front looking, left looking, right looking, and front
# looking but rotated left or right. Those that look ahead:
HOG_FRONT_FILTERS = frozenset({0, 3, 4})
_HOG_LOCK = threading.Lock()


class HogDetector:
    """dlib's HOG + linear SVM frontal face detector: fast on a CPU, the default."""

    name = "hog"

    def __init__(self) -> None:
        self._det = models.frontal_detector()  # one per process, shared by every engine

    def detect(self, rgb: np.ndarray, upsample: int) -> list[Detection]:
        with _HOG_LOCK:  # dlib's detector keeps its feature pyramid in itself between load and scan
            rects, scores, filters = self._det.run(rgb, upsample, 0.0)
        return [
            Detection((r.left(), r.top(), r.right(), r.bottom()), float(s), int(f) in HOG_FRONT_FILTERS)
            for r, s, f in zip(rects, scores, filters, strict=True)
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


FaceChoice = Literal["centre", "largest"]


def choose_face(detections: Sequence[Detection], image_shape: Sequence[int], rule: FaceChoice = "centre") -> int:
    """Index of the face to use among several: nearest the image centre, or the largest.

    FaceNet's published accuracy used the centre rule; taking MTCNN's most confident face instead cost 2
    points on the benchmark, because a confident bystander wins over the subject.
    """
    if not detections:
        raise ValueError("no detections to choose from")
    if rule == "largest":
        return max(range(len(detections)), key=lambda i: detections[i].area)
    if rule != "centre":
        raise ValueError(f"unknown face choice {rule!r}: use 'centre' or 'largest'")
    cy, cx = image_shape[0] / 2, image_shape[1] / 2

    def offset(i: int) -> float:
        left, top, right, bottom = detections[i].box
        return ((left + right) / 2 - cx) ** 2 + ((top + bottom) / 2 - cy) ** 2

    return min(range(len(detections)), key=offset)


def working_copy(rgb: np.ndarray, max_side: int, *, halving: bool = False) -> tuple[np.ndarray, float]:
    """Return the image scaled so its longer side is at most ``max_side``, and the scale applied.

    ``halving``: halve it with a Gaussian pyramid (``cv2.pyrDown``) while that stays above the size, then
    area-average the rest of the way. Area averaging by an uneven factor is OpenCV's slow path: a 600 px photo
    to 128 px costs 1.4 ms that way and 0.5 ms halved first, a 1-2 Mpx photo 4.8 ms against 1.4.
    """
    import cv2

    h, w = rgb.shape[:2]
    longest = max(h, w)
    if longest <= max_side:
        return rgb, 1.0
    scale = max_side / longest
    size = (round(w * scale), round(h * scale))
    small = rgb
    while halving and max(small.shape[:2]) // 2 >= max_side:
        small = cv2.pyrDown(small)
    if (small.shape[1], small.shape[0]) != size:
        small = cv2.resize(small, size, interpolation=cv2.INTER_AREA)
    return small, scale


# HOG's square box is this many YuNet box widths (medians over 224 photos of London and faces94)
YUNET_TO_HOG_SIDE = 1.08
# HOG's image pyramid shrinks by 5/6 a level: its quick pass still finds faces one level under its window
QUICK_PYRAMID_STEP = 5 / 6
# dlib's HOG window is 80x80: at upsample 0 it finds faces from about that size up. The quick pass scales
# the smallest face it looks for to that size.
QUICK_FACE_PX = 80
# YuNet finds faces from ~10 px, so fast mode's quick pass looks for the smallest wanted face at 32 px: a 600 px
# photo is searched at 128 px instead of 320 (about 3 ms instead of 9, resizing included: the copy is halved
# first, ``working_copy``). Only dlib's landmarker's starting box comes from that copy (the landmarks are found
# again at full resolution), which moves a descriptor by about as much as a different box from the same photo
# always did (median 0.03; fast mode's table is measured this way). Accurate mode keeps the 80 px copy, made as
# before: SFace aligns on YuNet's own points, whose error grows as the copy shrinks, and its tables were measured
# on them.
YUNET_QUICK_FACE_PX = 32


def quick_side(rgb: np.ndarray, quick_face: float, max_side: int, face_px: int = QUICK_FACE_PX) -> int:
    """Longer side of the quick pass's copy: where a face of ``quick_face`` x the shorter side is ``face_px``."""
    h, w = rgb.shape[:2]
    scale = min(1.0, face_px / (quick_face * min(h, w)))
    return min(max_side, max(1, round(max(h, w) * scale)))


def detect_faces(detector: Detector, rgb: np.ndarray, *, upsample: int, max_side: int,
                 quick_face: float = 0.0, precise: bool = False) -> list[Detection]:
    """Faces largest first, boxes in full-resolution pixels: the quick pass, else the thorough one.

    ``quick_face`` 0 skips the quick pass. CNN detection has no quick pass: its cost is per pixel too,
    but it is chosen for faces HOG misses, which a smaller copy would lose. YuNet's quick pass runs on the
    same small copy (its cost is per pixel: 600 px photos cost ~3.5x less at 320 px) and keeps only the faces
    the HOG pass would see: at least ``quick_face`` of the shorter side, as HOG would box them. dlib's
    landmarks are found again at full resolution, so only the box comes from the small copy. ``precise``: YuNet's
    quick copy sized for HOG's 80 px rather than its own 32 (accurate mode, whose SFace aligns on YuNet's points).
    """
    if quick_face > 0 and detector.name == "yunet":
        size = QUICK_PYRAMID_STEP * quick_face * min(rgb.shape[:2])
        face_px = QUICK_FACE_PX if precise else YUNET_QUICK_FACE_PX
        quick = _detect_scaled(detector, rgb, upsample=0, max_side=quick_side(rgb, quick_face, max_side, face_px),
                               halving=not precise)
        big = [d for d in quick if YUNET_TO_HOG_SIDE * d.width >= size]
        if big:
            return big
        found = _detect_scaled(detector, rgb, upsample=upsample, max_side=max_side)
        return [d for d in found if YUNET_TO_HOG_SIDE * d.width >= size] or found
    if quick_face > 0 and detector.name == "hog":
        found = _detect_scaled(detector, rgb, upsample=0, max_side=quick_side(rgb, quick_face, max_side))
        if found:
            return found
    return _detect_scaled(detector, rgb, upsample=upsample, max_side=max_side)


def _detect_scaled(detector: Detector, rgb: np.ndarray, *, upsample: int, max_side: int,
                   halving: bool = False) -> list[Detection]:
    """Detect on a working copy (``working_copy``), map boxes back to full resolution, clip to the image, largest
    first."""
    small, scale = working_copy(rgb, max_side, halving=halving)
    h, w = rgb.shape[:2]
    out = []
    for d in detector.detect(small, upsample):
        left, top, right, bottom = (round(v / scale) for v in d.box)
        points = None if d.points is None else (d.points / scale).astype(np.float32)
        # clipped as face_recognition clips (to w and h): dlib's landmarker then starts from the same box,
        # and templates of faces at the edge agree with the peer's (w - 1 moved them by up to 0.05)
        box = (max(left, 0), max(top, 0), min(right, w), min(bottom, h))
        if box[2] > box[0] and box[3] > box[1]:
            out.append(replace(d, box=box, points=points))
    out.sort(key=lambda d: d.area, reverse=True)
    return out
