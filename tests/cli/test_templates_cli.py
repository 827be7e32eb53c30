"""``facekeeper templates coverage`` and ``consent grant --allow-template-updates``: moving to a new model without
photos from the command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from facekeeper import config
from facekeeper.config import EngineSettings
from tests.cli.test_cli import fk, fkj, home  # noqa: F401  (the fixture)
from tests.conftest import london
from tests.publisher_fixtures import licensed_fixture  # noqa: F401

pytestmark = pytest.mark.usefixtures("licensed")
NEW = EngineSettings().side_models[0]  # accurate mode's new model


def new_model(report: dict) -> dict:  # type: ignore[type-arg]
    (purpose,) = report["purposes"]
    return next(m for m in purpose["models"] if m["model_id"] == NEW)


def test_a_consented_match_adds_the_template_and_the_coverage_report_shows_it(home: Path) -> None:  # noqa: F811
    settings = config.load(home)
    settings.purposes["access-control"].template_update = "on-match"
    settings.save()
    code, consent = fkj(home, "consent", "grant", "003", "--purpose", "access-control", "--how", "paper:form 7",
                        "--allow-template-updates")
    assert code == 0 and consent["template_updates"] is True
    assert fk(home, "enroll", str(london("003")), "--subject", "003", "--purpose", "access-control")[0] == 0

    code, before = fkj(home, "templates", "coverage", "--purpose", "access-control")
    assert code == 0 and before["identified_by"] == "subject_id"
    assert new_model(before) == {"model_id": NEW, "have": 0, "lack": 1, "update_allowed": 1, "lacking": ["003"]}
    code, seen = fkj(home, "--role", "auditor", "templates", "coverage", "--purpose", "access-control")
    assert code == 0 and seen["identified_by"] == "pseudonym"
    assert [p.startswith("s_") for p in new_model(seen)["lacking"]] == [True]  # a pseudonym, not the subject id

    code, out = fk(home, "verify", str(london("003", "smiling")), "--subject", "003", "--purpose", "access-control")
    assert code == 0 and "MATCH" in out and f"template of {NEW} added" in out
    code, after = fkj(home, "templates", "coverage", "--purpose", "access-control")
    assert new_model(after)["lack"] == 0 and new_model(after)["lacking"] == []

    code, out = fk(home, "--role", "device", "templates", "coverage")
    assert code != 0 and "forbidden" in out
