"""The challenge rules on their own: order, slots, extra actions; the sequence checks; the challenge set;
the statistics the evaluation reports."""

from __future__ import annotations

import numpy as np
import pytest

from facekeeper.errors import InvalidInput
from facekeeper.liveness import evaluate, rules, sessions
from facekeeper.liveness.observe import Observation
from facekeeper.liveness.rules import Event


def ev(action: str, start: float) -> Event:
    return Event(action, start, start + 0.5)  # type: ignore[arg-type]


def test_actions_must_come_in_order_each_in_its_slot() -> None:
    asked = ["turn-left", "blink"]
    assert rules.answers([ev("turn-left", 0.5), ev("blink", 2.5)], asked) is None
    assert rules.answers([ev("blink", 0.5), ev("turn-left", 2.5)], asked) == "not-answered"  # the blink came first
    assert rules.answers([ev("turn-right", 0.5), ev("turn-left", 2.5)], ["turn-left", "turn-right"]) == "wrong-order"
    assert rules.answers([ev("turn-left", 0.5)], asked) == "not-answered"
    assert rules.answers([ev("turn-left", 0.5), ev("blink", 1.0)], asked) == "not-answered"  # before its prompt
    assert rules.answers([ev("turn-left", 0.5), ev("blink", 5.5)], asked) == "not-answered"  # too late


def test_extra_blinks_are_allowed_but_not_an_extra_turn() -> None:
    asked = ["turn-left", "turn-right"]
    assert rules.answers([ev("blink", 0.2), ev("turn-left", 0.5), ev("blink", 1.5), ev("turn-right", 2.5)],
                         asked) is None
    assert rules.answers([ev("turn-left", 0.5), ev("turn-right", 2.5), ev("turn-left", 4.0)], asked) == "not-asked"
    assert rules.answers([ev("turn-right", 0.3), ev("turn-left", 0.5), ev("turn-right", 2.5)],
                         asked) == "wrong-order"


def _obs(n: int, fps: float) -> list[Observation]:
    return [Observation(i / fps, None) for i in range(n)]


def test_a_sequence_needs_frames_a_frame_rate_faces_and_a_short_enough_time() -> None:
    asked: list[rules.Action] = ["turn-left", "blink"]
    assert rules.decide(_obs(10, 15), asked).reasons == ["too-few-frames"]
    assert rules.decide(_obs(40, 5), asked).reasons == ["low-fps"]
    assert rules.decide(_obs(60, 15), asked).reasons == ["no-face"]
    backwards = [Observation(-o.t, None) for o in _obs(40, 15)]
    assert rules.decide(backwards, asked).reasons == ["bad-timestamps"]
    assert rules.decide(_obs(60, 15), asked).outcome == "uncertain"


def test_challenges_have_two_or_three_different_actions_and_none_reads_the_same_backwards() -> None:
    for steps in (2, 3):
        every = sessions.challenges(steps)
        assert len(every) == 6 and all(len(set(c)) == steps and c != c[::-1] for c in every)
        assert sessions.draw(steps) in every
    with pytest.raises(InvalidInput):
        sessions.draw(4)


def test_upper_bounds_are_clopper_pearson() -> None:
    assert evaluate.upper_bound(0, 12) == pytest.approx(1 - 0.05 ** (1 / 12), abs=1e-6)
    assert evaluate.upper_bound(0, 0) == 1.0
    assert 8 / 756 < evaluate.upper_bound(8, 756) < 0.03


def test_a_flat_picture_has_no_parallax_and_a_squashed_one_keeps_its_eyes_open() -> None:
    rng = np.random.default_rng(0)
    face = rng.uniform(0, 100, (68, 2)).astype(np.float32)
    h = np.array([[0.9, 0.2, 5], [0.05, 0.6, -3], [1e-4, 2e-4, 1]])
    warped = np.c_[face, np.ones(68)] @ h.T
    warped = (warped[:, :2] / warped[:, 2:]).astype(np.float32)
    assert rules.parallax(warped, face) < 1e-3
    squash = face * np.array([1.0, 0.5], np.float32)
    assert rules.rectified_ear(squash, face) == pytest.approx(rules.ear(face), rel=1e-3)
