"""The shared bona fide clips (``../shared/liveness/clips``, read in place, never copied) and frames cut from
them for tests. Tests that need them are skipped, saying why, where the folder is absent."""

from __future__ import annotations

import functools
from pathlib import Path

import cv2
import numpy as np
import pytest

from facekeeper.liveness import frames, observe

CLIPS = Path(__file__).resolve().parents[2].parent / "shared" / "liveness" / "clips"
needs_clips = pytest.mark.skipif(not (CLIPS / "d3.mp4").is_file(),
                                 reason="the shared liveness clips (../shared/liveness/clips) are not here")
# d3 from 4.2 s, 3.8 s long, answers 'turn left, then right' as a person prompted every 2 s would: facing the
# camera at each prompt, each turn beginning about 0.5 s after it (measured, see docs/liveness.md)
ANSWERS = ("d3", 4.2, ("turn-left", "turn-right"))
ANSWER_SECONDS = 3.8


def jpeg(rgb: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(observe.scaled(rgb), cv2.COLOR_RGB2BGR),
                            [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return data.tobytes()


@functools.cache
def clip_frames(name: str, start: float, end: float) -> tuple[tuple[float, np.ndarray], ...]:
    """RGB frames (at most 480 px, about 15 fps) from ``start`` to ``end`` s, timed from ``start``."""
    out = []
    for t, rgb in frames.video_file(CLIPS / f"{name}.mp4"):
        if t >= end:
            break
        if t >= start:
            out.append((t - start, observe.scaled(rgb)))
    return tuple(out)


def clip_jpegs(name: str, start: float, end: float) -> tuple[list[bytes], list[float]]:
    cut = clip_frames(name, start, end)
    return [jpeg(rgb) for _, rgb in cut], [t for t, _ in cut]


def frame_at(name: str, t: float) -> bytes:
    """One frame of a clip as a JPEG (a probe photo taken at the till)."""
    return jpeg(clip_frames(name, t, t + 0.1)[0][1])
