"""Two clients enrolling the same new person at once: both succeed, as one subject with both photos.

Each enrollment checks whether the subject exists, then creates its key and rows. The barrier holds both
at key creation, where, before creation was serialised, both had already decided the subject was new:
the second key (or row) broke a uniqueness rule and its caller got a 500.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from facekeeper.engine import Engine
from facekeeper.service import EnrollResult, Service
from tests.conftest import london
from tests.publisher_fixtures import licensed_fixture  # noqa: F401

pytestmark = pytest.mark.usefixtures("licensed")
SUBJECT = "new-person"  # consented by ``ready``, never enrolled


def held_at_key_creation(services: list[Service], monkeypatch: pytest.MonkeyPatch) -> None:
    """Each service waits for the other at the moment it creates a subject key (or gives up after 3 s:
    once creation is serialised only one of them can be there)."""
    barrier = threading.Barrier(len(services), timeout=3)
    for svc in services:
        create: Callable[[str], bytes] = svc.gallery.keystore.create

        def waiting(pseudonym: str, create: Callable[[str], bytes] = create) -> bytes:
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait()
            return create(pseudonym)

        monkeypatch.setattr(svc.gallery.keystore, "create", waiting)


def enroll_at_once(services: list[Service], poses: list[str]) -> tuple[list[EnrollResult], list[BaseException]]:
    results: list[EnrollResult] = []
    errors: list[BaseException] = []

    def enroll(svc: Service, pose: str) -> None:
        try:
            results.append(svc.enroll([london("001", pose)], SUBJECT))
        except BaseException as exc:  # whatever a thread raised is the test's answer
            errors.append(exc)

    threads = [threading.Thread(target=enroll, args=pair) for pair in zip(services, poses, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, errors


def test_two_services_enrolling_the_same_new_subject_at_once_both_succeed(
        deployment: Service, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    other = Service.open(Path(deployment.settings.data_dir), engine=engine)
    try:
        held_at_key_creation([deployment, other], monkeypatch)
        results, errors = enroll_at_once([deployment, other], ["neutral", "smiling"])
        assert errors == []
        assert len({r.pseudonym for r in results}) == 1
        for svc in (deployment, other):
            svc.gallery.refresh()
            (subject,) = [s for s in svc.subjects() if s.subject_id == SUBJECT]
            assert subject.templates == 2
        assert other.verify(london("001", "smiling"), subject_id=SUBJECT).to_dict()["match"]
    finally:
        other.close()
