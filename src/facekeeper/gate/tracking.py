"""Faces followed across frames: each person in view is one track, whatever the others do.

The tracker is norfair's (the maintained ``norfair-enough`` fork: tryolabs' norfair 2.3.0 requires numpy < 2
and rich < 15, which this project is past), matching boxes by IoU with a Kalman filter to carry a track
over a frame or two where the detector missed the face. A track is confirmed after ``min_hits`` frames, so
one spurious detection starts nothing, and ends ``max_missing_frames`` after its face was last seen.

A track is a number and a box: nothing of the face is kept here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facekeeper.engine.detect import Detection


@dataclass(frozen=True)
class Seen:
    """A face detected in this frame, and the track it belongs to."""

    track: int
    detection: Detection


class FaceTracker:
    def __init__(self, *, min_iou: float = 0.3, min_hits: int = 2, max_missing_frames: int = 5) -> None:
        from norfair import Tracker

        self._tracker = Tracker(distance_function="iou", distance_threshold=1.0 - min_iou,
                                hit_counter_max=max_missing_frames, initialization_delay=min_hits - 1)
        self._alive: set[int] = set()
        self._frame = 0

    def update(self, detections: list[Detection]) -> tuple[list[Seen], list[int]]:
        """This frame's detections with their tracks (confirmed ones only), and the tracks that ended."""
        from norfair import Detection as Box

        self._frame += 1
        boxes = [Box(points=np.array([[d.box[0], d.box[1]], [d.box[2], d.box[3]]], dtype=float),
                     data=(self._frame, i)) for i, d in enumerate(detections)]
        active = self._tracker.update(detections=boxes)
        seen = []
        alive = set()
        for obj in active:
            if obj.id is None:
                continue
            alive.add(obj.id)
            data = obj.last_detection.data if obj.last_detection is not None else None
            if data is not None and data[0] == self._frame:
                seen.append(Seen(obj.id, detections[data[1]]))
        ended = sorted(self._alive - alive)
        self._alive = alive
        return seen, ended

    def active(self) -> int:
        return len(self._alive)
