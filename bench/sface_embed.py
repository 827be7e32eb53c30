"""Embed a labelled photo folder with every model and detector issue 18 compares, for bench/sface.py.

Usage: python bench/sface_embed.py DATASET OUT.npz [--workers 2] [--probe-eyes 32 --jpeg 50]

Each photo goes through the engine's probe path (``single_face(enrollment=False)``, the ``face_choice`` rule)
with HOG (dlib), with YuNet as accurate mode detects (dlib on YuNet's box framed as HOG's, SFace on YuNet's 5
points, FaceNet on YuNet's box framed as HOG's and reshaped as accurate mode does), and with YuNet as fast mode
detects (``dlib_fast``: the quick pass on its smaller copy, then dlib). Photos where a
detector finds nothing get NaN rows. The output holds descriptors of research photos, for measurement
only: keep it out of the repository and delete it after use.

``--probe-eyes PX --jpeg Q`` embeds each photo as a gate camera would see it: shrunk (never enlarged) so that
YuNet's eye centres on the original are PX pixels apart, then JPEG-encoded at quality Q and decoded. The gate
accepts faces from 28 px between the eyes (``[gate] min_eye_distance``); bench/sface.py pairs these probes
with the clean photos as the enrolled side.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import time
from pathlib import Path

import cv2
import numpy as np

from facekeeper import evaluation
from facekeeper.config import EngineSettings
from facekeeper.engine import Engine
from facekeeper.engine.facenet import facenet_crop, hog_to_facenet_box
from facekeeper.engine.yunet import hog_frame
from facekeeper.errors import FacekeeperError
from facekeeper.fusion import FACENET_MODEL_ID, SFACE_MODEL_ID

DIMS = {"dlib_hog": 128, "dlib_yunet": 128, "dlib_fast": 128, "sface": 128, "facenet": 512}
_engines: dict[str, Engine] = {}
_degrade: dict[str, int] = {}


def _init(eyes: int, quality: int) -> None:
    if eyes:
        _degrade.update(eyes=eyes, quality=quality)
    _engines["hog"] = Engine(EngineSettings(detector="hog", workers=1))
    _engines["yunet"] = Engine(EngineSettings(detector="yunet", workers=1, side_models=[SFACE_MODEL_ID]))


def gate_probe(engine: Engine, rgb: np.ndarray, eyes: int, quality: int) -> np.ndarray:
    """``rgb`` shrunk so that its largest YuNet face has ``eyes`` pixels between the eye centres, then through
    JPEG at ``quality``; unshrunk when YuNet finds no face or the eyes are already closer."""
    found = engine.detect(rgb, accurate=True)  # the precise points: probes as bundle 1.3.0 measured them
    if found and found[0].points is not None:
        distance = float(np.linalg.norm(found[0].points[0] - found[0].points[1]))
        scale = eyes / distance
        if scale < 1:
            size = (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale)))
            rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return engine.decode(jpeg.tobytes())


def _one(path: Path) -> dict[str, np.ndarray]:
    hog, yunet = _engines["hog"], _engines["yunet"]
    out = {k: np.full(d, np.nan, np.float32) for k, d in DIMS.items()}
    out["faces"] = np.zeros(2, np.float32)  # faces found by HOG (thorough pass) and YuNet
    rgb = hog.decode(path)
    if _degrade:
        rgb = gate_probe(yunet, rgb, _degrade["eyes"], _degrade["quality"])
    out["faces"][:] = len(hog.detect(rgb, every_face=True)), len(yunet.detect(rgb))
    with contextlib.suppress(FacekeeperError):
        out["dlib_hog"] = hog.embed([hog.single_face(rgb, enrollment=False).chip])[0]
    with contextlib.suppress(FacekeeperError):  # fast mode: YuNet's quick pass on its smaller copy
        out["dlib_fast"] = yunet.embed([yunet.single_face(rgb, enrollment=False).chip])[0]
    try:
        face = yunet.single_face(rgb, enrollment=False, accurate=True)
        out["dlib_yunet"] = yunet.embed([face.chip])[0]
        out["sface"] = yunet.embed_side([face.side_crops[SFACE_MODEL_ID]], SFACE_MODEL_ID)[0]
        crop = facenet_crop(rgb, hog_to_facenet_box(hog_frame(face.box)))
        out["facenet"] = yunet.embed_side([crop], FACENET_MODEL_ID)[0]
    except FacekeeperError:
        pass
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dataset", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--probe-eyes", type=int, default=0, help="shrink to this eye distance (pixels), 0: as is")
    ap.add_argument("--jpeg", type=int, default=50, help="JPEG quality of the shrunk probes")
    args = ap.parse_args()
    samples = evaluation.labelled_folder(args.dataset)
    paths = [p for p, _ in samples]
    start = time.perf_counter()
    with mp.get_context("forkserver").Pool(args.workers, _init, (args.probe_eyes, args.jpeg)) as pool:
        rows = pool.map(_one, paths, chunksize=8)
    print(f"{len(paths)} photos in {time.perf_counter() - start:.0f} s")
    np.savez(args.out, labels=np.array([label for _, label in samples]), paths=np.array([str(p) for p in paths]),
             **{k: np.stack([r[k] for r in rows]) for k in (*DIMS, "faces")})


if __name__ == "__main__":
    main()
