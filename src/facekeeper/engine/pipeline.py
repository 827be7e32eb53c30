"""Bulk face preparation: decode, detect, landmarks and chip in a pool of worker processes.

Once the embedder runs batched on onnxruntime, the per-image steps before it (decode, HOG detection,
landmarks) dominate, and they are single-threaded dlib/Pillow code: the only way to use every core is
one process per core. Workers send back only the 150x150 chip (and, in accurate mode, the side model's
crop) and the quality figures, never the photo. Results come back in input order.

With ``embed=True`` each worker also embeds its own batch of photos and sends the descriptors instead of the
chips, so no face image leaves it. One process per core then does all the work, where a parent embedding
for every worker would be one process more than there are cores, its network evicting the workers' models
from the caches (faces94 photos: 145 against 127 photos/s on two cores).
"""

from __future__ import annotations

import multiprocessing as mp
import multiprocessing.pool
import os
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import numpy as np

from facekeeper.config import EngineSettings, LimitSettings, QualitySettings
from facekeeper.engine.core import Engine, JawDeferred
from facekeeper.errors import FacekeeperError, QualityRejected


@dataclass(frozen=True)
class Prepared:
    """One photo's outcome: an aligned chip (or, once embedded, its descriptor instead) and its quality, or
    the error that stopped it.

    For probes (``enrollment=False``) a face that fails the quality gate still yields its chip, and
    ``rejected`` names the gate's reason: evaluation counts it as a failure to enrol but still compares it.
    """

    path: Path
    chip: np.ndarray | None
    quality: dict[str, float | str] | None
    error: FacekeeperError | None
    rejected: str | None = None
    crops: dict[str, np.ndarray] = field(default_factory=dict)  # each side model's crop, in accurate mode
    descriptor: np.ndarray | None = None  # when the worker embedded the chip (``embed=True``)
    side_descriptors: dict[str, np.ndarray] = field(default_factory=dict)  # ... and the crops, accurate mode
    faces_found: int = 1  # more than one: a probe answered with the face ``face_choice`` picked
    deferred: bool = False  # a worker without the 68-point model handed it on (``WorkerPool``); never yielded


_worker_engine: Engine | None = None
T = TypeVar("T")


def _init_worker(settings: EngineSettings, quality: QualitySettings, limits: LimitSettings, embed: bool,
                 jaw: str = "lazy") -> None:
    """Load what every photo needs now, while the pool is still starting (``WorkerPool``), not on the first
    photo; ``embed``: the embedder too, with one untimed run so its first batch pays no set-up.

    ``jaw``: ``"load"`` loads the 68-point model now, ``"defer"`` never loads it (a face that needs it comes
    back ``deferred``), ``"lazy"`` loads it for the first face that needs it."""
    global _worker_engine
    _worker_engine = Engine(settings, quality, limits)
    _worker_engine.detector  # noqa: B018
    _worker_engine.landmarker()
    if embed:
        _worker_engine.embed(np.zeros((1, 150, 150, 3), np.uint8))
    if jaw == "load":
        _worker_engine.landmarker(68)
    _worker_engine.defer_jaw = jaw == "defer"


def _prepare_one(engine: Engine, path: Path | bytes, enrollment: bool, accurate: bool = False,
                 name: str = "image") -> Prepared:
    """``path`` may be the photo's bytes, read elsewhere (a cluster worker); ``name`` then labels errors."""
    try:
        face = engine.single_face(engine.decode(path, name), enrollment=enrollment, accurate=accurate)
    except FacekeeperError as exc:
        return Prepared(path, None, None, exc)
    except JawDeferred:
        return Prepared(path, None, None, None, deferred=True)
    rejected = None
    if not enrollment:
        try:
            engine.check_quality(face)
        except QualityRejected as exc:
            rejected = str(exc.details.get("reason", exc.code))
    return Prepared(path, face.chip, face.quality.as_dict(), None, rejected, face.side_crops,
                    faces_found=face.faces_in_photo)


def _prepare_list_in_worker(jobs: list[tuple[Path, bool, bool]]) -> list[Prepared]:
    assert _worker_engine is not None
    return [_prepare_one(_worker_engine, *job) for job in jobs]


def embed_prepared(engine: Engine, done: list[Prepared]) -> list[Prepared]:
    """``done`` with each chip (and side-model crop) embedded in one batch and then dropped.

    Only the descriptors and quality figures travel back to the caller: the aligned face images stay in
    the process (or on the cluster node) that cut them, which is all the caller needs (minimization).
    """
    ok = [p for p in done if p.chip is not None]
    if not ok:
        return done
    descriptors = iter(engine.embed([p.chip for p in ok]))
    models = {m for p in ok for m in p.crops}
    side = {m: iter(engine.embed_side([p.crops[m] for p in ok if m in p.crops], m)) for m in sorted(models)}
    return [p if p.chip is None else
            replace(p, chip=None, crops={}, descriptor=next(descriptors),
                    side_descriptors={m: next(side[m]) for m in p.crops})
            for p in done]


def _prepare_batch(engine: Engine, jobs: list[tuple[Path, bool, bool]]) -> list[Prepared]:
    return embed_prepared(engine, [_prepare_one(engine, *job) for job in jobs])


def _prepare_batch_in_worker(jobs: list[tuple[Path, bool, bool]]) -> list[Prepared]:
    assert _worker_engine is not None
    return _prepare_batch(_worker_engine, jobs)


def default_workers(settings: EngineSettings) -> int:
    return settings.workers or os.cpu_count() or 1


# What the fork server loads before any worker forks, by detector: YuNet's workers do not need dlib's HOG
# detector, which takes a quarter of the other module's 2 s.
PRELOAD = {"yunet": "facekeeper.engine.preloaded_yunet"}


def _worker_context(settings: EngineSettings) -> mp.context.BaseContext:
    # forkserver: workers must not inherit the parent's onnxruntime threads or open SQLite handles. The
    # server loads the models once (if this process starts it) and each worker forks with them loaded.
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload([PRELOAD.get(settings.detector, "facekeeper.engine.preloaded")])
    return ctx


class QuietPool(multiprocessing.pool.Pool):
    """multiprocessing's ``Pool`` whose worker-handler thread wakes when there is something for it to do.

    CPython's handler also waits on the result queue, which stays readable until the result thread has read a
    result, so it spins through its loop meanwhile: ~40 times a result, 3,000 wakes and 0.2-0.3 s of the parent's
    CPU for 1,200 faces94 photos, the GIL held against the thread that stores templates. Its only work is to
    replace a worker that exited (it still waits on their sentinels) and to stop when the pool closes (close,
    terminate and the last pending result all post to its notifier), so it waits on those alone.
    """

    def _get_sentinels(self) -> list[Any]:
        return [self._change_notifier._reader]  # type: ignore[attr-defined]


class WorkerPool:
    """``workers`` processes, started in a background thread so their start-up (the fork server's model load,
    each worker's own sessions) overlaps what the caller does meanwhile, such as checking consent. No photo
    reaches a worker before the caller passes paths to ``prepare``. Closing terminates the processes.

    With YuNet, one worker loads dlib's 68-point model (0.6 s) as it starts and the others do not: they start on
    photos at once and hand it the 2-5% of faces whose jaw line must be measured (a turned head), so the model is
    loaded once, on a core that would otherwise wait for the parent's consent work, and by no worker in the middle
    of its batch. (Loaded by the fork server instead, it held every worker back by 0.6 s: London's 204 photos took
    2.6 s; loaded by whichever worker first met such a face, usually by both.)
    """

    def __init__(self, engine: Engine, workers: int, *, embed: bool = False) -> None:
        self.size = workers
        self._pools: list[tuple[multiprocessing.pool.Pool, int, bool]] = []  # (pool, workers, has the jaw model)
        self._error: BaseException | None = None
        args = (engine.settings, engine.quality_settings, engine.limits, embed)
        self._thread = threading.Thread(target=self._start, args=args, name="facekeeper-workers", daemon=True)
        self._thread.start()

    def _start(self, settings: EngineSettings, quality: QualitySettings, limits: LimitSettings, embed: bool) -> None:
        try:
            ctx = _worker_context(settings)
            if settings.detector == "yunet" and self.size > 1:
                self._pools.append((QuietPool(self.size - 1, _init_worker, (settings, quality, limits, embed, "defer"),
                                              context=ctx), self.size - 1, False))
                self._pools.append((QuietPool(1, _init_worker, (settings, quality, limits, embed, "load"), context=ctx),
                                    1, True))
            else:
                self._pools.append((QuietPool(self.size, _init_worker, (settings, quality, limits, embed), context=ctx),
                                    self.size, True))
        except BaseException as exc:  # raised to the caller by ``pools()``
            self._error = exc

    def pools(self) -> list[tuple[multiprocessing.pool.Pool, int, bool]]:
        """The started pools (waiting for them if need be): (pool, its workers, whether they measure jaw lines)."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        return list(self._pools)

    def close(self) -> None:
        self._thread.join()
        for pool, _, _ in self._pools:
            pool.terminate()
            pool.join()
        self._pools = []

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def prepare(engine: Engine, paths: Iterable[Path], *, enrollment: bool = True,
            workers: int | None = None, accurate: bool = False, embed: bool = False,
            pool: WorkerPool | None = None) -> Iterator[Prepared]:
    """Prepare every photo, in order, on ``workers`` processes (1 = in this process), or on ``pool``'s,
    started earlier by the caller (who closes it).

    ``embed``: the descriptors are made too, in batches of ``batch_size`` (by each worker for its own
    photos), and this process needs no embedder.
    """
    jobs = [(p if isinstance(p, Path) else Path(p), enrollment, accurate) for p in paths]
    n = min(pool.size if pool is not None else workers or default_workers(engine.settings), len(jobs))
    if n <= 1:
        if not embed:
            for job in jobs:
                yield _prepare_one(engine, *job)
            return
        for batch in batches(jobs, engine.settings.batch_size):
            yield from _prepare_batch(engine, batch)
        return
    if pool is None:
        with WorkerPool(engine, n, embed=embed) as own:
            yield from _prepare_on(own.pools(), engine, jobs, n, embed)
        return
    yield from _prepare_on(pool.pools(), engine, jobs, n, embed)


def _prepare_on(pools: list[tuple[multiprocessing.pool.Pool, int, bool]], engine: Engine,
                jobs: list[tuple[Path, bool, bool]], n: int, embed: bool) -> Iterator[Prepared]:
    """Every job through the pools in batches, at most two outstanding per worker; a batch a worker without the
    jaw model handed back in part goes, for those photos, to a pool that has it, ahead of the next new batch.
    Results are yielded in the order of ``jobs``."""
    size = even_batch_size(len(jobs), n, engine.settings.batch_size)
    work: Callable[[list[tuple[Path, bool, bool]]], list[Prepared]] = (
        _prepare_batch_in_worker if embed else _prepare_list_in_worker)
    fresh = deque(range(start, min(start + size, len(jobs))) for start in range(0, len(jobs), size))
    handed_back: deque[int] = deque()
    finished: queue.SimpleQueue[tuple[int, list[int], list[Prepared] | None, BaseException | None]] = (
        queue.SimpleQueue())
    outstanding = [0] * len(pools)
    ready: dict[int, Prepared] = {}

    def submit(i: int) -> bool:
        pool, workers, jaw = pools[i]
        if outstanding[i] >= 2 * workers:
            return False
        if jaw and handed_back:
            batch = [handed_back.popleft() for _ in range(min(size, len(handed_back)))]
        elif fresh:
            batch = list(fresh.popleft())
        else:
            return False
        outstanding[i] += 1
        pool.apply_async(work, ([jobs[k] for k in batch],),
                         callback=lambda out: finished.put((i, batch, out, None)),
                         error_callback=lambda exc: finished.put((i, batch, None, exc)))
        return True

    jaw_first = sorted(range(len(pools)), key=lambda i: not pools[i][2])  # the jaw pool takes the hand-backs

    def refill() -> None:
        for i in jaw_first:
            while submit(i):
                pass

    refill()
    following = 0
    while following < len(jobs):
        i, batch, out, exc = finished.get()
        if exc is not None:
            raise exc
        assert out is not None
        outstanding[i] -= 1
        for k, item in zip(batch, out, strict=True):
            if item.deferred:
                handed_back.append(k)
            else:
                ready[k] = item
        refill()
        while following in ready:
            yield ready.pop(following)
            following += 1


def even_batch_size(jobs: int, workers: int, limit: int) -> int:
    """The batch size that gives every worker as many batches, none over ``limit``: the workers finish together
    instead of one embedding a last batch while the other waits (0.1-0.2 s of a folder of 200 600 px photos),
    and a short list still keeps every worker busy."""
    count = workers * -(-jobs // (workers * limit))
    return max(1, -(-jobs // count))


def batches(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """``items`` in lists of ``size`` (the last may be shorter), read lazily."""
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
