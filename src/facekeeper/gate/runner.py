"""The gate's loop: frame → faces → tracks → best frames → one decision per pass, and its metrics.

Per frame: detect every face, follow each with the tracker, measure the faces of undecided tracks that are
large enough (landmarks, aligned chip, quality), keep each track's best chips, and decide a track once it
has been present ``min_presence`` seconds with ``best_frames`` usable frames (or fewer after ``max_wait``).
Only then are its chips embedded, in one batch, and the descriptors handed to ``decide``
(``Service.gate_decide``: the vote, the door rules, the output, the audit). A decided track is still
followed, so it never decides again; a pass that leaves before it could be decided is decided on leaving
when it has a usable frame.

Privacy: frames and chips are in memory only, dropped with their frame or when the track is decided; a
track that never matches leaves nothing but a counter. The metrics are counts and timings, written to a
small status file (``gate/DOOR.json`` in the data folder) for ``facekeeper gate status`` and ``/v1/metrics``.
"""

from __future__ import annotations

import bisect
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facekeeper.config import GateSettings
from facekeeper.engine import Engine
from facekeeper.errors import FacekeeperError
from facekeeper.gate.decision import GateDecision, ready
from facekeeper.gate.selection import Selection, Usable
from facekeeper.gate.source import Frame, Source, redacted
from facekeeper.gate.tracking import FaceTracker

log = logging.getLogger("facekeeper.gate")

LATENCY_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0)
STATUS_DIR = "gate"
STATUS_EVERY = 1.0  # seconds between status file writes

Decide = Callable[[list[np.ndarray], float], GateDecision]  # (descriptors, seconds present) -> decision


@dataclass
class GateMetrics:
    """What the gate did, as counts: never a face, a track's image or who passed."""

    door: str
    source: str = ""
    started_at: float = 0.0
    updated_at: float = 0.0
    connected: bool = False
    frames: int = 0
    frames_per_second: float = 0.0
    decode_errors: int = 0
    drops: int = 0
    reconnects: int = 0
    tracks_started: int = 0
    tracks_active: int = 0
    tracks_without_match: int = 0  # passes that ended without an open: the only trace of a stranger
    decisions: dict[str, int] = field(default_factory=dict)  # by outcome
    door_answers: dict[str, int] = field(default_factory=dict)
    latency_buckets: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    latency_sum: float = 0.0
    latency_count: int = 0

    def decided(self, decision: GateDecision | None, outcome: str, latency: float) -> None:
        self.decisions[outcome] = self.decisions.get(outcome, 0) + 1
        if decision is not None:
            self.door_answers[decision.door_answer] = self.door_answers.get(decision.door_answer, 0) + 1
        if decision is None or not decision.opened:
            self.tracks_without_match += 1
        self.latency_buckets[bisect.bisect_left(LATENCY_BUCKETS, latency)] += 1
        self.latency_sum += latency
        self.latency_count += 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GateMetrics:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


def status_path(data_dir: Path, door: str) -> Path:
    return data_dir / STATUS_DIR / f"{door}.json"


def write_status(path: Path, metrics: GateMetrics) -> None:
    """Replace the status file atomically (0600): readers never see half of it."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(metrics.to_dict(), fh)
    os.replace(tmp, path)


def read_statuses(data_dir: Path) -> list[GateMetrics]:
    """Every door's last status in a deployment (for ``gate status`` and ``/v1/metrics``)."""
    folder = data_dir / STATUS_DIR
    out = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            out.append(GateMetrics.from_dict(json.loads(path.read_text(encoding="utf-8"))))
        except (OSError, ValueError, TypeError):
            continue  # being replaced, or not ours
    return out


class GateRunner:
    def __init__(self, source: Source, engine: Engine, decide: Decide, *, door: str, settings: GateSettings,
                 min_presence: float, status_file: Path | None = None,
                 on_decision: Callable[[GateDecision], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.source = source
        self.engine = engine
        self._decide = decide
        self.settings = settings
        self.min_presence = min_presence
        self.tracker = FaceTracker(max_missing_frames=settings.lost_after_frames)
        self.selection = Selection(Usable(settings.min_eye_distance, settings.max_yaw, settings.min_sharpness),
                                   keep=settings.best_frames)
        self.metrics = GateMetrics(door, redacted(source.spec))
        self._status_file = status_file
        self._on_decision = on_decision
        self._clock = clock
        self._last_write = 0.0
        self._frames_at_write = 0

    def run(self, max_frames: int | None = None) -> GateMetrics:
        self.metrics.started_at = time.time()
        self._last_write = self._clock()
        try:
            for frame in self.source.frames():
                self.step(frame)
                if max_frames is not None and self.metrics.frames >= max_frames:
                    break
            for track in list(self.selection.tracks):  # the stream ended: passes still in view end with it
                self._leave(track, None)
        finally:
            self._write(force=True)
        return self.metrics

    def step(self, frame: Frame) -> None:
        """Process one frame (the frame is not kept)."""
        started = self._clock()
        self.metrics.frames += 1
        seen, ended = self.tracker.update(self.engine.detect(frame.rgb, every_face=True))
        for s in seen:
            if s.track not in self.selection.tracks:
                self.metrics.tracks_started += 1
            track = self.selection.see(s.track, frame.at)
            if not track.decided and self.selection.usable.worth_measuring(s.detection.width):
                self.selection.offer(s.track, self.engine.analyze(frame.rgb, s.detection), frame.at)
        for s in seen:
            track = self.selection.tracks[s.track]
            if ready(track, frame.at, frames=self.settings.best_frames, min_presence=self.min_presence,
                     max_wait=self.settings.max_wait_seconds):
                self._run_decision(s.track, frame.at, started)
        for track_id in ended:
            self._leave(track_id, (frame.at, started))
        self.metrics.tracks_active = self.tracker.active()
        self._write()

    def _leave(self, track_id: int, when: tuple[float, float] | None) -> None:
        """A pass left the view: decide it if it can be, then forget it."""
        track = self.selection.tracks.get(track_id)
        if track is None:
            return
        if not track.decided:
            if track.best and track.present_for >= self.min_presence:
                at, started = when or (track.last_seen, self._clock())
                self._run_decision(track_id, at, started)
            else:
                self.metrics.tracks_without_match += 1
        self.selection.drop(track_id)

    def _run_decision(self, track_id: int, at: float, started: float) -> None:
        track = self.selection.tracks[track_id]
        assert track.first_usable is not None
        descriptors = list(self.engine.embed(self.selection.chips(track_id)))
        present = track.present_for
        self.selection.decided(track_id)
        decision: GateDecision | None = None
        try:
            decision = self._decide(descriptors, present)
            outcome = decision.outcome
        except FacekeeperError as exc:
            log.error("door %s: the decision failed [%s]", self.metrics.door, exc.code)
            outcome = f"error:{exc.code}"
        latency = max(at - track.first_usable, 0.0) + (self._clock() - started)
        self.metrics.decided(decision, outcome, latency)
        if decision is not None and self._on_decision is not None:
            self._on_decision(decision)

    def _write(self, *, force: bool = False) -> None:
        now = self._clock()
        stats = self.source.stats
        m = self.metrics
        m.connected, m.decode_errors, m.drops, m.reconnects = (stats.connected, stats.decode_errors, stats.drops,
                                                               stats.reconnects)
        elapsed = now - self._last_write
        if not force and elapsed < STATUS_EVERY:
            return
        if elapsed > 0:
            m.frames_per_second = round((m.frames - self._frames_at_write) / elapsed, 2)
        self._last_write, self._frames_at_write = now, m.frames
        m.updated_at = time.time()
        if self._status_file is not None:
            write_status(self._status_file, m)
