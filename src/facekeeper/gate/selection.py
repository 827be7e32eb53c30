"""The best few frames of each track, judged by size, sharpness and yaw.

A face too small, too blurred or turned away is not refused: it waits, and a later frame of the same track,
closer or facing the camera, takes its place. Each track keeps only its ``keep`` best aligned chips
(150x150 RGB, in memory), and they are dropped as soon as the track is decided or leaves.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field

import numpy as np

from facekeeper.engine.core import Face
from facekeeper.engine.quality import QualityReport

# HOG and YuNet boxes are about 2.5 eye distances wide: a box narrower than this many eye distances cannot
# hold a usable face, and is not worth the landmark model.
BOX_PER_EYE_DISTANCE = 2.0


@dataclass(frozen=True)
class Usable:
    """When a face is good enough to identify from (``[gate]`` settings)."""

    min_eye_distance: float = 28.0
    max_yaw: float = 0.35
    min_sharpness: float = 10.0

    def worth_measuring(self, box_width: int) -> bool:
        return box_width >= BOX_PER_EYE_DISTANCE * self.min_eye_distance

    def score(self, q: QualityReport) -> float | None:
        """Larger is better: eye distance, less for a turned head and for blur; None while unusable."""
        if q.eye_distance < self.min_eye_distance or abs(q.yaw) > self.max_yaw or q.sharpness < self.min_sharpness:
            return None
        return q.eye_distance * (1.0 - abs(q.yaw)) * min(1.0, q.sharpness / (4 * self.min_sharpness))


@dataclass
class Track:
    """One person's pass in front of the camera: when it was seen, and its best chips so far."""

    first_seen: float
    last_seen: float
    first_usable: float | None = None
    decided: bool = False
    best: list[tuple[float, int, np.ndarray]] = field(default_factory=list, repr=False)  # min-heap on score

    @property
    def present_for(self) -> float:
        return self.last_seen - self.first_seen


class Selection:
    def __init__(self, usable: Usable, keep: int = 3) -> None:
        self.usable = usable
        self.keep = keep
        self.tracks: dict[int, Track] = {}
        self._order = itertools.count()

    def see(self, track: int, at: float) -> Track:
        t = self.tracks.get(track)
        if t is None:
            t = self.tracks[track] = Track(at, at)
        t.last_seen = at
        return t

    def offer(self, track: int, face: Face, at: float) -> bool:
        """Keep ``face``'s chip if it is usable and among the track's best; whether it was usable."""
        t = self.see(track, at)
        score = self.usable.score(face.quality)
        if score is None:
            return False
        if t.first_usable is None:
            t.first_usable = at
        item = (score, next(self._order), face.chip)
        if len(t.best) < self.keep:
            heapq.heappush(t.best, item)
        elif score > t.best[0][0]:
            heapq.heapreplace(t.best, item)
        return True

    def chips(self, track: int) -> list[np.ndarray]:
        """The track's kept chips, best first."""
        return [chip for _, _, chip in sorted(self.tracks[track].best, reverse=True)]

    def decided(self, track: int) -> None:
        """The track's decision is made: its chips go; it is still followed, so it cannot decide again."""
        t = self.tracks[track]
        t.decided = True
        t.best.clear()

    def drop(self, track: int) -> Track | None:
        return self.tracks.pop(track, None)
