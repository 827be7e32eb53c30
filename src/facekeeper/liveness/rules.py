"""The liveness rules: every threshold the decision uses, named and explained, in one place.

Input: the observations of one sequence (``observe.Observation``: time, 68 landmarks, some descriptors).
Output: ``live``, ``spoof`` or ``uncertain`` with the reasons, the events seen and the timings.

What the rules rest on (measured on real clips with dlib's 68 landmarks, see docs/liveness.md):

* A blink is the eye-aspect ratio (EAR) falling relative to the sequence's own open-eye level (its 75th
  percentile), not below a fixed value: a fixed EAR < 0.21 gave false blinks on faces with narrow eyes.
  EAR is measured after mapping each frame's eyes onto a reference frame by the affine transform of the eye
  corners and the nose bridge, so squashing a photo vertically (a 2D warp) does not close its eyes.
* A head turn is the nose's position between the two jaw edges (parallax), from the person's own median.
  A photo turned or tilted in 3D moves its nose and jaw edges together and keeps the ratio; yaw from a
  ``solvePnP`` head pose was fooled by a tilted photo in 11 of 12 tries.
* A flat picture, however it is moved, warped or tilted, moves its landmarks by one homography. A real
  head turning does not: the nose leaves the plane of the cheeks. A turn counts only with that parallax.
* The same person throughout: every described frame within ``SAME_PERSON`` of the first (dlib distance), and
  no cut: the landmarks never jump between consecutive frames. Motion alone let 4 of 12 splices through.
* An answer follows its prompt: each action begins within a human reaction time of being shown, and each
  asked turn starts from facing the screen. A genuine recording of a head swinging from side to side answered
  about 1% of random challenges when any start within the next two seconds counted (docs/liveness.md).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from facekeeper.liveness.observe import Observation

Action = Literal["turn-left", "turn-right", "blink"]
ACTIONS: tuple[Action, ...] = ("turn-left", "turn-right", "blink")
Outcome = Literal["live", "spoof", "uncertain"]

# -- the sequence itself ---------------------------------------------------------------------------------
MIN_FRAMES = 20  # fewer frames cannot show a 60 ms blink and a turn and back
MIN_FPS = 10.0  # frames per second: below this a blink (60-400 ms) can fall between two frames
MAX_GAP_S = 0.3  # a longer hole between frames (or faces) could hide a cut
MIN_FACE_FRAMES = 0.9  # share of frames that must hold a face
WINDOW_PER_STEP_S = 2.0  # each asked action gets this long: 4 s for two actions, 6 s for three
START_SLACK_S = 1.0  # the last answer may run this much past the actions' window: the frames may be this longer
MIN_EYE_DISTANCE_PX = 20.0  # at the 480 px working scale: a smaller face gives landmarks too coarse for blinks

# -- blinks ----------------------------------------------------------------------------------------------
EAR_OPEN_PERCENTILE = 75  # the sequence's open-eye level: most frames have the eyes open
BLINK_CLOSED = 0.6  # a blink: EAR below this share of the open level ...
BLINK_DEEP = 0.5  # ... reaching below this share at its lowest ...
BLINK_MIN_S, BLINK_MAX_S = 0.06, 0.4  # ... for 60-400 ms (longer is eyes closed, not a blink)

# -- head turns ------------------------------------------------------------------------------------------
# The nose tip sits in front of the jaw edges by about this share of the half face width; with it the nose's
# place between the jaw edges (0.5 frontal) gives the yaw: (2r - 1) = NOSE_DEPTH * tan(yaw).
NOSE_DEPTH = 0.7
TURN_DEGREES = 20.0  # a turn: at least this far from the person's own median (15-25 degrees held up)
RETURN_DEGREES = 10.0  # ... and back to within this of it ...
TURN_BACK_S = 3.0  # ... within this many seconds of leaving it
TURN_HOLD_S = 0.1  # ... having stayed beyond TURN_DEGREES this long (two frames at 15 fps)
YAW_SMOOTH = 3  # frames of the running median taken of yaw: one frame's jaw-line glitch is no turn
# Root-mean-square distance, in eye distances, between a frame's landmarks and the reference frame's mapped by
# the best homography. A flat picture stays at landmark noise (<0.02 measured) whatever is done to it; a head
# turned by TURN_DEGREES leaves it well above (0.05-0.1 measured).
PARALLAX_MIN = 0.035

# -- answering the prompts -------------------------------------------------------------------------------
# The terminal shows action k at k x WINDOW_PER_STEP_S after its first frame, on the clock that stamps the
# frames; the screen's and the camera's latencies only make an answer look later, never earlier.
# An action begins (a turn passes RETURN_DEGREES, the eyes close below BLINK_CLOSED) no sooner than this after
# its prompt: a visual choice reaction takes at least 0.2 s, and a head needs about 0.1 s more to pass 10
# degrees. A swinging head already on its way when the prompt appears answers nothing.
REACTION_MIN_S = 0.25
# ... and no later than this: choice reactions of older adults average 0.6-0.8 s; 1.5 s leaves their slow tail
# and a moment to read. When an answer could begin anywhere from 0.2 s before its prompt to 3 s after it, a
# genuine recording of a head swinging side to side (shared clip d3) answered 12 of 1,392 random challenges;
# with this window and FACING_DEGREES none did, also with windows taken every 0.1 s (6,864 tries, HOG or YuNet
# detection); with 2.0 s, 1-2 of those did, so 1.5 s keeps a margin. A slower person is asked again.
REACTION_MAX_S = 1.5
# When a turn is asked, the head faces the screen: within this many degrees of the person's own median at the
# turn's prompt (between RETURN_DEGREES, back from a turn, and TURN_DEGREES, a turn). A person reads the prompt
# and answers it from facing; a head swinging side to side is turned away at most prompts (17-40 degrees
# measured on the replays this refuses). Not asked of a blink, which needs no head movement.
FACING_DEGREES = 15.0

# -- one person, one take ------------------------------------------------------------------------------
SAME_PERSON = 0.6  # dlib distance: every described frame within this of the first frame (its usual threshold)
# Median landmark move between two consecutive frames, in eye distances. A fast natural turn moves about 0.15
# per frame at 15 fps; a cut between two recordings jumps by the distance between the two faces' places.
CUT_JUMP = 0.5
STILL_MOTION = 0.02  # eye distances: a face whose landmarks never move more than this is a still picture

# landmark groups (iBUG 300-W, 0-based)
JAW = list(range(0, 17))
NOSE = list(range(27, 36))
RIGHT_EYE = list(range(36, 42))  # the subject's right eye, on the left of an unmirrored picture
LEFT_EYE = list(range(42, 48))
EYE_FRAME = [36, 39, 42, 45, 27, 28, 29, 30]  # eye corners and nose bridge: what an eyelid moves against
RIGID = JAW + NOSE + [36, 39, 42, 45]  # what a flat picture would move by one homography


@dataclass(frozen=True)
class Event:
    action: Action
    start: float  # seconds from the first frame
    end: float

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action, "start": round(self.start, 3), "end": round(self.end, 3)}


@dataclass(frozen=True)
class Decision:
    """The verdict on one sequence; ``reasons`` are stable codes, each with a sentence (``why``)."""

    outcome: Outcome
    reasons: list[str]
    why: list[str]
    events: list[Event] = field(default_factory=list)
    frames: int = 0
    duration: float = 0.0
    fps: float = 0.0

    @property
    def live(self) -> bool:
        return self.outcome == "live"

    def to_dict(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "reasons": self.reasons, "why": self.why,
                "events": [e.to_dict() for e in self.events], "frames": self.frames,
                "duration": round(self.duration, 3), "fps": round(self.fps, 2)}


def window(challenge: Sequence[Action]) -> float:
    """Seconds the actions of ``challenge`` may take."""
    return WINDOW_PER_STEP_S * len(challenge)


# -- measures on one frame ---------------------------------------------------------------------------------
def eye_distance(points: np.ndarray) -> float:
    return float(np.linalg.norm(points[LEFT_EYE].mean(0) - points[RIGHT_EYE].mean(0)))


def ear(points: np.ndarray) -> float:
    """Eye-aspect ratio, both eyes averaged: eyelid gaps over eye width (about 0.3 open, under 0.15 closed)."""
    out = []
    for eye in (RIGHT_EYE, LEFT_EYE):
        p = points[eye]
        gaps = np.linalg.norm(p[1] - p[5]) + np.linalg.norm(p[2] - p[4])
        out.append(gaps / (2 * max(float(np.linalg.norm(p[0] - p[3])), 1e-6)))
    return float(np.mean(out))


def yaw(points: np.ndarray) -> float:
    """Degrees, positive when the subject turns to their own left (the nose goes right in an unmirrored frame):
    the nose tip's place between the jaw edges, along the line joining them (so a tilted head reads right)."""
    j0, j16, nose = points[0], points[16], points[30]
    axis = j16 - j0
    r = float(np.dot(nose - j0, axis) / max(float(np.dot(axis, axis)), 1e-6))
    return float(np.degrees(np.arctan((2 * r - 1) / NOSE_DEPTH)))


def _affine(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares 2x3 affine from ``src`` to ``dst`` points (N, 2)."""
    a = np.hstack([src, np.ones((len(src), 1))])
    m, *_ = np.linalg.lstsq(a, dst, rcond=None)
    return m  # (3, 2)


def rectified_ear(points: np.ndarray, reference: np.ndarray) -> float:
    """EAR after mapping the frame's eyes onto ``reference`` by the affine of the eye corners and nose bridge:
    a stretched or sheared picture keeps its EAR; only eyelids moving against the eye corners change it."""
    m = _affine(points[EYE_FRAME], reference[EYE_FRAME])
    mapped = np.hstack([points, np.ones((len(points), 1))]) @ m
    return ear(mapped)


def parallax(points: np.ndarray, reference: np.ndarray) -> float:
    """How far the face is from a plane moved: RMS residual of the best homography from the reference frame's
    rigid landmarks to this frame's, in the reference's eye distances."""
    import cv2

    src, dst = reference[RIGID].astype(np.float64), points[RIGID].astype(np.float64)
    h, _ = cv2.findHomography(src, dst, 0)
    if h is None:
        return 0.0
    mapped = cv2.perspectiveTransform(src[None], h)[0]
    return float(np.sqrt(((mapped - dst) ** 2).sum(1).mean()) / max(eye_distance(reference), 1e-6))


# -- events ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Measures:
    """Per-face-frame series of one sequence (frames without a face are left out)."""

    t: np.ndarray
    ear: np.ndarray
    yaw: np.ndarray
    parallax: np.ndarray
    jump: np.ndarray  # landmark move from the previous face frame, eye distances (0 for the first)
    motion: float  # largest landmark move from the reference frame, eye distances, after removing scale


def measure(obs: Sequence[Observation]) -> Measures:
    faces = [o for o in obs if o.points is not None]
    pts = [o.points for o in faces if o.points is not None]
    t = np.array([o.t for o in faces])
    yaws = np.array([yaw(p) for p in pts])
    ref = pts[int(np.argmin(np.abs(yaws - np.median(yaws))))]
    ears = np.array([rectified_ear(p, ref) for p in pts])
    par = np.array([parallax(p, ref) for p in pts])
    jumps = [0.0] + [float(np.median(np.linalg.norm(b - a, axis=1)) / max(eye_distance(a), 1e-6))
                     for a, b in itertools.pairwise(pts)]
    ref_c = ref - ref.mean(0)
    moves = []
    for p in pts:
        pc = p - p.mean(0)
        scale = np.linalg.norm(ref_c) / max(float(np.linalg.norm(pc)), 1e-6)
        moves.append(float(np.median(np.linalg.norm(pc * scale - ref_c, axis=1))) / max(eye_distance(ref), 1e-6))
    return Measures(t, ears, yaws, par, np.array(jumps), max(moves, default=0.0))


def blinks(m: Measures) -> list[Event]:
    """Runs of EAR under ``BLINK_CLOSED`` x the open level, reaching ``BLINK_DEEP`` x, lasting 60-400 ms."""
    if len(m.ear) == 0:
        return []
    open_level = float(np.percentile(m.ear, EAR_OPEN_PERCENTILE))
    step = float(np.median(np.diff(m.t))) if len(m.t) > 1 else 0.0
    out = []
    for a, b in _runs(m.ear < BLINK_CLOSED * open_level):
        lasted = m.t[b - 1] - m.t[a] + step  # each frame stands for one frame interval
        if m.ear[a:b].min() < BLINK_DEEP * open_level and BLINK_MIN_S <= lasted <= BLINK_MAX_S:
            out.append(Event("blink", float(m.t[a]), float(m.t[b - 1])))
    return out


def turns(m: Measures) -> tuple[list[Event], list[Event]]:
    """Turns out and back (``TURN_DEGREES`` out, ``RETURN_DEGREES`` back, within ``TURN_BACK_S``), and those
    among them made without parallax (a flat picture turned), which do not count."""
    if len(m.yaw) == 0:
        return [], []
    rel = relative_yaw(m)
    step = float(np.median(np.diff(m.t))) if len(m.t) > 1 else 0.0
    real, flat = [], []
    for sign, action in ((1, "turn-left"), (-1, "turn-right")):
        away = sign * rel
        for a, b in _runs(away > RETURN_DEGREES):
            held = int((away[a:b] >= TURN_DEGREES).sum()) * step
            if held < TURN_HOLD_S or b == len(rel) or m.t[b] - m.t[a] > TURN_BACK_S:
                continue  # not far enough (long enough), or not back (in time)
            peak = a + int(np.argmax(away[a:b]))
            event = Event(action, float(m.t[a]), float(m.t[b - 1]))  # type: ignore[arg-type]
            (real if m.parallax[peak] >= PARALLAX_MIN else flat).append(event)
    return sorted(real, key=lambda e: e.start), flat


def relative_yaw(m: Measures) -> np.ndarray:
    """Yaw from the person's own median, degrees, smoothed over ``YAW_SMOOTH`` frames."""
    return _running_median(m.yaw, YAW_SMOOTH) - float(np.median(m.yaw))


def _running_median(x: np.ndarray, width: int) -> np.ndarray:
    half = width // 2
    padded = np.pad(x, half, mode="edge")
    return np.array([np.median(padded[i:i + width]) for i in range(len(x))])


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) index ranges where ``mask`` holds."""
    out, start = [], None
    for i, v in enumerate(mask):
        if v and start is None:
            start = i
        elif not v and start is not None:
            out.append((start, i))
            start = None
    if start is not None:
        out.append((start, len(mask)))
    return out


def answers(events: Sequence[Event], challenge: Sequence[Action]) -> str | None:
    """None when ``events`` answer ``challenge``, else the reason code. The terminal shows step ``k`` at
    ``k * WINDOW_PER_STEP_S`` s; the step's action must begin from ``REACTION_MIN_S`` to ``REACTION_MAX_S``
    after that. The turns seen must be exactly the turns asked, in order; other blinks are allowed (people
    blink on their own every few seconds)."""
    i = 0
    for k, step in enumerate(challenge):
        prompt = k * WINDOW_PER_STEP_S
        opens, closes = prompt + REACTION_MIN_S, prompt + REACTION_MAX_S
        while i < len(events) and (events[i].action != step or events[i].start < opens):
            if events[i].action != "blink":
                return "wrong-order"
            i += 1
        if i == len(events) or events[i].start > closes:
            return "not-answered"
        i += 1
    if any(e.action != "blink" for e in events[i:]):
        return "not-asked"
    return None


def faced(t: np.ndarray, rel_yaw: np.ndarray, challenge: Sequence[Action]) -> bool:
    """Whether the head faced the screen (within ``FACING_DEGREES`` of its median) at each asked turn's prompt;
    ``rel_yaw`` is the smoothed yaw from the median at times ``t`` (face frames), the frame nearest the prompt
    read."""
    for k, step in enumerate(challenge):
        if step == "blink" or len(t) == 0:
            continue
        nearest = int(np.argmin(np.abs(t - k * WINDOW_PER_STEP_S)))
        if abs(rel_yaw[nearest]) > FACING_DEGREES:
            return False
    return True


def identity(obs: Sequence[Observation]) -> float:
    """The largest distance of a described frame from the first described frame."""
    described = [o.descriptor for o in obs if o.descriptor is not None]
    if len(described) < 2:
        return 0.0
    first = described[0]
    return max(float(np.linalg.norm(d - first)) for d in described[1:])


# -- the decision ----------------------------------------------------------------------------------------
WHY = {
    "answered": "the actions asked were made in order, by one person, with a real head's parallax",
    "too-few-frames": f"fewer than {MIN_FRAMES} frames",
    "low-fps": f"under {MIN_FPS:g} frames per second",
    "too-long": "the frames run longer than the challenge's window",
    "bad-timestamps": "frame times must increase",
    "frames-missing": f"a gap of more than {MAX_GAP_S:g} s between frames or between faces",
    "no-face": f"a face in fewer than {MIN_FACE_FRAMES:.0%} of the frames",
    "face-too-small": "the face is too small: come closer to the camera",
    "several-faces": "more than one face in view",
    "cut": "the face jumped between two frames: the sequence was cut or spliced",
    "identity-changed": f"the face is not the same person throughout (a frame over {SAME_PERSON} from the first)",
    "still": "the face never moved: a still picture",
    "flat": "the face turned without parallax, as a photo moved or tilted does",
    "not-answered": f"not every action asked was seen {REACTION_MIN_S:g}-{REACTION_MAX_S:g} s after its prompt",
    "not-facing": "the head was turned away when a turn was asked: face the screen until each prompt appears",
    "wrong-order": "the actions were made in another order than asked",
    "not-asked": "a head turn that was not asked",
}
SPOOF = frozenset({"cut", "identity-changed", "still", "flat"})


@dataclass(frozen=True)
class Assessment:
    """What a sequence shows whatever it was asked: a verdict already (``code``) or the events it holds."""

    code: str | None
    events: list[Event]
    flat: bool  # it turned only as a flat picture turns
    frames: int
    duration: float
    fps: float
    t: np.ndarray = field(default_factory=lambda: np.zeros(0))  # face frames' times, seconds
    rel_yaw: np.ndarray = field(default_factory=lambda: np.zeros(0))  # their smoothed yaw from the median


def assess(obs: Sequence[Observation]) -> Assessment:
    """The checks that do not depend on the challenge: frames, faces, one take, one person, not a picture."""
    n = len(obs)
    duration = obs[-1].t - obs[0].t if n > 1 else 0.0
    fps = (n - 1) / duration if duration > 0 else 0.0

    def stop(code: str) -> Assessment:
        return Assessment(code, [], False, n, duration, fps)

    times = np.array([o.t for o in obs])
    if n < MIN_FRAMES:
        return stop("too-few-frames")
    if np.any(np.diff(times) <= 0):
        return stop("bad-timestamps")
    if fps < MIN_FPS:
        return stop("low-fps")
    faces = [o for o in obs if o.points is not None]
    if len(faces) < MIN_FACE_FRAMES * n:
        return stop("no-face")
    face_t = np.array([o.t for o in faces])
    if np.diff(times).max() > MAX_GAP_S or np.diff(face_t).max(initial=0.0) > MAX_GAP_S:
        return stop("frames-missing")
    if any(o.faces > 1 for o in obs):
        return stop("several-faces")
    if np.median([eye_distance(o.points) for o in faces if o.points is not None]) < MIN_EYE_DISTANCE_PX:
        return stop("face-too-small")
    m = measure(obs)
    if m.jump.max() > CUT_JUMP:
        return stop("cut")
    if identity(obs) > SAME_PERSON:
        return stop("identity-changed")
    if m.motion < STILL_MOTION:
        return stop("still")
    real, flat = turns(m)
    events = sorted(real + blinks(m), key=lambda e: e.start)
    return Assessment(None, events, bool(flat) and not real, n, duration, fps, m.t, relative_yaw(m))


def decide(obs: Sequence[Observation], challenge: Sequence[Action], assessed: Assessment | None = None) -> Decision:
    """The verdict on a sequence answering ``challenge``: ``spoof`` when it shows an attack (a cut, another
    person, a still or flat picture), ``uncertain`` when it cannot tell (too few frames, no answer), else
    ``live``. ``assessed`` is ``assess(obs)`` when the caller already has it (one sequence, many challenges)."""
    a = assessed or assess(obs)

    def verdict(code: str, events: Sequence[Event] = ()) -> Decision:
        outcome: Outcome = "live" if code == "answered" else "spoof" if code in SPOOF else "uncertain"
        return Decision(outcome, [code], [WHY[code]], list(events), a.frames, a.duration, a.fps)

    if a.code is not None:
        return verdict(a.code)
    if a.duration > window(challenge) + START_SLACK_S:
        return verdict("too-long", a.events)
    problem = answers(a.events, challenge)
    if problem is not None:
        return verdict("flat" if a.flat else problem, a.events)
    if not faced(a.t, a.rel_yaw, challenge):
        return verdict("not-facing", a.events)
    return verdict("answered", a.events)
