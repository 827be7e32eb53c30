"""Starting bulk work cheaply: dlib's models loaded once per process, the embedder loaded while workers start."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import numpy as np

from facekeeper.config import EngineSettings
from facekeeper.engine import Engine, pipeline
from tests.conftest import london


def test_engines_in_one_process_share_dlibs_models() -> None:
    a, b = Engine(EngineSettings()), Engine(EngineSettings(quick_face=0.0))
    assert a.detector._det is b.detector._det  # type: ignore[attr-defined]
    assert a.landmarker(5)._predictor is b.landmarker(5)._predictor
    assert a.landmarker(68)._predictor is b.landmarker(68)._predictor
    assert a.landmarker(5)._predictor is not a.landmarker(68)._predictor


def test_the_fork_servers_module_loads_every_dlib_model() -> None:
    code = ("from facekeeper.engine import models; import facekeeper.engine.preloaded; "
            "print(models.frontal_detector.cache_info().currsize, models.shape_predictor.cache_info().currsize)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.split() == ["1", "2"]


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


def test_on_start_runs_before_the_pool_answers_and_results_keep_their_order(engine: Engine) -> None:
    photos = [london(p, pose) for p in ("001", "002", "003") for pose in ("neutral", "smiling")]
    calls: list[str] = []
    prepared = []
    for item in pipeline.prepare(engine, photos, workers=2, on_start=lambda: calls.append("start")):
        calls.append("item")
        prepared.append(item)
    assert calls[0] == "start" and calls.count("start") == 1
    assert [p.path for p in prepared] == [Path(p) for p in photos]
    serial = list(pipeline.prepare(engine, photos, workers=1))
    assert all(np.array_equal(a.chip, b.chip) and a.quality == b.quality for a, b in zip(prepared, serial, strict=True))


def test_preload_embedder_loads_it_off_the_calling_thread() -> None:
    fresh = Engine(EngineSettings())
    fresh.preload_embedder()
    chips = np.zeros((2, 150, 150, 3), np.uint8)
    assert fresh.embed(chips).shape == (2, 128)  # waits for the load, then embeds
    assert fresh._embedder is not None

