"""One person, one subject id: full-width digits and stray spaces name the same person; a blank id is refused.

Ids are NFKC-normalised and trimmed where every id enters (the gallery's and the registry's lookups and
creation), so enrollment, consent, credentials, export and erasure all agree on who is meant.
"""

from __future__ import annotations

import pytest

from facekeeper.errors import InvalidInput
from facekeeper.gallery.gallery import normal_subject_id
from facekeeper.service import Service
from tests.conftest import FORM, london
from tests.publisher_fixtures import licensed_fixture  # noqa: F401

pytestmark = pytest.mark.usefixtures("licensed")
FULL_WIDTH_001 = "\uff10\uff10\uff11"
SPELLINGS = (FULL_WIDTH_001, "001 ", " 001", "\u3000001\u00a0")  # ideographic and no-break spaces too


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_spellings_normalise_to_one_id(spelling: str) -> None:
    assert normal_subject_id(spelling) == "001"


@pytest.mark.parametrize("bad", [" ", "", "\u3000", "0\x0001", "0\n01", "x" * 201])
def test_blank_control_and_overlong_ids_are_invalid_input(bad: str) -> None:
    with pytest.raises(InvalidInput, match="subject id"):
        normal_subject_id(bad)


def test_every_operation_finds_subject_001_under_its_other_spellings(deployment: Service) -> None:
    svc = deployment
    svc.enroll([london("001")], "001")
    assert svc.enroll([london("001", "smiling")], FULL_WIDTH_001).pseudonym == svc.subject("001").pseudonym
    assert [s.subject_id for s in svc.subjects() if s.subject_id.strip() == "001"] == ["001"]
    assert svc.subject("001").templates == 2
    for spelling in SPELLINGS:
        assert svc.subject(spelling).subject_id == "001"
        assert svc.verify(london("001", "smiling"), subject_id=spelling).to_dict()["match"]
    before = len(svc.consents("001"))
    svc.grant_consent("001 ", None, FORM)  # renews the one person's consent
    assert len(svc.consents(FULL_WIDTH_001)) == before + 1
    issued = svc.issue_credential(FULL_WIDTH_001)
    assert svc.check_credential(subject_id="001 ", pin=issued.secret)[0] == "001"
    assert svc.export_subject(" 001")["subject"]["subject_id"] == "001"
    svc.delete(FULL_WIDTH_001)
    assert "001" not in {s.subject_id for s in svc.subjects()}


def test_a_blank_id_is_refused_everywhere_and_registers_nobody(deployment: Service) -> None:
    svc = deployment
    people = svc.privacy.registry.people()
    for call in (lambda: svc.grant_consent(" ", None, FORM), lambda: svc.enroll([london("001")], " "),
                 lambda: svc.subject(" "), lambda: svc.issue_credential(" "), lambda: svc.export_subject(" "),
                 lambda: svc.delete(" ")):
        with pytest.raises(InvalidInput):
            call()
    assert svc.privacy.registry.people() == people and svc.subjects() == []
