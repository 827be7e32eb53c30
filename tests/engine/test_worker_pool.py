"""Worker pools started ahead of the photos: what YuNet's workers load before forking, what they load later,
and a pool started early giving what a pool of ``prepare``'s own gives."""

from __future__ import annotations

import multiprocessing
import multiprocessing.pool
import os
import subprocess
import sys
import threading
from typing import Any

import numpy as np
import pytest

from facekeeper.config import EngineSettings
from facekeeper.engine import Engine, pipeline
from tests.conftest import DATA, london

TURNED = DATA / "people" / "barack_obama" / "4.jpg"  # a three-quarter press photo: judged on its jaw line


def test_yunets_fork_server_loads_what_every_photo_needs_and_nothing_else() -> None:
    code = ("import sys; from facekeeper.engine import dlib_onnx, models, yunet; "
            "import facekeeper.engine.preloaded_yunet; "
            "print(models.frontal_detector.cache_info().currsize, models.shape_predictor.cache_info().currsize, "
            "len(dlib_onnx._PREBUILT), yunet.graph.cache_info().currsize, "
            "'cv2' in sys.modules, 'PIL.Image' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    # no HOG detector, the 5-point model alone, the embedder's and YuNet's graphs built, OpenCV and Pillow imported
    assert out.stdout.split() == ["0", "1", "1", "1", "True", "True"]
    assert pipeline.PRELOAD[EngineSettings().detector] == "facekeeper.engine.preloaded_yunet"


def test_a_face_a_worker_hands_on_is_judged_on_its_jaw_line_in_its_place(engine: Engine) -> None:
    """Of two workers one has the 68-point model: a turned head the other meets is handed to it, measured on its
    jaw line, and comes back in its place in the order, as in this process."""
    photos = [london("003"), TURNED, london("001"), TURNED, london("004", "smiling")]
    here = list(pipeline.prepare(engine, photos, workers=1, embed=True))
    there = list(pipeline.prepare(engine, photos, workers=2, embed=True))
    assert [p.path for p in there] == photos and not any(p.deferred for p in there)
    assert [p.quality and p.quality["yaw_from"] for p in there] == ["eyes-nose", "jaw", "eyes-nose", "jaw",
                                                                    "eyes-nose"]
    assert [p.quality for p in there] == [p.quality for p in here]
    for mine, theirs in zip(there, here, strict=True):
        assert mine.descriptor is not None and theirs.descriptor is not None
        assert np.array_equal(mine.descriptor, theirs.descriptor)


def test_a_worker_told_to_defer_hands_a_turned_head_back_and_loads_nothing() -> None:
    light = Engine(EngineSettings())
    light.defer_jaw = True
    assert pipeline._prepare_one(light, TURNED, True).deferred
    assert 68 not in light._landmarkers
    frontal = pipeline._prepare_one(light, london("003"), True)
    assert not frontal.deferred and frontal.chip is not None


def test_a_pool_started_early_prepares_as_a_pool_of_its_own(engine: Engine) -> None:
    photos = [london(p, pose) for p in ("001", "002", "003") for pose in ("neutral", "smiling")]
    own = list(pipeline.prepare(engine, photos, workers=2, embed=True))
    with pipeline.WorkerPool(engine, 2, embed=True) as pool:
        started = pool.pools()
        first = list(pipeline.prepare(engine, photos, embed=True, pool=pool))
        again = list(pipeline.prepare(engine, photos[:2], embed=True, pool=pool))  # the caller's pool stays open
        workers = [w for p, _, _ in started for w in p._pool]  # type: ignore[attr-defined]
    assert [(size, jaw) for _, size, jaw in started] == [(1, False), (1, True)]  # one worker has the jaw model
    assert [p.path for p in first] == [p.path for p in own]
    for mine, theirs in zip(first, own, strict=True):
        assert mine.descriptor is not None and theirs.descriptor is not None
        assert np.array_equal(mine.descriptor, theirs.descriptor) and mine.quality == theirs.quality
    assert [p.path for p in again] == photos[:2]
    assert len(workers) == 2 and not any(w.is_alive() for w in workers)  # closing ends the processes


@pytest.mark.parametrize(("jobs", "workers", "limit"), [(204, 2, 16), (3040, 2, 16), (5, 2, 16), (33, 2, 16),
                                                         (17, 3, 4), (2, 2, 16)])
def test_every_worker_gets_as_many_batches_none_over_the_limit(jobs: int, workers: int, limit: int) -> None:
    size = pipeline.even_batch_size(jobs, workers, limit)
    sizes = [len(b) for b in pipeline.batches(range(jobs), size)]
    assert sum(sizes) == jobs and max(sizes) <= limit
    assert len(sizes) % workers == 0  # London's 204 photos: 14 batches of 15 (and 9), not 12 of 16 and one of 12
    assert max(sizes) - min(sizes) <= size - 1 and len(sizes) >= workers


def _a_result(_: int) -> bytes:
    return bytes(200_000)  # big enough that the result thread takes a while to read it


def test_the_pools_handler_thread_waits_for_work_instead_of_spinning_on_results(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """CPython's handler wakes (and holds the GIL) again and again while a result waits to be read; ours wakes only
    when a worker exits or the pool changes state."""
    wakes = 0
    real_wait = multiprocessing.pool.wait

    def counted(objects: Any, timeout: float | None = None) -> Any:
        nonlocal wakes
        if "_handle_workers" in threading.current_thread().name:
            wakes += 1
        return real_wait(objects, timeout)

    monkeypatch.setattr(multiprocessing.pool, "wait", counted)
    with pipeline.QuietPool(2, context=multiprocessing.get_context("forkserver")) as pool:
        assert sum(len(r) for r in pool.imap(_a_result, range(60))) == 60 * 200_000
    assert wakes <= 4  # one a result would be 60: the stock pool wakes hundreds of times here


def test_a_worker_that_exits_is_still_replaced() -> None:
    with pipeline.QuietPool(1, maxtasksperchild=1, context=multiprocessing.get_context("forkserver")) as pool:
        first = pool.apply_async(os.getpid).get(timeout=60)  # the worker exits after this one task
        assert pool.apply_async(os.getpid).get(timeout=60) != first  # the handler saw it go and started another
