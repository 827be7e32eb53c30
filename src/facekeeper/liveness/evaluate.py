"""``facekeeper liveness eval``: attack every rule with attacks built from bona fide clips, in ISO/IEC 30107-3
terms.

From a folder of genuine recordings (one person each) it builds each presentation-attack species:

* ``still``: one frame shown for the whole sequence (a printed photo held still);
* ``warp-2d``: that frame sheared, squashed, turned and moved in the image plane to fake a turn and a blink;
* ``tilt-3d``: that frame's plane rotated in 3D about the vertical axis (the photo tilted to each side);
* ``reversed``: a window of a clip that answers a challenge, played backwards against the same challenge;
* ``splice``: one person's action followed by another person's (the second aligned onto the first);
* ``replay-2``, ``replay-3``: every window of every clip against every two- or three-step challenge a session
  can ask (the recordings were made for none of them, so any ``live`` is a replay that got through).

APCER per species is the share of attacks decided ``live``, with n and the 95% upper bound (Clopper-Pearson;
0 of n gives 1 - 0.05^(1/n)); the worst species is the headline. BPCER is the share of bona fide trials not
decided ``live``: a clip answers a one-action challenge for each action it contains, and a two-turn one for
each change of direction, when some window of it (starting at any frame, ``TRIAL_STEP_S``) is decided
``live``. The actions a clip contains come from a labels file, else from the events found on the whole clip
(then BPCER measures the window, identity, continuity and photo checks, not the event detectors' misses).
``reversed`` is built from the replay windows decided ``live``: when none is, it has no attack (n 0).

Windows and splices reuse each clip's observations (one pass per clip); ``still``, ``warp-2d`` and
``tilt-3d`` are new pixels, observed again. Nothing is written but the report.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from facekeeper.engine.core import Engine
from facekeeper.errors import InvalidInput
from facekeeper.liveness import frames as framing
from facekeeper.liveness import observe, rules
from facekeeper.liveness.rules import Action
from facekeeper.liveness.sessions import challenges

VIDEO_SUFFIXES = {".mp4", ".mov", ".avi", ".mkv", ".webm"}
SPECIES = ("still", "warp-2d", "tilt-3d", "reversed", "splice", "replay-2", "replay-3")
WINDOW_STEP_S = 0.5  # replay windows start every half second
# A bona fide trial may start at any frame: the prompt is placed where a person answering it would have seen it
# (the answer must begin 0.25-1.5 s after its prompt, which a half-second grid can miss for two steps), and its
# window may end with the clip (a clip is no session: it stops when it stops; the rules take a short sequence).
TRIAL_STEP_S = 0.1
ATTACK_S, ATTACK_FPS = 5.0, 15.0  # the photo attacks' sequences: 75 frames


def upper_bound(errors: int, n: int, confidence: float = 0.95) -> float:
    """One-sided Clopper-Pearson upper bound of a rate seen as ``errors`` of ``n``."""
    if n == 0:
        return 1.0
    if errors >= n:
        return 1.0
    alpha = 1 - confidence
    lo, hi = errors / n, 1.0
    for _ in range(60):  # P(X <= errors; n, p) falls with p: find where it crosses alpha
        mid = (lo + hi) / 2
        cdf = sum(math.comb(n, k) * mid**k * (1 - mid) ** (n - k) for k in range(errors + 1))
        lo, hi = (mid, hi) if cdf > alpha else (lo, mid)
    return hi


@dataclass
class Rate:
    errors: int = 0
    n: int = 0
    caught_by: dict[str, int] = field(default_factory=dict)

    def add(self, decision: rules.Decision, *, attack: bool) -> None:
        self.n += 1
        if decision.live == attack:
            self.errors += 1
        if attack and not decision.live:
            code = decision.reasons[0]
            self.caught_by[code] = self.caught_by.get(code, 0) + 1

    def to_dict(self) -> dict[str, Any]:
        rate = self.errors / self.n if self.n else None
        return {"errors": self.errors, "n": self.n, "rate": rate,
                "upper_95": round(upper_bound(self.errors, self.n), 4), "refused_as": self.caught_by}


@dataclass
class Clip:
    name: str
    path: Path
    obs: list[observe.Observation]
    seconds_per_frame: float  # measuring cost of this clip's frames (decode included)


@dataclass
class Report:
    clips: list[str]
    apcer: dict[str, Rate]
    bpcer: Rate
    bpcer_trials: list[dict[str, Any]]
    labels: str
    timings: dict[str, float]

    @property
    def headline(self) -> tuple[str, Rate]:
        """The worst species that was measured: highest APCER, then the widest upper bound (fewest attacks)."""
        measured = [kv for kv in self.apcer.items() if kv[1].n] or list(self.apcer.items())
        return max(measured, key=lambda kv: (kv[1].errors / kv[1].n if kv[1].n else 0,
                                             upper_bound(kv[1].errors, kv[1].n)))

    def to_dict(self) -> dict[str, Any]:
        worst, rate = self.headline
        return {"clips": self.clips, "headline": {"species": worst, **rate.to_dict()},
                "apcer": {k: v.to_dict() for k, v in self.apcer.items()}, "bpcer": self.bpcer.to_dict(),
                "bpcer_trials": self.bpcer_trials, "labels": self.labels, "timings_ms": self.timings}

    def text(self) -> str:
        worst, rate = self.headline
        lines = [f"Clips: {len(self.clips)} ({', '.join(self.clips)}); actions from {self.labels}",
                 f"Headline APCER (worst species, {worst}): {rate.errors}/{rate.n},"
                 f" 95% upper bound {upper_bound(rate.errors, rate.n):.1%}", "",
                 "| species | APCER | n | 95% upper | refused as |", "|---|---|---|---|---|"]
        for name, r in self.apcer.items():
            caught = ", ".join(f"{k} {v}" for k, v in sorted(r.caught_by.items()))
            share = f"{r.errors / r.n:.2%}" if r.n else "-"
            lines.append(f"| {name} | {share} | {r.n} | {upper_bound(r.errors, r.n):.1%} | {caught} |")
        b = self.bpcer
        lines += ["", f"BPCER: {b.errors}/{b.n} bona fide trials not live"
                      + (f" ({b.errors / b.n:.1%}, 95% upper bound {upper_bound(b.errors, b.n):.1%})" if b.n else "")]
        for t in self.bpcer_trials:
            lines.append(f"  {t['clip']}: {' then '.join(t['challenge'])}: {'live' if t['live'] else t['best']}")
        lines += ["", "Timings (ms): " + ", ".join(f"{k} {v:.0f}" for k, v in self.timings.items())]
        return "\n".join(lines)


# -- reading clips ---------------------------------------------------------------------------------------
def clip_paths(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise InvalidInput(f"{folder.name}: not a folder of clips")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
    if not paths:
        raise InvalidInput(f"{folder.name}: no video clips ({', '.join(sorted(VIDEO_SUFFIXES))})")
    return paths


def read_clip(engine: Engine, path: Path, max_seconds: float | None = None) -> Clip:
    start = time.perf_counter()
    source: Iterator[tuple[float, np.ndarray]] = framing.video_file(path)
    if max_seconds is not None:
        source = itertools.takewhile(lambda f: f[0] <= max_seconds, source)
    obs = observe.observe(engine, source)
    return Clip(path.stem, path, obs, (time.perf_counter() - start) / max(len(obs), 1))


def windows(obs: Sequence[observe.Observation], length: float, step: float = WINDOW_STEP_S, *,
            to_the_end: bool = False) -> Iterator[list[observe.Observation]]:
    """Every ``length`` s window of ``obs`` starting each ``step`` s, retimed to start at 0; ``to_the_end`` also
    yields the windows cut short by the clip's end (those of ``rules.MIN_FRAMES`` frames or more)."""
    if not obs:
        return
    end = obs[-1].t
    k = 0
    while (start := k * step) + length <= end + 1e-6 or (to_the_end and start < end):
        part = [o for o in obs if start <= o.t < start + length]
        if len(part) >= rules.MIN_FRAMES or not to_the_end:
            yield retimed(part)
        k += 1


def retimed(obs: Sequence[observe.Observation], t0: float | None = None) -> list[observe.Observation]:
    base = obs[0].t if t0 is None else t0
    return [replace(o, t=o.t - base) for o in obs]


# -- species from observations ---------------------------------------------------------------------------
def reversed_window(obs: Sequence[observe.Observation]) -> list[observe.Observation]:
    """The window played backwards: each frame keeps its place in time, in reverse order."""
    times = [o.t for o in obs]
    return [replace(o, t=t) for o, t in zip(reversed(obs), times, strict=True)]


def _similarity(src: np.ndarray, dst: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """The rotation, scale and shift that best maps ``src`` points onto ``dst`` (Umeyama)."""
    sc, dc = src.mean(0), dst.mean(0)
    s0, d0 = src - sc, dst - dc
    u, sig, vt = np.linalg.svd(d0.T @ s0)
    r = u @ vt
    scale = sig.sum() / (s0**2).sum()
    return lambda p: (p - sc) @ r.T * scale + dc


def splice(a: Sequence[observe.Observation], b: Sequence[observe.Observation]) -> list[observe.Observation]:
    """``a`` then ``b``, ``b``'s landmarks moved so its first face lands where ``a``'s last one is (an attacker
    aligning the two recordings), timed at ``a``'s frame rate."""
    last = next(o.points for o in reversed(a) if o.points is not None)
    first = next(o.points for o in b if o.points is not None)
    move = _similarity(first, last)
    step = float(np.median(np.diff([o.t for o in a]))) if len(a) > 1 else 1 / 15
    tail = [replace(o, points=None if o.points is None else move(o.points).astype(np.float32)) for o in b]
    out = list(retimed(a))
    t = out[-1].t
    for o in tail:
        t += step
        out.append(replace(o, t=t))
    return out


def segment(obs: Sequence[observe.Observation], start: float, end: float) -> list[observe.Observation]:
    return [o for o in obs if start <= o.t <= end]


# -- species from pixels ---------------------------------------------------------------------------------
def _bump(t: float, start: float, end: float) -> float:
    """0 outside [start, end], rising smoothly to 1 in the middle."""
    if t <= start or t >= end:
        return 0.0
    return float(np.sin(np.pi * (t - start) / (end - start)) ** 2)


def photo_attack(species: str, still: np.ndarray, rng: np.random.Generator) -> Iterator[tuple[float, np.ndarray]]:
    """``ATTACK_S`` seconds of ``still`` at ``ATTACK_FPS`` as ``species`` moves it. ``warp-2d`` shears the face
    one way and back (the nose moves between the jaw edges as in a turn) and squashes it for 150 ms (the eyes
    narrow as in a blink); ``tilt-3d`` turns the photo's plane 40 degrees to each side in perspective."""
    import cv2

    h, w = still.shape[:2]
    for i in range(int(ATTACK_S * ATTACK_FPS)):
        t = i / ATTACK_FPS
        jitter = rng.normal(0, 1.0, 2)  # a hand holding a photo
        if species == "still":
            m = np.array([[1, 0, jitter[0]], [0, 1, jitter[1]], [0, 0, 1]], dtype=np.float64)
        elif species == "warp-2d":
            shear = 0.3 * _bump(t, 0.5, 2.0) - 0.3 * _bump(t, 3.5, 4.7)
            squash = 1 - 0.5 * _bump(t, 2.6, 2.8)
            angle = np.radians(5 * np.sin(2 * np.pi * t / 2.5))
            c, s = np.cos(angle), np.sin(angle)
            rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
            warp = np.array([[1, shear, 0], [0, squash, 0], [0, 0, 1]])
            centre = np.array([[1, 0, w / 2 + jitter[0]], [0, 1, h / 2 + jitter[1]], [0, 0, 1]])
            m = centre @ rot @ warp @ np.array([[1, 0, -w / 2], [0, 1, -h / 2], [0, 0, 1]])
        elif species == "tilt-3d":
            yaw = np.radians(40 * _bump(t, 0.5, 2.2) - 40 * _bump(t, 2.8, 4.5))
            m = _tilt(yaw, w, h) @ np.array([[1, 0, jitter[0]], [0, 1, jitter[1]], [0, 0, 1]])
        else:
            raise InvalidInput(f"no photo attack {species!r}")
        yield t, cv2.warpPerspective(still, m, (w, h), borderMode=cv2.BORDER_REPLICATE)


def _tilt(yaw: float, w: int, h: int) -> np.ndarray:
    """Homography of a photo at the image's place rotated by ``yaw`` about its vertical axis, seen by a
    camera of focal length ``w`` (a 53 degree field of view)."""
    f = float(w)
    k = np.array([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1]])
    c, s = np.cos(yaw), np.sin(yaw)
    r = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    d = 2 * f  # the photo held at two focal lengths
    n = np.array([0, 0, 1.0])
    t = np.array([0, 0, d]) - r @ np.array([0, 0, d])
    hom = k @ (r + np.outer(t, n) / d) @ np.linalg.inv(k)
    return hom / hom[2, 2]


def stills(path: Path, count: int) -> list[np.ndarray]:
    """``count`` frames spread over the clip (its middle part: a photo is taken of a person looking on)."""
    all_frames = [rgb for _, rgb in framing.video_file(path, fps=5.0)]
    picks = np.linspace(0.2, 0.8, count) if count > 1 else [0.5]
    return [observe.scaled(all_frames[int(p * (len(all_frames) - 1))]) for p in picks]


PHOTO_CHALLENGES: dict[str, list[Action]] = {
    "still": ["turn-left", "blink"], "warp-2d": ["turn-left", "blink"], "tilt-3d": ["turn-left", "turn-right"]}


# -- bona fide trials ----------------------------------------------------------------------------------
def trials(actions: Sequence[Action]) -> list[list[Action]]:
    """The challenges a clip with ``actions`` (in order, blinks anywhere) can answer: each action alone, and each
    change of head direction as a two-turn challenge."""
    singles: list[list[Action]] = [[a] for a in dict.fromkeys(actions)]
    turns = [a for a in actions if a != "blink"]
    pairs = [[x, y] for x, y in itertools.pairwise(turns) if x != y]
    unique_pairs = [list(p) for p in dict.fromkeys(tuple(p) for p in pairs)]
    return singles + unique_pairs  # type: ignore[misc]


def clip_actions(clip: Clip) -> list[Action]:
    m = rules.measure(clip.obs)
    real, _ = rules.turns(m)
    return [e.action for e in sorted(real + rules.blinks(m), key=lambda e: e.start)]


def load_labels(path: Path | None) -> dict[str, list[Action]]:
    """``{"clip name": ["turn-right", "turn-left", "blink"], ...}``: the actions each clip shows, turns in order."""
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        raise InvalidInput(f"{path.name}: not a readable JSON labels file") from None
    if not isinstance(data, dict) or not all(isinstance(v, list) and set(v) <= set(rules.ACTIONS)
                                             for v in data.values()):
        raise InvalidInput(f"labels map clip names to lists of {', '.join(rules.ACTIONS)}")
    return data


def best_window(obs: Sequence[observe.Observation], challenge: Sequence[Action]) -> rules.Decision | None:
    """A trial window of the clip (``TRIAL_STEP_S``) decided live for ``challenge``, else the last one's
    decision."""
    last = None
    for part in windows(obs, rules.window(challenge) + rules.START_SLACK_S, TRIAL_STEP_S, to_the_end=True):
        last = rules.decide(part, challenge)
        if last.live:
            return last
    return last


# -- the whole evaluation ----------------------------------------------------------------------------------
def run(engine: Engine, folder: Path, *, labels: Path | None = None, stills_per_clip: int = 2,
        max_seconds: float | None = None, seed: int = 0,
        progress: Callable[[str], None] | None = None) -> Report:
    """Every species against every clip of ``folder`` (``max_seconds`` reads only the start of each clip)."""
    say = progress or (lambda _: None)
    rng = np.random.default_rng(seed)
    given = load_labels(labels)
    clips = []
    for path in clip_paths(folder):
        say(f"observing {path.name}")
        clips.append(read_clip(engine, path, max_seconds))
    apcer = {s: Rate() for s in SPECIES}
    timings: dict[str, list[float]] = {"observe_per_frame": [c.seconds_per_frame for c in clips], "decide": []}

    # bona fide
    bpcer, bpcer_trials = Rate(), []
    for clip in clips:
        actions = given.get(clip.name) if given else clip_actions(clip)
        for challenge in trials(actions or []):
            decision = best_window(clip.obs, challenge)
            if decision is None:
                continue
            bpcer.add(decision, attack=False)
            bpcer_trials.append({"clip": clip.name, "challenge": challenge, "live": decision.live,
                                 "best": decision.reasons[0]})

    # replay and reversed, window by window
    say("replaying windows against every challenge")
    for clip in clips:
        for steps in (2, 3):
            asked = [list(c) for c in challenges(steps)]
            for part in windows(clip.obs, rules.window(asked[0]) + rules.START_SLACK_S):
                start = time.perf_counter()
                forward = rules.assess(part)
                timings["decide"].append(time.perf_counter() - start)
                backward = None
                for challenge in asked:
                    decision = rules.decide(part, challenge, forward)
                    apcer[f"replay-{steps}"].add(decision, attack=True)
                    if decision.live:  # the window answers this challenge: backwards it must not
                        backward = backward or rules.assess(reversed_window(part))
                        apcer["reversed"].add(rules.decide(part, challenge, backward), attack=True)

    # splices: one person's action, then another's
    say("splicing clips")
    events = {c.name: _events(c) for c in clips}
    for a, b in itertools.permutations(clips, 2):
        for ea in events[a.name][:1]:
            eb = next((e for e in events[b.name] if e.action != ea.action), None)
            if eb is None:
                continue
            spliced = splice(segment(a.obs, ea.start - 0.6, ea.end + 0.4), segment(b.obs, eb.start - 0.4,
                                                                                   eb.end + 0.6))
            apcer["splice"].add(rules.decide(spliced, [ea.action, eb.action]), attack=True)

    # photo attacks: new pixels, observed again
    per_sequence: list[float] = []
    for clip in clips:
        say(f"photo attacks from {clip.name}")
        for still in stills(clip.path, stills_per_clip):
            for species in ("still", "warp-2d", "tilt-3d"):
                start = time.perf_counter()
                obs = observe.observe(engine, photo_attack(species, still, rng))
                decision = rules.decide(obs, PHOTO_CHALLENGES[species])
                per_sequence.append(time.perf_counter() - start)
                apcer[species].add(decision, attack=True)
    ms = {"observe_per_frame": 1000 * float(np.mean(timings["observe_per_frame"])),
          "decide_rules": 1000 * float(np.median(timings["decide"])) if timings["decide"] else 0.0,
          "attack_sequence_75_frames": 1000 * float(np.median(per_sequence)) if per_sequence else 0.0}
    return Report([c.name for c in clips], apcer, bpcer, bpcer_trials,
                  labels.name if labels else "the events found on each whole clip", ms)


def _events(clip: Clip) -> list[rules.Event]:
    m = rules.measure(clip.obs)
    real, _ = rules.turns(m)
    return sorted(real + rules.blinks(m), key=lambda e: e.start)
