"""Consent is a precondition per subject and purpose; withdrawal takes effect at once and erases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facekeeper.errors import ConsentRequired, InvalidInput, NoticeIncomplete, PurposeError
from facekeeper.privacy import Guardian
from tests.privacy.conftest import ADMIN, DAY, Site, make_site, people


def test_enrollment_without_consent_is_refused_and_stores_nothing(site: Site) -> None:
    with pytest.raises(ConsentRequired):
        site.enroll("p0000", people(1)["p0000"])
    assert site.gallery.store.template_count() == 0
    assert site.gallery.keystore.all_pseudonyms() == []
    assert site.privacy.audit.entries()[-1].outcome == "refused:consent-required"


def test_consent_for_one_purpose_does_not_allow_another(site: Site) -> None:
    site.consent("p0000", "payment")
    with pytest.raises(ConsentRequired):
        site.enroll("p0000", people(1)["p0000"], "access-control")
    site.enroll("p0000", people(1)["p0000"], "payment")
    assert site.gallery.store.template_count() == 2


def test_unknown_purpose_and_disallowed_operation_are_refused(site: Site) -> None:
    with pytest.raises(PurposeError):
        site.consent("p0000", "marketing")
    site.consent("p0000", "model-improvement")
    with site.privacy.operation(ADMIN, "identify", "model-improvement") as op:
        assert op.purpose == "model-improvement"  # the purpose exists ...
    with pytest.raises(PurposeError), site.privacy.operation(ADMIN, "identify", "model-improvement",
                                                             operation="identify"):
        pass  # ... but it allows no matching


def test_incomplete_notice_refuses_consent_and_enrollment(tmp_path: Path) -> None:
    s = make_site(tmp_path, notice=False)
    try:
        with pytest.raises(NoticeIncomplete) as exc:
            s.consent("p0000")
        assert "notice.controller" in exc.value.details["missing"]
        s.settings.notice.controller = "Example Site Ltd"
        with pytest.raises(NoticeIncomplete) as exc:
            s.enroll("p0000", people(1)["p0000"])
        assert "notice.controller" not in exc.value.details["missing"]
        assert "notice.rights" in exc.value.details["missing"]
    finally:
        s.close()


def test_a_declared_purpose_without_a_description_is_an_incomplete_notice(site: Site) -> None:
    from facekeeper.config import PurposeSettings

    site.settings.purposes["visitors"] = PurposeSettings()
    with pytest.raises(NoticeIncomplete) as exc:
        site.consent("p0000", "visitors")
    assert exc.value.details["missing"] == ["purposes.visitors.description"]


def test_consent_records_notice_version_collector_method_and_expiry(site: Site) -> None:
    c = site.privacy.grant(ADMIN, "p0000", "attendance", method="signature", evidence="tablet sig 77",
                           collected_by="reception-2", expires_at=site.clock() + 30 * DAY)
    assert (c.notice_version, c.collected_by, c.method) == ("2027-01", "reception-2", "signature")
    assert c.expires_at - c.granted_at == 30 * DAY
    assert site.privacy.ledger.evidence(c) == {"evidence": "tablet sig 77", "guardian": None}
    with pytest.raises(InvalidInput):
        site.privacy.grant(ADMIN, "p0001", "attendance", method="nod", evidence="x")
    with pytest.raises(InvalidInput):
        site.privacy.grant(ADMIN, "p0001", "attendance", method="paper", evidence=" ")


def test_a_minor_needs_a_guardian_record_which_is_sealed(site: Site) -> None:
    with pytest.raises(ConsentRequired):
        site.consent("kid-7731", minor=True)
    guardian = Guardian("mother", "form G-17, ID checked", name="Grace Hopper")
    c = site.privacy.grant(ADMIN, "kid-7731", "access-control", method="paper", evidence="form 17", minor=True,
                           guardian=guardian)
    assert c.minor and site.privacy.ledger.evidence(c)["guardian"]["relationship"] == "mother"
    site.backend.flush(site.settings)
    for path in site.backend.files(site.settings):
        raw = path.read_bytes()
        # a distinctive id: PostgreSQL's WAL holds catalog words such as "tokid"
        assert b"Grace Hopper" not in raw and b"G-17" not in raw and b"kid-7731" not in raw, path


@pytest.mark.parametrize("guardian_age, age, needs_guardian", [
    (14, 13, True), (14, 14, False), (16, 15, True), (16, 16, False), (0, 5, False)])
def test_a_stated_age_under_the_configured_guardian_age_needs_a_guardian(
        site: Site, guardian_age: int, age: int, needs_guardian: bool) -> None:
    site.settings.privacy.guardian_age = guardian_age
    if needs_guardian:
        with pytest.raises(ConsentRequired, match="guardian"):
            site.privacy.grant(ADMIN, "kid-1", "access-control", method="paper", evidence="form 1", age=age)
        assert site.privacy.ledger.of_subject(site.privacy.registry.find("kid-1") or "none") == []
        c = site.privacy.grant(ADMIN, "kid-1", "access-control", method="paper", evidence="form 1", age=age,
                               guardian=Guardian("father", "form G-2"))
    else:
        c = site.privacy.grant(ADMIN, "kid-1", "access-control", method="paper", evidence="form 1", age=age)
    assert c.minor is needs_guardian
    entry = site.privacy.audit.entries()[-1]
    assert entry.action == "consent.grant" and entry.detail["minor"] is needs_guardian


def test_the_minor_flag_still_needs_a_guardian_whatever_the_age_and_a_silly_age_is_refused(site: Site) -> None:
    with pytest.raises(ConsentRequired):
        site.privacy.grant(ADMIN, "kid-2", "access-control", method="paper", evidence="f", minor=True, age=30)
    with pytest.raises(InvalidInput):
        site.privacy.grant(ADMIN, "kid-2", "access-control", method="paper", evidence="f", age=-1)


def test_renewing_a_consent_ends_the_previous_one(site: Site) -> None:
    first = site.privacy.grant(ADMIN, "p0000", "payment", method="paper", evidence="v1")
    site.clock.advance(10)
    second = site.privacy.grant(ADMIN, "p0000", "payment", method="checkbox", evidence="v2")
    assert site.privacy.ledger.get(first.id).end_reason == "renewed"
    assert site.privacy.ledger.live(second.pseudonym, "payment", site.clock()) == second
    assert first.pseudonym == second.pseudonym


def test_withdrawal_stops_use_for_that_purpose_at_once_and_keeps_other_purposes(site: Site) -> None:
    data = people(3)
    for sid in data:
        site.consent(sid, "access-control")
        site.consent(sid, "payment")
        site.enroll(sid, data[sid])
    assert "p0001" in site.search(data["p0001"][0], "payment")
    r = site.privacy.withdraw(ADMIN, "p0001", "payment")
    assert r.consent is not None and r.remaining == ["access-control"] and r.receipt is None
    assert "p0001" not in site.search(data["p0001"][0], "payment")
    assert site.search(data["p0001"][0], "access-control")[0] == "p0001"
    assert site.gallery.store.template_count() == 6


def test_withdrawing_the_last_purpose_crypto_shreds_the_templates(site: Site) -> None:
    data = people(2)
    for sid in data:
        site.consent(sid)
        site.enroll(sid, data[sid])
    pseudonym = site.gallery.resolve("p0000")
    r = site.privacy.withdraw(ADMIN, "p0000", "access-control")
    assert r.receipt is not None and r.receipt["erased"]["templates"] == 2
    assert site.gallery.keystore.get(pseudonym) is None
    assert not site.gallery.store.templates_of(pseudonym)
    assert site.privacy.registry.find("p0000") is None  # nothing else held: the person is forgotten
    assert "p0000" not in site.search(data["p0000"][0], "access-control")
    actions = [e.action for e in site.privacy.audit.entries(subject=pseudonym)]
    assert actions[-2:] == ["consent.withdraw", "subject.erase"]


def test_withdrawal_with_nothing_live_is_a_harmless_no_op(site: Site) -> None:
    site.consent("p0000", "payment")
    r = site.privacy.withdraw(ADMIN, "p0000", "attendance")
    assert r.consent is None and r.remaining == ["payment"]


def test_an_expired_consent_no_longer_allows_enrollment(site: Site) -> None:
    site.privacy.grant(ADMIN, "p0000", "access-control", method="paper", evidence="f",
                       expires_at=site.clock() + 5 * DAY)
    site.clock.advance(6)
    with pytest.raises(ConsentRequired):
        site.enroll("p0000", people(1)["p0000"])


def test_consent_withdrawn_between_check_and_write_rolls_the_enrollment_back(site: Site) -> None:
    site.consent("p0000")
    vecs = people(1)["p0000"]
    with site.privacy.operation(ADMIN, "enroll", "access-control", operation="enroll") as op:
        pseudonym = site.privacy.prepare_enroll(op, "p0000")
        other = site.reopen()  # another process withdraws while this one computes descriptors
        other.privacy.withdraw(ADMIN, "p0000", "access-control")
        other.close()
        with pytest.raises(ConsentRequired):
            site.gallery.enroll("p0000", vecs, "dlib-resnet-v1", pseudonym=pseudonym,
                                within=site.privacy.enroll_hook(op))
        op.audited = True
    assert site.gallery.store.template_count() == 0
    assert site.gallery.keystore.get(pseudonym) is None


def test_consent_and_enrollment_keep_one_pseudonym(site: Site) -> None:
    site.consent("p0000")
    before = site.privacy.registry.find("p0000")
    assert site.enroll("p0000", np.asarray(people(1)["p0000"])) == before == site.gallery.resolve("p0000")
