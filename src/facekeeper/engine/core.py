"""The ``Engine``: one object that owns the models and runs decode → detect → landmarks → chip → embed.

Models load lazily, once, on first use, so ``facekeeper detect`` never pays for the ResNet and tests can
build an engine for free. Everything here is numpy in, numpy out: no storage, no logging of pixels.

Accurate mode adds a second model on the same detection, taken from one table (``SIDE_MODELS``): each entry
says how its input is cut from the face and how it loads, so a third model is one more entry. dlib's chip
comes from its landmarks, SFace's crop from YuNet's 5 points, FaceNet's from the box; one photo costs one
detection and two embeddings.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, cast

import numpy as np

from facekeeper.config import EngineSettings, LimitSettings, QualitySettings
from facekeeper.engine import align, image, quality
from facekeeper.engine.detect import CnnDetector, Detection, Detector, HogDetector, choose_face, detect_faces
from facekeeper.engine.embed import DlibEmbedder, Embedder
from facekeeper.engine.landmarks import Landmarker, shape_to_array
from facekeeper.errors import MultipleFaces, NoFace, QualityRejected
from facekeeper.fusion import FACENET_MODEL_ID, SFACE_MODEL_ID

if TYPE_CHECKING:  # both import onnx and protobuf: loaded only when accurate mode first runs
    from facekeeper.engine.dlib_onnx import OnnxResnetEmbedder
    from facekeeper.engine.facenet import FaceNetEmbedder
    from facekeeper.engine.mtcnn import MtcnnDetector


class JawDeferred(Exception):
    """A face needs its jaw line measured and this engine is told not to load the 68-point model for it
    (``Engine.defer_jaw``): a worker pool hands such a face to the worker that has the model."""


@dataclass(frozen=True)
class Face:
    """One analysed face. ``landmarks`` are (N, 2) (x, y) pixels; ``chip`` is the aligned 150x150 RGB."""

    detection: Detection
    landmarks: np.ndarray
    chip: np.ndarray = field(repr=False)
    quality: quality.QualityReport
    # accurate mode only: each side model's input, by model id
    side_crops: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    faces_in_photo: int = 1  # a probe with several faces was answered with this one (``face_choice``)

    @property
    def box(self) -> tuple[int, int, int, int]:
        return self.detection.box


@dataclass(frozen=True)
class Described:
    """One photo's face and descriptors: dlib's (128,) always, each side model's (by id) in accurate mode."""

    face: Face
    dlib: np.ndarray
    side: dict[str, np.ndarray] = field(default_factory=dict)


class SideEmbedder(Protocol):
    """A second model: its own crops (N, size, size, 3) uint8 RGB to (N, dim) float32 unit vectors."""

    model_id: str
    dim: int

    def embed(self, crops: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class SideModel:
    """One entry of the model table: a model accurate mode fuses with dlib, how its input is cut from a
    face (``crop(engine, rgb, face)``) and how it is built (``load(settings)``)."""

    model_id: str
    dim: int
    crop_size: int
    crop: Callable[[Engine, np.ndarray, Face], np.ndarray]
    load: Callable[[EngineSettings], SideEmbedder]


def _load_facenet(settings: EngineSettings) -> SideEmbedder:
    from facekeeper.engine.facenet import FaceNetEmbedder

    return FaceNetEmbedder(threads=settings.onnx_threads, batch_size=settings.batch_size)


def _load_sface(settings: EngineSettings) -> SideEmbedder:
    from facekeeper.engine.sface import SFaceEmbedder

    return SFaceEmbedder(threads=settings.onnx_threads)


def _crop_facenet(engine: Engine, rgb: np.ndarray, face: Face) -> np.ndarray:
    return engine.facenet_crop(rgb, face)


def _crop_sface(engine: Engine, rgb: np.ndarray, face: Face) -> np.ndarray:
    from facekeeper.engine.sface import sface_crop

    return sface_crop(rgb, engine.five_points(rgb, face))


SIDE_MODELS: dict[str, SideModel] = {
    SFACE_MODEL_ID: SideModel(SFACE_MODEL_ID, 128, 112, _crop_sface, _load_sface),
    FACENET_MODEL_ID: SideModel(FACENET_MODEL_ID, 512, 160, _crop_facenet, _load_facenet),
}


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
        self._yunet: Detector | None = None
        self._side: dict[str, SideEmbedder] = {}
        self._mtcnn: MtcnnDetector | None = None
        self._landmarkers: dict[int, Landmarker] = {}
        self._lock = threading.Lock()
        # a pool worker that starts before the 68-point model (0.6 s to load) is ready raises JawDeferred for a
        # face whose jaw line must be measured, rather than loading the model itself (``pipeline.WorkerPool``)
        self.defer_jaw = False

    # -- models, loaded on first use ------------------------------------------------------------
    @property
    def detector(self) -> Detector:
        with self._lock:
            if self._detector is None:
                self._detector = make_detector(self.settings)
            return self._detector

    @property
    def yunet(self) -> Detector:
        """YuNet, for its 5 points when the configured detector has none (SFace on a HOG detection)."""
        if self.settings.detector == "yunet":
            return self.detector
        with self._lock:
            if self._yunet is None:
                from facekeeper.engine.yunet import YuNetDetector

                self._yunet = YuNetDetector(threads=self.settings.onnx_threads)
            return self._yunet

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

    @property
    def side_models(self) -> tuple[SideModel, ...]:
        """The table entries of the models accurate mode fuses with dlib (``[engine] side_models``)."""
        return tuple(SIDE_MODELS[m] for m in self.settings.side_models)

    def side_embedder(self, model_id: str) -> SideEmbedder:
        """The side model ``model_id``, loaded on first use."""
        spec = SIDE_MODELS[model_id]
        with self._lock:
            if spec.model_id not in self._side:
                self._side[spec.model_id] = spec.load(self.settings)
            return self._side[spec.model_id]

    @property
    def facenet(self) -> FaceNetEmbedder:
        return cast("FaceNetEmbedder", self.side_embedder(FACENET_MODEL_ID))

    @property
    def mtcnn(self) -> MtcnnDetector:
        with self._lock:
            if self._mtcnn is None:
                from facekeeper.engine.mtcnn import MtcnnDetector

                self._mtcnn = MtcnnDetector(threads=self.settings.onnx_threads)
            return self._mtcnn

    # -- pipeline steps ---------------------------------------------------------------------------
    def decode(self, source: str | Path | bytes, name: str = "image") -> np.ndarray:
        """``name`` labels bytes in error messages (a path names itself)."""
        return image.load(
            source, max_bytes=self.limits.max_image_bytes, max_pixels=self.limits.max_image_pixels, name=name
        )

    def detect(self, rgb: np.ndarray, *, every_face: bool = False, accurate: bool = False) -> list[Detection]:
        """Faces largest first, boxes in full-resolution pixels.

        By default the quick pass answers when it finds a face, so faces much smaller than the largest may
        be left out; that is what enrollment and probes want (the person in front of the camera) and what
        makes them fast. ``every_face`` always runs the thorough pass, for callers who asked for all faces.
        ``accurate``: YuNet's quick pass on the larger copy accurate mode's side models were measured on.
        """
        return detect_faces(
            self.detector, rgb, upsample=self.settings.upsample, max_side=self.settings.detect_max_side,
            quick_face=0.0 if every_face else self.settings.quick_face, precise=accurate,
        )

    def analyze(self, rgb: np.ndarray, detection: Detection, landmarks: int | None = None, *,
                measure_jaw: bool = False) -> Face:
        """Landmarks, chip and quality for one detection, at full resolution.

        The chip is cut with the configured landmark model (5 points, like dlib's own pipeline). Yaw needs
        the 68-point jaw line, except for a face the 5-point screen finds clearly frontal (see ``quality``);
        ``measure_jaw`` measures it for every face, for callers who report rather than gate.
        """
        box = detection.box
        if detection.points is not None:  # YuNet's box, framed as HOG's for dlib's shape predictor
            from facekeeper.engine.yunet import hog_frame

            box = hog_frame(box)
        shape = self.landmarker(landmarks).shape(rgb, box)
        points = shape_to_array(shape)
        face_chip = align.chip(rgb, shape)
        jaw = None
        if len(points) == 5 and (measure_jaw or quality.needs_jaw(points, detection.frontal,
                                                                   self.quality_settings.max_yaw)):
            if self.defer_jaw and 68 not in self._landmarkers:
                raise JawDeferred
            jaw = self.landmarker(68)(rgb, box)
        return Face(detection, points, face_chip, quality.measure(points, face_chip, jaw))

    def faces(self, rgb: np.ndarray, landmarks: int | None = None) -> list[Face]:
        return [self.analyze(rgb, d, landmarks, measure_jaw=True) for d in self.detect(rgb, every_face=True)]

    def single_face(self, rgb: np.ndarray, *, enrollment: bool, accurate: bool = False) -> Face:
        """The one face to use. Enrollment needs exactly one face and passes the quality gate.

        A probe with several faces (someone in the background) is answered, not refused: it uses the face
        ``face_choice`` names, the largest or the one nearest the image centre. ``accurate`` also cuts the
        side models' crops.
        """
        found = self.detect(rgb, accurate=accurate)
        if not found:
            raise NoFace("no face found in the image: use a frontal photo where the face is clearly visible")
        if len(found) > 1 and enrollment:
            raise MultipleFaces(f"{len(found)} faces found: use a photo with only the person concerned",
                                faces=len(found))
        chosen = found[choose_face(found, rgb.shape, "centre" if self.settings.face_choice == "centre" else "largest")]
        face = replace(self.analyze(rgb, chosen), faces_in_photo=len(found))
        if enrollment:
            self.check_quality(face)
        if accurate:
            face = replace(face, side_crops={m.model_id: m.crop(self, rgb, face) for m in self.side_models})
        return face

    def five_points(self, rgb: np.ndarray, face: Face) -> np.ndarray:
        """YuNet's 5 points (5, 2) for ``face``: its detection's own, or (HOG, CNN) those of the YuNet face
        that overlaps its box most. ``NoFace`` when YuNet finds none there."""
        if face.detection.points is not None:
            return face.detection.points
        left, top, right, bottom = face.box
        best, points = 0, None
        for d in detect_faces(self.yunet, rgb, upsample=0, max_side=self.settings.detect_max_side):
            ix = max(0, min(right, d.box[2]) - max(left, d.box[0]))
            iy = max(0, min(bottom, d.box[3]) - max(top, d.box[1]))
            if ix * iy > best:
                best, points = ix * iy, d.points
        if points is None:
            raise NoFace("the face's landmarks for the second model were not found: use a frontal photo")
        return points

    def facenet_crop(self, rgb: np.ndarray, face: Face) -> np.ndarray:
        """FaceNet's crop of ``face``: its HOG box (YuNet's framed as HOG's) reshaped to MTCNN's framing, or
        (``facenet_box = "mtcnn"``) the MTCNN box that overlaps it most, falling back to the reshaped box when
        MTCNN finds none there."""
        from facekeeper.engine.facenet import facenet_crop, hog_to_facenet_box
        from facekeeper.engine.yunet import hog_frame

        # a YuNet box is framed as HOG's first: the reshaping to MTCNN's framing was measured on HOG boxes
        hog_box = face.box if face.detection.points is None else hog_frame(face.box)
        box: tuple[float, ...] = hog_to_facenet_box(hog_box)
        if self.settings.facenet_box == "mtcnn":
            left, top, right, bottom = face.box
            best = 0
            for d in self.mtcnn.detect(rgb):
                ix = max(0, min(right, d.box[2]) - max(left, d.box[0]))
                iy = max(0, min(bottom, d.box[3]) - max(top, d.box[1]))
                if ix * iy > best:
                    best, box = ix * iy, tuple(float(v) for v in d.box)
        return facenet_crop(rgb, box)

    def embed_side(self, crops: np.ndarray | list[np.ndarray], model_id: str) -> np.ndarray:
        """Side model ``model_id``'s descriptors (N, dim) for crops cut by its table entry."""
        spec = SIDE_MODELS[model_id]
        arr = np.asarray(crops, dtype=np.uint8).reshape(-1, spec.crop_size, spec.crop_size, 3)
        return self.side_embedder(spec.model_id).embed(arr)

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

    def describe(self, sources: Sequence[str | Path | bytes], *, enrollment: bool,
                 accurate: bool = False) -> list[Described]:
        """Photos to descriptors, the one path every photo operation takes: decode, the one face, quality
        (``enrollment``), dlib's descriptors in one batch and, when ``accurate``, each side model's. Any photo
        that fails raises, so a caller stores all or nothing."""
        faces = [self.single_face(self.decode(source), enrollment=enrollment, accurate=accurate)
                 for source in sources]
        dlib = self.embed([f.chip for f in faces])
        side = {m: self.embed_side([f.side_crops[m] for f in faces], m) for m in faces[0].side_crops} if faces else {}
        return [Described(f, dlib[i], {m: vecs[i] for m, vecs in side.items()}) for i, f in enumerate(faces)]

    def template(self, source: str | Path | bytes, *, enrollment: bool = False) -> tuple[np.ndarray, Face]:
        """Decode, find the one face, and return its descriptor with the face record."""
        (one,) = self.describe([source], enrollment=enrollment)
        return one.dlib, one.face

    @property
    def model_id(self) -> str:
        """The embedder's model id, without loading it (a process whose workers embed never needs it)."""
        if self._embedder is not None:
            return self._embedder.model_id
        return embedder_class(self.settings).model_id


def make_detector(settings: EngineSettings) -> Detector:
    if settings.detector == "yunet":
        from facekeeper.engine.yunet import YuNetDetector

        return YuNetDetector(threads=settings.onnx_threads)
    return CnnDetector() if settings.detector == "cnn" else HogDetector()


def embedder_class(settings: EngineSettings) -> type[OnnxResnetEmbedder] | type[DlibEmbedder]:
    if settings.backend == "onnx":
        from facekeeper.engine.dlib_onnx import OnnxResnetEmbedder

        return OnnxResnetEmbedder
    return DlibEmbedder


def make_embedder(settings: EngineSettings) -> Embedder:
    if settings.backend == "onnx":
        from facekeeper.engine.dlib_onnx import OnnxResnetEmbedder

        return OnnxResnetEmbedder(threads=settings.onnx_threads, batch_size=settings.batch_size)
    return DlibEmbedder()
