"""The liveness work behind ``Service.liveness_start``, ``liveness_submit`` and the verify/identify gate.

``Service`` runs the guard (role, purpose, one audit entry); this module opens sessions, decodes and
measures the frames in memory, decides, and consumes live sessions. The audit entry of a submission holds
the challenge, the decision, its reasons, the events and timings: never a frame, a landmark or a descriptor.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from facekeeper.engine.core import Engine
from facekeeper.errors import InvalidInput, LivenessRequired
from facekeeper.gallery.keys import DeploymentKey
from facekeeper.gallery.store import Store
from facekeeper.liveness import frames as framing
from facekeeper.liveness import observe, rules
from facekeeper.liveness import sessions as drawing
from facekeeper.liveness.sessions import LIVE_TTL_S, SESSION_TTL_S, Session, Sessions
from facekeeper.privacy.core import Operation, Privacy

EDGE_REFUSED = ("purpose {purpose} requires active liveness, and a descriptor alone cannot prove that a live"
                " person was in front of the camera: run a liveness session (send its frames) and verify with a"
                " photo")
T = TypeVar("T")


@dataclass(frozen=True)
class LivenessChallenge:
    """What a terminal needs to run the session: show each action ``step_seconds`` apart, in order."""

    session_id: str
    nonce: str
    purpose: str
    challenge: list[str]
    step_seconds: float
    expires_at: float
    live_for: float = LIVE_TTL_S

    def to_dict(self) -> dict[str, Any]:
        return {"session_id": self.session_id, "nonce": self.nonce, "purpose": self.purpose,
                "challenge": self.challenge, "step_seconds": self.step_seconds, "expires_at": self.expires_at,
                "live_for": self.live_for}


@dataclass(frozen=True)
class LivenessResult:
    """The decision on a session's frames: ``outcome`` live, spoof or uncertain, with reasons and timings."""

    session_id: str
    purpose: str
    challenge: list[str]
    outcome: str
    reasons: list[str]
    why: list[str]
    events: list[dict[str, Any]] = field(default_factory=list)
    frames: int = 0
    fps: float = 0.0
    duration: float = 0.0
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def live(self) -> bool:
        return self.outcome == "live"

    def to_dict(self) -> dict[str, Any]:
        return {"session_id": self.session_id, "purpose": self.purpose, "challenge": self.challenge,
                "outcome": self.outcome, "reasons": self.reasons, "why": self.why, "events": self.events,
                "frames": self.frames, "fps": self.fps, "duration": self.duration, "timings_ms": self.timings_ms}


class Liveness:
    """Sessions of one tenant, measured with the service's engine."""

    def __init__(self, store: Store, key: DeploymentKey, engine: Engine, privacy: Privacy) -> None:
        self.sessions = Sessions(store, key)
        self.store = store
        self.engine = engine
        self.privacy = privacy

    def start(self, op: Operation, subject: str | None, steps: int | None) -> LivenessChallenge:
        assert op.purpose is not None
        challenge = drawing.draw(steps)  # looked up at call time: tests fix the challenge a recording answers
        with self.store.transaction() as db:
            self.sessions.expire(db, op.now)
            session_id, nonce = self.sessions.open(db, purpose=op.purpose, subject=subject,
                                                   device=f"{op.actor.tenant}/{op.actor.id}", challenge=challenge,
                                                   now=op.now)
            self.privacy.append(db, op, "ok", subject=subject,
                                detail={"session": session_id, "challenge": list(challenge)})
        return LivenessChallenge(session_id, nonce, op.purpose, list(challenge), rules.WINDOW_PER_STEP_S,
                                 op.now + SESSION_TTL_S)

    def session(self, session_id: str) -> Session:
        return self.sessions.get(session_id)

    def submit(self, op: Operation, session: Session, nonce: str, frames: Sequence[bytes], times: Sequence[float],
               video: bytes | None) -> LivenessResult:
        """Decode, measure and decide in memory; record the decision and audit it (never a frame)."""
        self.sessions.check_answerable(session, nonce, op.now)
        if (video is None) == (not frames):
            raise InvalidInput("send either frames (with one time each) or a video")
        started = time.perf_counter()
        source: Iterable[tuple[float, np.ndarray]] = (framing.video_frames(video) if video is not None
                                                      else framing.jpeg_frames(self.engine, frames, times))
        obs = observe.observe(self.engine, source)
        measured = time.perf_counter()
        decision = rules.decide(obs, session.challenge)
        decided = time.perf_counter()
        references = [o.descriptor for o in obs if o.descriptor is not None]
        references = [references[0], references[-1]] if references else []
        timings = {"measure": 1000 * (measured - started), "decide": 1000 * (decided - measured),
                   "per_frame": 1000 * (measured - started) / max(len(obs), 1)}
        with self.store.transaction() as db:
            self.sessions.decide(db, session, decision, references, op.now)
            self.privacy.append(db, op, decision.outcome, subject=session.subject, detail={
                "session": session.id, "challenge": session.challenge, "reasons": decision.reasons,
                "events": [f"{e.action}@{e.start:.2f}-{e.end:.2f}" for e in decision.events], "frames": decision.frames,
                "fps": round(decision.fps, 1), "ms": round(timings["measure"] + timings["decide"])})
        self.privacy.audit.anchor()
        return LivenessResult(session.id, session.purpose, session.challenge, decision.outcome, decision.reasons,
                              decision.why, [e.to_dict() for e in decision.events], decision.frames,
                              round(decision.fps, 2), round(decision.duration, 3),
                              {k: round(v, 1) for k, v in timings.items()})

    def gate(self, op: Operation, session_id: str | None, subject: str | None, probe: Callable[[], T],
             descriptor: Callable[[T], np.ndarray]) -> T:
        """The probe, after the purpose's liveness rule: with ``liveness = "active"`` a fresh live session of
        the same purpose (and person, when it named one) is required before any decoding, and the probe's
        face must be the session's; the session is then used up."""
        assert op.purpose is not None and op.purpose_settings is not None
        if op.purpose_settings.liveness != "active":
            return probe()
        if not session_id:
            raise LivenessRequired(f"purpose {op.purpose} requires a live liveness session first: start one"
                                   " (liveness_start), answer its challenge, and give its id", purpose=op.purpose)
        self.sessions.get(session_id)  # an unknown id is refused before the photo is decoded
        made = probe()
        with self.store.transaction() as db:
            self.sessions.consume(db, session_id, purpose=op.purpose, subject=subject, probe=descriptor(made),
                                  now=op.now)
        return made

    @staticmethod
    def refuse_edge(op: Operation) -> None:
        """A descriptor-only call (edge terminal) for a purpose that requires liveness is refused, saying why."""
        assert op.purpose_settings is not None
        if op.purpose_settings.liveness == "active":
            raise LivenessRequired(EDGE_REFUSED.format(purpose=op.purpose), purpose=op.purpose, edge=True)
