"""Every attack species built from the shared bona fide clips is refused, and bona fide answers pass.

Clips are read in place from ../shared/liveness/clips (skipped, saying why, where absent), cut short and
scaled to 480 px so the whole module takes seconds."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from facekeeper.cli.main import app
from facekeeper.errors import BadImage
from facekeeper.liveness import evaluate, frames, observe, rules, sessions
from tests.liveness.clips import ANSWER_SECONDS, ANSWERS, CLIPS, clip_frames, needs_clips

pytestmark = needs_clips


@pytest.fixture(scope="module")
def answer(engine: Any) -> list[observe.Observation]:
    """d3 from 5 s: a right turn, then a left one, answering ANSWERS' challenge."""
    name, start, _ = ANSWERS
    return observe.observe(engine, iter(clip_frames(name, start, start + ANSWER_SECONDS)))


def _clip(engine: Any, name: str, start: float, end: float) -> list[observe.Observation]:
    return observe.observe(engine, iter(clip_frames(name, start, end)))


def test_a_bona_fide_answer_is_live(answer: list[observe.Observation]) -> None:
    decision = rules.decide(answer, ANSWERS[2])
    assert decision.live, decision
    assert [e.action for e in decision.events if e.action != "blink"] == list(ANSWERS[2])


def test_a_bona_fide_blink_is_seen(engine: Any) -> None:
    """d10 blinks 0.8 s into this window, as a person asked to blink at its first frame would."""
    decision = rules.decide(_clip(engine, "d10", 6.6, 9.6), ["blink"])
    assert decision.live, decision


def test_the_same_recording_answers_no_other_challenge(answer: list[observe.Observation]) -> None:
    """Replay against another challenge: the recording was made for one (no timing asserted)."""
    others = [c for n in (2, 3) for c in sessions.challenges(n) if c != ANSWERS[2]]
    assessed = rules.assess(answer)
    assert not [c for c in others if rules.decide(answer, c, assessed).live]


# The windows of d3 (a head swinging side to side for 12 s) that answered a random challenge under the old slot
# rule (an action anywhere from 0.2 s before its prompt to 3 s after it), with HOG or YuNet detection: (start
# second, challenge). Each turn began 1.1-2.1 s after its prompt, or with the head still turned away.
USED_TO_PASS: list[tuple[float, tuple[rules.Action, ...]]] = [
    (0.0, ("turn-right", "blink")), (0.5, ("turn-right", "blink")), (1.5, ("blink", "turn-left")),
    (2.5, ("turn-left", "blink")), (3.0, ("turn-left", "turn-right")), (3.5, ("turn-left", "turn-right")),
    (5.0, ("turn-right", "turn-left")), (5.5, ("turn-right", "turn-left")),
    (0.0, ("turn-right", "blink", "turn-left")), (0.5, ("turn-right", "turn-left", "blink")),
    (1.0, ("blink", "turn-left", "turn-right")), (1.5, ("blink", "turn-left", "turn-right")),
    (2.0, ("blink", "turn-left", "turn-right")), (2.0, ("turn-left", "blink", "turn-right"))]


@pytest.fixture(scope="module")
def swinging(engine: Any) -> evaluate.Clip:
    return evaluate.read_clip(engine, CLIPS / "d3.mp4")


def test_a_head_swinging_side_to_side_answers_no_challenge(swinging: evaluate.Clip) -> None:
    """Replay of d3: the windows that used to pass are refused, and no window of it (every 0.5 s) answers any
    two- or three-step challenge."""
    for start, challenge in USED_TO_PASS:
        window = rules.window(challenge) + rules.START_SLACK_S
        part = evaluate.retimed([o for o in swinging.obs if start <= o.t < start + window])
        decision = rules.decide(part, challenge)
        assert not decision.live, (start, challenge, decision)
    for steps in (2, 3):
        asked = sessions.challenges(steps)
        for part in evaluate.windows(swinging.obs, rules.window(asked[0]) + rules.START_SLACK_S):
            assessed = rules.assess(part)
            assert not [c for c in asked if rules.decide(part, c, assessed).live]


def test_the_recording_played_backwards_is_refused(answer: list[observe.Observation]) -> None:
    decision = rules.decide(evaluate.reversed_window(answer), ANSWERS[2])
    assert decision.outcome == "uncertain" and decision.reasons == ["wrong-order"]


def test_a_splice_of_two_people_is_refused(engine: Any) -> None:
    """d11 turns left; d14 (the clips' closest face to d11's) blinks: aligned onto each other, a splice that
    answers 'turn-left, blink' by motion alone."""
    d11, d14 = _clip(engine, "d11", 3.6, 5.8), _clip(engine, "d14", 3.0, 4.4)
    spliced = evaluate.splice(d11, d14)
    assessed = rules.assess(spliced)
    assert assessed.code == "identity-changed"
    assert rules.decide(spliced, ["turn-left", "blink"]).outcome == "spoof"


@pytest.mark.parametrize("species", ["still", "warp-2d", "tilt-3d"])
def test_a_photo_however_moved_is_refused(engine: Any, species: str) -> None:
    still = clip_frames(ANSWERS[0], 9.7, 9.8)[0][1]
    obs = observe.observe(engine, evaluate.photo_attack(species, still, np.random.default_rng(1)))
    decision = rules.decide(obs, evaluate.PHOTO_CHALLENGES[species])
    assert not decision.live, decision
    assert decision.reasons[0] in {"still", "flat", "not-answered"}


def test_a_video_is_decoded_in_memory_and_a_broken_one_refused() -> None:
    data = (CLIPS / "d0.mp4").read_bytes()
    decoded = list(frames.video_frames(data))
    assert len(decoded) > 30 and decoded[0][1].shape[2] == 3
    with pytest.raises(BadImage):
        list(frames.video_frames(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 200))


def test_eval_runs_on_a_folder_of_clips(tmp_path: Path) -> None:
    folder = tmp_path / "clips"
    folder.mkdir()
    for name in ("d0", "d11"):
        os.symlink(CLIPS / f"{name}.mp4", folder / f"{name}.mp4")  # read in place, never copied
    result = CliRunner().invoke(app, ["--json", "liveness", "eval", str(folder), "--stills", "1", "--seconds", "5"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert set(report["apcer"]) == set(evaluate.SPECIES)
    assert all(s["errors"] == 0 for name, s in report["apcer"].items() if not name.startswith("replay"))
    assert report["headline"]["n"] > 0 and report["bpcer"]["n"] > 0
