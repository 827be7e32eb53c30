"""OnnxResnetEmbedder must give dlib's descriptors on real faces, or refuse the model file outright.

Templates from either embedder share one ``model_id``, so "close enough" is not enough: the bound is 1e-5
in euclidean distance, far below the ~0.6 match threshold and below anything a threshold could notice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import dlib
import numpy as np
import onnx
import pytest
from PIL import Image

from facekeeper.engine import models
from facekeeper.engine.dlib_onnx import OnnxResnetEmbedder, build_onnx_model, parse_dlib_resnet
from facekeeper.engine.embed import DlibEmbedder, Embedder
from facekeeper.errors import BundleError

LONDON = Path(__file__).parents[1] / "data" / "london"
N_FACES = 30
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def chips() -> np.ndarray:
    """Aligned 150x150 chips made by dlib itself, exactly as DlibEmbedder's callers make them."""
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(models.model_path(models.SHAPE_5)))
    out = []
    for photo in sorted(LONDON.glob("*/*.jpg"))[:N_FACES]:
        image = np.asarray(Image.open(photo).convert("RGB"))
        (face,) = detector(image, 0)
        out.append(dlib.get_face_chip(image, predictor(image, face), size=150, padding=0.25))
    return np.stack(out)


@pytest.fixture(scope="module")
def reference(chips: np.ndarray) -> np.ndarray:
    """dlib's descriptors, one call per face (the way the engine calls it)."""
    dlib_embedder = DlibEmbedder()
    return np.concatenate([dlib_embedder.embed(chip) for chip in chips])


@pytest.fixture(scope="module")
def embedder() -> OnnxResnetEmbedder:
    return OnnxResnetEmbedder()


@pytest.fixture(scope="module")
def model_bytes() -> bytes:
    return models.model_path(models.RESNET).read_bytes()


def max_distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b, axis=1).max())


def test_real_faces_were_found(chips: np.ndarray) -> None:
    assert chips.shape == (N_FACES, 150, 150, 3)


def test_single_face_calls_match_dlib(
    embedder: OnnxResnetEmbedder, chips: np.ndarray, reference: np.ndarray
) -> None:
    single = np.concatenate([embedder.embed(chip) for chip in chips])
    assert single.dtype == np.float32
    assert max_distance(single, reference) <= TOLERANCE


def test_batch_call_matches_dlib_and_single_calls(
    embedder: OnnxResnetEmbedder, chips: np.ndarray, reference: np.ndarray
) -> None:
    batch = embedder.embed(chips)
    single = np.concatenate([embedder.embed(chip[None]) for chip in chips])
    assert batch.shape == (N_FACES, 128)
    assert max_distance(batch, reference) <= TOLERANCE
    np.testing.assert_allclose(batch, single, rtol=0, atol=1e-6)


def test_split_batches_and_threads_give_the_same_descriptors(
    embedder: OnnxResnetEmbedder, chips: np.ndarray
) -> None:
    """30 chips in batches of 8 (the last one short), on two threads."""
    split = OnnxResnetEmbedder(threads=2, batch_size=8).embed(chips)
    np.testing.assert_allclose(split, embedder.embed(chips), rtol=0, atol=1e-6)


def test_is_interchangeable_with_dlib_embedder(embedder: OnnxResnetEmbedder, model_bytes: bytes) -> None:
    assert isinstance(embedder, Embedder)
    assert (embedder.model_id, embedder.dim) == (DlibEmbedder.model_id, DlibEmbedder.dim)
    assert embedder.source_sha256 == hashlib.sha256(model_bytes).hexdigest()


def test_parsed_network_has_the_dlib_structure(model_bytes: bytes) -> None:
    weights = parse_dlib_resnet(model_bytes)
    np.testing.assert_allclose(weights.input_mean, (122.782, 117.001, 104.298), atol=1e-4)
    assert len(weights.blocks) == 14
    assert [b.downsample for b in weights.blocks].count(True) == 4
    assert weights.fc.shape == (256, 128)
    onnx.checker.check_model(build_onnx_model(weights))


def _flip_first_layer_version(data: bytes) -> bytes:
    """The fc layer's add_layer version (2) follows the loss layer's two floats: make it 3."""
    start = len(b"\x01\x01\x01\x0dloss_metric_2\x03\x0a\xd7\xa3\x81\x1c\x03\x9a\x99\x99\x81\x18")
    assert data[start : start + 2] == b"\x01\x02"
    return data[: start + 1] + b"\x03" + data[start + 2 :]


def _grow_first_tensor(data: bytes) -> bytes:
    """Change the dimension control byte of the first conv's weight tensor: the stream falls out of step."""
    at = data.index(b"con_4") + len(b"con_4") + 2
    return data[:at] + bytes([data[at] + 1]) + data[at + 1 :]


CORRUPTIONS: dict[str, Callable[[bytes], bytes]] = {
    "truncated to 60%": lambda data: data[: len(data) * 6 // 10],
    "truncated by one byte": lambda data: data[:-1],
    "trailing garbage": lambda data: data + b"\x01\x00garbage",
    "loss name altered": lambda data: data.replace(b"loss_metric_2", b"loss_metric_3", 1),
    "integer control byte altered": lambda data: b"\x7f" + data[1:],
    "layer version altered": _flip_first_layer_version,
    "tensor dimension altered": _grow_first_tensor,
    "empty": lambda data: b"",
}


@pytest.mark.parametrize("corrupt", CORRUPTIONS.values(), ids=CORRUPTIONS.keys())
def test_damaged_model_file_is_a_bundle_error(
    corrupt: Callable[[bytes], bytes], model_bytes: bytes, tmp_path: Path
) -> None:
    damaged = corrupt(model_bytes)
    assert damaged != model_bytes
    path = tmp_path / models.RESNET
    path.write_bytes(damaged)
    with pytest.raises(BundleError, match="not the expected dlib ResNet"):
        OnnxResnetEmbedder(path=path)


def test_another_dlib_model_is_a_bundle_error() -> None:
    with pytest.raises(BundleError):
        OnnxResnetEmbedder(path=models.model_path(models.SHAPE_5))


def test_missing_model_file_is_a_bundle_error(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="cannot read"):
        OnnxResnetEmbedder(path=tmp_path / "nothing.dat")


def test_empty_input_gives_no_descriptors(embedder: OnnxResnetEmbedder) -> None:
    out = embedder.embed(np.zeros((0, 150, 150, 3), np.uint8))
    assert out.shape == (0, 128)
    assert out.dtype == np.float32


@pytest.mark.parametrize(
    "bad",
    [np.zeros((1, 100, 100, 3), np.uint8), np.zeros((1, 150, 150), np.uint8), np.zeros((1, 150, 150, 3))],
    ids=["wrong size", "grey", "float"],
)
def test_wrong_chips_are_a_value_error(embedder: OnnxResnetEmbedder, bad: np.ndarray) -> None:
    with pytest.raises(ValueError):
        embedder.embed(bad)


@pytest.mark.parametrize("kwargs", [{"threads": 0}, {"batch_size": 0}])
def test_nonsense_settings_are_a_value_error(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        OnnxResnetEmbedder(**kwargs)
