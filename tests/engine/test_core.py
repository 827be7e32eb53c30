"""The engine on real photos: faces found, landmarks, chips, the quality gate, descriptors that separate people."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from facekeeper.config import EngineSettings
from facekeeper.engine import Engine, detect
from facekeeper.engine import quality as q
from facekeeper.errors import MultipleFaces, NoFace, QualityRejected
from tests.conftest import DATA, london


def test_one_face_found_with_box_score_and_landmarks(engine: Engine) -> None:
    rgb = engine.decode(london("001"))
    faces = engine.faces(rgb)
    assert len(faces) == 1
    left, top, right, bottom = faces[0].box
    assert 100 < left < right < 500 and 100 < top < bottom < 550
    assert faces[0].landmarks.shape == (5, 2)
    assert faces[0].chip.shape == (150, 150, 3)


def test_68_point_landmarks_lie_inside_the_face(engine: Engine) -> None:
    rgb = engine.decode(london("002"))
    face = engine.faces(rgb, landmarks=68)[0]
    assert face.landmarks.shape == (68, 2)
    left, top, right, bottom = face.box
    inside = ((face.landmarks[:, 0] > left - 30) & (face.landmarks[:, 0] < right + 30)
              & (face.landmarks[:, 1] > top - 30) & (face.landmarks[:, 1] < bottom + 30))
    assert inside.all()


def test_faces_are_returned_largest_first(engine: Engine) -> None:
    faces = engine.faces(engine.decode(DATA / "multi" / "obama_and_biden.jpg"))
    assert len(faces) >= 2
    areas = [f.detection.area for f in faces]
    assert areas == sorted(areas, reverse=True)


def test_detection_on_downscaled_copy_maps_boxes_to_full_resolution(engine: Engine) -> None:
    rgb = engine.decode(DATA / "people" / "joe_biden" / "1.jpg")
    assert max(rgb.shape[:2]) > engine.settings.detect_max_side
    box = engine.detect(rgb)[0].box
    assert box[2] - box[0] > 200  # in full-resolution pixels, not working-copy pixels


def test_no_face_is_a_clear_error(engine: Engine) -> None:
    blank = np.full((300, 300, 3), 128, np.uint8)
    with pytest.raises(NoFace, match="no face"):
        engine.single_face(blank, enrollment=True)


def test_two_faces_refused_at_enrollment(engine: Engine) -> None:
    with pytest.raises(MultipleFaces):
        engine.single_face(engine.decode(DATA / "multi" / "obama_and_biden.jpg"), enrollment=True)


def test_too_small_face_is_rejected_with_measured_value(engine: Engine) -> None:
    small = cv2.resize(engine.decode(london("001")), (130, 130), interpolation=cv2.INTER_AREA)
    with pytest.raises(QualityRejected) as info:
        engine.single_face(small, enrollment=True)
    assert info.value.details["reason"] == "face-too-small"
    assert info.value.details["value"] < engine.quality_settings.min_eye_distance


def test_blurred_face_is_rejected(engine: Engine) -> None:
    blurred = cv2.GaussianBlur(engine.decode(london("001")), (0, 0), 6)
    with pytest.raises(QualityRejected) as info:
        engine.single_face(blurred, enrollment=True)
    assert info.value.details["reason"] == "too-blurred"


def test_tilted_head_is_rejected(engine: Engine) -> None:
    rgb = engine.decode(london("001"))
    rot = cv2.warpAffine(rgb, cv2.getRotationMatrix2D((300, 300), 35, 1), (600, 600),
                         borderMode=cv2.BORDER_REPLICATE)
    with pytest.raises(QualityRejected) as info:
        engine.single_face(rot, enrollment=True)
    assert info.value.details["reason"] == "head-tilted"


def test_turned_head_is_measured_from_the_jaw_line() -> None:
    frontal = np.zeros((68, 2), np.float32)
    frontal[0], frontal[16], frontal[30] = (100, 200), (300, 200), (200, 210)
    frontal[36:42], frontal[42:48] = (150, 150), (250, 150)
    turned = frontal.copy()
    turned[30] = (280, 210)  # nose near one jaw edge: a three-quarter view
    chip = np.full((150, 150, 3), 128, np.uint8)
    assert abs(q.measure(frontal, chip).yaw) < 0.01
    report = q.measure(turned, chip)
    failure = q.check(report, min_eye_distance=10, min_sharpness=0, max_yaw=0.5, max_roll_degrees=25)
    assert failure is not None and failure.reason == "head-turned"


def test_good_photo_passes_the_gate(engine: Engine) -> None:
    face = engine.single_face(engine.decode(london("003")), enrollment=True)
    assert face.quality.eye_distance > 50 and face.quality.sharpness > 100


def test_probe_uses_a_clearly_dominant_face(engine: Engine) -> None:
    rgb = engine.decode(london("004"))
    canvas = np.full((900, 900, 3), 200, np.uint8)
    canvas[:600, :600] = rgb
    canvas[650:800, 700:850] = cv2.resize(engine.decode(london("005")), (150, 150))
    assert len(engine.detect(canvas, every_face=True)) == 2
    face = engine.single_face(canvas, enrollment=False)
    assert face.box[0] < 600


def _with_small_face(engine: Engine, big: bool) -> np.ndarray:
    """A 900 px canvas with a 150 px face (1/6 of the side, under quick_face) and optionally a 600 px photo."""
    canvas = np.full((900, 900, 3), 200, np.uint8)
    if big:
        canvas[:600, :600] = engine.decode(london("004"))
    canvas[650:800, 700:850] = cv2.resize(engine.decode(london("005")), (150, 150))
    return canvas


def test_quick_pass_sees_the_person_in_front_and_not_a_small_face_behind(engine: Engine) -> None:
    canvas = _with_small_face(engine, big=True)
    quick = engine.detect(canvas)
    assert len(quick) == 1 and quick[0].box[2] < 600
    assert engine.single_face(canvas, enrollment=True).box[0] < 600


def test_without_the_quick_pass_enrollment_refuses_a_small_face_behind() -> None:
    thorough = Engine(EngineSettings(quick_face=0.0))
    with pytest.raises(MultipleFaces):
        thorough.single_face(_with_small_face(thorough, big=True), enrollment=True)


def test_a_face_too_small_for_the_quick_pass_is_found_by_the_thorough_one(engine: Engine) -> None:
    canvas = _with_small_face(engine, big=False)
    found = engine.detect(canvas)
    assert len(found) == 1 and 680 < found[0].box[0] < found[0].box[2] < 870


def test_quick_pass_copy_is_sized_for_the_smallest_face_it_looks_for() -> None:
    assert detect.quick_side(np.zeros((600, 600, 3), np.uint8), 0.25, 800) == 320  # 150 px faces -> 80 px
    assert detect.quick_side(np.zeros((200, 180, 3), np.uint8), 0.25, 800) == 200  # never enlarged
    assert detect.quick_side(np.zeros((3000, 2000, 3), np.uint8), 0.1, 800) == 800  # never over max side


def test_fast_mode_looks_on_a_smaller_copy_than_accurate_mode(engine: Engine) -> None:
    """Fast mode's quick pass finds the face on a copy sized for 32 px faces; accurate mode keeps the copy SFace's
    tables were measured on (80 px). Both give the same face, and dlib's landmarks at full resolution."""
    assert engine.settings.detector == "yunet"
    seen: list[tuple[int, ...]] = []
    real = engine.detector.detect

    def spy(rgb: np.ndarray, upsample: int = 0) -> list[detect.Detection]:
        seen.append(rgb.shape[:2])
        return real(rgb, upsample)

    rgb = engine.decode(london("004"))
    assert rgb.shape[:2] == (600, 600)
    engine.detector.detect = spy  # type: ignore[method-assign]
    try:
        fast = engine.single_face(rgb, enrollment=True)
        accurate = engine.single_face(rgb, enrollment=True, accurate=True)
    finally:
        del engine.detector.detect
    assert seen == [(128, 128), (320, 320)]
    assert detect.quick_side(rgb, 0.25, 800, detect.YUNET_QUICK_FACE_PX) == 128
    overlap = [max(0, min(a, b) - max(c, d)) for a, b, c, d in
               ((fast.box[2], accurate.box[2], fast.box[0], accurate.box[0]),
                (fast.box[3], accurate.box[3], fast.box[1], accurate.box[1]))]
    assert overlap[0] * overlap[1] > 0.8 * (accurate.box[2] - accurate.box[0]) * (accurate.box[3] - accurate.box[1])
    assert float(np.linalg.norm(engine.embed([fast.chip])[0] - engine.embed([accurate.chip])[0])) < 0.1


@pytest.mark.parametrize("side", [128, 300, 599])
def test_a_copy_halved_first_has_the_size_asked_and_the_area_averages_look(engine: Engine, side: int) -> None:
    rgb = engine.decode(london("001"))
    halved, scale = detect.working_copy(rgb, side, halving=True)
    direct, same = detect.working_copy(rgb, side)
    assert halved.shape == direct.shape == (side, side, 3) and scale == same == side / 600
    assert float(np.abs(halved.astype(np.int16) - direct).mean()) < 5  # grey levels of 255 (another photo: ~50)
    assert detect.working_copy(rgb, 600, halving=True)[0] is rgb  # never enlarged, never copied when small enough


def test_same_person_is_close_and_different_people_are_far(engine: Engine) -> None:
    def desc(person: str, pose: str) -> np.ndarray:
        return engine.template(london(person, pose))[0]

    a1, a2, b1 = desc("006", "neutral"), desc("006", "smiling"), desc("007", "neutral")
    assert a1.shape == (128,) and a1.dtype == np.float32
    assert np.linalg.norm(a1 - a2) < 0.45
    assert np.linalg.norm(a1 - b1) > 0.6


def test_models_load_lazily_once() -> None:
    fresh = Engine()
    assert fresh._embedder is None and fresh._detector is None
    assert fresh.detector is fresh.detector


def test_a_landmark_model_other_than_5_or_68_points_is_invalid_input() -> None:
    from facekeeper.engine.landmarks import Landmarker
    from facekeeper.errors import InvalidInput

    with pytest.raises(InvalidInput, match="5 or 68"):
        Landmarker(7)
