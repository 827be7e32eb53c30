"""Template protection keeps accuracy and breaks linkability."""

from __future__ import annotations

import numpy as np
import pytest

from facekeeper.gallery.keys import DeploymentKey
from facekeeper.gallery.protect import (
    OrthogonalTransform,
    SealError,
    open_sealed,
    seal,
    vector_from_bytes,
    vector_to_bytes,
)


def faces_like(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 0.09, (n, 128)).astype(np.float32)


def test_transform_preserves_every_pairwise_distance() -> None:
    t = OrthogonalTransform(DeploymentKey.generate(), 128, "dlib-resnet-v1")
    x = faces_like(200)
    y = t.apply(x)
    dx = np.linalg.norm(x[:, None] - x[None], axis=-1)
    dy = np.linalg.norm(y[:, None] - y[None], axis=-1)
    assert np.abs(dx - dy).max() < 1e-5


def test_transform_is_deterministic_per_key() -> None:
    key = DeploymentKey.generate()
    x = faces_like(3)
    assert np.array_equal(OrthogonalTransform(key, 128, "m").apply(x), OrthogonalTransform(key, 128, "m").apply(x))


def test_templates_of_two_deployments_are_not_comparable() -> None:
    x = faces_like(50)
    a = OrthogonalTransform(DeploymentKey.generate(), 128, "m").apply(x)
    b = OrthogonalTransform(DeploymentKey.generate(), 128, "m").apply(x)
    # the same face protected by two deployments is as far apart as two random faces
    same_face_across = np.linalg.norm(a - b, axis=1)
    different_faces = np.linalg.norm(x[:25] - x[25:], axis=1)
    assert same_face_across.min() > 0.5 * different_faces.mean()
    # and the protected vector is unrelated to the raw one
    assert np.linalg.norm(a - x, axis=1).min() > 0.5 * different_faces.mean()


def test_seal_binds_key_and_context() -> None:
    key, other = b"k" * 32, b"o" * 32
    blob = seal(key, b"payload", b"ctx")
    assert open_sealed(key, blob, b"ctx") == b"payload"
    with pytest.raises(SealError):
        open_sealed(other, blob, b"ctx")
    with pytest.raises(SealError):
        open_sealed(key, blob, b"other ctx")
    tampered = bytearray(blob)
    tampered[20] ^= 1
    with pytest.raises(SealError):
        open_sealed(key, bytes(tampered), b"ctx")


def test_vector_round_trip() -> None:
    v = faces_like(1)[0]
    assert np.array_equal(vector_from_bytes(vector_to_bytes(v)), v)


def test_key_repr_hides_the_secret() -> None:
    key = DeploymentKey.generate()
    assert key.encode() not in repr(key)
