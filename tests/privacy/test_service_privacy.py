"""The privacy rules through the facade and the CLI, on real photos."""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from facekeeper.cli.main import app
from facekeeper.errors import ConsentRequired, PurposeError
from facekeeper.privacy import ConsentForm, scan
from facekeeper.service import Service
from tests.conftest import FORM, london, ready
from tests.privacy.conftest import Backend
from tests.publisher_fixtures import licensed_fixture  # noqa: F401

pytestmark = pytest.mark.usefixtures("licensed")
runner = CliRunner()


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def test_no_photo_or_plaintext_template_anywhere_after_a_full_run(
        deployment: Service, backend: Backend, caplog: pytest.LogCaptureFixture) -> None:
    svc = deployment
    clock = Clock()
    svc.clock = svc.privacy.clock = clock
    caplog.set_level(logging.DEBUG)
    temp_before = set(Path(tempfile.gettempdir()).iterdir())
    people = ("001", "002", "003", "004")
    for p in people:
        svc.grant_consent(p, "payment", FORM)
        svc.enroll([london(p), london(p, "smiling")], p, name=f"Volunteer {p}")
    assert svc.verify(london("001", "smiling"), subject_id="001").decision.match
    assert svc.identify(london("002", "smiling")).match is not None
    svc.settings.purposes["payment"].liveness = "none"  # no camera here: liveness has tests of its own
    svc.identify(london("002", "smiling"), purpose="payment")
    svc.withdraw_consent("002", "access-control")
    svc.issue_credential("002", "access-control", "token")
    svc.export_subject("001")
    svc.delete("003")
    clock.now += 4 * 365 * 86400
    svc.sweep()
    svc.compliance_report()
    svc.gallery.save_index()
    backend.flush(svc.settings)

    files = backend.files(svc.settings)
    files += [f for f in set(Path(tempfile.gettempdir()).iterdir()) - temp_before if f.is_file()]
    blobs = {str(f): f.read_bytes() for f in files}
    blobs["logs"] = caplog.text.encode()
    needles: dict[str, bytes] = {}
    for p in people:
        for pose in ("neutral", "smiling"):
            path = london(p, pose)
            raw = path.read_bytes()
            for off in range(0, len(raw) - 64, 4096):
                needles[f"{path.name}@{off}"] = raw[off:off + 64]
            rgb = svc.engine.decode(path)
            for row in range(0, rgb.shape[0], max(1, rgb.shape[0] // 8)):
                needles[f"pixels {p}/{pose} row {row}"] = rgb[row, :32].tobytes()
            descriptor = svc.engine.template(path)[0]
            protected = svc.gallery.protect(descriptor, svc.engine.model_id)
            for name, vec in (("raw", descriptor), ("protected", protected)):
                needles[f"{name} template {p}/{pose}"] = np.asarray(vec, "<f4").tobytes()[:32]
    for where, data in blobs.items():
        assert not scan.image_signatures(data), where
        assert not scan.float_runs(data), where
        for what, needle in needles.items():
            assert needle not in data, f"{what} found in {where}"
    assert svc.compliance_report()["disk_scan"]["clean"]
    photos = [london(p, pose) for p in people for pose in ("neutral", "smiling")]
    assert scan.photo_copies([svc.settings.data_dir, svc.settings.key_dir], photos, svc.engine) == []


def test_identify_and_verify_are_bound_to_the_purpose(tmp_path: Path, engine: object) -> None:
    svc = Service.init(tmp_path / "data", tmp_path / "keys")
    svc.engine = engine  # type: ignore[assignment]
    ready(svc, ())
    svc.settings.purposes["payment"].liveness = "none"  # purpose binding measured here; liveness in tests/liveness
    try:
        purposes = {"001": "access-control", "002": "payment", "003": "access-control", "004": "payment",
                    "005": "attendance", "006": "access-control"}
        for person, purpose in purposes.items():
            svc.enroll([london(person)], person, purpose=purpose, consent=ConsentForm("checkbox", f"kiosk {person}"))
        for person, purpose in purposes.items():
            for asked in ("access-control", "payment", "attendance"):
                r = svc.identify(london(person, "smiling"), purpose=asked)
                assert r.searched_subjects == sum(1 for p in purposes.values() if p == asked)
                assert all(purposes[c.subject_id] == asked for c in r.candidates)
                assert (r.match is not None and r.match.subject_id == person) == (asked == purpose)
        with pytest.raises(ConsentRequired):
            svc.verify(london("002", "smiling"), subject_id="002", purpose="access-control")
        assert svc.verify(london("002", "smiling"), subject_id="002", purpose="payment").decision.match
        with pytest.raises(PurposeError):
            svc.identify(london("001"), purpose="model-improvement")
        svc.withdraw_consent("001", "access-control")
        r = svc.identify(london("001", "smiling"), purpose="access-control")
        assert r.match is None and r.searched_subjects == 2
        entry = svc.privacy.audit.entries()[-1]
        assert (entry.action, entry.purpose, entry.outcome) == ("identify", "access-control", "unknown")
    finally:
        svc.close()


def test_the_privacy_commands_from_the_command_line(tmp_path: Path) -> None:
    home = tmp_path / "site"

    def fk(*args: str) -> tuple[int, str]:
        result = runner.invoke(app, ["--home", str(home), "--actor", "op-7", *args])
        return result.exit_code, result.output

    assert fk("init", "--key-dir", str(tmp_path / "keys"))[0] == 0
    code, out = fk("enroll", str(london("001")), "--subject", "001")
    assert code == 42 and "notice" in out
    for field, text in (("version", "v1"), ("controller", "Site Ltd"), ("contact", "dpo@site.invalid"),
                        ("retention", "3 years"), ("rights", "access, erasure, PIN instead")):
        assert fk("notice", "set", field, text)[0] == 0
    code, out = fk("enroll", str(london("001")), "--subject", "001")
    assert code == 40 and "consent" in out
    assert fk("consent", "grant", "001", "--how", "paper:form 1")[0] == 0
    assert fk("enroll", str(london("001")), "--subject", "001")[0] == 0
    assert fk("enroll", str(london("002")), "--subject", "002", "--purpose", "attendance",
              "--consent", "checkbox:kiosk 2")[0] == 0
    code, out = fk("--json", "identify", str(london("002", "smiling")))
    assert code == 0 and json.loads(out)["unknown"] is True  # the door does not see an attendance subject
    code, out = fk("--json", "identify", str(london("002", "smiling")), "--purpose", "attendance")
    assert json.loads(out)["match"]["subject_id"] == "002"
    code, out = fk("--json", "credential", "issue", "refuser", "--kind", "pin")
    pin = json.loads(out)["secret"]
    assert fk("credential", "check", "--subject", "refuser", "--pin", pin)[0] == 0
    assert fk("credential", "check", "--subject", "refuser", "--pin", "99999x")[0] == 44
    code, out = fk("--json", "subject", "export", "001")
    doc = json.loads(out)
    assert doc["face"]["templates"] == 1 and doc["consents"][0]["purpose"] == "access-control"
    assert all(e["actor"] == "op-7" for e in doc["audit"])
    code, out = fk("--json", "sweep", "--dry-run")
    assert code == 0 and json.loads(out)["total"] == 0
    code, out = fk("compliance", "report", "--json")
    assert code == 0 and json.loads(out)["disk_scan"]["clean"]
    receipt = tmp_path / "receipt.json"
    code, out = fk("subjects", "delete", "001", "--receipt", str(receipt))
    assert code == 0 and receipt.exists()
    assert fk("receipt", "verify", str(receipt))[0] == 0
    forged = json.loads(receipt.read_text())
    forged["erased"]["templates"] = 0
    (tmp_path / "forged.json").write_text(json.dumps(forged))
    assert fk("receipt", "verify", str(tmp_path / "forged.json"))[0] == 45
    code, out = fk("consent", "withdraw", "002", "--purpose", "attendance")
    assert code == 0 and "last purpose" in out
    assert fk("audit", "verify")[0] == 0
    export_path = tmp_path / "audit.json"
    assert fk("audit", "export", "--since", "2000-01-01", "-o", str(export_path))[0] == 0
    assert fk("receipt", "verify", str(export_path))[0] == 0
    assert fk("--role", "device", "subjects", "delete", "002")[0] == 51
    import sqlite3

    db = sqlite3.connect(home / "gallery.db")
    db.execute("DROP TRIGGER audit_no_update")
    db.execute("UPDATE audit SET actor = 'nobody' WHERE seq = 3")
    db.commit()
    db.close()
    code, out = fk("audit", "verify")
    assert code == 43 and "entry 3" in out


def test_a_consent_form_stating_an_age_under_the_guardian_age_needs_a_guardian(tmp_path: Path) -> None:
    svc = Service.init(tmp_path / "data", tmp_path / "keys")
    try:
        svc.settings.privacy.guardian_age = 16
        ready(svc, ())
        with pytest.raises(ConsentRequired, match="guardian"):
            svc.grant_consent("kid", None, ConsentForm("paper", "form 9", age=15))
        assert svc.grant_consent("adult", None, ConsentForm("paper", "form 10", age=16)).minor is False
    finally:
        svc.close()
