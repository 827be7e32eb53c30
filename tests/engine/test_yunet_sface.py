"""YuNet and SFace behind the engine's protocols: faces found with 5 points, SFace descriptors that separate
people, a probe with several faces answered by the configured rule, enrollment still strict."""

from __future__ import annotations

import numpy as np
import pytest

from facekeeper.config import EngineSettings
from facekeeper.engine import Engine
from facekeeper.engine.detect import Detector
from facekeeper.engine.sface import CROP_SIZE, TEMPLATE, SFaceEmbedder, sface_crop, similarity_transform
from facekeeper.engine.yunet import YuNetDetector, hog_frame
from facekeeper.errors import MultipleFaces
from facekeeper.fusion import SFACE_MODEL_ID
from tests.conftest import DATA, london

MULTI = DATA / "multi" / "obama_and_biden.jpg"


@pytest.fixture(scope="module")
def yunet() -> Engine:
    return Engine(EngineSettings(detector="yunet", side_models=[SFACE_MODEL_ID]))


def test_yunet_is_a_detector_that_finds_one_face_with_five_points_inside_its_box(yunet: Engine) -> None:
    assert isinstance(yunet.detector, YuNetDetector) and isinstance(yunet.detector, Detector)
    rgb = yunet.decode(london("001"))
    (found,) = yunet.detect(rgb)
    left, top, right, bottom = found.box
    assert 100 < left < right < 500 and 100 < top < bottom < 550 and found.score > 0.8
    assert found.points is not None and found.points.shape == (5, 2)
    assert ((found.points[:, 0] > left) & (found.points[:, 0] < right)).all()
    assert ((found.points[:, 1] > top) & (found.points[:, 1] < bottom)).all()
    assert found.points[0, 0] < found.points[1, 0]  # the eye on the picture's left comes first


def test_points_are_mapped_back_to_full_resolution(yunet: Engine) -> None:
    rgb = yunet.decode(DATA / "people" / "joe_biden" / "1.jpg")
    assert max(rgb.shape[:2]) > yunet.settings.detect_max_side  # detected on a smaller copy
    found = yunet.detect(rgb)[0]
    assert found.points is not None and found.width > 200
    assert found.box[0] < found.points[:, 0].min() and found.points[:, 0].max() < found.box[2]


def test_the_similarity_transform_puts_template_points_on_the_template() -> None:
    angle, scale, shift = 0.3, 2.5, np.array([40.0, -7.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    src = (TEMPLATE - shift) @ np.linalg.inv(rot).T  # the template moved by a known similarity
    matrix = similarity_transform(src, TEMPLATE)
    np.testing.assert_allclose(src @ matrix[:, :2].T + matrix[:, 2], TEMPLATE, atol=1e-9)


def test_sface_descriptors_are_unit_128_and_separate_people(yunet: Engine) -> None:
    people = [london(p, pose) for p in ("001", "002", "003") for pose in ("neutral", "smiling")]
    described = yunet.describe(people, enrollment=False, accurate=True)
    side = np.stack([d.side[SFACE_MODEL_ID] for d in described])
    assert side.shape == (6, 128) and side.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(side, axis=1), 1.0, atol=1e-5)
    dist = np.linalg.norm(side[:, None] - side[None], axis=-1)
    same = [dist[0, 1], dist[2, 3], dist[4, 5]]
    different = [dist[i, j] for i in range(6) for j in range(6) if i // 2 != j // 2]
    assert max(same) < min(different)
    assert max(same) < 1.13 < min(different)  # OpenCV's cosine threshold 0.363 is distance 1.129


def test_sface_reads_its_own_crop_cut_from_yunet_points(yunet: Engine) -> None:
    rgb = yunet.decode(london("002"))
    face = yunet.single_face(rgb, enrollment=True, accurate=True)
    crop = face.side_crops[SFACE_MODEL_ID]
    assert face.detection.points is not None and crop.shape == (CROP_SIZE, CROP_SIZE, 3)
    np.testing.assert_array_equal(crop, sface_crop(rgb, face.detection.points))
    assert face.chip.shape == (150, 150, 3)  # dlib's chip is still cut, from its own landmarks


def test_sface_on_a_hog_detection_takes_yunet_points_of_the_same_face(yunet: Engine) -> None:
    hog = Engine(EngineSettings(detector="hog", side_models=[SFACE_MODEL_ID]))
    hog._yunet = yunet.detector  # share the loaded model
    rgb = hog.decode(london("003"))
    face = hog.single_face(rgb, enrollment=False, accurate=True)
    assert face.detection.points is None
    (found,) = yunet.detect(rgb, every_face=True)  # full resolution, as five_points looks
    assert found.points is not None
    np.testing.assert_array_equal(face.side_crops[SFACE_MODEL_ID], sface_crop(rgb, found.points))


def test_sface_refuses_crops_of_the_wrong_shape(yunet: Engine) -> None:
    embedder = yunet.side_embedder(SFACE_MODEL_ID)
    assert isinstance(embedder, SFaceEmbedder) and embedder.model_id == SFACE_MODEL_ID
    with pytest.raises(ValueError, match="112"):
        embedder.embed(np.zeros((1, 150, 150, 3), np.uint8))


def test_dlib_landmarks_start_from_the_box_hog_would_give() -> None:
    left, top, right, bottom = hog_frame((100, 100, 200, 240))
    assert right - left == bottom - top == 108  # square, 1.08 YuNet widths
    assert (top + bottom) / 2 == pytest.approx(178.5, abs=0.5)  # 0.085 widths below YuNet's centre


def _centre_offset(box: tuple[int, int, int, int], shape: tuple[int, ...]) -> float:
    return ((box[0] + box[2]) / 2 - shape[1] / 2) ** 2 + ((box[1] + box[3]) / 2 - shape[0] / 2) ** 2


@pytest.mark.parametrize("rule", ["largest", "centre"])
def test_a_probe_with_several_faces_is_answered_with_the_face_the_rule_picks(yunet: Engine, rule: str) -> None:
    # quick_face 0.1: both faces are well over the size the quick pass looks for (the smaller one, 134 px of a
    # 1000 px side, sits just under the default 0.25, where which pass answers depends on a few pixels of box)
    chooser = Engine(EngineSettings(detector="yunet", face_choice=rule, quick_face=0.1))
    chooser._detector = yunet.detector
    rgb = np.ascontiguousarray(chooser.decode(MULTI)[300:, 1000:])  # a smaller face nearest the centre
    found = chooser.detect(rgb)
    largest = max(found, key=lambda d: d.area).box
    nearest = min(found, key=lambda d: _centre_offset(d.box, rgb.shape)).box
    assert len(found) >= 2 and largest != nearest  # the photo tells the two rules apart
    face = chooser.single_face(rgb, enrollment=False)
    assert face.box == (largest if rule == "largest" else nearest)


@pytest.mark.parametrize("rule", ["largest", "centre"])
def test_enrollment_still_refuses_a_photo_with_several_faces(yunet: Engine, rule: str) -> None:
    chooser = Engine(EngineSettings(detector="yunet", face_choice=rule))
    chooser._detector = yunet.detector
    with pytest.raises(MultipleFaces) as refused:
        chooser.single_face(chooser.decode(MULTI), enrollment=True)
    assert refused.value.details["faces"] >= 2
