"""What a terminal sends, decoded in memory: timestamped JPEG frames, or a short video.

A video is read by OpenCV's ``VideoCapture`` (the FFmpeg build inside the opencv-python wheel, LGPL-2.1)
from an anonymous in-memory file (``memfd_create``): the recording never touches a disk. Frames are
yielded one at a time, scaled and measured by the caller and dropped, so a sequence never sits in memory
whole as pixels.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from facekeeper.engine.core import Engine
from facekeeper.errors import BadImage, InvalidInput

MAX_FRAMES = 150  # 10 s at 15 fps: more than any challenge needs
MAX_VIDEO_BYTES = 16 * 1024 * 1024
TARGET_FPS = 15.0  # a video is thinned to about this rate: the rules need 10 fps, more costs time only


def jpeg_frames(engine: Engine, frames: Sequence[bytes], times: Sequence[float]) -> Iterator[tuple[float, np.ndarray]]:
    """Decode still frames (JPEG, PNG or WebP, as photos are) with their capture times in seconds."""
    if len(frames) != len(times):
        raise InvalidInput(f"{len(frames)} frames and {len(times)} times: give one time per frame")
    if len(frames) > MAX_FRAMES:
        raise InvalidInput(f"at most {MAX_FRAMES} frames in one sequence")
    if not all(np.isfinite(t) for t in times):
        raise InvalidInput("frame times must be finite numbers of seconds")
    for i, (data, t) in enumerate(zip(frames, times, strict=True)):
        yield float(t), engine.decode(data, f"frame {i}")


def video_frames(data: bytes, *, max_frames: int = MAX_FRAMES,
                 fps: float = TARGET_FPS) -> Iterator[tuple[float, np.ndarray]]:
    """RGB frames of a video given as bytes, thinned to about ``fps``, with their times in seconds."""
    if not data:
        raise BadImage("the video is empty")
    if len(data) > MAX_VIDEO_BYTES:
        raise BadImage(f"the video is {len(data)} bytes, over the limit of {MAX_VIDEO_BYTES}")
    fd = os.memfd_create("facekeeper-liveness", os.MFD_CLOEXEC)
    try:
        with os.fdopen(os.dup(fd), "wb") as fh:
            fh.write(data)
        yield from _read(f"/proc/self/fd/{fd}", max_frames, fps)
    finally:
        os.close(fd)


def video_file(path: Path, *, max_frames: int = MAX_FRAMES * 20,
               fps: float = TARGET_FPS) -> Iterator[tuple[float, np.ndarray]]:
    """Frames of a video file (the operator's ``liveness check`` and the evaluation read clips from disk)."""
    if not path.is_file():
        raise InvalidInput(f"{path.name}: no such video file")
    yield from _read(str(path), max_frames, fps)


def _read(location: str, max_frames: int, fps: float) -> Iterator[tuple[float, np.ndarray]]:
    import cv2

    cap = cv2.VideoCapture(location, cv2.CAP_FFMPEG)
    try:
        if not cap.isOpened():
            raise BadImage("not a video OpenCV can read (send MP4/H.264, WebM or MJPEG)")
        native = cap.get(cv2.CAP_PROP_FPS) or fps
        if not np.isfinite(native) or native <= 0:
            raise BadImage("the video does not state its frame rate")
        keep = max(1, round(native / fps))
        index = kept = 0
        while kept < max_frames:
            ok, bgr = cap.read()
            if not ok:
                break
            if index % keep == 0:
                kept += 1
                yield index / native, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            index += 1
        if index == 0:
            raise BadImage("the video holds no frame OpenCV can decode")
    finally:
        cap.release()
