"""Liveness through the facade: payment needs a fresh live session whose frames show the probe's face; a
session is answered once by the terminal that started it, used once, and expires; attempts are limited; the
audit and the database hold the challenge and the decision, never a frame."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from facekeeper.errors import LivenessAttempts, LivenessRequired
from facekeeper.liveness import sessions
from facekeeper.privacy import Actor
from facekeeper.service import Service
from tests.clock import Clock
from tests.conftest import FORM, london, ready
from tests.liveness.clips import ANSWER_SECONDS, ANSWERS, clip_jpegs, frame_at, needs_clips
from tests.publisher_fixtures import licensed_fixture  # noqa: F401

pytestmark = pytest.mark.usefixtures("licensed")
TILL = Actor("till-1", "device")
OTHER_TILL = Actor("till-2", "device")
ADMIN = Actor("setup", "admin")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def site(tmp_path: Path, engine: Any, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> Iterator[Service]:
    """Volunteer 001 enrolled for payment (a London photo); the session's challenge is fixed so a recording
    can answer it."""
    svc = Service.init(tmp_path / "data", tmp_path / "keys", clock=clock)
    svc.engine = engine
    ready(svc, ())
    svc.grant_consent("001", "payment", FORM, actor=ADMIN)
    svc.enroll([london("001")], "001", purpose="payment", actor=ADMIN)
    monkeypatch.setattr(sessions, "draw", lambda steps=None: ANSWERS[2])
    yield svc
    svc.close()


def still_frames(photo: Path, n: int = 30, fps: float = 15.0) -> tuple[list[bytes], list[float]]:
    """A printed photo held in front of the camera: the same picture in every frame."""
    data = photo.read_bytes()
    return [data] * n, [i / fps for i in range(n)]


def test_payment_verify_is_refused_without_a_live_session(site: Service) -> None:
    with pytest.raises(LivenessRequired) as caught:
        site.verify(london("001", "smiling"), subject_id="001", purpose="payment", actor=TILL)
    assert caught.value.code == "liveness-required"
    assert site.privacy.audit.entries()[-1].outcome == "refused:liveness-required"


def test_access_control_needs_no_session(site: Service) -> None:
    site.grant_consent("002", "access-control", FORM, actor=ADMIN)
    site.enroll([london("002")], "002", actor=ADMIN)
    assert site.verify(london("002", "smiling"), subject_id="002", actor=TILL).decision.match


def test_a_descriptor_alone_is_refused_for_payment_saying_why(site: Service, engine: Any) -> None:
    descriptor, _ = engine.template(london("001", "smiling"))
    with pytest.raises(LivenessRequired, match="descriptor alone cannot prove") as caught:
        site.verify_descriptor(descriptor, "001", purpose="payment", actor=TILL)
    assert caught.value.details["edge"] is True
    with pytest.raises(LivenessRequired):
        site.identify_descriptor(descriptor, purpose="payment", actor=TILL)


def test_a_printed_photo_sent_as_frames_is_a_spoof_and_pays_nothing(site: Service) -> None:
    started = site.liveness_start("001", purpose="payment", actor=TILL)
    frames, times = still_frames(london("001", "smiling"))
    result = site.liveness_submit(started.session_id, started.nonce, frames, times, actor=TILL)
    assert result.outcome == "spoof" and result.reasons == ["still"]
    with pytest.raises(LivenessRequired, match="not live"):
        site.verify(london("001", "smiling"), subject_id="001", purpose="payment", actor=TILL,
                    liveness_session=started.session_id)


def test_a_session_is_answered_only_with_its_nonce_and_only_once(site: Service) -> None:
    started = site.liveness_start(purpose="payment", actor=TILL)
    frames, times = still_frames(london("001", "smiling"))
    with pytest.raises(LivenessRequired, match="nonce"):
        site.liveness_submit(started.session_id, "guessed", frames, times, actor=TILL)
    site.liveness_submit(started.session_id, started.nonce, frames, times, actor=TILL)
    with pytest.raises(LivenessRequired, match="already answered"):
        site.liveness_submit(started.session_id, started.nonce, frames, times, actor=TILL)


def test_an_unanswered_session_expires(site: Service, clock: Clock) -> None:
    started = site.liveness_start(purpose="payment", actor=TILL)
    clock.now += sessions.SESSION_TTL_S + 1
    frames, times = still_frames(london("001", "smiling"))
    with pytest.raises(LivenessRequired, match="expired"):
        site.liveness_submit(started.session_id, started.nonce, frames, times, actor=TILL)


def test_failed_attempts_are_limited_per_terminal_and_per_person(site: Service) -> None:
    frames, times = still_frames(london("001", "smiling"), n=20, fps=10.0)
    for _ in range(sessions.MAX_FAILED_PER_SUBJECT):
        s = site.liveness_start("001", purpose="payment", actor=TILL)
        assert site.liveness_submit(s.session_id, s.nonce, frames, times, actor=TILL).outcome == "spoof"
    with pytest.raises(LivenessAttempts, match="for this person"):
        site.liveness_start("001", purpose="payment", actor=OTHER_TILL)
    for _ in range(sessions.MAX_FAILED_PER_DEVICE - sessions.MAX_FAILED_PER_SUBJECT):
        s = site.liveness_start(purpose="payment", actor=TILL)
        site.liveness_submit(s.session_id, s.nonce, frames, times, actor=TILL)
    with pytest.raises(LivenessAttempts, match="from this terminal"):
        site.liveness_start(purpose="payment", actor=TILL)
    assert site.liveness_start(purpose="payment", actor=OTHER_TILL).session_id  # another till, no person named


@pytest.fixture
def live_site(site: Service) -> Service:
    """The clip's person enrolled for payment as 'c3' (a frame of the shared clip, in a throwaway deployment)."""
    site.grant_consent("c3", "payment", FORM, actor=ADMIN)
    site.enroll([frame_at(ANSWERS[0], 11.07)], "c3", purpose="payment", actor=ADMIN)
    return site


def _live(svc: Service, subject: str | None = "c3") -> str:
    name, start, challenge = ANSWERS
    started = svc.liveness_start(subject, purpose="payment", actor=TILL)
    assert tuple(started.challenge) == challenge
    frames, times = clip_jpegs(name, start, start + ANSWER_SECONDS)
    result = svc.liveness_submit(started.session_id, started.nonce, frames, times, actor=TILL)
    assert result.outcome == "live", result
    return started.session_id


@needs_clips
def test_a_live_session_lets_one_payment_through_then_is_used_up(live_site: Service) -> None:
    session = _live(live_site)
    probe = frame_at(ANSWERS[0], 11.2)
    paid = live_site.verify(probe, subject_id="c3", purpose="payment", actor=TILL, liveness_session=session)
    assert paid.decision.match
    with pytest.raises(LivenessRequired, match="already used"):
        live_site.verify(probe, subject_id="c3", purpose="payment", actor=TILL, liveness_session=session)


@needs_clips
def test_a_live_result_expires_and_serves_only_its_purpose_and_its_face(live_site: Service, clock: Clock) -> None:
    probe = frame_at(ANSWERS[0], 11.2)
    session = _live(live_site)
    with pytest.raises(LivenessRequired, match="another person"):  # the session named c3
        live_site.verify(london("001", "smiling"), subject_id="001", purpose="payment", actor=TILL,
                         liveness_session=session)
    session = _live(live_site, None)
    with pytest.raises(LivenessRequired, match="not the face"):  # a photo of someone else at the till
        live_site.verify(london("001", "smiling"), subject_id="001", purpose="payment", actor=TILL,
                         liveness_session=session)
    session = _live(live_site, None)
    live_site.settings.purposes["access-control"].liveness = "active"
    with pytest.raises(LivenessRequired, match="was for payment"):
        live_site.identify(probe, purpose="access-control", actor=TILL, liveness_session=session)
    clock.now += sessions.LIVE_TTL_S + 1
    with pytest.raises(LivenessRequired, match="expired"):
        live_site.verify(probe, subject_id="c3", purpose="payment", actor=TILL, liveness_session=session)


@needs_clips
def test_the_audit_and_the_database_hold_the_decision_never_a_frame(live_site: Service) -> None:
    name, start, _ = ANSWERS
    session = _live(live_site)
    frames, _ = clip_jpegs(name, start, start + ANSWER_SECONDS)
    entries = [e for e in live_site.privacy.audit.entries() if e.action.startswith("liveness.")]
    assert [(e.action, e.outcome) for e in entries] == [("liveness.start", "ok"), ("liveness.submit", "live")]
    assert entries[1].detail["challenge"] == list(ANSWERS[2]) and entries[1].detail["reasons"] == ["answered"]
    row = str(live_site.gallery.store.db.execute("SELECT * FROM liveness_sessions").fetchall())
    descriptor = live_site.engine.template(frame_at(name, start))[0]
    disk = b"".join(p.read_bytes() for p in live_site.settings.data_dir.rglob("*") if p.is_file())
    for frame in frames[::10]:
        assert frame[600:664] not in disk
    assert np.asarray(descriptor, "<f4").tobytes()[:16] not in disk
    audit = str([vars(e) for e in entries])
    assert "sealed" not in audit and len(audit) < 4000  # the challenge, the reasons, events and timings
    assert session in row
