"""What each role learns from verify and identify, in-process (the CLI, HTTP and SDK serialise these results).

A device gets a decision: match or not, and for 1:N the matched subject's id. Admins and operators get
scores, quantised, and the closest candidates. Consent is checked before a probe is decoded.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from facekeeper.errors import ConsentRequired, UnknownSubject
from facekeeper.privacy import Actor
from facekeeper.service import Service, Verdict
from tests.conftest import london
from tests.publisher_fixtures import licensed_fixture  # noqa: F401

pytestmark = pytest.mark.usefixtures("licensed")

GATE = Actor("gate-7", "device")
OPERATOR = Actor("desk-1", "operator")


@pytest.fixture
def site(deployment: Service) -> Service:
    for person in ("001", "002", "003"):
        deployment.enroll([london(person)], person, name=f"Volunteer {person}")
    return deployment


def test_a_device_is_told_the_decision_and_nothing_else(site: Service) -> None:
    checked = site.verify(london("001", "smiling"), subject_id="001", actor=GATE)
    assert isinstance(checked.decision, Verdict) and checked.decision.match
    assert set(checked.to_dict()) == {"against", "match", "mode", "target_fmr", "note", "calibration",
                                      "calibration_note"}
    found = site.identify(london("002", "smiling"), k=3, actor=GATE)
    assert found.match is not None and found.match.subject_id == "002"
    assert (found.match.name, found.match.pseudonym, found.searched_subjects) == (None, None, None)
    assert found.candidates == []
    assert found.to_dict() == {"match": {"subject_id": "002"}, "unknown": False, "mode": "fast",
                               "target_fpir": found.target_fpir, "note": None, "calibration": "measured",
                               "calibration_note": None}
    stranger = site.identify(london("009"), k=3, actor=GATE)
    assert stranger.match is None and stranger.to_dict()["unknown"] and "candidates" not in stranger.to_dict()


def test_operators_see_the_closest_candidates_with_quantised_scores(site: Service) -> None:
    found = site.identify(london("002", "smiling"), k=3, actor=OPERATOR)
    assert found.candidates[0].subject_id == "002" and len(found.candidates) == 3
    assert found.candidates[0].name == "Volunteer 002" and found.searched_subjects == 3
    for c in found.to_dict()["candidates"]:
        assert c["distance"] == round(c["distance"], 2) and c["similarity"] == round(c["similarity"], 2)
        assert np.log10(c["estimated_fmr"]) == round(np.log10(c["estimated_fmr"]))
    checked = site.verify(london("003", "smiling"), subject_id="003", actor=OPERATOR).decision
    assert not isinstance(checked, Verdict) and checked.distance == round(checked.distance, 2)


def test_verify_checks_consent_before_decoding_the_probe(site: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    """Subject 002 is enrolled for access-control only; asked for payment, the probe must not be decoded (it
    is not even an image), and a device must not learn that 002 exists."""
    decoded: list[Any] = []
    decode = site.engine.decode
    monkeypatch.setattr(site.engine, "decode", lambda *a, **kw: decoded.append(a) or decode(*a, **kw))
    with pytest.raises(ConsentRequired):
        site.verify(b"not an image", subject_id="002", purpose="payment")  # the admin may know why
    with pytest.raises(UnknownSubject) as hidden:
        site.verify(b"not an image", subject_id="002", purpose="payment", actor=GATE)
    with pytest.raises(UnknownSubject) as unknown:
        site.verify(b"not an image", subject_id="nobody", purpose="payment", actor=GATE)
    assert decoded == []
    assert hidden.value.message.replace("002", "X") == unknown.value.message.replace("nobody", "X")
    assert (hidden.value.code, hidden.value.http_status, hidden.value.details) == (
        unknown.value.code, unknown.value.http_status, unknown.value.details)
    admin, masked, nobody = site.privacy.audit.entries()[-3:]
    assert (admin.action, admin.outcome) == ("verify", "refused:consent-required")
    assert (masked.actor, masked.action, masked.outcome) == ("gate-7", "verify", "refused:consent-required")
    assert (nobody.actor, nobody.action, nobody.outcome) == ("gate-7", "verify", "failed:unknown-subject")
    assert masked.subject == site.gallery.resolve("002") and nobody.subject is None  # the auditor sees who it was
