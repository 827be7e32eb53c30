"""The offline license: every way of getting more than was sold is a clear refusal that says what to do."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from facekeeper.bundle.license import (
    CLOCK_TOLERANCE,
    GRACE,
    META_CLOCK,
    Licensing,
)
from facekeeper.bundle.trust import ENV_EVALUATION_KEY, EVALUATION_MAX_SUBJECTS
from facekeeper.errors import LicenseError
from facekeeper.publisher.testing import EvaluationVendor

DEPLOYMENT = "d" * 32
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


class Meta:
    """Stands in for the gallery store's meta table."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def get_meta(self, key: str) -> str | None:
        return self.values.get(key)

    def set_meta(self, key: str, value: str) -> None:
        self.values[key] = value


class Clock:
    def __init__(self, when: datetime) -> None:
        self.now = when.timestamp()

    def __call__(self) -> float:
        return self.now

    def set(self, when: datetime) -> None:
        self.now = when.timestamp()


@pytest.fixture(scope="module")
def vendor(tmp_path_factory: pytest.TempPathFactory) -> EvaluationVendor:
    return EvaluationVendor(tmp_path_factory.mktemp("vendor"))


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def licensing(tmp_path: Path, vendor: EvaluationVendor, clock: Clock) -> Licensing:
    """A deployment that trusts ``vendor`` as if it were the real vendor (not an evaluation key)."""
    return Licensing(tmp_path, DEPLOYMENT, Meta(), keys=[vendor.trusted_key(evaluation=False)], clock=clock)


def issue(vendor: EvaluationVendor, **terms: object) -> bytes:
    defaults: dict[str, object] = {"issued_at": NOW - timedelta(days=1), "expires_at": NOW + timedelta(days=30),
                                   "max_subjects": 1000}
    deployment = str(terms.pop("deployment_id", DEPLOYMENT))
    return vendor.issue(deployment, **{**defaults, **terms})  # type: ignore[arg-type]


def test_a_valid_license_grants_its_features(licensing: Licensing, vendor: EvaluationVendor) -> None:
    licensing.install(issue(vendor, features=["verify", "identify"]))
    assert licensing.require("verify", subjects=0).licensee == "Test licensee"
    licensing.require("identify", subjects=0)
    with pytest.raises(LicenseError, match="does not include 'enroll'"):
        licensing.require("enroll", subjects=0, new_subjects=1)


def test_without_a_license_the_refusal_names_the_deployment(licensing: Licensing) -> None:
    with pytest.raises(LicenseError, match=rf"no license is installed.*{DEPLOYMENT}.*license install"):
        licensing.require("verify", subjects=0)
    assert licensing.status(0).state == "missing"


def test_an_edited_license_is_refused(licensing: Licensing, vendor: EvaluationVendor) -> None:
    doc = json.loads(issue(vendor, max_subjects=10))
    doc["license"]["max_subjects"] = 1_000_000
    with pytest.raises(LicenseError, match="edited after the vendor signed it"):
        licensing.install(json.dumps(doc).encode())
    licensing.install(issue(vendor, max_subjects=10))
    licensing.path.write_text(licensing.path.read_text().replace('"max_subjects": 10', '"max_subjects": 99'))
    with pytest.raises(LicenseError, match="edited"):
        licensing.require("verify", subjects=0)


def test_a_license_signed_by_anyone_else_is_refused(licensing: Licensing, tmp_path: Path) -> None:
    forger = EvaluationVendor(tmp_path / "forger")
    with pytest.raises(LicenseError, match="does not trust"):
        licensing.install(issue(forger))


def test_a_license_for_another_deployment_is_refused(licensing: Licensing, vendor: EvaluationVendor) -> None:
    with pytest.raises(LicenseError, match="cannot move between deployments"):
        licensing.install(issue(vendor, deployment_id="e" * 32))
    licensing.install(issue(vendor))
    moved = Licensing(licensing.path.parent, "f" * 32, Meta(), keys=licensing.keys, clock=licensing.clock)
    with pytest.raises(LicenseError, match=f"not this one \\({'f' * 32}\\)"):
        moved.require("verify", subjects=0)


def test_an_expired_license_works_through_its_grace_period_then_stops(
        licensing: Licensing, vendor: EvaluationVendor, clock: Clock) -> None:
    expires = NOW + timedelta(days=10)
    licensing.install(issue(vendor, expires_at=expires))
    clock.set(expires + GRACE - timedelta(hours=1))
    licensing.require("identify", subjects=0)
    assert licensing.status(0).state == "grace"
    clock.set(expires + GRACE + timedelta(minutes=1))
    with pytest.raises(LicenseError, match=r"grace period ended.*license install"):
        licensing.require("identify", subjects=0)
    assert licensing.status(0).state == "refused"


def test_installing_a_license_past_its_grace_is_refused(licensing: Licensing, vendor: EvaluationVendor) -> None:
    with pytest.raises(LicenseError, match="expired"):
        licensing.install(issue(vendor, issued_at=NOW - timedelta(days=60), expires_at=NOW - GRACE - timedelta(days=1)))
    assert not licensing.path.exists()


def test_the_subject_cap_stops_new_subjects_only(licensing: Licensing, vendor: EvaluationVendor) -> None:
    licensing.install(issue(vendor, max_subjects=3))
    licensing.require("enroll", subjects=2, new_subjects=1)
    with pytest.raises(LicenseError, match="allows 3 subjects; the gallery holds 3"):
        licensing.require("enroll", subjects=3, new_subjects=1)
    licensing.require("enroll", subjects=3, new_subjects=0)  # more photos of someone already enrolled
    with pytest.raises(LicenseError, match="would add 2"):
        licensing.require("enroll", subjects=2, new_subjects=2)


def test_turning_the_clock_back_beyond_the_tolerance_is_refused(
        licensing: Licensing, vendor: EvaluationVendor, clock: Clock) -> None:
    licensing.install(issue(vendor, expires_at=NOW + timedelta(days=30)))
    clock.set(NOW + timedelta(days=40))  # past expiry, in grace: the deployment has seen this time
    licensing.require("verify", subjects=0)
    clock.set(NOW + timedelta(days=40) - CLOCK_TOLERANCE + timedelta(hours=1))  # a small correction is fine
    licensing.require("verify", subjects=0)
    clock.set(NOW + timedelta(days=20))  # back inside the validity period
    with pytest.raises(LicenseError, match="behind the latest time this deployment has seen"):
        licensing.require("verify", subjects=0)


def test_a_clock_before_the_issue_date_is_refused(licensing: Licensing, vendor: EvaluationVendor,
                                                  clock: Clock) -> None:
    licensing.install(issue(vendor))
    clock.set(NOW - timedelta(days=30))
    with pytest.raises(LicenseError, match="set the clock right"):
        licensing.require("verify", subjects=0)


def test_a_newer_license_recovers_from_a_clock_once_set_far_ahead(
        licensing: Licensing, vendor: EvaluationVendor, clock: Clock) -> None:
    licensing.install(issue(vendor))
    clock.set(NOW + timedelta(days=365))
    with pytest.raises(LicenseError):
        licensing.require("verify", subjects=0)  # expired for the far-ahead clock, but the time was recorded
    assert float(licensing.meta.get_meta(META_CLOCK) or 0) == pytest.approx((NOW + timedelta(days=365)).timestamp())
    clock.set(NOW + timedelta(days=2))
    with pytest.raises(LicenseError, match="behind"):
        licensing.require("verify", subjects=0)
    with pytest.raises(LicenseError, match="behind"):
        licensing.install(issue(vendor))  # re-installing the same license resets nothing
    licensing.install(issue(vendor, issued_at=NOW + timedelta(days=1)))
    licensing.require("verify", subjects=0)


def test_evaluation_licenses_need_the_environment_and_are_capped(
        tmp_path: Path, vendor: EvaluationVendor, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    licensing = Licensing(tmp_path, DEPLOYMENT, Meta(), clock=clock)  # the production trust anchor
    monkeypatch.delenv(ENV_EVALUATION_KEY, raising=False)
    with pytest.raises(LicenseError, match="does not trust"):
        licensing.install(issue(vendor, max_subjects=100_000))
    monkeypatch.setenv(ENV_EVALUATION_KEY, str(vendor.public_path))
    lic = licensing.install(issue(vendor, max_subjects=100_000))
    assert lic.evaluation and lic.subject_cap == EVALUATION_MAX_SUBJECTS
    with pytest.raises(LicenseError, match=f"evaluation license allows {EVALUATION_MAX_SUBJECTS} subjects"):
        licensing.require("enroll", subjects=EVALUATION_MAX_SUBJECTS, new_subjects=1)


def test_a_file_that_is_not_a_license_is_refused(licensing: Licensing, vendor: EvaluationVendor) -> None:
    with pytest.raises(LicenseError, match="not a facekeeper license"):
        licensing.install(b"\x89PNG not json")
    text = issue(vendor).decode()
    duplicated = text.replace('"license": {', '"license": {"max_subjects": 5, ', 1)
    with pytest.raises(LicenseError, match="duplicate key"):
        licensing.install(duplicated.encode())


def test_status_reports_without_raising(licensing: Licensing, vendor: EvaluationVendor) -> None:
    licensing.install(issue(vendor, features=["identify"], max_subjects=7))
    status = licensing.status(3).to_dict()
    assert status["state"] == "valid" and status["problem"] is None
    assert status["license"]["features"] == ["identify"] and status["license"]["max_subjects"] == 7
    assert status["subjects"] == 3 and status["deployment_id"] == DEPLOYMENT
