"""The gate's parts on their own: the vote, usable faces, tracks, and a camera that drops and comes back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from facekeeper.engine.detect import Detection
from facekeeper.engine.quality import QualityReport
from facekeeper.errors import ConfigError
from facekeeper.gate.decision import vote
from facekeeper.gate.selection import Usable
from facekeeper.gate.source import Backoff, Source, check_site_address
from facekeeper.gate.tracking import FaceTracker


@pytest.mark.parametrize(("answers", "expected"), [
    (["a", "a", "b"], ("a", 2)),
    (["a", "a", None], ("a", 2)),
    (["a", "b", None], (None, 1)),  # three answers, no majority: a tie
    (["a", None], (None, 1)),  # one frame for a person, one for nobody: a tie, not an open
    (["a", "b"], (None, 1)),
    ([None, None, "a"], (None, 2)),  # "unknown" won
    (["a"], ("a", 1)),
    ([], (None, 0)),
])
def test_the_vote_refuses_ties_and_unknown_wins(answers: list[str | None], expected: tuple[str | None, int]) -> None:
    assert vote(answers) == expected


def test_a_face_too_small_or_turned_waits_and_a_better_one_scores_higher() -> None:
    usable = Usable(min_eye_distance=28, max_yaw=0.35, min_sharpness=10)
    assert usable.score(QualityReport(20, 100, 0.0, 0)) is None  # too small
    assert usable.score(QualityReport(40, 100, 0.6, 0)) is None  # turned
    assert usable.score(QualityReport(40, 2, 0.0, 0)) is None  # blurred
    near, far = usable.score(QualityReport(50, 100, 0.0, 0)), usable.score(QualityReport(30, 100, 0.0, 0))
    turned = usable.score(QualityReport(50, 100, 0.3, 0))
    assert near is not None and far is not None and turned is not None and near > far and near > turned
    assert not usable.worth_measuring(40) and usable.worth_measuring(60)


def det(left: int, top: int, side: int = 80) -> Detection:
    return Detection((left, top, left + side, top + side), 1.0)


def test_two_faces_are_two_tracks_that_keep_their_numbers_while_they_move() -> None:
    tracker = FaceTracker(min_hits=2, max_missing_frames=3)
    ids: list[dict[int, int]] = []
    for step in range(6):
        seen, ended = tracker.update([det(20 + 4 * step, 50), det(400 - 4 * step, 60)])
        assert ended == []
        ids.append({s.detection.box[0]: s.track for s in seen})
    assert ids[0] == {}  # not confirmed on one frame
    firsts = {min(i.values()) for i in ids[1:]}
    seconds = {max(i.values()) for i in ids[1:]}
    assert len(firsts) == 1 and len(seconds) == 1 and firsts != seconds
    for _ in range(5):
        _, ended = tracker.update([])
        if ended:
            break
    assert sorted(ended) == sorted(firsts | seconds)


class FlakyCamera:
    """A capture that gives ``good`` frames, then fails every read (the cable is pulled)."""

    def __init__(self, good: int) -> None:
        self.left = good
        self.released = False

    def isOpened(self) -> bool:
        return True

    def read(self) -> tuple[bool, Any]:
        if self.left <= 0:
            return False, None
        self.left -= 1
        return True, np.zeros((36, 64, 3), np.uint8)

    def grab(self) -> bool:
        return True

    def get(self, prop: int) -> float:
        return 10.0

    def release(self) -> None:
        self.released = True


class Unreachable(FlakyCamera):
    def isOpened(self) -> bool:
        return False


def test_a_camera_that_drops_is_reconnected_with_backoff_and_reported() -> None:
    cameras: list[FlakyCamera] = [FlakyCamera(3), Unreachable(0), Unreachable(0), FlakyCamera(4)]
    opened: list[FlakyCamera] = []

    def opener(spec: str) -> FlakyCamera:
        opened.append(cameras.pop(0))
        return opened[-1]

    events: list[tuple[str, dict[str, Any]]] = []
    pauses: list[float] = []
    source = Source("rtsp://127.0.0.1:8554/door", opener=opener, backoff=Backoff(0.5, 4.0), sleep=pauses.append,
                    on_event=lambda e, facts: events.append((e, facts)))
    frames = []
    for frame in source.frames():
        frames.append(frame)
        if len(frames) == 7:
            source.stop()
    assert len(frames) == 7 and frames[0].rgb.shape == (36, 64, 3)
    assert [e for e, _ in events] == ["dropped", "unreachable", "unreachable", "reconnected"]
    assert pauses == [0.5, 1.0]  # the backoff doubles between failed attempts
    assert source.stats.reconnects == 1 and source.stats.drops == 1 and source.stats.decode_errors == 5
    assert all(c.released for c in opened[:-1])


@pytest.mark.parametrize("url", ["rtsp://10.1.2.3/stream", "rtsp://camera.site.internal/stream",
                                 "http://8.8.8.8/mjpeg"])
def test_a_network_camera_outside_the_allowed_networks_is_refused(url: str) -> None:
    with pytest.raises(ConfigError):
        Source(url)


def test_a_camera_in_an_allowed_network_is_admitted(tmp_path: Path) -> None:
    check_site_address("rtsp://user:pw@10.1.2.3:554/stream", ["10.1.2.0/24"])
    check_site_address("rtsp://127.0.0.1/stream", [])
    with pytest.raises(ConfigError):
        Source(str(tmp_path / "missing.avi"))
