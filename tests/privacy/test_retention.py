"""Retention: the earliest of consent expiry, 3 years unused, the purpose's maximum; sweeps are safe."""

from __future__ import annotations

import threading

import pytest

from facekeeper.privacy.core import Operation
from tests.privacy.conftest import ADMIN, DAY, Site, people


def kinds(site: Site) -> list[tuple[str, str]]:
    return [(d.kind, d.reason) for d in site.privacy.plan()]


def test_nothing_is_due_while_consent_is_live_and_used(site: Site) -> None:
    site.consent("p0000")
    site.enroll("p0000", people(1)["p0000"])
    assert site.privacy.plan() == []
    assert site.privacy.sweep(ADMIN).total == 0


def test_expiry_ends_the_consent_and_erases_the_face(site: Site) -> None:
    site.privacy.grant(ADMIN, "p0000", "access-control", method="paper", evidence="f",
                       expires_at=site.clock() + 30 * DAY)
    pseudonym = site.enroll("p0000", people(1)["p0000"])
    site.clock.advance(29)
    assert site.privacy.plan() == []
    assert [d.kind for d in site.privacy.plan(horizon_days=2)] == ["consent", "face", "person"]
    site.clock.advance(2)
    report = site.privacy.sweep(ADMIN)
    assert [c["reason"] for c in report.consents_ended] == ["consent-expired"]
    assert report.faces_erased[0]["subject"] == pseudonym
    assert site.gallery.keystore.get(pseudonym) is None
    assert site.privacy.registry.find("p0000") is None


def test_three_years_without_a_match_erases_and_a_match_renews_the_clock(site: Site) -> None:
    for sid in ("used", "idle"):
        site.privacy.grant(ADMIN, sid, "access-control", method="paper", evidence="f",
                           expires_at=site.clock() + 3000 * DAY)
    site.settings.purposes["access-control"].max_retention_days = 5000
    data = people(2)
    used = site.enroll("used", data["p0000"])
    site.enroll("idle", data["p0001"])
    site.clock.advance(2 * 365)
    with site.privacy.operation(ADMIN, "identify", "access-control", operation="identify") as op:
        site.privacy.matched(op, used, "match", "fmr~1e-6")
    site.clock.advance(365 + 2)
    assert kinds(site) == [("consent", "unused"), ("face", "no-live-consent"), ("person", "nothing-left")]
    site.privacy.sweep(ADMIN)
    assert site.privacy.registry.find("idle") is None and site.privacy.registry.find("used") is not None
    site.clock.advance(2 * 365)
    assert [k for k, _ in kinds(site)] == ["consent", "face", "person"]


def test_the_purpose_maximum_caps_retention_whatever_the_use(site: Site) -> None:
    site.settings.purposes["payment"].max_retention_days = 90
    site.privacy.grant(ADMIN, "p0000", "payment", method="paper", evidence="f", expires_at=site.clock() + 900 * DAY)
    site.clock.advance(91)
    assert kinds(site)[0] == ("consent", "max-retention")


def test_a_match_yesterday_does_not_renew_the_maximum(site: Site) -> None:
    """Use renews the idle clock only: the maximum counts from the consent, so a subject enrolled longer
    ago than the maximum is swept even though it matched yesterday."""
    site.settings.purposes["access-control"].max_retention_days = 400
    site.privacy.grant(ADMIN, "p0000", "access-control", method="paper", evidence="f",
                       expires_at=site.clock() + 3000 * DAY)
    pseudonym = site.enroll("p0000", people(1)["p0000"])
    site.clock.advance(400)
    with site.privacy.operation(ADMIN, "identify", "access-control", operation="identify") as op:
        site.privacy.matched(op, pseudonym, "match", "fmr~1e-6")
    site.clock.advance(1)
    assert kinds(site) == [("consent", "max-retention"), ("face", "no-live-consent"), ("person", "nothing-left")]
    report = site.privacy.sweep(ADMIN)
    assert [f["subject"] for f in report.faces_erased] == [pseudonym]
    assert site.gallery.keystore.get(pseudonym) is None


def test_a_purpose_no_longer_declared_is_due_at_once(site: Site) -> None:
    site.consent("p0000", "attendance")
    del site.settings.purposes["attendance"]
    assert kinds(site)[0] == ("consent", "purpose-not-declared")


def test_a_face_without_any_live_consent_is_erased(site: Site) -> None:
    site.gallery.enroll("legacy", people(1)["p0000"], "dlib-resnet-v1")  # enrolled before privacy tracking
    assert kinds(site) == [("face", "no-live-consent")]
    assert len(site.privacy.sweep(ADMIN).faces_erased) == 1
    assert site.gallery.store.subject_count() == 0


def test_dry_run_changes_nothing(site: Site) -> None:
    site.privacy.grant(ADMIN, "p0000", "access-control", method="paper", evidence="f", expires_at=site.clock() + DAY)
    site.enroll("p0000", people(1)["p0000"])
    site.clock.advance(2)
    report = site.privacy.sweep(ADMIN, dry_run=True)
    assert report.total == 3 and site.gallery.store.template_count() == 2
    assert len(site.privacy.plan()) == 3


def test_sweep_is_idempotent(site: Site) -> None:
    data = people(5)
    for sid, vecs in data.items():
        site.privacy.grant(ADMIN, sid, "access-control", method="paper", evidence="f", expires_at=site.clock() + DAY)
        site.enroll(sid, vecs)
    site.clock.advance(2)
    assert len(site.privacy.sweep(ADMIN).faces_erased) == 5
    assert site.privacy.sweep(ADMIN).total == 0
    assert site.privacy.audit.verify().ok


def test_concurrent_sweeps_erase_each_subject_once(site: Site) -> None:
    data = people(12)
    for sid, vecs in data.items():
        site.privacy.grant(ADMIN, sid, "access-control", method="paper", evidence="f", expires_at=site.clock() + DAY)
        site.enroll(sid, vecs)
    site.clock.advance(2)
    others = [site.reopen() for _ in range(3)]
    reports = []
    errors: list[BaseException] = []

    def run(s: Site) -> None:
        try:
            reports.append(s.privacy.sweep(ADMIN))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(s,)) for s in others]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in others:
        s.close()
    assert not errors
    assert sum(len(r.faces_erased) for r in reports) == 12
    assert sum(len(r.consents_ended) for r in reports) == 12
    erase_entries = [e for e in site.privacy.audit.entries() if e.action == "subject.erase"]
    assert len(erase_entries) == 12 and len({e.subject for e in erase_entries}) == 12
    assert site.privacy.audit.verify().ok


def test_expired_credentials_are_dropped_but_the_holder_stays_while_consent_lives(site: Site) -> None:
    site.consent("p0000")
    site.privacy.issue_credential(ADMIN, "p0000", "access-control", "token", expires_at=site.clock() + DAY)
    site.clock.advance(2)
    assert kinds(site) == [("credential", "credential-expired")]
    site.privacy.sweep(ADMIN)
    assert site.privacy.registry.find("p0000") is not None


@pytest.mark.parametrize("outcome", ["no-match", "match"])
def test_only_a_successful_match_renews_the_idle_clock(site: Site, outcome: str) -> None:
    site.settings.purposes["access-control"].idle_days = 10
    site.consent("p0000")
    pseudonym = site.enroll("p0000", people(1)["p0000"])
    site.clock.advance(8)
    op = Operation(ADMIN, "verify", "access-control", site.settings.purposes["access-control"], site.clock())
    site.privacy.matched(op, pseudonym, outcome, None)
    site.clock.advance(3)
    assert bool(site.privacy.plan()) == (outcome == "no-match")
