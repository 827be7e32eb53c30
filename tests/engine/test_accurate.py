"""Accurate mode in the engine: one detection, the side model's crop from it, the face-choice rule for probes."""

from __future__ import annotations

import numpy as np
import pytest

from facekeeper.config import EngineSettings
from facekeeper.engine import Engine
from facekeeper.engine.facenet import facenet_crop, hog_to_facenet_box
from facekeeper.errors import MultipleFaces
from facekeeper.fusion import FACENET_MODEL_ID
from tests.conftest import DATA, london

MULTI = DATA / "multi" / "obama_and_biden.jpg"


def test_an_accurate_face_carries_facenet_crop_of_the_same_detection(engine: Engine) -> None:
    with_facenet = Engine(EngineSettings(detector="hog", side_models=[FACENET_MODEL_ID]))
    rgb = engine.decode(london("001"))
    fast = with_facenet.single_face(rgb, enrollment=True)
    accurate = with_facenet.single_face(rgb, enrollment=True, accurate=True)
    assert fast.side_crops == {} and accurate.box == fast.box and list(accurate.side_crops) == [FACENET_MODEL_ID]
    crop = accurate.side_crops[FACENET_MODEL_ID]
    assert crop.shape == (160, 160, 3)
    assert np.array_equal(crop, facenet_crop(rgb, hog_to_facenet_box(fast.box)))
    assert np.array_equal(accurate.chip, fast.chip)  # dlib keeps its own crop rule


def test_the_reshaped_box_frames_the_forehead_like_mtcnn() -> None:
    left, top, right, bottom = hog_to_facenet_box((100, 100, 200, 200))
    assert right - left == pytest.approx(92) and bottom - top == pytest.approx(124)
    assert (top + bottom) / 2 == pytest.approx(142)  # raised by 8% of the HOG box's height


def test_facenet_box_mtcnn_crops_the_mtcnn_face_that_overlaps_the_detection(engine: Engine) -> None:
    mtcnn = Engine(EngineSettings(facenet_box="mtcnn"))
    mtcnn._mtcnn = engine.mtcnn  # share the loaded models
    rgb = engine.decode(london("002"))
    face = engine.single_face(rgb, enrollment=False)
    found = engine.mtcnn.detect(rgb)
    assert len(found) == 1
    assert np.array_equal(mtcnn.facenet_crop(rgb, face), facenet_crop(rgb, found[0].box))


def test_a_probe_with_two_similar_faces_uses_the_face_nearest_the_centre_when_configured(engine: Engine) -> None:
    rgb = engine.decode(MULTI)
    largest = engine.single_face(rgb, enrollment=False)  # not twice the next, still answered: the largest
    assert largest.box == engine.detect(rgb)[0].box
    centre = Engine(EngineSettings(face_choice="centre"))
    centre._detector, centre._landmarkers = engine.detector, {5: engine.landmarker(5), 68: engine.landmarker(68)}
    face = centre.single_face(rgb, enrollment=False)
    cx, cy = rgb.shape[1] / 2, rgb.shape[0] / 2
    dist = [((f.box[0] + f.box[2]) / 2 - cx) ** 2 + ((f.box[1] + f.box[3]) / 2 - cy) ** 2 for f in engine.faces(rgb)]
    assert face.box == engine.faces(rgb)[int(np.argmin(dist))].box
    with pytest.raises(MultipleFaces):
        centre.single_face(rgb, enrollment=True)  # enrollment still refuses several faces
