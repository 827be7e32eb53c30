"""Embed a labelled photo folder with both models and every detector/face-choice variant, for bench/fusion.py.

Usage: python bench/fusion_embed.py DATASET OUT.npz [--workers 2]

For each photo: HOG (the engine's probe path: largest face, dominance rule) gives the dlib descriptor and
its box; FaceNet is run on three crops of the same photo: from the HOG box, from the HOG box widened to
MTCNN's framing (``facekeeper.engine.facenet.hog_to_facenet_box``), and from the MTCNN box (face nearest the
centre, and the largest face when that differs). Photos where a detector finds nothing get NaN rows.
The output holds descriptors of a public research set, for measurement only: keep it out of the repository
and delete it after use.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time
from pathlib import Path

import numpy as np

from facekeeper import evaluation
from facekeeper.config import EngineSettings
from facekeeper.engine import Engine
from facekeeper.engine.detect import choose_face
from facekeeper.engine.facenet import FaceNetEmbedder, facenet_crop, hog_to_facenet_box
from facekeeper.engine.mtcnn import MtcnnDetector
from facekeeper.errors import FacekeeperError

_state: dict[str, object] = {}


def _init() -> None:
    _state["engine"] = Engine(EngineSettings(workers=1))
    _state["facenet"] = FaceNetEmbedder(threads=1)
    _state["mtcnn"] = MtcnnDetector(threads=1)


def _one(path: Path) -> dict[str, np.ndarray]:
    engine = _state["engine"]
    facenet = _state["facenet"]
    mtcnn = _state["mtcnn"]
    assert isinstance(engine, Engine) and isinstance(facenet, FaceNetEmbedder) and isinstance(mtcnn, MtcnnDetector)
    nan = {k: np.full(d, np.nan, np.float32) for k, d in
           (("dlib", 128), ("fn_hog", 512), ("fn_hogw", 512), ("fn_mt_centre", 512), ("fn_mt_largest", 512))}
    out = dict(nan)
    out["hog_box"] = np.full(4, np.nan, np.float32)
    out["mt_box"] = np.full(4, np.nan, np.float32)
    out["mt_faces"] = np.zeros(1, np.float32)
    rgb = engine.decode(path)
    try:
        face = engine.single_face(rgb, enrollment=False)
        out["dlib"] = engine.embed([face.chip])[0]
        out["hog_box"] = np.asarray(face.box, np.float32)
        crops = [facenet_crop(rgb, face.box), facenet_crop(rgb, hog_to_facenet_box(face.box))]
        emb = facenet.embed(np.stack(crops))
        out["fn_hog"], out["fn_hogw"] = emb[0], emb[1]
    except FacekeeperError:
        pass
    found = mtcnn.detect(rgb)
    out["mt_faces"] = np.asarray([len(found)], np.float32)
    if found:
        c = choose_face(found, rgb.shape, "centre")
        g = choose_face(found, rgb.shape, "largest")
        out["mt_box"] = np.asarray(found[c].box, np.float32)
        out["fn_mt_centre"] = facenet.embed(facenet_crop(rgb, found[c].box))[0]
        out["fn_mt_largest"] = out["fn_mt_centre"] if g == c else facenet.embed(facenet_crop(rgb, found[g].box))[0]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dataset", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    photos = evaluation.labelled_folder(args.dataset)
    t0 = time.perf_counter()
    with mp.get_context("forkserver").Pool(args.workers, _init) as pool:
        rows = pool.map(_one, [p for p, _ in photos], chunksize=8)
    keys = rows[0].keys()
    arrays = {k: np.stack([r[k] for r in rows]) for k in keys}
    labels = np.asarray([label for _, label in photos])
    names = np.asarray([str(p.relative_to(args.dataset)) for p, _ in photos])
    np.savez(args.out, labels=labels, names=names, **arrays)
    print(f"{len(photos)} photos in {time.perf_counter() - t0:.0f} s -> {args.out}")


if __name__ == "__main__":
    main()
