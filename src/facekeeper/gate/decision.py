"""How a pass becomes a door decision: a vote over the best frames, and the door rules.

- The vote takes one answer per frame (a subject's pseudonym, or None for "unknown") and returns the answer
  more frames gave than any other; a tie, or "unknown" winning, is unknown. Two frames that name two people,
  or one person and nobody, open nothing.
- A pass must last ``min_presence`` seconds: a face glimpsed in a frame or two does not open a door.
- Anti-passback: a person let through a door is not let through the same door again within ``anti_passback``
  seconds, whether by face or by PIN (``Service`` keeps that rule, across processes, from the audit chain).
- "unknown" never opens.

The rules are pure functions here; ``Service.gate_decide`` applies them under the guard.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from facekeeper.gate.selection import Track

log = logging.getLogger("facekeeper.gate")

Outcome = Literal["open", "unknown", "passback", "too-brief"]
Via = Literal["face", "pin", "token"]  # a face, or an alternative credential (privacy.credentials.KINDS)


@dataclass(frozen=True)
class Grant:
    """What a door output is told when a door opens: the door, who (the site's subject id), how, and when."""

    door: str
    subject_id: str
    via: Via
    at: float


@dataclass(frozen=True)
class GateDecision:
    """One door decision as the gate device sees it: no score, no candidates; the subject id only on open."""

    outcome: Outcome
    door: str
    via: Via
    subject_id: str | None
    door_answer: str  # the output's answer ("accepted", "rejected:403", "sent", "logged", ...) or "not-sent"
    fpir: float | None  # the false-positive identification rate the face was identified at (None: a credential)

    @property
    def opened(self) -> bool:
        return self.outcome == "open"

    def to_dict(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "door": self.door, "via": self.via, "subject_id": self.subject_id,
                "door_answer": self.door_answer, "fpir": self.fpir}


def vote(answers: Sequence[str | None]) -> tuple[str | None, int]:
    """The answer given by more frames than any other, with its count; (None, n) on a tie or for unknown."""
    if not answers:
        return None, 0
    ranked = Counter(answers).most_common()
    top, count = ranked[0]
    if len(ranked) > 1 and ranked[1][1] == count:
        return None, count
    return top, count


def ready(track: Track, now: float, *, frames: int, min_presence: float, max_wait: float) -> bool:
    """Whether an undecided track should be decided now: present long enough, with ``frames`` usable frames,
    or with fewer once ``max_wait`` seconds have passed since its face first became usable."""
    if track.decided or not track.best or now - track.first_seen < min_presence:
        return False
    assert track.first_usable is not None
    return len(track.best) >= frames or now - track.first_usable >= max_wait


def within_passback(last_open: float | None, now: float, window: float) -> bool:
    return last_open is not None and now - last_open < window


MAX_GATE_FRAMES = 9  # descriptors one decision may vote over
# Door outputs' answers that mean the controller took the grant: only these count for anti-passback, so a
# controller that refused or could not be reached leaves the person free to try again at once.
DELIVERED = frozenset({"accepted", "sent", "logged"})

_locks: dict[tuple[str, str], threading.Lock] = {}
_locks_guard = threading.Lock()


def door_lock(deployment_id: str, door: str) -> threading.Lock:
    """The lock that makes one door's decisions take turns in this process (check, open, record)."""
    with _locks_guard:
        return _locks.setdefault((deployment_id, door), threading.Lock())


def send_grant(open_door: Callable[[Grant], str] | None, grant: Grant) -> str:
    """Tell the door output; its answer, or why there is none. An output that fails is an answer too, so the
    decision is still audited."""
    if open_door is None:
        return "no-output"
    try:
        return open_door(grant)
    except Exception as exc:  # a broken output must not lose the decision's audit entry
        log.error("door output for %s failed: %s", grant.door, type(exc).__name__)
        return "output-error"
