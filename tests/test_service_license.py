"""The facade under a license: only detect is free; enroll, verify and identify need the license's say-so."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from facekeeper.bundle.license import GRACE
from facekeeper.config import EngineSettings
from facekeeper.engine import Engine
from facekeeper.errors import LicenseError, ModelMismatch
from facekeeper.publisher.testing import EvaluationVendor, install_test_license
from facekeeper.service import Service
from tests.conftest import london
from tests.publisher_fixtures import evaluation_vendor_fixture  # noqa: F401


class OtherModel:
    """A different (fake) model: what a future bundle's embedder would be to today's gallery."""

    model_id = "dlib-resnet-v2"
    dim = 128

    def embed(self, chips: np.ndarray) -> np.ndarray:
        return np.ones((len(chips), self.dim), np.float32)


def test_without_a_license_only_detect_works(deployment: Service) -> None:
    assert len(deployment.detect(london("001"))) == 1
    for call in (lambda: deployment.enroll([london("001")], "001"),
                 lambda: deployment.verify(london("001"), london("001", "smiling")),
                 lambda: deployment.identify(london("001"))):
        with pytest.raises(LicenseError, match="only 'detect' works"):
            call()
    assert deployment.subjects() == []


def test_features_not_licensed_are_refused(deployment: Service, evaluation_vendor: EvaluationVendor) -> None:
    install_test_license(deployment, vendor=evaluation_vendor, features=["verify"])
    assert deployment.verify(london("001"), london("001", "smiling")).decision.match
    with pytest.raises(LicenseError, match="does not include 'identify'"):
        deployment.identify(london("001"))
    with pytest.raises(LicenseError, match="does not include 'enroll'"):
        deployment.enroll([london("001")], "001")


def test_subject_cap_applies_to_new_subjects_at_enroll(deployment: Service, evaluation_vendor: EvaluationVendor,
                                                       tmp_path: Path) -> None:
    install_test_license(deployment, vendor=evaluation_vendor, max_subjects=2)
    deployment.enroll([london("001")], "001")
    deployment.enroll([london("002")], "002")
    with pytest.raises(LicenseError, match="allows 2 subjects"):
        deployment.enroll([london("003")], "003")
    deployment.enroll([london("002", "smiling")], "002")  # another photo of an enrolled subject
    assert deployment.subject("002").templates == 2
    root = tmp_path / "people"
    for person in ("001", "004"):
        shutil.copytree(london(person).parent, root / person)
    with pytest.raises(LicenseError, match="would add 1"):
        deployment.enroll_dir(root)
    assert {s.subject_id for s in deployment.subjects()} == {"001", "002"}
    deployment.delete("002")  # erasure is never blocked by a license, and frees a place
    assert deployment.enroll_dir(root).enrolled == {"001": 2, "004": 2}


def test_expired_license_stops_licensed_calls_after_grace(deployment: Service,
                                                          evaluation_vendor: EvaluationVendor) -> None:
    now = datetime.now(UTC)
    install_test_license(deployment, vendor=evaluation_vendor, issued_at=now - timedelta(days=40),
                         expires_at=now - timedelta(days=1))
    deployment.verify(london("001"), london("001", "smiling"))  # within the grace period
    deployment.license.clock = lambda: (now + GRACE).timestamp()
    with pytest.raises(LicenseError, match="grace period ended"):
        deployment.verify(london("001"), london("001", "smiling"))


def test_clock_rollback_is_recorded_in_the_gallery(deployment: Service, evaluation_vendor: EvaluationVendor) -> None:
    install_test_license(deployment, vendor=evaluation_vendor)
    later = datetime.now(UTC) + timedelta(days=5)
    deployment.license.clock = later.timestamp
    deployment.verify(london("001"), london("001", "smiling"))
    data_dir = deployment.settings.data_dir
    deployment.close()
    with Service.open(data_dir, engine=deployment.engine) as again, \
            pytest.raises(LicenseError, match="behind the latest time"):  # a new process sees the same record
        again.verify(london("001"), london("001", "smiling"))


def test_a_gallery_refuses_templates_of_another_model_and_says_to_re_enroll(
        deployment: Service, evaluation_vendor: EvaluationVendor) -> None:
    install_test_license(deployment, vendor=evaluation_vendor)
    deployment.enroll([london("001")], "001")
    assert deployment.gallery.store.model_ids() == {deployment.bundle.embedders[0].model_id}
    deployment.engine = Engine(EngineSettings(), embedder=OtherModel())
    with pytest.raises(ModelMismatch, match="enroll everyone again"):
        deployment.identify(london("001", "smiling"))
    with pytest.raises(ModelMismatch, match="re-enroll"):
        deployment.verify(london("001", "smiling"), subject_id="001")
    with pytest.raises(ModelMismatch, match="enroll everyone again"):
        deployment.enroll([london("002")], "002")
