"""The yaw screen: a clearly frontal face skips the 68-point model, every other face is judged on its jaw line."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from facekeeper.config import EngineSettings, QualitySettings
from facekeeper.engine import Engine
from facekeeper.engine import quality as q
from facekeeper.engine.yunet import looks_ahead
from facekeeper.errors import QualityRejected
from tests.conftest import DATA, london

TURNED = DATA / "people" / "barack_obama" / "4.jpg"  # a three-quarter press photo: jaw yaw 0.39


class CountingEngine(Engine):
    """Counts the 68-point model's runs."""

    jaw_runs = 0

    def landmarker(self, points: int | None = None):  # type: ignore[no-untyped-def]
        model = super().landmarker(points)
        if points == 68:
            self.jaw_runs += 1
        return model


@pytest.fixture(scope="module")
def counting() -> CountingEngine:
    return CountingEngine(EngineSettings(detector="hog"))  # HOG's filters say which faces look ahead


def every_test_face() -> list[Path]:
    suffixes = {".jpg", ".jpeg", ".png"}
    return sorted(p for p in DATA.rglob("*") if p.suffix.lower() in suffixes and "crops" not in p.parent.name)


def test_a_frontal_face_is_cleared_without_the_jaw_model(counting: CountingEngine) -> None:
    counting.jaw_runs = 0
    face = counting.single_face(counting.decode(london("003")), enrollment=True)
    assert face.quality.yaw_from == "eyes-nose" and counting.jaw_runs == 0
    assert abs(face.quality.yaw) <= q.SCREEN_YAW
    jaw = counting.analyze(counting.decode(london("003")), face.detection, measure_jaw=True).quality
    assert jaw.yaw_from == "jaw" and abs(jaw.yaw - face.quality.yaw) < 0.1
    assert jaw.eye_distance == face.quality.eye_distance and jaw.roll_degrees == face.quality.roll_degrees


def test_a_turned_head_is_judged_on_its_jaw_line(counting: CountingEngine) -> None:
    counting.jaw_runs = 0
    face = counting.single_face(counting.decode(TURNED), enrollment=True)  # 0.39 is inside the 0.5 limit
    assert face.quality.yaw_from == "jaw" and counting.jaw_runs == 1
    assert 0.3 < abs(face.quality.yaw) < 0.5


def test_the_turned_head_is_refused_under_a_stricter_limit() -> None:
    strict = Engine(EngineSettings(detector="hog"), QualitySettings(max_yaw=0.3))
    with pytest.raises(QualityRejected) as info:
        strict.single_face(strict.decode(TURNED), enrollment=True)
    assert info.value.details["reason"] == "head-turned" and info.value.details["value"] > 0.3


def test_a_stricter_limit_than_the_screen_was_measured_for_always_measures_the_jaw() -> None:
    strict = Engine(EngineSettings(detector="hog"), QualitySettings(max_yaw=q.SCREEN_MIN_LIMIT - 0.05))
    face = strict.single_face(strict.decode(london("003")), enrollment=True)
    assert face.quality.yaw_from == "jaw"


@pytest.mark.parametrize("frontal", [False, None], ids=["side-filter", "detector-without-pose"])
def test_a_face_not_found_by_a_front_looking_filter_measures_the_jaw(counting: CountingEngine,
                                                                      frontal: bool | None) -> None:
    rgb = counting.decode(london("003"))
    found = counting.detect(rgb)[0]
    assert found.frontal is True
    assert counting.analyze(rgb, replace(found, frontal=frontal)).quality.yaw_from == "jaw"


def test_the_estimate_turns_with_the_head_like_the_jaw_measure(engine: Engine) -> None:
    rgb = engine.decode(TURNED)
    for image in (rgb, np.ascontiguousarray(rgb[:, ::-1])):
        face = engine.faces(image)[0]
        estimate = q.yaw_eyes_nose(engine.landmarker(5)(image, face.box))
        assert np.sign(estimate) == np.sign(face.quality.yaw) and abs(estimate) > q.SCREEN_YAW


@pytest.mark.parametrize("detector", ["hog", "yunet"])
def test_on_every_test_photo_the_screen_clears_only_faces_far_inside_the_limit(detector: str) -> None:
    """Mirrors included: whatever the screen lets through without the jaw model has a jaw yaw under half the
    default limit, and every face turned more than 0.3 goes to the jaw model; HOG's front-looking filters or
    YuNet's nose tip say which faces look ahead."""
    engine = Engine(EngineSettings(detector=detector))
    cleared, checked = 0, 0
    for path in every_test_face():
        rgb = engine.decode(path)
        for image in (rgb, np.ascontiguousarray(rgb[:, ::-1])):
            for face in engine.faces(image):
                points5 = face.landmarks  # the 5 points the engine screened with
                screened = not q.needs_jaw(points5, face.detection.frontal, 0.5)
                checked += 1
                cleared += screened
                if screened:
                    assert abs(face.quality.yaw) < 0.25, path
                if abs(face.quality.yaw) > 0.3:
                    assert not screened, path
    assert checked > 60 and cleared > checked / 2


def test_rotation_is_still_measured_from_the_eyes_when_the_jaw_is_skipped(engine: Engine) -> None:
    rgb = engine.decode(london("001"))
    rot = cv2.warpAffine(rgb, cv2.getRotationMatrix2D((300, 300), 12, 1), (600, 600),
                         borderMode=cv2.BORDER_REPLICATE)
    face = engine.single_face(rot, enrollment=True)
    assert 8 < abs(face.quality.roll_degrees) < 16


def test_yunet_calls_a_face_looking_ahead_only_when_its_nose_tip_is_between_the_eyes() -> None:
    yunet = Engine(EngineSettings(detector="yunet"))
    (turned,) = yunet.detect(yunet.decode(TURNED), every_face=True)  # nose tip 0.39 eye distances off centre
    (ahead,) = yunet.detect(yunet.decode(london("001")), every_face=True)
    assert turned.frontal is False and ahead.frontal is True
    eyes = np.array([[40.0, 50.0], [80.0, 50.0]])
    mouth = np.array([[45.0, 90.0], [75.0, 90.0]])
    for nose_x, expected in ((60.0, True), (65.0, True), (67.0, False), (52.0, False)):
        points = np.vstack([eyes, [[nose_x, 70.0]], mouth])
        assert looks_ahead(points) is expected, nose_x
    assert not looks_ahead(np.vstack([eyes[::-1], [[60.0, 70.0]], mouth]))  # eyes in the wrong order
