"""Consent expiries stay in a range every report can print; one recorded before that still exports."""

from __future__ import annotations

import pytest

from facekeeper.errors import InvalidInput
from facekeeper.privacy import export
from tests.privacy.conftest import ADMIN, DAY, Site

YEAR_10000 = 253_402_300_800.0 + 3600  # what "9999-12-31T23:00-05:00" is in UTC


@pytest.mark.parametrize("expires_in", [YEAR_10000 - 1_800_000_000.0, 101 * 365.25 * DAY, 0.0, -DAY])
def test_a_consent_must_expire_after_it_is_given_and_within_a_century(site: Site, expires_in: float) -> None:
    site.consent("p0000")
    with pytest.raises(InvalidInput, match="within 100 years"):
        site.privacy.grant(ADMIN, "p0000", "access-control", method="paper", evidence="f",
                           expires_at=site.clock() + expires_in)
    assert [c.expires_at < site.clock() + 4 * 365.25 * DAY for c in site.privacy.consents(ADMIN, "p0000")] == [True]


def test_the_subject_export_answers_for_a_consent_expiring_after_9999(site: Site) -> None:
    site.consent("p0000")
    site.privacy.store.db.execute("UPDATE consents SET expires_at = ?", (YEAR_10000,))  # recorded before the bound
    data = export.subject_access(site.privacy, ADMIN, "p0000")
    assert data["consents"][0]["expires_at"] == "after 9999-12-31T23:59:59Z"
    assert data["consents"][0]["granted_at"].startswith("2027-01-15T")
