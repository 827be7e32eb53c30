"""Frames to observations: where the face is in each frame, its 68 landmarks, and (some frames) who it is.

This is the only part of liveness that looks at pixels, through the engine's own detector, 68-point
landmarker and embedder: no second detector. Each frame is scaled to ``MAX_SIDE``, measured and dropped;
what comes out (points, boxes, descriptors of sampled frames) is numbers, kept for one decision.

The face is detected every ``DETECT_EVERY`` frames and followed in between from its landmarks (the box
moves and scales with them), because HOG detection is the costly step (about 18 ms a 480 px frame against
3 ms for the landmarks). A frame whose landmarks say the face moved away is detected again.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from facekeeper.engine import align
from facekeeper.engine.core import Engine
from facekeeper.engine.detect import HogDetector, detect_faces, quick_side

MAX_SIDE = 480  # px, longer side: the resolution the rules were measured at; larger frames are scaled down
# The person stands close to the terminal: a face smaller than this share of the frame's shorter side is not
# looked for, which lets detection run on a copy where such a face is HOG's 80 px window (about 5 ms).
MIN_FACE_SHARE = 0.3
# Liveness detects with dlib's HOG whatever the engine's detector: the 68-point model was trained on HOG's
# boxes and the rules were measured on them; on YuNet's boxes 2 of 9 bona fide trials of the shared clips
# failed (BPCER 22%) against 1 of 9 on HOG's, with every attack still refused by both.
DETECT_EVERY = 4  # frames between full detections; in between the box follows the landmarks
DESCRIBE_EVERY = 2  # frames between descriptors (identity); the first and last frames always get one
LOST_SHIFT = 0.5  # box widths the landmarks' centre may move from the box before the face is detected again


@dataclass(frozen=True)
class Observation:
    """One frame: ``t`` seconds from the first; ``points`` (68, 2) (x, y) px at ``MAX_SIDE`` scale (iBUG 300-W
    order), None when no face was found; ``faces`` how many detection found (0 on a followed frame);
    ``descriptor`` the dlib descriptor (128,) of sampled frames."""

    t: float
    points: np.ndarray | None = field(repr=False)
    faces: int = 0
    descriptor: np.ndarray | None = field(default=None, repr=False)


def scaled(rgb: np.ndarray) -> np.ndarray:
    """``rgb`` with its longer side at most ``MAX_SIDE`` pixels."""
    import cv2

    h, w = rgb.shape[:2]
    if max(h, w) <= MAX_SIDE:
        return rgb
    s = MAX_SIDE / max(h, w)
    return cv2.resize(rgb, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)


def _box_from(points: np.ndarray, previous: tuple[int, int, int, int],
              previous_points: np.ndarray) -> tuple[int, int, int, int]:
    """The previous detection box moved and scaled as the landmarks moved since it was detected."""
    c0, c1 = previous_points.mean(0), points.mean(0)
    s = float(np.ptp(points[:, 0]) / max(np.ptp(previous_points[:, 0]), 1e-6))
    left, top, right, bottom = previous
    bx, by = (left + right) / 2 - c0[0], (top + bottom) / 2 - c0[1]
    half_w, half_h = (right - left) / 2 * s, (bottom - top) / 2 * s
    cx, cy = c1[0] + bx * s, c1[1] + by * s
    return round(cx - half_w), round(cy - half_h), round(cx + half_w), round(cy + half_h)


class Observer:
    """Measures a sequence of frames with ``engine``; one per sequence (it follows the face between frames)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._anchor: tuple[tuple[int, int, int, int], np.ndarray] | None = None  # last detection, its points
        self._box: tuple[int, int, int, int] | None = None
        self._index = 0

    def _detect(self, rgb: np.ndarray) -> list[tuple[int, int, int, int]]:
        side = quick_side(rgb, MIN_FACE_SHARE, MAX_SIDE)
        found = detect_faces(_hog(), rgb, upsample=0, max_side=side)
        return [d.box for d in found]

    def frame(self, t: float, rgb: np.ndarray, *, describe: bool = False) -> Observation:
        """Observe one frame at ``t`` seconds; ``describe`` also makes its descriptor."""
        rgb = scaled(rgb)
        faces = 0
        if self._box is None or self._index % DETECT_EVERY == 0:
            boxes = self._detect(rgb)
            faces = len(boxes)
            self._box = boxes[0] if boxes else None
            self._anchor = None
        self._index += 1
        if self._box is None:
            return Observation(t, None, faces)
        shape = self.engine.landmarker(68).shape(rgb, self._box)
        points = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)
        left, right = self._box[0], self._box[2]
        centre = points.mean(0)
        if abs(centre[0] - (left + right) / 2) > LOST_SHIFT * (right - left) and faces == 0:
            self._box = None  # the face left the box: find it again on the next frame
            self._index = 0
            return self.frame(t, rgb, describe=describe)
        if self._anchor is None:
            self._anchor = (self._box, points)
        else:
            self._box = _box_from(points, *self._anchor)
        descriptor = self.engine.embed([align.chip(rgb, shape)])[0] if describe else None
        return Observation(t, points, faces, descriptor)


def observe(engine: Engine, frames: Iterable[tuple[float, np.ndarray]]) -> list[Observation]:
    """Observations of timestamped RGB frames ``(t seconds, (H, W, 3) uint8)``, in order; each frame is
    dropped once measured. Descriptors are made for every ``DESCRIBE_EVERY``-th frame, the first and the last."""
    observer = Observer(engine)
    out: list[Observation] = []
    last: tuple[float, np.ndarray] | None = None
    for i, (t, rgb) in enumerate(frames):
        if last is not None:
            out.append(observer.frame(*last, describe=(i - 1) % DESCRIBE_EVERY == 0))
        last = (t, rgb)
    if last is not None:
        out.append(observer.frame(*last, describe=True))
    t0 = out[0].t if out else 0.0
    return [Observation(o.t - t0, o.points, o.faces, o.descriptor) for o in out]


@functools.cache
def _hog() -> HogDetector:
    """The engine's HOG detector (its model is loaded once per process and shared)."""
    return HogDetector()
