"""Cost of each step per face, on one core, for both detectors and every side model, and bulk throughput.

Usage: python bench/modes.py FOLDER [--photos 200] [--workers 2] [--bulk]

Per face (one process, 1 thread, models loaded, each photo once): decode, detection + landmarks + chip with
HOG and with YuNet, dlib's embedding, then each side model's crop and embedding (SFace from YuNet's points,
FaceNet from the box; no second detection). Medians over the photos; a shared box is noisy, so compare the
steps within one run. ``--bulk``: ``pipeline.prepare`` on ``--workers`` processes with embedding in the
workers, as ``enroll-dir`` and ``eval`` run, in images/s, per detector and mode.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from facekeeper import evaluation
from facekeeper.config import EngineSettings
from facekeeper.engine import Engine, pipeline
from facekeeper.engine.core import SIDE_MODELS
from facekeeper.errors import FacekeeperError
from facekeeper.fusion import FACENET_MODEL_ID, SFACE_MODEL_ID

SHORT = {SFACE_MODEL_ID: "SFace", FACENET_MODEL_ID: "FaceNet"}


def per_face(engines: dict[str, Engine], photos: list[Path]) -> dict[str, list[float]]:
    t: dict[str, list[float]] = {}
    yunet = engines["yunet"]
    for path in photos:
        a = time.perf_counter()
        rgb = yunet.decode(path)
        t.setdefault("decode", []).append((time.perf_counter() - a) * 1000)
        try:
            for name, engine in engines.items():
                b = time.perf_counter()
                face = engine.single_face(rgb, enrollment=False)
                t.setdefault(f"{name}: detect + landmarks + chip", []).append((time.perf_counter() - b) * 1000)
            c = time.perf_counter()
            yunet.embed([face.chip])
            t.setdefault("dlib embed", []).append((time.perf_counter() - c) * 1000)
            for model_id, spec in SIDE_MODELS.items():
                d = time.perf_counter()
                crop = spec.crop(yunet, rgb, face)
                e = time.perf_counter()
                yunet.embed_side([crop], model_id)
                f = time.perf_counter()
                t.setdefault(f"{SHORT[model_id]} crop", []).append((e - d) * 1000)
                t.setdefault(f"{SHORT[model_id]} embed", []).append((f - e) * 1000)
        except FacekeeperError:
            continue
    return t


def bulk(engine: Engine, photos: list[Path], workers: int, accurate: bool) -> float:
    t0 = time.perf_counter()
    for _ in pipeline.prepare(engine, photos, enrollment=False, workers=workers, accurate=accurate, embed=True):
        pass
    return len(photos) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("folder", type=Path)
    ap.add_argument("--photos", type=int, default=200)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--bulk", action="store_true")
    args = ap.parse_args()
    samples = evaluation.labelled_folder(args.folder)
    rng = np.random.default_rng(0)
    photos = [samples[i][0] for i in sorted(rng.choice(len(samples), min(args.photos, len(samples)), replace=False))]
    engines = {d: Engine(EngineSettings(detector=d, onnx_threads=1, side_models=[SFACE_MODEL_ID]))
               for d in ("hog", "yunet")}
    engines["yunet"].embed(np.zeros((1, 150, 150, 3), np.uint8))
    for model_id, spec in SIDE_MODELS.items():  # load every model before timing
        engines["yunet"].embed_side(np.zeros((1, spec.crop_size, spec.crop_size, 3), np.uint8), model_id)
    per_face(engines, photos[:3])
    t = per_face(engines, photos[:50])
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {datetime.now(UTC):%Y-%m-%d %H:%M}"
          f" UTC, load {os.getloadavg()[0]:.1f}; {args.folder.name}, {len(t['dlib embed'])} faces")
    print("| step | median ms | p90 ms |\n|---|---|---|")
    for key, values in t.items():
        print(f"| {key} | {np.median(values):.1f} | {np.percentile(values, 90):.1f} |")
    med = {k: float(np.median(v)) for k, v in t.items()}
    for det in engines:
        base = med["decode"] + med[f"{det}: detect + landmarks + chip"] + med["dlib embed"]
        print(f"| **{det}: dlib alone, per face** | {base:.1f} | |")
        for name in SHORT.values():
            print(f"| {det}: dlib + {name}, per face | {base + med[f'{name} crop'] + med[f'{name} embed']:.1f} | |")
    if args.bulk:
        for det, engine in engines.items():
            for accurate in (False, True):
                rate = bulk(engine, photos, args.workers, accurate)
                print(f"bulk {det} {'dlib + SFace' if accurate else 'dlib'}: {rate:.1f} images/s ({len(photos)}"
                      f" photos, {args.workers} workers)")


if __name__ == "__main__":
    main()
