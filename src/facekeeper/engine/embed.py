"""Embedders turn aligned face chips into fixed-length templates.

The protocol is deliberately tiny (a name, a size, one batch call) so another runtime or model can
replace dlib without touching callers; the engine only ever sees ``Embedder``.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from facekeeper.engine import models

CHIP_SIZE = 150


@runtime_checkable
class Embedder(Protocol):
    """Maps ``chips`` (N, 150, 150, 3) uint8 RGB to ``(N, dim)`` float32 descriptors."""

    model_id: str  # names model *and* weights: templates with different ids are never compared
    dim: int

    def embed(self, chips: np.ndarray) -> np.ndarray: ...


def check_chips(chips: np.ndarray) -> np.ndarray:
    chips = np.asarray(chips)
    if chips.ndim == 3:
        chips = chips[None]
    if chips.ndim != 4 or chips.shape[1:] != (CHIP_SIZE, CHIP_SIZE, 3) or chips.dtype != np.uint8:
        raise ValueError(f"chips must be (N, {CHIP_SIZE}, {CHIP_SIZE}, 3) uint8, got {chips.shape} {chips.dtype}")
    return np.ascontiguousarray(chips)


class DlibEmbedder:
    """dlib's ResNet (``dlib_face_recognition_resnet_model_v1``) run by dlib itself: the reference."""

    model_id = "dlib-resnet-v1"
    dim = 128

    def __init__(self) -> None:
        import dlib

        self._net = dlib.face_recognition_model_v1(str(models.model_path(models.RESNET)))

    def embed(self, chips: np.ndarray) -> np.ndarray:
        chips = check_chips(chips)
        if len(chips) == 0:
            return np.zeros((0, self.dim), np.float32)
        out = self._net.compute_face_descriptor(list(chips))
        return np.asarray([np.asarray(d) for d in out], dtype=np.float32)
