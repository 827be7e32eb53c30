"""FaceNetEmbedder: the TF graph converted in memory gives the original's embeddings, and they tell people apart.

The reference is the original frozen graph run by OpenCV dnn (no tensorflow), fed the same standardised
crops; the committed crops in ``data/facenet_crops`` pin the whole preprocessing (MTCNN box, centre choice,
margin, resize) to what the photos gave when FaceNet was adopted.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facekeeper.engine.detect import Detection, choose_face
from facekeeper.engine.embed import Embedder
from facekeeper.engine.facenet import (
    FACENET_SHA256,
    FaceNetEmbedder,
    convert_graphdef,
    facenet_crop,
    model_path,
    tf_op_counts,
)
from facekeeper.engine.mtcnn import MtcnnDetector
from facekeeper.errors import BundleError

DATA = Path(__file__).parents[1] / "data"
CROPS = DATA / "facenet_crops"
# committed crop -> the photo it was cut from
COMMITTED = {
    "london_001_neutral.png": DATA / "london" / "001" / "neutral.jpg",
    "barack_obama_4.png": DATA / "people" / "barack_obama" / "4.jpg",
    "joe_biden_1.png": DATA / "people" / "joe_biden" / "1.jpg",
}
TOLERANCE = 1e-4  # max abs difference per embedding component against the original graph


def load(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.fixture(scope="module")
def model_bytes() -> bytes:
    return model_path().read_bytes()


@pytest.fixture(scope="module")
def embedder() -> FaceNetEmbedder:
    return FaceNetEmbedder(batch_size=8)


@pytest.fixture(scope="module")
def detector() -> MtcnnDetector:
    return MtcnnDetector()


@pytest.fixture(scope="module")
def committed_crops() -> np.ndarray:
    return np.stack([load(CROPS / name) for name in COMMITTED])


@pytest.fixture(scope="module")
def london() -> tuple[list[str], np.ndarray]:
    """Person ids and crops for the 42 London photos (21 people, neutral and smiling), cut as in production."""
    detector = MtcnnDetector()
    people, crops = [], []
    for photo in sorted((DATA / "london").glob("*/*.jpg")):
        image = load(photo)
        found = detector.detect(image)
        crops.append(facenet_crop(image, found[choose_face(found, image.shape)].box))
        people.append(photo.parent.name)
    return people, np.stack(crops)


def reference_embeddings(crops: np.ndarray) -> np.ndarray:
    """The original .pb in OpenCV dnn, one crop at a time (its batch is fixed at 1), same standardisation."""
    import cv2

    net = cv2.dnn.readNetFromTensorflow(str(model_path()))
    out = []
    for crop in crops:
        net.setInput(((crop.astype(np.float32) - 127.5) / 128).transpose(2, 0, 1)[None])
        out.append(net.forward().reshape(-1))
    return np.stack(out)


def test_converted_graph_reproduces_the_original_on_committed_crops(
    embedder: FaceNetEmbedder, committed_crops: np.ndarray
) -> None:
    ours = embedder.embed(committed_crops)
    assert np.abs(ours - reference_embeddings(committed_crops)).max() <= TOLERANCE


def test_preprocessing_reproduces_the_committed_crops(detector: MtcnnDetector, committed_crops: np.ndarray) -> None:
    for crop, photo in zip(committed_crops, COMMITTED.values(), strict=True):
        image = load(photo)
        found = detector.detect(image)
        np.testing.assert_array_equal(facenet_crop(image, found[choose_face(found, image.shape)].box), crop)


def test_embeddings_are_unit_512d_float32(embedder: FaceNetEmbedder, committed_crops: np.ndarray) -> None:
    out = embedder.embed(committed_crops)
    assert out.shape == (3, 512) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)


def test_every_genuine_pair_is_closer_than_every_impostor_pair(
    embedder: FaceNetEmbedder, london: tuple[list[str], np.ndarray]
) -> None:
    """21 people, neutral vs smiling: 21 genuine and 840 impostor pairs, separated with a wide gap."""
    people, crops = london
    emb = embedder.embed(crops)
    distance = 1 - emb @ emb.T
    same = np.equal.outer(people, people)
    upper = np.triu_indices(len(people), 1)
    genuine, impostor = distance[upper][same[upper]], distance[upper][~same[upper]]
    assert (len(genuine), len(impostor)) == (21, 840)
    assert genuine.max() < 0.35 < 0.45 < impostor.min()


def test_batch_equals_single_and_threads_do_not_matter(
    embedder: FaceNetEmbedder, london: tuple[list[str], np.ndarray]
) -> None:
    crops = london[1][:10]  # a full batch of 8 and a short one of 2
    batch = embedder.embed(crops)
    single = np.concatenate([embedder.embed(crop) for crop in crops[:5]])
    np.testing.assert_allclose(batch[:5], single, rtol=0, atol=1e-5)
    np.testing.assert_allclose(FaceNetEmbedder(threads=2, batch_size=3).embed(crops[:5]), single, rtol=0, atol=1e-5)


def test_is_an_engine_embedder_with_its_own_model_id(embedder: FaceNetEmbedder, model_bytes: bytes) -> None:
    assert isinstance(embedder, Embedder)
    assert (embedder.model_id, embedder.dim) == ("facenet-20180408-102900", 512)
    assert embedder.source_sha256 == hashlib.sha256(model_bytes).hexdigest() == FACENET_SHA256


def test_conversion_maps_every_op_and_makes_the_batch_dynamic(model_bytes: bytes) -> None:
    """The TF ops of the file, and an ONNX graph with batch-norm, bias and block scales folded into convs."""
    assert tf_op_counts(model_bytes) == {
        "Const": 318, "Placeholder": 1, "Conv2D": 132, "BiasAdd": 132, "Relu": 131, "MaxPool": 3,
        "ConcatV2": 23, "Mul": 22, "Add": 21, "AvgPool": 1, "Reshape": 3, "MatMul": 1, "FusedBatchNorm": 1,
        "Square": 1, "Sum": 1, "Maximum": 1, "Rsqrt": 1,
    }
    model = convert_graphdef(model_bytes)
    ops = [node.op_type for node in model.graph.node]
    assert ops.count("Conv") == 132 and ops.count("Gemm") == 1
    assert "BatchNormalization" not in ops and ops.count("Mul") == 3  # standardisation and the L2 norm
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"


def _replace_once(old: bytes, new: bytes) -> Callable[[bytes], bytes]:
    def corrupt(data: bytes) -> bytes:
        assert len(old) == len(new) and data.count(old) >= 1
        return data.replace(old, new, 1)

    return corrupt


# Damage the structure (the sha256 check is bypassed so the converter itself must notice).
CORRUPTIONS: dict[str, Callable[[bytes], bytes]] = {
    "truncated to 60%": lambda data: data[: len(data) * 6 // 10],
    "truncated by one byte": lambda data: data[:-1],
    "garbage": lambda data: b"\x0a\xff\xff\xff\xff\x0f" + bytes(range(256)) * 4,
    "empty": lambda data: b"",
    "output node renamed": _replace_once(b"\n\nembeddings\x12\x03Mul", b"\n\nembeddingz\x12\x03Mul"),
    "unknown op": _replace_once(b"\x12\x05Rsqrt", b"\x12\x05Rsqrx"),
    "padding altered": _replace_once(b"SAME", b"SAMX"),
    "data format altered": _replace_once(b"NHWC", b"NCHW"),
    "conv stride altered": _replace_once(b"\x1a\x04\x01\x02\x02\x01", b"\x1a\x04\x01\x03\x03\x01"),
}


@pytest.mark.parametrize("corrupt", CORRUPTIONS.values(), ids=CORRUPTIONS.keys())
def test_damaged_graph_is_a_bundle_error(corrupt: Callable[[bytes], bytes], model_bytes: bytes) -> None:
    damaged = corrupt(model_bytes)
    assert damaged != model_bytes
    with pytest.raises(BundleError, match="not the expected TensorFlow graph"):
        convert_graphdef(damaged)


def test_altered_weights_are_a_bundle_error(model_bytes: bytes, tmp_path: Path) -> None:
    """A changed weight keeps the structure valid: only the pinned sha256 notices it."""
    damaged = bytearray(model_bytes)
    damaged[len(damaged) // 2] ^= 0x01
    path = tmp_path / "graph_final.pb"
    path.write_bytes(bytes(damaged))
    with pytest.raises(BundleError, match="not the published one"):
        FaceNetEmbedder(path=path)


def test_missing_model_file_is_a_bundle_error(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="cannot read"):
        FaceNetEmbedder(path=tmp_path / "graph_final.pb")


def test_crop_adds_16px_each_side_clips_to_the_image_and_resizes() -> None:
    image = np.zeros((100, 200, 3), np.uint8)
    image[30:60, 50:90] = 255  # the "face" box (50, 30, 90, 60)
    crop = facenet_crop(image, (50, 30, 90, 60), margin=32, size=160)
    assert crop.shape == (160, 160, 3) and crop.dtype == np.uint8
    # 72x62 px region (34..106, 14..76) around a 40x30 box: the box keeps its place and proportions.
    ys, xs = np.nonzero(crop[:, :, 0] > 127)
    assert abs(xs.min() - 16 / 72 * 160) <= 2 and abs(ys.min() - 16 / 62 * 160) <= 2
    edge = facenet_crop(image, (0, 0, 40, 40))  # at the corner: the margin is clipped, not padded
    assert edge.shape == (160, 160, 3)
    with pytest.raises(ValueError):
        facenet_crop(image, (300, 300, 400, 400))


def test_choose_face_nearest_centre_or_largest() -> None:
    faces = [Detection((0, 0, 60, 60), 0.99), Detection((90, 40, 130, 80), 0.90)]
    assert choose_face(faces, (120, 220, 3)) == 1
    assert choose_face(faces, (120, 220, 3), "largest") == 0
    with pytest.raises(ValueError):
        choose_face(faces, (120, 220, 3), "first")  # type: ignore[arg-type]


def test_empty_input_gives_no_embeddings(embedder: FaceNetEmbedder) -> None:
    assert embedder.embed(np.zeros((0, 160, 160, 3), np.uint8)).shape == (0, 512)


@pytest.mark.parametrize(
    "bad",
    [np.zeros((1, 150, 150, 3), np.uint8), np.zeros((1, 160, 160), np.uint8), np.zeros((1, 160, 160, 3))],
    ids=["dlib chip size", "grey", "float"],
)
def test_wrong_crops_are_a_value_error(embedder: FaceNetEmbedder, bad: np.ndarray) -> None:
    with pytest.raises(ValueError):
        embedder.embed(bad)
