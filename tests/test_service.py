"""The facade on real photos: enroll, verify, identify with honest "unknown", delete."""

from __future__ import annotations

from pathlib import Path

import pytest

from facekeeper.errors import (
    ConfigError,
    DeploymentKeyError,
    InvalidInput,
    MultipleFaces,
    NoFace,
    QualityRejected,
    UnknownSubject,
)
from facekeeper.matching import default_table
from facekeeper.service import Service
from tests.conftest import DATA, london
from tests.publisher_fixtures import licensed_fixture  # noqa: F401

pytestmark = pytest.mark.usefixtures("licensed")

ENROLLED = ("001", "002", "003", "004", "005")


@pytest.fixture
def site(deployment: Service) -> Service:
    for person in ENROLLED:
        deployment.enroll([london(person, "neutral")], person, name=f"Volunteer {person}")
    return deployment


def test_verify_genuine_pair_matches_and_impostor_does_not(deployment: Service) -> None:
    same = deployment.verify(london("010", "neutral"), london("010", "smiling"))
    other = deployment.verify(london("010", "neutral"), london("011", "neutral"))
    assert same.decision.match and not other.decision.match
    assert same.decision.distance < same.decision.threshold < other.decision.distance
    assert same.decision.threshold == pytest.approx(default_table("dlib-resnet-v1").threshold(1e-4)[0])


def test_verify_against_enrolled_subject(site: Service) -> None:
    assert site.verify(london("002", "smiling"), subject_id="002").decision.match
    assert not site.verify(london("003", "smiling"), subject_id="002").decision.match


def test_stricter_fmr_means_smaller_threshold(deployment: Service) -> None:
    loose = deployment.verify(london("012"), london("012", "smiling"), fmr=1e-2).decision
    strict = deployment.verify(london("012"), london("012", "smiling"), fmr=1e-5).decision
    assert strict.threshold < loose.threshold


def test_identify_names_the_enrolled_person(site: Service) -> None:
    for person in ENROLLED:
        r = site.identify(london(person, "smiling"))
        assert r.match is not None and r.match.subject_id == person
        assert r.match.name == f"Volunteer {person}"


def test_identify_answers_unknown_for_strangers(site: Service) -> None:
    for stranger in ("013", "014", "016", "017", "018"):
        r = site.identify(london(stranger, "neutral"))
        assert r.match is None
        assert r.candidates and all(not c.decision.match for c in r.candidates)


def test_identify_threshold_tightens_as_the_gallery_grows(site: Service) -> None:
    small = site.identify(london("001", "smiling")).candidates[0].decision.threshold
    site.enroll([london("019")], "019")
    site.enroll([london("020")], "020")
    bigger = site.identify(london("001", "smiling")).candidates[0].decision.threshold
    assert bigger < small


def test_several_photos_per_subject_score_by_best_template(deployment: Service) -> None:
    r = deployment.enroll([london("006"), london("006", "smiling")], "006")
    assert r.templates_added == 2
    assert deployment.subject("006").templates == 2
    deployment.enroll([london("007")], "007")
    assert deployment.identify(london("006", "smiling")).match.decision.distance < 0.01  # type: ignore[union-attr]


def test_delete_removes_subject_from_every_answer(site: Service) -> None:
    site.delete("003")
    with pytest.raises(UnknownSubject):
        site.subject("003")
    with pytest.raises(UnknownSubject):
        site.verify(london("003", "smiling"), subject_id="003")
    r = site.identify(london("003", "smiling"))
    assert r.match is None and all(c.subject_id != "003" for c in r.candidates)
    assert {s.subject_id for s in site.subjects()} == set(ENROLLED) - {"003"}


@pytest.mark.parametrize(
    ("image", "error"),
    [
        (b"not an image at all", "bad-image"),
        (DATA / "multi" / "obama_and_biden.jpg", "multiple-faces"),
    ],
)
def test_bad_enrollment_changes_nothing(site: Service, image: object, error: str) -> None:
    before = site.gallery.store.template_count()
    with pytest.raises(Exception) as info:
        site.enroll([image], "new-person")  # type: ignore[list-item]
    assert getattr(info.value, "code", None) == error
    assert site.gallery.store.template_count() == before
    assert site.gallery.find("new-person") is None


def test_one_bad_photo_in_a_set_stores_nothing(site: Service) -> None:
    import cv2
    import numpy as np

    blank = np.full((200, 200, 3), 90, np.uint8)
    ok, png = cv2.imencode(".png", blank)
    assert ok
    with pytest.raises(NoFace):
        site.enroll([london("021"), png.tobytes()], "021")
    assert site.gallery.find("021") is None


def test_probe_with_two_equal_faces_is_answered_and_enrollment_refused(site: Service) -> None:
    result = site.identify(DATA / "multi" / "obama_and_biden.jpg")  # the face [engine] face_choice picks
    assert result.match is None  # neither is enrolled: unknown, not an error
    with pytest.raises(MultipleFaces):
        site.enroll([DATA / "multi" / "obama_and_biden.jpg"], "001")


def test_blurred_enrollment_is_refused_with_reason(site: Service) -> None:
    import cv2

    blurred = cv2.GaussianBlur(site.engine.decode(london("021")), (0, 0), 6)
    _, jpg = cv2.imencode(".jpg", cv2.cvtColor(blurred, cv2.COLOR_RGB2BGR))
    with pytest.raises(QualityRejected) as info:
        site.enroll([jpg.tobytes()], "021")
    assert info.value.details["reason"] == "too-blurred"


def test_verify_needs_exactly_one_reference(site: Service) -> None:
    with pytest.raises(InvalidInput):
        site.verify(london("001"))
    with pytest.raises(InvalidInput):
        site.verify(london("001"), london("002"), subject_id="002")


def test_unknown_subject_is_a_clear_error(site: Service) -> None:
    with pytest.raises(UnknownSubject, match="subjects list"):
        site.verify(london("001"), subject_id="nobody")


def test_reopen_keeps_subjects_and_search(site: Service) -> None:
    data_dir = site.settings.data_dir
    site.close()
    with Service.open(data_dir, engine=site.engine) as again:
        assert again.identify(london("004", "smiling")).match.subject_id == "004"  # type: ignore[union-attr]


def test_init_refuses_key_dir_inside_data_dir(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="key_dir"):
        Service.init(tmp_path / "d", tmp_path / "d" / "keys")


def test_open_without_the_key_file_is_refused(site: Service) -> None:
    site.close()
    site.settings.key_path.unlink()
    with pytest.raises(DeploymentKeyError, match="no deployment key"):
        Service.open(site.settings.data_dir)


def test_an_answer_from_a_photo_with_several_faces_says_so_to_staff_but_not_to_a_device(
        deployment: Service) -> None:
    from facekeeper.privacy import Actor
    from tests.conftest import FORM

    deployment.grant_consent("biden", None, FORM)
    deployment.enroll([DATA / "people" / "joe_biden" / "1.jpg"], "biden")
    both = DATA / "multi" / "obama_and_biden.jpg"  # Biden's is the largest of its 3 faces
    verified = deployment.verify(both, subject_id="biden")
    assert verified.decision.match and verified.faces_in_photo == 3 and verified.to_dict()["faces_in_photo"] == 3
    identified = deployment.identify(both)
    assert identified.match is not None and identified.match.subject_id == "biden"
    assert identified.faces_in_photo == 3 and identified.to_dict()["faces_in_photo"] == 3
    alone = deployment.verify(DATA / "people" / "joe_biden" / "1.jpg", subject_id="biden")
    assert alone.faces_in_photo == 1
    gate = Actor("gate-1", "device")
    assert "faces_in_photo" not in deployment.verify(both, subject_id="biden", actor=gate).to_dict()
    assert "faces_in_photo" not in deployment.identify(both, actor=gate).to_dict()
