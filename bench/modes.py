"""Cost of fast vs accurate mode per face, on one core, and bulk throughput on the worker pool.

Usage: python bench/modes.py FOLDER [--photos 200] [--workers 2]

Per face (one process, onnxruntime on 1 thread, models loaded, each photo once): decode, detection, landmarks
and chip, dlib embedding, then accurate mode's extra FaceNet crop and embedding (the crop is cut from the
same HOG box, so there is no second detection). Bulk: ``pipeline.prepare`` on ``--workers`` processes
plus batched embedding, as ``enroll-dir`` and ``eval`` run, in images/s.
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
from facekeeper.errors import FacekeeperError


def per_face(engine: Engine, photos: list[Path]) -> dict[str, list[float]]:
    t: dict[str, list[float]] = {k: [] for k in ("decode", "detect+landmarks+chip", "dlib embed",
                                                 "FaceNet crop", "FaceNet embed")}
    for path in photos:
        a = time.perf_counter()
        rgb = engine.decode(path)
        b = time.perf_counter()
        try:
            face = engine.single_face(rgb, enrollment=False)
        except FacekeeperError:
            continue
        c = time.perf_counter()
        engine.embed([face.chip])
        d = time.perf_counter()
        crop = engine.facenet_crop(rgb, face)
        e = time.perf_counter()
        engine.embed_facenet([crop])
        f = time.perf_counter()
        for key, value in zip(t, (b - a, c - b, d - c, e - d, f - e), strict=True):
            value_ms = value * 1000
            t[key].append(value_ms)
    return t


def bulk(engine: Engine, photos: list[Path], workers: int, accurate: bool) -> float:
    t0 = time.perf_counter()
    chips, crops = [], []
    for item in pipeline.prepare(engine, photos, enrollment=False, workers=workers, accurate=accurate):
        if item.chip is not None:
            chips.append(item.chip)
            if item.crop is not None:
                crops.append(item.crop)
    engine.embed(chips)
    if crops:
        engine.embed_facenet(crops)
    return len(photos) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("folder", type=Path)
    ap.add_argument("--photos", type=int, default=200)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    samples = evaluation.labelled_folder(args.folder)
    rng = np.random.default_rng(0)
    photos = [samples[i][0] for i in sorted(rng.choice(len(samples), min(args.photos, len(samples)), replace=False))]
    engine = Engine(EngineSettings(onnx_threads=1))
    engine.embed(np.zeros((1, 150, 150, 3), np.uint8))
    engine.embed_facenet(np.zeros((1, 160, 160, 3), np.uint8))  # load both models before timing
    t = per_face(engine, photos[:50])
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {datetime.now(UTC):%Y-%m-%d %H:%M}"
          f" UTC; {args.folder.name}, {len(t['decode'])} faces")
    print("| step | median ms | p90 ms |\n|---|---|---|")
    for key, values in t.items():
        print(f"| {key} | {np.median(values):.1f} | {np.percentile(values, 90):.1f} |")
    fast = sum(np.median(v) for k, v in t.items() if not k.startswith("FaceNet"))
    extra = np.median(t["FaceNet crop"]) + np.median(t["FaceNet embed"])
    print(f"| **fast, per face** | {fast:.1f} | |\n| **accurate, per face** | {fast + extra:.1f} | |")
    print(f"| accurate's extra (FaceNet crop + embed) | {extra:.1f} | |")
    for accurate in (False, True):
        rate = bulk(engine, photos, args.workers, accurate)
        print(f"bulk {'accurate' if accurate else 'fast'}: {rate:.1f} images/s ({len(photos)} photos,"
              f" {args.workers} workers)")


if __name__ == "__main__":
    main()
