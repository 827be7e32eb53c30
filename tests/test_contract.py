"""The contract: every declared operation is refused, and audited once, for each role that may not call it,
and audited exactly once when a role that may calls it. One row per operation; a new operation without a
row fails ``test_every_declared_operation_has_a_row``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from facekeeper import contract
from facekeeper.config import DoorSettings
from facekeeper.errors import Forbidden, InvalidInput
from facekeeper.privacy import Actor
from facekeeper.privacy.policy import ROLES
from facekeeper.publisher.testing import shared_vendor
from facekeeper.service import Service
from tests.conftest import FORM, london, ready
from tests.publisher_fixtures import licensed_fixture  # noqa: F401

pytestmark = pytest.mark.usefixtures("licensed")

ADMIN = Actor("setup", "admin")
ENROLLED = "001"


@dataclass
class Site:
    svc: Service
    tmp: Path
    descriptor: np.ndarray


Args = tuple[tuple[Any, ...], dict[str, Any]]


def _credential(site: Site) -> Args:
    issued = site.svc.issue_credential(ENROLLED, kind="pin", actor=ADMIN)
    return (), {"subject_id": ENROLLED, "pin": issued.secret}


def _folder(site: Site) -> Args:
    person = site.tmp / "bulk" / "002"
    person.mkdir(parents=True)
    (person / "a.jpg").write_bytes(london("002").read_bytes())
    return (site.tmp / "bulk",), {"workers": 1}


def _license(site: Site) -> Args:
    return (shared_vendor().issue(site.svc.settings.deployment_id),), {}


def _revoke(site: Site) -> Args:
    return (site.svc.issue_credential(ENROLLED, kind="pin", actor=ADMIN).credential_id,), {}


def _receipt(site: Site) -> Args:
    return (site.svc.export_audit(actor=ADMIN),), {}


def _door(site: Site) -> str:
    site.svc.settings.doors.setdefault("main", DoorSettings())
    return "main"


def _gate_pin(site: Site) -> Args:
    issued = site.svc.issue_credential(ENROLLED, kind="pin", actor=ADMIN)
    return (_door(site),), {"subject_id": ENROLLED, "pin": issued.secret}


def _liveness(site: Site) -> Args:
    """A payment session answered with a still photo (decided spoof: the call itself succeeds)."""
    started = site.svc.liveness_start(purpose="payment", actor=ADMIN)
    photo = london(ENROLLED).read_bytes()
    return (started.session_id, started.nonce, [photo] * 20, [i / 10 for i in range(20)]), {}


# operation name -> the arguments of a call that succeeds for a permitted role (made as admin beforehand)
CALLS: dict[str, Callable[[Site], Args]] = {
    "detect": lambda s: ((london("003").read_bytes(),), {"landmarks": 5}),
    "enroll": lambda s: (([london("002")], "002"), {}),
    "enroll_dir": _folder,
    "verify": lambda s: ((london(ENROLLED, "smiling"),), {"subject_id": ENROLLED}),
    "verify_descriptor": lambda s: ((s.descriptor, ENROLLED), {}),
    "identify": lambda s: ((london(ENROLLED, "smiling"),), {}),
    "identify_descriptor": lambda s: ((s.descriptor,), {}),
    "subjects": lambda s: ((), {}),
    "subject": lambda s: ((ENROLLED,), {}),
    "delete": lambda s: ((ENROLLED,), {}),
    "grant_consent": lambda s: (("002", None, FORM), {}),
    "withdraw_consent": lambda s: ((ENROLLED, None), {}),
    "consents": lambda s: ((ENROLLED,), {}),
    "sweep": lambda s: ((), {"dry_run": True}),
    "verify_audit": lambda s: ((), {}),
    "export_audit": lambda s: ((), {}),
    "export_subject": lambda s: ((ENROLLED,), {}),
    "issue_credential": lambda s: ((ENROLLED,), {"kind": "pin"}),
    "revoke_credential": _revoke,
    "check_credential": _credential,
    "compliance_report": lambda s: ((), {}),
    "verify_receipt": _receipt,
    "set_notice": lambda s: ((), {"version": "test-2"}),
    "install_license": _license,
    "license_status": lambda s: ((), {}),
    "subjects_overview": lambda s: ((), {"limit": 100}),
    "calibration_status": lambda s: ((), {}),
    "template_coverage": lambda s: ((), {}),
    "devices_status": lambda s: ((), {}),
    "gate_decide": lambda s: (([s.descriptor], _door(s)), {"present_for": 1.0}),
    "gate_credential": _gate_pin,
    "liveness_start": lambda s: ((), {"purpose": "payment"}),
    "liveness_submit": _liveness,
    "manage_api_key": lambda s: (("created", lambda: {"key_id": "ak_x", "role": "device", "key_purpose": None}),
                                 {}),
}


@pytest.fixture
def site(tmp_path: Path, engine: Any) -> Iterator[Site]:
    svc = Service.init(tmp_path / "data", tmp_path / "keys")
    svc.engine = engine
    ready(svc, (ENROLLED, "002"))
    svc.enroll([london(ENROLLED)], ENROLLED, actor=ADMIN)
    yield Site(svc, tmp_path, engine.template(london(ENROLLED, "smiling"))[0])
    svc.close()


def test_every_declared_operation_has_a_row() -> None:
    assert {op.name for op in contract.table()} == set(CALLS)


def test_every_public_service_method_is_declared_or_a_lifecycle_helper() -> None:
    """An interface can reach only declared operations: any other public method would skip the guard."""
    helpers = {"init", "open", "move_to_postgres", "close", "table", "calibration", "fusion",
               "receipt_public_key"}
    public = {n for n in dir(Service) if not n.startswith("_")} - helpers
    assert public == {op.name for op in contract.table()}


def _new_entries(svc: Service, before: int) -> list[Any]:
    return [e for e in svc.privacy.audit.entries() if e.seq > before]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("name", sorted(CALLS))
def test_operation_is_refused_and_audited_once_or_runs_and_is_audited_once(site: Site, name: str,
                                                                           role: str) -> None:
    op = contract.of(name)
    args, kwargs = CALLS[name](site)
    method = getattr(site.svc, name)
    actor = Actor(f"{role}-1", role)
    before = site.svc.privacy.audit.head()[0]
    subjects = site.svc.gallery.store.subject_count()
    if role not in op.roles:
        with pytest.raises(Forbidden):
            method(*args, actor=actor, **kwargs)
        entries = _new_entries(site.svc, before)
        assert [(e.actor, e.action, e.outcome) for e in entries] == [(actor.id, op.action, "refused:forbidden")]
        assert site.svc.gallery.store.subject_count() == subjects  # nothing was done
        return
    method(*args, actor=actor, **kwargs)
    entries = [e for e in _new_entries(site.svc, before) if e.action == op.action]
    assert entries and all(e.actor == actor.id for e in entries)
    assert {e.outcome.split(":")[0] for e in entries} & {"refused", "failed"} == set()
    if op.audit == "one":
        assert len(entries) == 1, [(e.action, e.outcome) for e in entries]


def test_a_refused_role_is_refused_before_any_argument_is_read(site: Site) -> None:
    """The role comes first: a device's enrollment of garbage is 'forbidden', not 'bad image'."""
    with pytest.raises(Forbidden):
        site.svc.enroll([b"not a photo"], "002", actor=Actor("gate-1", "device"))
    assert site.svc.privacy.audit.entries()[-1].outcome == "refused:forbidden"


def test_a_failed_operation_that_audits_nothing_itself_still_leaves_one_entry(site: Site) -> None:
    before = site.svc.privacy.audit.head()[0]
    with pytest.raises(InvalidInput):
        site.svc.manage_api_key("renamed", lambda: {}, actor=ADMIN)
    assert [(e.action, e.outcome) for e in _new_entries(site.svc, before)] == [("keys.manage",
                                                                                "failed:invalid-input")]


def test_only_a_declared_handle_is_an_operation() -> None:
    assert contract.of(Service.identify).cost == "photo"
    assert contract.of("identify_descriptor").cost == "light"
    with pytest.raises(InvalidInput):
        contract.of(Service.close)
    with pytest.raises(InvalidInput):
        contract.of("_require")
