"""Alignment: cut the face out as dlib's 150x150 chip, the input its ResNet was trained on."""

from __future__ import annotations

import numpy as np

from facekeeper.engine.embed import CHIP_SIZE

CHIP_PADDING = 0.25  # the padding dlib's face recognition model and face_recognition both use


def chip(rgb: np.ndarray, shape) -> np.ndarray:
    """Rotate, scale and crop to a (150, 150, 3) uint8 chip from a dlib shape (5 or 68 points)."""
    import dlib

    return np.ascontiguousarray(dlib.get_face_chip(rgb, shape, size=CHIP_SIZE, padding=CHIP_PADDING))
