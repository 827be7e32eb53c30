"""Bulk face preparation: decode, detect, landmarks and chip in a pool of worker processes.

Once the embedder runs batched on onnxruntime, the per-image steps before it (decode, HOG detection,
landmarks) dominate, and they are single-threaded dlib/Pillow code: the only way to use every core is
one process per core. Workers send back only the 150x150 chip (and, in accurate mode, FaceNet's 160x160
crop) and the quality figures, never the photo; the parent embeds in batches. Results come back in input
order.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facekeeper.config import EngineSettings, LimitSettings, QualitySettings
from facekeeper.engine.core import Engine
from facekeeper.errors import FacekeeperError, QualityRejected


@dataclass(frozen=True)
class Prepared:
    """One photo's outcome: an aligned chip and its quality, or the error that stopped it.

    For probes (``enrollment=False``) a face that fails the quality gate still yields its chip, and
    ``rejected`` names the gate's reason: evaluation counts it as a failure to enrol but still compares it.
    """

    path: Path
    chip: np.ndarray | None
    quality: dict[str, float | str] | None
    error: FacekeeperError | None
    rejected: str | None = None
    crop: np.ndarray | None = None  # FaceNet's crop, when prepared for accurate mode


_worker_engine: Engine | None = None


def _init_worker(settings: EngineSettings, quality: QualitySettings, limits: LimitSettings) -> None:
    global _worker_engine
    _worker_engine = Engine(settings, quality, limits)


def _prepare_one(engine: Engine, path: Path | bytes, enrollment: bool, accurate: bool = False,
                 name: str = "image") -> Prepared:
    """``path`` may be the photo's bytes, read elsewhere (a cluster worker); ``name`` then labels errors."""
    try:
        face = engine.single_face(engine.decode(path, name), enrollment=enrollment, accurate=accurate)
    except FacekeeperError as exc:
        return Prepared(path, None, None, exc)
    rejected = None
    if not enrollment:
        try:
            engine.check_quality(face)
        except QualityRejected as exc:
            rejected = str(exc.details.get("reason", exc.code))
    return Prepared(path, face.chip, face.quality.as_dict(), None, rejected, face.facenet_crop)


def _prepare_in_worker(job: tuple[Path, bool, bool]) -> Prepared:
    assert _worker_engine is not None
    return _prepare_one(_worker_engine, *job)


def default_workers(settings: EngineSettings) -> int:
    return settings.workers or os.cpu_count() or 1


def prepare(engine: Engine, paths: Iterable[Path], *, enrollment: bool = True,
            workers: int | None = None, accurate: bool = False,
            on_start: Callable[[], object] | None = None) -> Iterator[Prepared]:
    """Prepare every photo, in order, on ``workers`` processes (1 = in this process).

    ``on_start`` runs just before the pool starts: the caller loads what it needs next (the embedder) on a
    thread while the fork server loads dlib's models and the workers start.
    """
    jobs = [(Path(p), enrollment, accurate) for p in paths]
    n = workers or default_workers(engine.settings)
    if n <= 1 or len(jobs) < 2:
        for job in jobs:
            yield _prepare_one(engine, *job)
        return
    # forkserver: workers must not inherit the parent's onnxruntime threads or open SQLite handles. The
    # server loads dlib's models once (if this process starts it) and each worker forks with them loaded.
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["facekeeper.engine.preloaded"])
    if on_start is not None:
        on_start()
    with ctx.Pool(min(n, len(jobs)), _init_worker,
                  (engine.settings, engine.quality_settings, engine.limits)) as pool:
        yield from pool.imap(_prepare_in_worker, jobs, chunksize=4)
