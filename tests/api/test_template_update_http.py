"""Moving to a new model without photos over HTTP and the SDK: the consent field, the added template in an
operator's answer (and nothing new in a device's), the coverage report by role."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from facekeeper import config
from facekeeper.api import schemas
from facekeeper.api.app import ServerSettings
from facekeeper.api.runner import ThreadRunner
from facekeeper.api.server import BackgroundServer
from facekeeper.client import Client
from facekeeper.config import EngineSettings
from facekeeper.engine import Engine
from facekeeper.errors import Forbidden
from tests.api import workload
from tests.api.conftest import PURPOSE, Root, make_root

NEW = EngineSettings().side_models[0]  # accurate mode's new model


@pytest.fixture
def live(tmp_path: Path, licensed: None, engine: Engine) -> Iterator[tuple[Root, str]]:
    """acme's access control adds templates on a match (``template_update = "on-match"``)."""
    root = make_root(tmp_path)
    settings = config.load(root.layout.data_dir("acme"))
    settings.purposes[PURPOSE].template_update = "on-match"
    settings.save()
    runner = ThreadRunner(root.layout, 2, engines=lambda _s: engine)
    with BackgroundServer(root.layout, ServerSettings(in_process=True, deny_egress=False), runner=runner) as server:
        yield root, server.url


def new_model(report: schemas.TemplateCoverage) -> schemas.ModelCoverageOut:
    (purpose,) = report.purposes
    return next(m for m in purpose.models if m.model_id == NEW)


def test_the_sdk_records_the_permission_shows_the_added_template_and_reports_coverage(
        live: tuple[Root, str]) -> None:
    root, url = live
    token = {role: root.tokens[("acme", role)] for role in ("admin", "operator", "device", "auditor")}
    with (Client(url, token["operator"]) as op, Client(url, token["device"]) as gate,
          Client(url, token["admin"]) as admin, Client(url, token["auditor"]) as auditor):
        allowed = op.grant_consent("u-003", PURPOSE, "checkbox", "kiosk 1", template_updates=True)
        silent = op.grant_consent("u-004", PURPOSE, "checkbox", "kiosk 1")
        assert allowed.template_updates and not silent.template_updates
        for person in ("u-003", "u-004"):
            op.enroll([workload.photo(person[2:])], person, purpose=PURPOSE)
        before = new_model(admin.template_coverage(PURPOSE))
        assert (before.have, before.lack, before.update_allowed, before.lacking) == (0, 2, 1, ["u-003", "u-004"])
        hidden = auditor.template_coverage(PURPOSE)
        assert hidden.identified_by == "pseudonym" and not {"u-003", "u-004"} & set(new_model(hidden).lacking)

        told = gate.verify(workload.photo("004", "smiling"), subject_id="u-004")  # no permission: nothing
        assert isinstance(told, schemas.DeviceVerified) and told.match
        seen = op.verify(workload.photo("003", "smiling"), subject_id="u-003", purpose=PURPOSE)
        assert isinstance(seen, schemas.Verified) and seen.match and seen.templates_added == [NEW]
        again = op.identify(workload.photo("003", "smiling"), purpose=PURPOSE)
        assert isinstance(again, schemas.Identified) and again.templates_added == []

        after = new_model(admin.template_coverage(PURPOSE, limit=5))
        assert (after.have, after.lack, after.update_allowed, after.lacking) == (1, 1, 0, ["u-004"])
        assert [c.template_updates for c in op.consents("u-003")] == [True]
        with pytest.raises(Forbidden):
            gate.template_coverage()
        with pytest.raises(Forbidden):
            op.template_coverage()
