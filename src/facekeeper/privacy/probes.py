"""Judging descriptors that come from outside: an edge terminal sends 128 numbers the service did not make.

A terminal sends the descriptor of a face in front of its camera. A caller that sends the zero vector, a
unit vector, a sparse or a random vector is probing the gallery: issue 17 rebuilt every enrolled template
from 129 such probes while distances were shown. Devices now get decisions, never scores (``service.py``);
this module is the second wall, for every role:

- ``Screen`` refuses a descriptor that is no face's. Real dlib descriptors are not anywhere in R^128: their
  norms lie in a narrow band, no component dominates, few are near zero, they sit within a bounded distance
  of the population mean and, above all, in a subspace of ``FACE_DIMENSIONS`` dimensions (the smallest 48
  eigenvalues of the covariance of 3,263 real descriptors hold 2.5e-7 of its variance: the network's last
  layer never reaches those directions). The bounds were measured on real descriptors with wide margins, see
  ``data/probe_screen.json`` (provenance) and docs/deployment.md.
- ``ProbeMemory`` remembers, per key, refused probes and "unknown" answers over a window; a key over either
  limit is locked for a while. Each refusal is audited by the operation's guard (``refused:probe-suspicious``,
  ``refused:probe-lockout``), so the audit shows the probing as it happens.

The memory lives in the process that answers descriptor calls (the API process); a restart forgets it,
which is why the screen, which needs no memory, comes first.
"""

from __future__ import annotations

import base64
import functools
import json
import threading
from collections import deque
from dataclasses import dataclass, field
from importlib import resources

import numpy as np

from facekeeper.errors import ConfigError, ProbeLockout, ProbeRefused
from facekeeper.privacy.policy import Actor

# The shape of real dlib descriptors, measured on 3,263 (data/probe_screen.json: the largest and smallest
# values measured are in its provenance); each bound leaves a wide margin on the real side.
FACE_DIMENSIONS = 80  # the covariance's eigenvalues fall from 1e-4 to 3e-6 between the 77th and 80th
NORM_MIN, NORM_MAX = 1.1, 1.8  # measured 1.22 .. 1.63; a unit vector has 1.0, the zero vector 0
PEAK_SHARE_MAX = 0.5  # largest |component| / norm, measured <= 0.37; a one-hot vector has 1.0
NEAR_ZERO = 0.005  # a component this close to zero counts as empty ...
NEAR_ZERO_MAX = 40  # ... and at most this many may be (measured <= 15): sparse vectors are no faces
DISTANCE_TO_MEAN_MAX = 1.0  # measured <= 0.74 from the population mean
RESIDUAL_MAX = 0.05  # length outside the face subspace, measured <= 0.0013; unit vectors have >= 0.46

# A key is locked for LOCKOUT seconds when, within WINDOW seconds, SUSPICIOUS_LIMIT of its probes were
# refused, or UNKNOWN_LIMIT of its descriptor calls were answered "unknown" / "no match" (a busy gate sees
# far fewer strangers than that in ten minutes; a decision-only oracle needs far more probes than that).
WINDOW = 600.0
SUSPICIOUS_LIMIT = 5
UNKNOWN_LIMIT = 200
LOCKOUT = 900.0


@dataclass(frozen=True)
class Screen:
    """The face manifold of one model: the population mean and the directions real descriptors never take."""

    model_id: str
    mean: np.ndarray  # (dim,)
    outside: np.ndarray  # (dim, dim - FACE_DIMENSIONS), orthonormal columns

    def problem(self, vec: np.ndarray) -> str | None:
        """Why ``vec`` is not a face's descriptor (a short reason for tests and logs), or None when it is."""
        v = np.asarray(vec, dtype=np.float64).ravel()
        norm = float(np.linalg.norm(v))
        if not NORM_MIN <= norm <= NORM_MAX:
            return "norm"
        if float(np.abs(v).max()) / norm > PEAK_SHARE_MAX:
            return "peak"
        if int((np.abs(v) < NEAR_ZERO).sum()) > NEAR_ZERO_MAX:
            return "sparse"
        centred = v - self.mean
        if float(np.linalg.norm(centred)) > DISTANCE_TO_MEAN_MAX:
            return "far-from-faces"
        if float(np.linalg.norm(centred @ self.outside)) > RESIDUAL_MAX:
            return "off-manifold"
        return None


@functools.cache
def screen(model_id: str) -> Screen:
    """The screen shipped for ``model_id``; a model without one cannot take outside descriptors."""
    doc = json.loads(resources.files("facekeeper").joinpath("data/probe_screen.json").read_text())
    if doc["model_id"] != model_id:
        raise ConfigError(f"no probe screen for model {model_id}: edge descriptors need one"
                          " (bench/probe_screen.py measures it)")
    rows, cols = doc["outside_shape"]
    outside = np.frombuffer(base64.b64decode(doc["outside"]), dtype="<f4").reshape(rows, cols)
    return Screen(model_id, np.asarray(doc["mean"], dtype=np.float64), outside.astype(np.float64))


@dataclass
class _Key:
    refused: deque[float] = field(default_factory=deque)
    unknown: deque[float] = field(default_factory=deque)
    locked_until: float = 0.0


class ProbeMemory:
    """Per key: when its probes were refused and when its descriptor calls came back unknown."""

    def __init__(self, *, window: float = WINDOW, suspicious_limit: int = SUSPICIOUS_LIMIT,
                 unknown_limit: int = UNKNOWN_LIMIT, lockout: float = LOCKOUT) -> None:
        self.window, self.lockout = window, lockout
        self.suspicious_limit, self.unknown_limit = suspicious_limit, unknown_limit
        self._keys: dict[str, _Key] = {}
        self._lock = threading.Lock()

    def check(self, key: str, now: float) -> None:
        """``ProbeLockout`` while ``key`` is locked."""
        with self._lock:
            state = self._keys.get(key)
            if state is not None and now < state.locked_until:
                raise ProbeLockout("this key sent too many descriptors that match no face or nobody: it is"
                                   " locked for a while and the site's auditor can see why",
                                   retry_after=int(state.locked_until - now) + 1)

    def refused(self, key: str, now: float) -> None:
        self._note(key, now, refused=True)

    def answered(self, key: str, now: float, *, unknown: bool) -> None:
        if unknown:
            self._note(key, now, refused=False)

    def _note(self, key: str, now: float, *, refused: bool) -> None:
        with self._lock:
            state = self._keys.setdefault(key, _Key())
            events, limit = (state.refused, self.suspicious_limit) if refused else (state.unknown,
                                                                                    self.unknown_limit)
            events.append(now)
            while events and events[0] <= now - self.window:
                events.popleft()
            if len(events) >= limit:
                state.locked_until = now + self.lockout
                events.clear()


_memories: dict[str, ProbeMemory] = {}
_memories_lock = threading.Lock()


def memory(deployment_id: str) -> ProbeMemory:
    """This process's memory for one deployment (a tenant): every ``Service`` instance of it shares one."""
    with _memories_lock:
        return _memories.setdefault(deployment_id, ProbeMemory())


def key_of(actor: Actor) -> str:
    """The key an actor acts with: over HTTP the actor id is the API key's id."""
    return f"{actor.tenant}/{actor.role}/{actor.id}"


def admit_descriptor(deployment_id: str, actor: Actor, model_id: str, vec: np.ndarray, now: float) -> None:
    """Let an outside descriptor be compared, or refuse it: ``ProbeLockout`` while the actor's key is locked,
    ``ProbeRefused`` (one strike against the key) when it is no face's."""
    memory(deployment_id).check(key_of(actor), now)
    if screen(model_id).problem(vec) is not None:
        memory(deployment_id).refused(key_of(actor), now)
        raise ProbeRefused("this descriptor is not one a face gives: send the descriptor the terminal's engine"
                           " computed from a camera frame")


def note_answer(deployment_id: str, actor: Actor, now: float, *, unknown: bool) -> None:
    """Remember an answer to an outside descriptor: many "unknown" ones lock the key."""
    memory(deployment_id).answered(key_of(actor), now, unknown=unknown)
