"""Modes per purpose: payment decides with dlib + SFace fused, the rest with dlib, and every answer says which
mode and which false-match rate it used."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest

from facekeeper import config
from facekeeper.bundle.manifest import default_calibration_path, read_fusion
from facekeeper.config import Settings
from facekeeper.engine import Engine
from facekeeper.errors import ConfigError
from facekeeper.fusion import FACENET_MODEL_ID, SFACE_MODEL_ID, FusionCalibration
from facekeeper.matching import default_table, per_comparison_fmr
from facekeeper.service import NO_FUSION, NO_SIDE, Service, other_side_models
from tests.conftest import DATA, FORM, london
from tests.publisher_fixtures import licensed_fixture  # noqa: F401

pytestmark = pytest.mark.usefixtures("licensed")

DESCRIPTORS = DATA / "descriptors" / "london.npz"
PAYMENT_FMR = 1e-5


def shipped_fusion() -> FusionCalibration:
    fusion = read_fusion(default_calibration_path())
    assert fusion is not None, "data/calibration.json carries no fusion calibration"
    return fusion


@pytest.fixture
def site(deployment: Service) -> Service:
    """A deployment whose bundle carries the shipped fusion calibration (signed, once the vendor re-signs)."""
    deployment.bundle = dataclasses.replace(deployment.bundle, fusion=deployment.bundle.fusion or shipped_fusion())
    deployment.settings.purposes["payment"].liveness = "none"  # matching measured here; liveness in tests/liveness
    for person in ("001", "002", "003", "010"):
        deployment.grant_consent(person, "payment", FORM)
    return deployment


def test_payment_defaults_to_accurate_and_every_other_purpose_to_fast() -> None:
    purposes = Settings(data_dir=Path("d"), key_dir=Path("k")).purposes
    assert {name: p.mode for name, p in purposes.items()} == {
        "access-control": "fast", "payment": "accurate", "attendance": "fast", "model-improvement": "fast",
        "withdrawal": "accurate"}


def test_a_settings_file_written_before_modes_keeps_deciding_fast(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", key_dir=tmp_path / "keys")
    settings.data_dir.mkdir()
    settings.save()
    text = settings.config_path.read_text()
    assert 'mode = "accurate"' in text
    settings.config_path.write_text(text.replace('mode = "accurate"\n', "").replace('mode = "fast"\n', ""))
    assert config.load(settings.data_dir).purposes["payment"].mode == "fast"
    settings.config_path.write_text(text)
    assert config.load(settings.data_dir).purposes["payment"].mode == "accurate"


def test_an_unknown_mode_is_refused(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "d", key_dir=tmp_path / "k")
    settings.purposes["payment"].mode = "fastest"
    with pytest.raises(ConfigError, match="mode must be 'fast' or 'accurate'"):
        config.validate(settings)


def test_the_shipped_accurate_mode_is_dlib_fused_with_sface() -> None:
    assert shipped_fusion().side_models == (SFACE_MODEL_ID,)
    assert Settings(data_dir=Path("d"), key_dir=Path("k")).engine.side_models == [SFACE_MODEL_ID]


def test_accurate_enrollment_keeps_an_sface_template_per_photo_and_fast_enrollment_does_not(site: Service) -> None:
    paid = site.enroll([london("001"), london("001", "smiling")], "001", purpose="payment")
    door = site.enroll([london("004")], "004", purpose="access-control")
    assert site.gallery.templates(paid.pseudonym, SFACE_MODEL_ID).shape == (2, 128)
    assert site.gallery.templates(door.pseudonym, SFACE_MODEL_ID).shape == (0, 128)
    assert site.gallery.subject(paid.pseudonym).templates == 2
    held = site.export_subject("001")["face"]["templates_by_model"]  # the person sees both models' templates
    assert held == {"dlib-resnet-v1": 2, SFACE_MODEL_ID: 2}


def test_enroll_dir_for_an_accurate_purpose_stores_both_templates(site: Service, tmp_path: Path) -> None:
    for person in ("001", "002"):
        shutil.copytree(DATA / "london" / person, tmp_path / "folder" / person)
    summary = site.enroll_dir(tmp_path / "folder", workers=1, purpose="payment")
    assert summary.enrolled == {"001": 2, "002": 2}
    for person in ("001", "002"):
        assert site.gallery.templates(site.gallery.resolve(person), SFACE_MODEL_ID).shape == (2, 128)


def test_payment_verify_is_fused_at_the_purpose_fmr_with_the_shipped_threshold(site: Service) -> None:
    site.enroll([london("001")], "001", purpose="payment")
    same = site.verify(london("001", "smiling"), subject_id="001", purpose="payment")
    other = site.verify(london("002"), subject_id="001", purpose="payment")
    fusion = shipped_fusion()
    for result in (same, other):
        d = result.decision
        assert d.mode == "accurate" and d.target_fmr == PAYMENT_FMR and result.note is None
        assert d.threshold == pytest.approx(fusion.table.threshold(PAYMENT_FMR)[0])
        assert result.to_dict()["mode"] == "accurate" and result.to_dict()["target_fmr"] == PAYMENT_FMR
    assert same.decision.match and not other.decision.match
    assert same.decision.distance < same.decision.threshold < other.decision.distance


def test_two_photos_are_compared_in_the_purpose_mode(site: Service) -> None:
    fused = site.verify(london("010"), london("010", "smiling"), purpose="payment")
    fast = site.verify(london("010"), london("010", "smiling"), purpose="access-control")
    assert fused.decision.mode == "accurate" and fused.decision.match
    assert fast.decision.mode == "fast" and fast.decision.match
    assert fast.decision.threshold == pytest.approx(default_table("dlib-resnet-v1").threshold(1e-4)[0])


def test_a_subject_without_sface_templates_is_decided_fast_and_the_answer_says_why(site: Service) -> None:
    site.enroll([london("003")], "003", purpose="access-control")
    result = site.verify(london("003", "smiling"), subject_id="003", purpose="payment")
    assert result.decision.mode == "fast" and result.note == NO_SIDE and result.decision.match
    assert result.decision.threshold == pytest.approx(default_table("dlib-resnet-v1").threshold(PAYMENT_FMR)[0])


def test_without_a_signed_fusion_calibration_accurate_purposes_decide_fast_and_say_so(site: Service) -> None:
    site.bundle = dataclasses.replace(site.bundle, fusion=None)
    site.enroll([london("002")], "002", purpose="payment")
    assert site.gallery.templates(site.gallery.resolve("002"), SFACE_MODEL_ID).shape == (0, 128)
    result = site.verify(london("002", "smiling"), subject_id="002", purpose="payment")
    assert result.decision.mode == "fast" and result.note == NO_FUSION
    found = site.identify(london("002", "smiling"), purpose="payment")
    assert found.mode == "fast" and found.note == NO_FUSION


def test_a_fusion_for_other_side_models_than_the_engine_runs_is_not_used(site: Service) -> None:
    fusion = shipped_fusion()
    site.engine = Engine(dataclasses.replace(site.engine.settings, side_models=[FACENET_MODEL_ID]))
    assert fusion.side_models == (SFACE_MODEL_ID,) and site.fusion is None
    site.enroll([london("002")], "002", purpose="payment")
    assert site.gallery.templates(site.gallery.resolve("002"), FACENET_MODEL_ID).shape == (0, 512)
    result = site.verify(london("002", "smiling"), subject_id="002", purpose="payment")
    assert result.decision.mode == "fast" and result.note == other_side_models([SFACE_MODEL_ID], [FACENET_MODEL_ID])
    assert "set side_models = ['sface-2021dec-int8bq']" in result.note


def test_side_models_must_be_known_and_listed_once(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "d", key_dir=tmp_path / "k")
    for bad in ([], ["arcface-r100"], [SFACE_MODEL_ID, SFACE_MODEL_ID]):
        settings.engine.side_models = bad
        with pytest.raises(ConfigError, match="side_models"):
            config.validate(settings)
    settings.engine.side_models = [SFACE_MODEL_ID, FACENET_MODEL_ID]
    config.validate(settings)


def test_edge_descriptors_are_decided_fast(site: Service) -> None:
    site.enroll([london("001")], "001", purpose="payment")
    vec, _ = site.engine.template(london("001", "smiling"))
    result = site.verify_descriptor(vec, "001", purpose="payment", model_id="dlib-resnet-v1")
    assert result.decision.mode == "fast" and result.note is not None and "edge" in result.note
    assert site.identify_descriptor(vec, purpose="payment").mode == "fast"


# -- 1:N against 1,000 subjects built from real faces ----------------------------------------------


def gallery_of_1000(exclude: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """1,000 subjects: the London volunteers but ``exclude`` (their committed descriptors), then blends.

    A blend is the mean of two different real volunteers' descriptors, per model, re-normalised: a synthetic
    face between two real ones (see tests/data/descriptors/README.md). Blends sit closer to everyone than
    real strangers do, so they make a false match more likely, not less.
    """
    data = np.load(DESCRIPTORS)
    keep = (data["pose"] == "neutral") & (data["labels"] != exclude)
    labels, dlib, sface = data["labels"][keep], data["dlib"][keep], data["sface"][keep]
    subjects = {str(label): (dlib[i], sface[i]) for i, label in enumerate(labels)}
    rng = np.random.default_rng(1000)
    while len(subjects) < 1000:
        a, b = rng.choice(len(labels), 2, replace=False)
        d, f = dlib[a] + dlib[b], sface[a] + sface[b]
        subjects[f"blend-{labels[a]}-{labels[b]}"] = (d / np.linalg.norm(d), f / np.linalg.norm(f))
    return subjects


def enroll_descriptors(svc: Service, subjects: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """Consent for payment, then Service's per-person enrollment step with both templates (no photos)."""
    for subject_id, (dlib, sface) in subjects.items():
        svc.grant_consent(subject_id, "payment", FORM)
        with svc.privacy.operation(svc.actor, "enroll", "payment", operation="enroll") as op:
            pseudonym = svc.privacy.prepare_enroll(op, subject_id)
            svc.gallery.enroll(subject_id, [dlib], svc.engine.model_id, pseudonym=pseudonym,
                               within=svc.privacy.enroll_hook(op), side={SFACE_MODEL_ID: [sface]})


@pytest.fixture
def thousand(site: Service) -> Service:
    enroll_descriptors(site, gallery_of_1000(exclude="005"))
    return site


def test_a_stranger_against_1000_subjects_is_unknown_at_the_stated_fpir(thousand: Service) -> None:
    result = thousand.identify(london("005", "smiling"), purpose="payment")  # 005 is in no subject
    assert result.searched_subjects == 1000 and result.mode == "accurate"
    assert result.match is None and result.to_dict()["unknown"]
    assert result.target_fpir == 0.01 and result.target_fmr == per_comparison_fmr(0.01, 1000)
    threshold = shipped_fusion().table.threshold(result.target_fmr)[0]
    assert all(c.decision.mode == "accurate" and c.decision.threshold == pytest.approx(threshold)
               for c in result.candidates)
    assert all(not c.decision.match for c in result.candidates)


def test_an_enrolled_volunteer_is_found_among_1000(thousand: Service) -> None:
    result = thousand.identify(london("001", "smiling"), purpose="payment")
    assert result.match is not None and result.match.subject_id == "001"
    assert result.match.decision.mode == "accurate" and result.target_fmr == pytest.approx(1e-5)
