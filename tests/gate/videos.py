"""Test videos made from the committed London photos: faces moving across a plain background.

Each ``Walk`` is one pass: a volunteer's photo, scaled so the face is usable, sliding from ``x0`` to ``x1``
between ``start`` and ``end`` seconds. Videos are written with ``cv2.VideoWriter`` into a test's tmp folder
(MJPG in AVI: the encoder the OpenCV wheel always has), never committed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from tests.conftest import london

SIZE = (640, 360)  # width, height
FPS = 10


@dataclass(frozen=True)
class Walk:
    person: str
    start: float
    end: float
    x0: int = 60
    x1: int = 360
    y: int = 60
    side: int = 240  # the photo's side in pixels: the face box is then about 90 px, eye distance about 38
    pose: str = "smiling"  # volunteers are enrolled from their neutral photo: the gate sees the other one


def portrait(person: str, pose: str, side: int) -> np.ndarray:
    return cv2.resize(cv2.imread(str(london(person, pose))), (side, side), interpolation=cv2.INTER_AREA)


def frame_at(t: float, walks: list[Walk], photos: dict[Walk, np.ndarray]) -> np.ndarray:
    w, h = SIZE
    frame = np.full((h, w, 3), 96, np.uint8)
    for walk in walks:
        if not walk.start <= t < walk.end:
            continue
        share = (t - walk.start) / (walk.end - walk.start)
        x = round(walk.x0 + share * (walk.x1 - walk.x0))
        photo = photos[walk]
        frame[walk.y:walk.y + walk.side, x:x + walk.side] = photo[: h - walk.y, : w - x]
    return frame


def make_video(path: Path, walks: list[Walk], seconds: float, fps: int = FPS) -> Path:
    photos = {w: portrait(w.person, w.pose, w.side) for w in walks}
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, SIZE)
    assert writer.isOpened()
    for i in range(round(seconds * fps)):
        writer.write(frame_at(i / fps, walks, photos))
    writer.release()
    return path
