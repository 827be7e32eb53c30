"""YuNet on onnxruntime finds the faces OpenCV's ``FaceDetectorYN`` finds in the shipped file: the weights expanded
to float32 are the ones OpenCV computes, and the steps around the network (padding, BGR planes, decoding, OpenCV's
suppression) give the same faces, boxes and points, photo by photo and at every size the engine searches."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest

from facekeeper.config import EngineSettings
from facekeeper.engine import Engine, detect, models, yunet
from facekeeper.engine.dequantize import dequantize, expand_constant_dequantize
from tests.conftest import DATA

PHOTOS = sorted(p for p in DATA.rglob("*") if p.suffix.lower() in {".jpg", ".png"} and "facenet_crops" not in p.parts)


@pytest.fixture(scope="module")
def opencv() -> cv2.FaceDetectorYN:
    models.quiet_opencv()
    return cv2.FaceDetectorYN.create(str(models.zoo_path(models.YUNET)), "", (320, 320), yunet.SCORE_THRESHOLD,
                                     yunet.NMS_THRESHOLD, yunet.TOP_K)


def test_dequantize_follows_the_onnx_operator_per_tensor_axis_and_block() -> None:
    q = np.array([[[-3, 5], [7, -128]], [[127, 0], [1, 2]]], np.int8)  # (2, 2, 2)
    assert dequantize(q, np.float32(0.5), np.int8(1)).tolist() == ((q.astype(np.float32) - 1) * 0.5).tolist()
    per_axis = dequantize(q, np.array([0.5, 2.0], np.float32), np.array([0, 1], np.int8), axis=0)
    assert per_axis.tolist() == [[[-1.5, 2.5], [3.5, -64.0]], [[252.0, -2.0], [0.0, 2.0]]]
    # one scale per block of 2 along axis 2 (one block here), per index of the other axes
    scale = np.array([[[1.0], [2.0]], [[3.0], [4.0]]], np.float32)
    blocked = dequantize(q, scale, None, axis=2, block_size=2)
    assert blocked.dtype == np.float32
    assert blocked.tolist() == [[[-3.0, 5.0], [14.0, -256.0]], [[381.0, 0.0], [4.0, 8.0]]]


def test_the_expanded_weights_are_the_ones_opencv_computes_from_the_shipped_file() -> None:
    shipped = onnx.load(str(models.zoo_path(models.YUNET)))
    expanded = expand_constant_dequantize(shipped)
    assert {n.op_type for n in shipped.graph.node} >= {"DequantizeLinear"}
    assert "DequantizeLinear" not in {n.op_type for n in expanded.graph.node}
    assert all(i.data_type == onnx.TensorProto.FLOAT for i in expanded.graph.initializer
               if len(i.dims) == 4)  # every convolution's weights
    rgb = Engine(EngineSettings()).decode(DATA / "london" / "001" / "neutral.jpg")
    blob = cv2.dnn.blobFromImage(cv2.resize(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), (640, 640)))
    outputs = []
    for model in (shipped, expanded):
        net = cv2.dnn.readNetFromONNX(np.frombuffer(model.SerializeToString(), np.uint8))
        net.setInput(blob)
        outputs.append(net.forward(yunet.OUTPUTS))
    for a, b in zip(*outputs, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("photo", PHOTOS, ids=lambda p: "/".join(p.parts[-2:]))
def test_faces_are_opencvs_at_every_size_the_engine_searches(photo: Path, opencv: cv2.FaceDetectorYN,
                                                             engine: Engine) -> None:
    mine = yunet.YuNetDetector()
    rgb = engine.decode(photo)
    quick = engine.settings.quick_face
    copies = [detect.working_copy(rgb, detect.quick_side(rgb, quick, 800, detect.YUNET_QUICK_FACE_PX), halving=True),
              detect.working_copy(rgb, detect.quick_side(rgb, quick, 800)), detect.working_copy(rgb, 800)]
    for small, _ in copies:
        small = np.ascontiguousarray(small)
        opencv.setInputSize((small.shape[1], small.shape[0]))
        theirs = opencv.detect(cv2.cvtColor(small, cv2.COLOR_RGB2BGR))[1]
        theirs = np.zeros((0, 15), np.float32) if theirs is None else theirs
        found = mine.detect(small)
        assert len(found) == len(theirs), f"{photo.name} at {small.shape[:2]}"
        for face, row in zip(found, theirs, strict=True):
            x, y, w, h = (float(v) for v in row[:4])
            assert max(abs(a - b) for a, b in zip(face.box, (x, y, x + w, y + h), strict=True)) <= 0.5 + 1e-3
            assert face.points is not None
            np.testing.assert_allclose(face.points, row[4:14].reshape(5, 2), atol=1e-3)
            assert face.score == pytest.approx(float(row[14]), abs=1e-5)


def test_several_faces_and_none_come_out_as_opencv_gives_them(opencv: cv2.FaceDetectorYN, engine: Engine) -> None:
    rgb = engine.decode(DATA / "multi" / "obama_and_biden.jpg")
    small, _ = detect.working_copy(rgb, 640)
    found = yunet.YuNetDetector().detect(np.ascontiguousarray(small))
    opencv.setInputSize((small.shape[1], small.shape[0]))
    theirs = opencv.detect(cv2.cvtColor(np.ascontiguousarray(small), cv2.COLOR_RGB2BGR))[1]
    # several cells fire on each face: the suppression kept one box a face, the ones OpenCV's kept, in its order
    assert len(found) == len(theirs) >= 2
    assert [f.score for f in found] == pytest.approx([float(r[14]) for r in theirs], abs=1e-5)
    assert [f.box[:2] for f in found] == [(round(float(r[0])), round(float(r[1]))) for r in theirs]
    assert yunet.YuNetDetector().detect(np.full((97, 131, 3), 128, np.uint8)) == []
