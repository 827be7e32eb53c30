"""Starting bulk work cheaply: dlib's models loaded once per process, the embedder loaded while workers start."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from facekeeper.config import EngineSettings
from facekeeper.engine import Engine, pipeline
from tests.conftest import DATA, london


def test_engines_in_one_process_share_dlibs_models() -> None:
    a, b = Engine(EngineSettings(detector="hog")), Engine(EngineSettings(detector="hog", quick_face=0.0))
    assert a.detector._det is b.detector._det  # type: ignore[attr-defined]
    assert a.landmarker(5)._predictor is b.landmarker(5)._predictor
    assert a.landmarker(68)._predictor is b.landmarker(68)._predictor
    assert a.landmarker(5)._predictor is not a.landmarker(68)._predictor


def test_the_fork_servers_module_loads_every_dlib_model() -> None:
    code = ("from facekeeper.engine import dlib_onnx, models; import facekeeper.engine.preloaded; "
            "print(models.frontal_detector.cache_info().currsize, models.shape_predictor.cache_info().currsize, "
            "len(dlib_onnx._PREBUILT))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.split() == ["1", "2", "1"]


def test_a_prebuilt_embedder_is_the_one_built_from_the_file(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    from facekeeper.engine import dlib_onnx

    built = dlib_onnx.OnnxResnetEmbedder()
    monkeypatch.setattr(dlib_onnx, "_PREBUILT", {})
    dlib_onnx.prebuild()

    def no_file(source: Path) -> tuple[str, bytes]:
        raise AssertionError("a prebuilt embedder must not read the .dat again")

    monkeypatch.setattr(dlib_onnx, "_build_from_file", no_file)
    prebuilt = dlib_onnx.OnnxResnetEmbedder()
    assert prebuilt.source_sha256 == built.source_sha256
    chips = np.stack([engine.single_face(engine.decode(london(p)), enrollment=False).chip for p in ("001", "002")])
    assert np.array_equal(prebuilt.embed(chips), built.embed(chips))


def test_a_shared_detector_gives_the_same_faces_from_several_threads(engine: Engine) -> None:
    rgb = engine.decode(london("002"))
    expected = engine.detect(rgb)
    results: list[object] = []

    def work() -> None:
        other = Engine(EngineSettings())
        results.extend(other.detect(rgb) for _ in range(5))

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [expected] * 15


def test_workers_that_embed_send_the_engines_descriptors_in_order_and_no_face_image(engine: Engine,
                                                                                      tmp_path: Path) -> None:
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    photos = [*(london(p, pose) for p in ("001", "002", "003") for pose in ("neutral", "smiling")),
              tmp_path / "broken.jpg", DATA / "multi" / "obama_and_biden.jpg", london("004")]
    plain = list(pipeline.prepare(engine, photos, workers=2))
    for workers in (2, 1):
        embedded = list(pipeline.prepare(engine, photos, workers=workers, embed=True))
        assert [p.path for p in embedded] == [Path(p) for p in photos]
        for mine, theirs in zip(embedded, plain, strict=True):
            assert (mine.error and mine.error.code) == (theirs.error and theirs.error.code)
            if theirs.chip is None:
                assert mine.chip is None and mine.descriptor is None
                continue
            assert mine.chip is None and mine.crops == {}  # the chip stayed in the worker
            assert mine.quality == theirs.quality
            assert mine.descriptor is not None and mine.side_descriptors == {}
            assert np.allclose(mine.descriptor, engine.embed([theirs.chip])[0], atol=1e-5)
    assert sum(p.descriptor is not None for p in embedded) == 7


def test_the_parent_of_embedding_workers_never_loads_the_embedder(tmp_path: Path) -> None:
    fresh = Engine(EngineSettings())
    photos = [london(p) for p in ("001", "002", "003")]
    assert all(p.descriptor is not None for p in pipeline.prepare(fresh, photos, workers=2, embed=True))
    assert fresh.model_id == "dlib-resnet-v1" and fresh._embedder is None


def test_in_accurate_mode_workers_send_both_descriptors_and_neither_image(engine: Engine) -> None:
    photos = [london(p) for p in ("001", "002", "003")]
    plain = list(pipeline.prepare(engine, photos, workers=1, accurate=True))
    embedded = list(pipeline.prepare(engine, photos, workers=2, accurate=True, embed=True))
    for mine, theirs in zip(embedded, plain, strict=True):
        assert theirs.chip is not None and set(theirs.crops) == set(engine.settings.side_models)
        assert mine.chip is None and mine.crops == {}
        assert mine.descriptor is not None and set(mine.side_descriptors) == set(engine.settings.side_models)
        assert np.allclose(mine.descriptor, engine.embed([theirs.chip])[0], atol=1e-5)
        for model_id, crop in theirs.crops.items():
            assert np.allclose(mine.side_descriptors[model_id], engine.embed_side([crop], model_id)[0], atol=1e-5)
