"""The ``Engine``: one object that owns the models and runs decode → detect → landmarks → chip → embed.

Models load lazily, once, on first use, so ``facekeeper detect`` never pays for the ResNet and tests can
build an engine for free. Everything here is numpy in, numpy out: no storage, no logging of pixels.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facekeeper.config import EngineSettings, LimitSettings, QualitySettings
from facekeeper.engine import align, image, quality
from facekeeper.engine.detect import CnnDetector, Detection, Detector, HogDetector, detect_faces
from facekeeper.engine.embed import DlibEmbedder, Embedder
from facekeeper.engine.landmarks import Landmarker, shape_to_array
from facekeeper.errors import MultipleFaces, NoFace, QualityRejected

# A probe (verify/identify) with several faces uses the largest when it is this many times the area of
# the next; a bystander far behind the person at the gate must not make the gate fail.
DOMINANT_AREA_RATIO = 2.0


@dataclass(frozen=True)
class Face:
    """One analysed face. ``landmarks`` are (N, 2) (x, y) pixels; ``chip`` is the aligned 150x150 RGB."""

    detection: Detection
    landmarks: np.ndarray
    chip: np.ndarray = field(repr=False)
    quality: quality.QualityReport

    @property
    def box(self) -> tuple[int, int, int, int]:
        return self.detection.box


class Engine:
    """Owns the detector, landmark models and embedder; safe to share between threads."""

    def __init__(
        self,
        settings: EngineSettings | None = None,
        quality_settings: QualitySettings | None = None,
        limits: LimitSettings | None = None,
        *,
        embedder: Embedder | None = None,
    ) -> None:
        self.settings = settings or EngineSettings()
        self.quality_settings = quality_settings or QualitySettings()
        self.limits = limits or LimitSettings()
        self._embedder = embedder
        self._detector: Detector | None = None
        self._landmarkers: dict[int, Landmarker] = {}
        self._lock = threading.Lock()

    # -- models, loaded on first use ------------------------------------------------------------
    @property
    def detector(self) -> Detector:
        with self._lock:
            if self._detector is None:
                self._detector = CnnDetector() if self.settings.detector == "cnn" else HogDetector()
            return self._detector

    def landmarker(self, points: int | None = None) -> Landmarker:
        points = points or self.settings.landmarks
        with self._lock:
            if points not in self._landmarkers:
                self._landmarkers[points] = Landmarker(points)
            return self._landmarkers[points]

    @property
    def embedder(self) -> Embedder:
        with self._lock:
            if self._embedder is None:
                self._embedder = make_embedder(self.settings)
            return self._embedder

    # -- pipeline steps ---------------------------------------------------------------------------
    def decode(self, source: str | Path | bytes) -> np.ndarray:
        return image.load(
            source, max_bytes=self.limits.max_image_bytes, max_pixels=self.limits.max_image_pixels
        )

    def detect(self, rgb: np.ndarray, *, every_face: bool = False) -> list[Detection]:
        """Faces largest first, boxes in full-resolution pixels.

        By default the quick pass answers when it finds a face, so faces much smaller than the largest may
        be left out; that is what enrollment and probes want (the person in front of the camera) and what
        makes them fast. ``every_face`` always runs the thorough pass, for callers who asked for all faces.
        """
        return detect_faces(
            self.detector, rgb, upsample=self.settings.upsample, max_side=self.settings.detect_max_side,
            quick_face=0.0 if every_face else self.settings.quick_face,
        )

    def analyze(self, rgb: np.ndarray, detection: Detection, landmarks: int | None = None) -> Face:
        """Landmarks, chip and quality for one detection, at full resolution.

        The chip is cut with the configured landmark model (5 points, like dlib's own pipeline); quality
        always uses the 68-point model, whose jaw line is what reveals a turned head.
        """
        shape = self.landmarker(landmarks).shape(rgb, detection.box)
        points = shape_to_array(shape)
        face_chip = align.chip(rgb, shape)
        points68 = points if len(points) == 68 else self.landmarker(68)(rgb, detection.box)
        return Face(detection, points, face_chip, quality.measure(points68, face_chip))

    def faces(self, rgb: np.ndarray, landmarks: int | None = None) -> list[Face]:
        return [self.analyze(rgb, d, landmarks) for d in self.detect(rgb, every_face=True)]

    def single_face(self, rgb: np.ndarray, *, enrollment: bool) -> Face:
        """The one face to use. Enrollment needs exactly one face and passes the quality gate.

        A probe tolerates smaller faces in the background when one face clearly dominates.
        """
        found = self.detect(rgb)
        if not found:
            raise NoFace("no face found in the image: use a frontal photo where the face is clearly visible")
        if len(found) > 1 and (enrollment or found[0].area < DOMINANT_AREA_RATIO * found[1].area):
            raise MultipleFaces(
                f"{len(found)} faces found: use a photo with only the person concerned", faces=len(found)
            )
        face = self.analyze(rgb, found[0])
        if enrollment:
            self.check_quality(face)
        return face

    def check_quality(self, face: Face) -> None:
        q = self.quality_settings
        failure = quality.check(
            face.quality,
            min_eye_distance=q.min_eye_distance,
            min_sharpness=q.min_sharpness,
            max_yaw=q.max_yaw,
            max_roll_degrees=q.max_roll_degrees,
        )
        if failure is not None:
            raise QualityRejected(
                failure.message(), reason=failure.reason, value=round(failure.value, 3), limit=failure.limit
            )

    def embed(self, chips: np.ndarray | list[np.ndarray]) -> np.ndarray:
        """Descriptors for aligned chips, in batches of ``batch_size``."""
        arr = np.asarray(chips, dtype=np.uint8).reshape(-1, 150, 150, 3)
        size = self.settings.batch_size
        if len(arr) <= size:
            return self.embedder.embed(arr)
        return np.concatenate([self.embedder.embed(arr[i : i + size]) for i in range(0, len(arr), size)])

    def template(self, source: str | Path | bytes, *, enrollment: bool = False) -> tuple[np.ndarray, Face]:
        """Decode, find the one face, and return its descriptor with the face record."""
        face = self.single_face(self.decode(source), enrollment=enrollment)
        return self.embed([face.chip])[0], face

    @property
    def model_id(self) -> str:
        return self.embedder.model_id


def make_embedder(settings: EngineSettings) -> Embedder:
    if settings.backend == "onnx":
        from facekeeper.engine.dlib_onnx import OnnxResnetEmbedder

        return OnnxResnetEmbedder(threads=settings.onnx_threads, batch_size=settings.batch_size)
    return DlibEmbedder()
