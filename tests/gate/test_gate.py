"""Gate mode end to end on videos made from the volunteers' photos: tracks, one decision per pass, door rules."""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest

from facekeeper.engine import Engine
from facekeeper.errors import CredentialError
from facekeeper.gate.runner import read_statuses
from facekeeper.gate.source import Source
from facekeeper.privacy.scan import scan_paths
from facekeeper.service import Service
from tests.gate.conftest import ADMIN, DEVICE, DOOR, STRANGER, Recorder, run_gate
from tests.gate.videos import Walk, make_video


def gate_entries(svc: Service) -> list:
    return [e for e in svc.privacy.audit.entries() if e.action == "gate.decide"]


def test_one_decision_per_person_per_window_and_a_stranger_never_opens(site: Service, gate_engine: Engine,
                                                                       recorder: Recorder, tmp_path: Path) -> None:
    """001 and 002 walk in together; 001 leaves and comes back within the anti-passback window; a stranger
    passes. The door opens once for each volunteer, 001's return is refused, the stranger opens nothing."""
    video = make_video(tmp_path / "lobby.avi", [
        Walk("001", 0.0, 2.0, x0=20, x1=120),
        Walk("002", 0.0, 2.0, x0=380, x1=300),
        Walk("001", 3.5, 5.5, x0=40, x1=160),  # back within 120 s
        Walk(STRANGER, 6.5, 8.5, x0=200, x1=320),
    ], seconds=9.0)
    metrics, decisions = run_gate(site, gate_engine, video, recorder)

    assert sorted(g.subject_id for g in recorder.grants) == ["001", "002"]
    assert all(g.door == DOOR and g.via == "face" for g in recorder.grants)
    outcomes = sorted(d.outcome for d in decisions)
    assert outcomes == ["open", "open", "passback", "unknown"], (outcomes, metrics)
    entries = gate_entries(site)
    assert len(entries) == len(decisions) == 4  # exactly one audit entry per door decision
    assert all(e.actor == DEVICE.id and e.purpose == "access-control" for e in entries)
    assert all(e.detail["door"] == DOOR and e.detail["fpir"] == site.settings.gate.fpir for e in entries)
    unknown = [e for e in entries if e.outcome == "unknown"]
    assert [(e.subject, e.detail["door_answer"]) for e in unknown] == [(None, "not-sent")]
    assert {e.detail["door_answer"] for e in entries if e.outcome == "open"} == {"logged"}
    assert metrics.tracks_without_match == 2  # the refused return and the stranger: counters, nothing else
    assert metrics.decisions == {"open": 2, "passback": 1, "unknown": 1}
    (status,) = read_statuses(site.settings.data_dir)
    assert status.decisions == metrics.decisions and status.frames == 90


def test_a_pass_too_brief_to_decide_opens_nothing(site: Service, gate_engine: Engine, recorder: Recorder,
                                                  tmp_path: Path) -> None:
    site.settings.doors[DOOR].min_presence_seconds = 5.0
    video = make_video(tmp_path / "glimpse.avi", [Walk("001", 0.0, 1.5, x0=20, x1=60)], seconds=2.0)
    metrics, decisions = run_gate(site, gate_engine, video, recorder)
    assert decisions == [] and recorder.grants == []
    assert metrics.tracks_without_match == 1 and gate_entries(site) == []


def test_a_pin_opens_the_same_door_through_the_same_rules(site: Service, gate_engine: Engine,
                                                          recorder: Recorder, tmp_path: Path) -> None:
    """Nobody has to use their face: a PIN opens the door, and anti-passback spans face and PIN."""
    pins = {p: site.issue_credential(p, kind="pin", actor=ADMIN).secret for p in ("001", "002")}
    opened = site.gate_credential(DOOR, subject_id="002", pin=pins["002"], open_door=recorder, actor=DEVICE)
    assert (opened.outcome, opened.via, opened.subject_id, opened.door_answer) == ("open", "pin", "002", "logged")

    video = make_video(tmp_path / "one.avi", [Walk("001", 0.0, 2.0, x0=20, x1=140)], seconds=2.5)
    _, decisions = run_gate(site, gate_engine, video, recorder)
    assert [d.outcome for d in decisions] == ["open"]
    again = site.gate_credential(DOOR, subject_id="001", pin=pins["001"], open_door=recorder, actor=DEVICE)
    assert again.outcome == "passback" and again.subject_id is None  # through by face a moment ago
    assert [g.subject_id for g in recorder.grants] == ["002", "001"]

    before = len(gate_entries(site))
    with pytest.raises(CredentialError):
        site.gate_credential(DOOR, subject_id="002", pin="000000", open_door=recorder, actor=DEVICE)
    assert [e.outcome for e in gate_entries(site)[before:]] == ["refused:credential-error"]
    assert len(recorder.grants) == 2


def row_fragments(video: Path, every: int = 10) -> list[bytes]:
    """64-byte pieces of the decoded frames' rows where a face is (BGR as decoded, and RGB as the gate holds them)."""
    cap = cv2.VideoCapture(str(video))
    out = []
    index = 0
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        if index % every == 0:
            for image in (bgr, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)):
                for y in range(100, 260, 20):
                    row = image[y].tobytes()
                    out += [row[x:x + 64] for x in range(0, len(row) - 64, 240)]
        index += 1
    cap.release()
    return [f for f in out if len(set(f)) > 8]  # plain background is not a face


def test_nothing_of_a_frame_reaches_disk(site: Service, gate_engine: Engine, recorder: Recorder,
                                         tmp_path: Path) -> None:
    video = make_video(tmp_path / "pass.avi", [Walk("002", 0.0, 2.0, x0=20, x1=200),
                                               Walk(STRANGER, 0.5, 2.5, x0=380, x1=300)], seconds=3.0)
    _, decisions = run_gate(site, gate_engine, video, recorder)
    assert sorted(d.outcome for d in decisions) == ["open", "unknown"]
    roots = [site.settings.data_dir, site.settings.key_dir]
    assert scan_paths(roots).clean  # no image of any format, no plaintext descriptor
    fragments = row_fragments(video)
    assert len(fragments) > 50
    files = [p for root in roots for p in root.rglob("*") if p.is_file()]
    assert any(p.parent.name == "gate" for p in files)  # the status file: counts only
    for path in files:
        data = path.read_bytes()
        assert not any(f in data for f in fragments), path.name


CLIPS = Path(__file__).parents[3] / "shared" / "liveness" / "clips"


@pytest.mark.skipif(not (CLIPS / "d0.mp4").is_file(), reason="../shared/liveness/clips is not here")
def test_a_real_video_of_someone_not_enrolled_never_opens(site: Service, gate_engine: Engine,
                                                          recorder: Recorder) -> None:
    """A real recording (one person, moving naturally, never enrolled here) in front of the gate camera."""
    source = Source(str(CLIPS / "d0.mp4"))
    metrics, decisions = run_gate(site, gate_engine, source, recorder)
    assert metrics.frames > 50 and decisions
    assert recorder.grants == [] and all(d.outcome == "unknown" for d in decisions)
    assert metrics.tracks_without_match == metrics.tracks_started >= 1
