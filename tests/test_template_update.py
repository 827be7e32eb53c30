"""Moving to a new model without photos: a strict dlib match adds the side model's template from its probe, only
where the purpose turns it on and the person's consent allows it; audited; erased with the person; reported."""

from __future__ import annotations

import dataclasses
import io
import sqlite3
from pathlib import Path

import pytest
from PIL import Image

from facekeeper import config
from facekeeper.config import EngineSettings, Settings
from facekeeper.errors import ConfigError, Forbidden, LivenessRequired
from facekeeper.fusion import SIDE_MODELS
from facekeeper.gallery.protect import SealError, open_sealed, vector_from_bytes
from facekeeper.privacy import Actor, ConsentForm
from facekeeper.service import NO_SIDE, Service
from tests.conftest import FORM, london
from tests.publisher_fixtures import licensed_fixture  # noqa: F401
from tests.test_modes import shipped_fusion

pytestmark = pytest.mark.usefixtures("licensed")

DLIB = "dlib-resnet-v1"
NEW = EngineSettings().side_models[0]  # the model accurate mode fuses with dlib: the one a dlib-only site lacks
DIM = SIDE_MODELS[NEW]
ALLOWS = ConsentForm("checkbox", "test kiosk", template_updates=True)
OPERATOR = Actor("desk-1", "operator")
DEVICE = Actor("till-1", "device")
AUDITOR = Actor("audit-1", "auditor")


@pytest.fixture
def site(deployment: Service) -> Service:
    """Payment fuses dlib with the new model (the shipped fusion); everyone was enrolled with dlib alone."""
    deployment.bundle = dataclasses.replace(deployment.bundle, fusion=deployment.bundle.fusion or shipped_fusion())
    deployment.settings.purposes["payment"].liveness = "none"  # matching measured here; liveness in tests/liveness
    for person in ("001", "003", "004", "013"):
        deployment.enroll([london(person)], person, purpose="access-control")
    return deployment


def on_match(svc: Service, purpose: str = "payment") -> None:
    svc.settings.purposes[purpose].template_update = "on-match"


def added_entries(svc: Service) -> list:  # type: ignore[type-arg]
    return [e for e in svc.privacy.audit.entries() if e.action == "template.add"]


def models(svc: Service, subject_id: str) -> set[str]:
    return svc.gallery.models_of(svc.gallery.resolve(subject_id))


def test_template_update_is_off_by_default_for_every_purpose_even_when_the_consent_allows_it(site: Service) -> None:
    assert {p.template_update for p in Settings(data_dir=Path("d"), key_dir=Path("k")).purposes.values()} == {"off"}
    site.grant_consent("003", "payment", ALLOWS)
    result = site.verify(london("003", "smiling"), subject_id="003", purpose="payment")
    assert result.decision.match and result.note == NO_SIDE and result.templates_added == ()
    assert models(site, "003") == {DLIB} and added_entries(site) == []


def test_a_consent_that_does_not_allow_it_gets_no_template(site: Service) -> None:
    on_match(site)
    site.grant_consent("003", "payment", FORM)  # the default form: no permission
    assert not site.consents("003")[-1].template_updates
    for _ in range(2):
        result = site.verify(london("003", "smiling"), subject_id="003", purpose="payment")
        assert result.decision.match and result.templates_added == ()
    assert models(site, "003") == {DLIB} and added_entries(site) == []


def test_a_strict_match_adds_the_template_once_audited_and_the_next_match_is_accurate(site: Service) -> None:
    on_match(site)
    site.grant_consent("003", "payment", ALLOWS)
    pseudonym = site.gallery.resolve("003")
    first = site.verify(london("003", "smiling"), subject_id="003", purpose="payment", actor=OPERATOR)
    assert first.decision.mode == "fast" and first.note == NO_SIDE and first.decision.match
    assert first.templates_added == (NEW,) and first.to_dict()["templates_added"] == [NEW]
    assert site.gallery.templates(pseudonym, NEW).shape == (1, DIM)
    assert site.gallery.subject(pseudonym).templates == 1  # still one photo's worth: the side template is no photo
    (entry,) = added_entries(site)
    assert (entry.actor, entry.purpose, entry.subject, entry.outcome) == ("desk-1", "payment", pseudonym, "ok")
    assert entry.bucket is not None and entry.bucket.startswith("fmr")
    assert entry.detail == {"model": NEW, "from": "verify",
                            "consent": site.consents("003")[-1].id}  # ids and words only, never a template
    again = site.verify(london("003", "smiling"), subject_id="003", purpose="payment", actor=OPERATOR)
    assert again.decision.mode == "accurate" and again.note is None and again.decision.match
    assert again.templates_added == () and len(added_entries(site)) == 1
    assert site.gallery.templates(pseudonym, NEW).shape == (1, DIM)  # no duplicate


def test_identify_adds_it_too_and_a_device_is_told_nothing_new(site: Service) -> None:
    on_match(site)
    site.grant_consent("004", "payment", ALLOWS)
    found = site.identify(london("004", "smiling"), purpose="payment", actor=DEVICE)
    assert found.match is not None and found.match.subject_id == "004"
    assert found.templates_added == () and "templates_added" not in found.to_dict()
    assert models(site, "004") == {DLIB, NEW}
    assert [e.detail["from"] for e in added_entries(site)] == ["identify"]
    site.grant_consent("003", "payment", ALLOWS)
    told = site.verify(london("003", "smiling"), subject_id="003", purpose="payment", actor=DEVICE)
    assert models(site, "003") == {DLIB, NEW} and told.templates_added == ()
    assert set(told.to_dict()) == {"against", "match", "mode", "target_fmr", "calibration", "calibration_note", "note"}


def test_a_match_looser_than_the_strict_fmr_adds_nothing(site: Service) -> None:
    """013's photos are 0.41 apart: a match at FMR 1e-3, not at the strict 1e-5."""
    on_match(site, "access-control")
    site.grant_consent("013", "access-control", ALLOWS)
    result = site.verify(london("013", "smiling"), subject_id="013", purpose="access-control", fmr=1e-3)
    assert result.decision.match and result.templates_added == ()
    assert models(site, "013") == {DLIB} and added_entries(site) == []
    site.settings.purposes["access-control"].template_update_fmr = 1e-3  # the same match, at a looser setting
    again = site.verify(london("013", "smiling"), subject_id="013", purpose="access-control", fmr=1e-3)
    assert again.templates_added == (NEW,)


def test_an_impostor_never_adds_a_template(site: Service) -> None:
    on_match(site)
    on_match(site, "access-control")
    for person in ("001", "003"):
        site.grant_consent(person, "payment", ALLOWS)
    site.grant_consent("001", "access-control", ALLOWS)
    assert not site.verify(london("002"), subject_id="001", purpose="payment").decision.match
    assert not site.verify(london("002", "smiling"), subject_id="001", purpose="access-control").decision.match
    assert site.identify(london("005"), purpose="payment").match is None  # nobody enrolled: unknown
    assert models(site, "001") == {DLIB} and models(site, "003") == {DLIB} and added_entries(site) == []


def test_a_probe_below_the_enrollment_quality_gate_adds_nothing(site: Service,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    on_match(site)
    site.grant_consent("003", "payment", ALLOWS)
    strict = dataclasses.replace(site.engine.quality_settings, min_sharpness=1e9)  # no photo passes enrollment
    monkeypatch.setattr(site.engine, "quality_settings", strict)
    result = site.verify(london("003", "smiling"), subject_id="003", purpose="payment")
    assert result.decision.match and result.templates_added == ()  # a probe is matched without the gate
    assert models(site, "003") == {DLIB} and added_entries(site) == []


def two_faces(front: Path, behind: Path) -> bytes:
    """A JPEG of ``front`` with a slightly smaller ``behind`` beside it: two faces the quick detection pass finds."""
    canvas = Image.new("RGB", (1100, 600), (128, 128, 128))
    canvas.paste(Image.open(front).convert("RGB"), (0, 0))
    canvas.paste(Image.open(behind).convert("RGB").resize((480, 480)), (610, 60))
    out = io.BytesIO()
    canvas.save(out, "JPEG", quality=95)
    return out.getvalue()


def test_a_probe_with_several_faces_is_answered_but_adds_nothing(site: Service) -> None:
    on_match(site)
    site.grant_consent("003", "payment", ALLOWS)
    photo = two_faces(london("003", "smiling"), london("002"))
    assert len(site.engine.detect(site.engine.decode(photo))) == 2
    result = site.verify(photo, subject_id="003", purpose="payment")
    assert result.decision.match and result.templates_added == ()  # the largest face, 003, matched strictly
    assert models(site, "003") == {DLIB} and added_entries(site) == []


def test_an_edge_descriptor_never_adds_a_template(site: Service) -> None:
    on_match(site, "access-control")
    site.grant_consent("003", "access-control", ALLOWS)
    vec, _ = site.engine.template(london("003", "smiling"))
    assert site.verify_descriptor(vec, "003", purpose="access-control", model_id=DLIB).decision.match
    assert models(site, "003") == {DLIB}


def test_erasure_destroys_the_added_template(site: Service) -> None:
    on_match(site)
    site.grant_consent("003", "payment", ALLOWS)
    pseudonym = site.gallery.resolve("003")
    site.verify(london("003", "smiling"), subject_id="003", purpose="payment")
    db = sqlite3.connect(site.settings.gallery_path)
    (tid, blob), = db.execute("SELECT id, sealed FROM templates WHERE pseudonym = ? AND model_id = ?",
                              (pseudonym, NEW)).fetchall()
    (wrapped,), = sqlite3.connect(site.settings.key_dir / "keystore.db").execute(
        "SELECT wrapped FROM subject_keys WHERE pseudonym = ?", (pseudonym,)).fetchall()
    dek = site.gallery.keystore.get(pseudonym)
    assert dek is not None
    aad = f"template|{tid}|{pseudonym}|{NEW}".encode()
    assert vector_from_bytes(open_sealed(dek, blob, aad)).shape == (DIM,)  # sealed under the subject key

    site.delete("003")

    assert db.execute("SELECT count(*) FROM templates WHERE pseudonym = ?", (pseudonym,)).fetchone()[0] == 0
    db.close()
    files = [f for d in (site.settings.data_dir, site.settings.key_dir) for f in d.rglob("*") if f.is_file()]
    assert [f.name for f in files for secret in (blob, dek, wrapped) if secret in f.read_bytes()] == []
    for key in [site.gallery.keystore.get(p) for p in site.gallery.keystore.all_pseudonyms()]:
        with pytest.raises(SealError):  # a backup's copy of the row opens with no key the site still holds
            open_sealed(key or b"\0" * 32, blob, aad)


def test_the_coverage_report_shows_who_lacks_the_new_template_before_and_after(site: Service) -> None:
    on_match(site)
    for person in ("003", "004"):
        site.grant_consent(person, "payment", ALLOWS if person == "003" else FORM)
    before = site.template_coverage("payment").to_dict()
    assert before["identified_by"] == "subject_id" and before["enrolled"] == 4
    (payment,) = before["purposes"]
    assert payment["purpose"] == "payment" and payment["template_update"] == "on-match" and payment["subjects"] == 2
    by_model = {m["model_id"]: m for m in payment["models"]}
    assert by_model[DLIB] == {"model_id": DLIB, "have": 2, "lack": 0, "update_allowed": 0, "lacking": []}
    assert by_model[NEW] == {"model_id": NEW, "have": 0, "lack": 2, "update_allowed": 1, "lacking": ["003", "004"]}

    site.verify(london("003", "smiling"), subject_id="003", purpose="payment")

    after = {m["model_id"]: m for m in site.template_coverage("payment").purposes[0].to_dict()["models"]}
    assert after[NEW] == {"model_id": NEW, "have": 1, "lack": 1, "update_allowed": 0, "lacking": ["004"]}
    everyone = site.template_coverage()
    assert [p.purpose for p in everyone.purposes] == sorted(site.settings.purposes)
    access = next(p for p in everyone.purposes if p.purpose == "access-control")
    assert {m.model_id: m.lack for m in access.models} == {DLIB: 0, NEW: 3}
    assert site.template_coverage("payment", limit=0).purposes[0].models[1].lacking == ()


def test_the_auditor_sees_pseudonyms_and_a_device_is_refused_and_audited(site: Service) -> None:
    site.grant_consent("004", "payment", FORM)
    seen = site.template_coverage("payment", actor=AUDITOR)
    assert seen.identified_by == "pseudonym"
    assert seen.purposes[0].models[1].lacking == (site.gallery.resolve("004"),)
    entry = site.privacy.audit.entries()[-1]
    assert (entry.actor, entry.action, entry.outcome) == ("audit-1", "templates.coverage", "ok")
    with pytest.raises(Forbidden):
        site.template_coverage(actor=DEVICE)
    entry = site.privacy.audit.entries()[-1]
    assert (entry.actor, entry.action, entry.outcome) == ("till-1", "templates.coverage", "refused:forbidden")
    with pytest.raises(Forbidden):
        site.template_coverage(actor=OPERATOR)


def test_the_consent_field_is_recorded_audited_and_exported(site: Service) -> None:
    site.grant_consent("003", "payment", ALLOWS)
    grant = [e for e in site.privacy.audit.entries() if e.action == "consent.grant"][-1]
    assert grant.detail["template_updates"] is True
    exported = site.export_subject("003")["consents"]
    assert [(c["purpose"], c["template_updates"]) for c in exported] == [("access-control", False), ("payment", True)]
    site.grant_consent("003", "payment", FORM)  # a renewal records what the new form says
    assert not site.privacy.ledger.allows_template_updates(site.gallery.resolve("003"), "payment", site.clock())


def test_a_bad_setting_is_refused(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "d", key_dir=tmp_path / "k")
    settings.purposes["payment"].template_update = "always"
    with pytest.raises(ConfigError, match="template_update"):
        config.validate(settings)
    settings.purposes["payment"].template_update = "on-match"
    settings.purposes["payment"].template_update_fmr = 1.5
    with pytest.raises(ConfigError, match="template_update_fmr"):
        config.validate(settings)


def test_a_gallery_file_from_before_the_field_is_upgraded_and_its_consents_allow_nothing(tmp_path: Path) -> None:
    svc = Service.init(tmp_path / "data", tmp_path / "keys")
    svc.set_notice(version="v1", controller="c", contact="c", retention="r", rights="r")
    svc.grant_consent("003", "access-control", FORM)
    path = svc.settings.gallery_path
    svc.close()
    db = sqlite3.connect(path)  # as privacy schema 1 left it
    db.execute("ALTER TABLE consents DROP COLUMN template_updates")
    db.execute("UPDATE meta SET value = '1' WHERE key = 'privacy_schema_version'")
    db.commit()
    db.close()
    svc = Service.open(tmp_path / "data")
    try:
        assert svc.gallery.store.get_meta("privacy_schema_version") == "2"
        assert [c.template_updates for c in svc.consents("003")] == [False]
        svc.grant_consent("004", "access-control", ALLOWS)
        assert svc.consents("004")[-1].template_updates
    finally:
        svc.close()


def test_the_gallery_adds_one_side_template_per_model_and_no_second(site: Service) -> None:
    """The check and the insert share the write transaction: a second add of the same model is refused."""
    pseudonym = site.gallery.resolve("003")
    vec = site.engine.describe([london("003")], enrollment=True, accurate=True)[0].side[NEW]
    assert site.gallery.add_side_template(pseudonym, NEW, vec)
    assert not site.gallery.add_side_template(pseudonym, NEW, vec)
    assert site.gallery.templates(pseudonym, NEW).shape == (1, DIM)


def test_the_consent_is_checked_again_in_the_transaction_that_adds(site: Service,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A consent changed between the first check and the write (withdrawn, renewed without permission) wins."""
    on_match(site)
    site.grant_consent("003", "payment", FORM)
    monkeypatch.setattr(site.privacy.ledger, "allows_template_updates", lambda *_: True)  # a stale first look
    result = site.verify(london("003", "smiling"), subject_id="003", purpose="payment")
    assert result.decision.match and result.templates_added == ()
    assert models(site, "003") == {DLIB} and added_entries(site) == []


def test_a_search_shares_the_strict_fmr_among_the_people_searched(site: Service) -> None:
    """Three people searched: dlib must match at 1e-5 / 3, below the measured table. Payment refuses to decide
    there, so nothing is added; a purpose that extrapolates adds at the tail fit's strict threshold."""
    on_match(site)
    site.grant_consent("003", "payment", ALLOWS)
    for person in ("001", "004"):
        site.grant_consent(person, "payment", FORM)
    found = site.identify(london("003", "smiling"), purpose="payment")
    assert found.match is not None and found.match.subject_id == "003" and found.searched_subjects == 3
    assert found.templates_added == () and models(site, "003") == {DLIB}
    site.settings.purposes["payment"].beyond_table = "extrapolate"
    assert site.identify(london("003", "smiling"), purpose="payment").templates_added == (NEW,)
    (entry,) = added_entries(site)
    assert entry.detail["from"] == "identify"


def test_a_purpose_that_needs_liveness_adds_nothing_without_a_live_session(site: Service) -> None:
    on_match(site)
    site.settings.purposes["payment"].liveness = "active"
    site.grant_consent("003", "payment", ALLOWS)
    with pytest.raises(LivenessRequired):
        site.verify(london("003", "smiling"), subject_id="003", purpose="payment", actor=DEVICE)
    assert models(site, "003") == {DLIB} and added_entries(site) == []
