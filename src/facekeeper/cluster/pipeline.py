"""Bulk face preparation on a Ray cluster: the local process pool's work, spread over the cluster's nodes.

``prepare`` is ``facekeeper.engine.pipeline.prepare`` with Ray actors in place of local processes: it
yields one ``Prepared`` per photo, in input order, so ``enroll-dir --cluster`` runs the same loop (consent
checks, audit and storage stay in the caller, on this machine). Each actor loads an ``Engine`` once and
keeps it. Like the local workers of ``enroll-dir``, the actors also embed (``embed=True``, with the same
``embed_prepared``): a caller embedding for a whole cluster would be its bottleneck.

Photos are read here and sent to the actors, so the nodes need no shared folder. In flight they sit in
Ray's object store (memory; on disk only if the operator turned spilling on), and only ``in_flight``
batches per actor are outstanding at a time, so a folder of a million photos never piles up in memory.
What comes back is the chip and the descriptor, never the photo.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from facekeeper.config import EngineSettings, LimitSettings, QualitySettings
from facekeeper.engine import image
from facekeeper.engine.core import Engine
from facekeeper.engine.pipeline import Prepared, _prepare_one, batches, embed_prepared
from facekeeper.errors import FacekeeperError

DEFAULT_BATCH = 8  # photos per actor call: amortises the call (~1-2 ms) over ~10-30 ms of work per photo
DEFAULT_IN_FLIGHT = 2  # batches queued per actor: one running, one ready to start


class Preparer:
    """One Ray actor: an Engine loaded once, preparing (and embedding) batches of photo bytes."""

    def __init__(self, settings: EngineSettings, quality: QualitySettings, limits: LimitSettings) -> None:
        self._engine = Engine(settings, quality, limits)

    def prepare(self, batch: list[tuple[Path, bytes]], enrollment: bool, accurate: bool,
                embed: bool) -> list[Prepared]:
        done = [dataclasses.replace(_prepare_one(self._engine, data, enrollment, accurate, path.name), path=path)
                for path, data in batch]
        return embed_prepared(self._engine, done) if embed else done


def _read(path: Path, limits: LimitSettings) -> tuple[bytes | None, FacekeeperError | None]:
    try:
        return image.read_bytes(path, limits.max_image_bytes), None
    except FacekeeperError as exc:
        return None, exc


def prepare(engine: Engine, paths: Iterable[Path], *, enrollment: bool = True, accurate: bool = False,
            embed: bool = True, workers: int | None = None, batch: int = DEFAULT_BATCH,
            in_flight: int = DEFAULT_IN_FLIGHT) -> Iterator[Prepared]:
    """Prepare every photo on the connected Ray cluster, yielding results in input order.

    ``workers``: actors to start (default: the cluster's CPUs). Call ``runtime.connect`` first. A photo
    that cannot be read here is reported like one the engine refused (its ``error``), as locally.
    """
    import ray

    settings = (engine.settings, engine.quality_settings, engine.limits)
    count = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
    remote = ray.remote(Preparer).options(num_cpus=1, max_restarts=-1, max_task_retries=3,
                                          scheduling_strategy="SPREAD")
    actors = [remote.remote(*settings) for _ in range(count)]
    jobs = batches((Path(p) for p in paths), batch)
    pending: deque[tuple[list[Prepared | None], Any]] = deque()  # in input order
    idle = deque(actors * in_flight)
    try:
        while True:
            while idle:
                slots = next(jobs, None)
                if slots is None:
                    break
                actor = idle.popleft()
                results: list[Prepared | None] = [None] * len(slots)
                send = []
                for n, path in enumerate(slots):
                    data, error = _read(path, engine.limits)
                    if error is not None:
                        results[n] = Prepared(path, None, None, error)
                    else:
                        send.append((n, path, data))
                ref = actor.prepare.remote([(p, d) for _, p, d in send], enrollment, accurate, embed) if send else None
                pending.append((results, (ref, [n for n, _, _ in send], actor)))
            if not pending:
                return
            results, (ref, where, actor) = pending.popleft()
            if ref is not None:
                for n, item in zip(where, ray.get(ref), strict=True):
                    results[n] = item
            idle.append(actor)
            for item in results:
                assert item is not None
                yield item
    finally:
        for actor in actors:
            ray.kill(actor, no_restart=True)

