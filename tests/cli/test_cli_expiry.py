"""A consent or credential expiry the CLI cannot use is one clear line (exit 2), never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from facekeeper.service import Service
from tests.cli.test_cli import fk, home  # noqa: F401
from tests.publisher_fixtures import licensed_fixture  # noqa: F401

pytestmark = pytest.mark.usefixtures("licensed")


@pytest.mark.parametrize("expires", ["9999-12-31T23:00-05:00", "2300-01-01", "2001-01-01", "10000-01-01"])
def test_an_expiry_past_a_century_past_9999_or_gone_is_refused_in_one_line(home: Path, expires: str) -> None:  # noqa: F811
    code, out = fk(home, "consent", "grant", "x-1", "--how", "paper:form 9", "--expires", expires)
    assert code == 2, out
    assert "Traceback" not in out and len(out.strip().splitlines()) == 1 and expires in out
    code, out = fk(home, "credential", "issue", "p-1", "--expires", expires)
    assert code == 2 and "Traceback" not in out, out
    with Service.open(home) as svc:
        assert "x-1" not in {s.subject_id for s in svc.subjects()} and svc.privacy.registry.find("x-1") is None


def test_a_past_date_is_still_a_valid_audit_export_start(home: Path) -> None:  # noqa: F811
    code, out = fk(home, "audit", "export", "--since", "2001-01-01")
    assert code == 0, out
