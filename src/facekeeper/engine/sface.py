"""SFace (OpenCV Zoo, 2021dec, int8 block-quantised): a 128-d face embedder, stronger than dlib's ResNet.

Its input is a 112x112 RGB crop made by warping the 5 YuNet points onto the ArcFace template with a
similarity transform (what OpenCV's ``FaceRecognizerSF.alignCrop`` does); its output is compared by cosine,
which we keep as the Euclidean distance between unit vectors (``sqrt(2 - 2 cos)``, monotone in the cosine), so
the gallery's index and keyed rotation work on it unchanged.

Runtime, measured on this file (docs/benchmarks.md): OpenCV dnn ~23-36 ms a face on one thread, onnxruntime
56 ms (47 ms with the int8 weights folded to float32); a second thread and batching bought nothing on a
2-core box. ``cv2.FaceRecognizerSF.create`` fails on this file in OpenCV 5.1, so the graph is read with
``cv2.dnn.readNetFromONNX`` and fed by its input name ``data``.
"""

from __future__ import annotations

import threading

import numpy as np

from facekeeper.engine import models

MODEL_ID = "sface-2021dec-int8bq"
EMBEDDING_DIM = 128
CROP_SIZE = 112
INPUT_NAME = "data"
# Where the right eye, left eye, nose tip, right and left mouth corners sit in a 112x112 crop (ArcFace's
# template, the one OpenCV aligns SFace's input to).
TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                     [41.5493, 92.3655], [70.7299, 92.2041]], np.float64)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The (2, 3) rotation + uniform scale + shift that maps ``src`` points onto ``dst`` in least squares
    (Umeyama 1991), both (N, 2)."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1
    rot = u @ sign @ vt
    scale = float(np.trace(np.diag(sig) @ sign) / (s**2).sum(1).mean())
    return np.hstack([scale * rot, (mu_d - scale * rot @ mu_s)[:, None]])


def sface_crop(rgb: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The (112, 112, 3) uint8 RGB crop SFace reads, from YuNet's 5 points ((5, 2) x, y pixels)."""
    import cv2

    matrix = similarity_transform(np.asarray(points, np.float64).reshape(5, 2), TEMPLATE)
    return cv2.warpAffine(np.ascontiguousarray(rgb), matrix, (CROP_SIZE, CROP_SIZE), flags=cv2.INTER_LINEAR)


class SFaceEmbedder:
    """Maps (N, 112, 112, 3) uint8 RGB crops from ``sface_crop`` to (N, 128) float32 unit vectors."""

    model_id = MODEL_ID
    dim = EMBEDDING_DIM

    def __init__(self, threads: int = 1) -> None:
        import cv2

        cv2.setNumThreads(threads)
        models.quiet_opencv()
        self._net = cv2.dnn.readNetFromONNX(str(models.zoo_path(models.SFACE)))
        self._lock = threading.Lock()  # a dnn Net holds its input between setInput and forward

    def embed(self, crops: np.ndarray) -> np.ndarray:
        crops = np.asarray(crops)
        if crops.ndim == 3:
            crops = crops[None]
        if crops.ndim != 4 or crops.shape[1:] != (CROP_SIZE, CROP_SIZE, 3) or crops.dtype != np.uint8:
            raise ValueError(f"crops must be (N, {CROP_SIZE}, {CROP_SIZE}, 3) uint8, got {crops.shape} {crops.dtype}")
        if len(crops) == 0:
            return np.zeros((0, self.dim), np.float32)
        blob = np.ascontiguousarray(crops.transpose(0, 3, 1, 2), dtype=np.float32)  # RGB, 0-255, as trained
        with self._lock:
            self._net.setInput(blob, INPUT_NAME)
            out = np.asarray(self._net.forward(), np.float32).reshape(len(crops), self.dim)
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
