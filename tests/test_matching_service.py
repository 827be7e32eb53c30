"""A decision past the measured table follows the purpose: payment and withdrawal refuse, the rest extrapolate;
the answer says which, to every role, and the CLI shows it.

Payment and withdrawal also demand liveness, which a descriptor cannot give, so the refusing purpose here is
attendance set to ``beyond_table = "refuse"``: the policy, not the purpose's name, decides."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from facekeeper import evaluation as ev
from facekeeper.config import Settings
from facekeeper.errors import ConfigError
from facekeeper.matching import CalibrationTable
from facekeeper.privacy import Actor
from facekeeper.service import Service
from tests.conftest import DATA, FORM, NOTICE, london
from tests.publisher_fixtures import licensed_fixture  # noqa: F401

pytestmark = pytest.mark.usefixtures("licensed")

DESCRIPTORS = DATA / "descriptors" / "london.npz"
GALLERY = 300
FPIR = 1e-4  # 300 subjects at FPIR 1e-4: 3.3e-7 per comparison, as 33,000 subjects at the default 1%
DEVICE = Actor("gate-1", "device")
REFUSING = "attendance"


@pytest.fixture(scope="module")
def tailed() -> CalibrationTable:
    """A dlib table measured to 1e-4 on 400,000 synthetic impostor distances ~ N(0.8, 0.06), with its tail fit."""
    rng = np.random.default_rng(11)
    return ev.calibration_table("dlib-resnet-v1", "synthetic", rng.normal(0.3, 0.05, 1000), rng.normal(0.8, 0.06,
                                                                                                         400_000))


def gallery() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(enrolled, probes): neutral descriptors of the volunteers plus blends up to ``GALLERY``; smiling probes."""
    data = np.load(DESCRIPTORS)
    labels, dlib, pose = data["labels"], data["dlib"], data["pose"]
    enrolled = {str(labels[i]): dlib[i] for i in np.flatnonzero(pose == "neutral")}
    probes = {str(labels[i]): dlib[i] for i in np.flatnonzero(pose == "smiling")}
    rng = np.random.default_rng(300)
    real = list(enrolled.values())
    while len(enrolled) < GALLERY:
        a, b = rng.choice(len(real), 2, replace=False)
        v = real[a] + real[b]
        enrolled[f"blend-{len(enrolled)}"] = v / np.linalg.norm(v)
    return enrolled, probes


@pytest.fixture
def site(deployment: Service) -> tuple[Service, dict[str, np.ndarray]]:
    enrolled, probes = gallery()
    for subject_id, vec in enrolled.items():
        for purpose in ("access-control", "attendance"):
            deployment.grant_consent(subject_id, purpose, FORM)
        with deployment.privacy.operation(deployment.actor, "enroll", "access-control", operation="enroll") as op:
            pseudonym = deployment.privacy.prepare_enroll(op, subject_id)
            deployment.gallery.enroll(subject_id, [vec], deployment.engine.model_id, pseudonym=pseudonym,
                                      within=deployment.privacy.enroll_hook(op))
    deployment.settings.purposes["attendance"].beyond_table = "refuse"
    return deployment, probes


def with_table(svc: Service, table: CalibrationTable, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(svc, "_table", table)  # the signed table's place: a table with a tail fit


def test_a_large_search_extrapolates_for_access_control_and_says_so(
        site: tuple[Service, dict[str, np.ndarray]], tailed: CalibrationTable,
        monkeypatch: pytest.MonkeyPatch) -> None:
    svc, probes = site
    with_table(svc, tailed, monkeypatch)
    result = svc.identify_descriptor(probes["002"], fpir=FPIR, purpose="access-control")
    assert result.target_fmr == pytest.approx(FPIR / GALLERY) and result.target_fmr < tailed.min_fmr
    assert result.match is not None and result.match.subject_id == "002"
    assert result.calibration == "extrapolated" and "extrapolated" in (result.calibration_note or "")
    d = result.match.decision
    assert d.calibration == "extrapolated" and not d.within_calibration
    assert d.threshold == pytest.approx(tailed.threshold(result.target_fmr or 0).interval[0], abs=1e-4)  # type: ignore[index]
    body = result.to_dict()
    assert body["calibration"] == "extrapolated" and body["match"]["calibration"] == "extrapolated"
    entry = [e for e in svc.privacy.audit.entries() if e.action == "identify"][-1]
    assert entry.detail["calibration"] == "extrapolated"


def test_a_refusing_purpose_does_not_decide_beyond_the_table_and_answers_unknown(
        site: tuple[Service, dict[str, np.ndarray]], tailed: CalibrationTable,
        monkeypatch: pytest.MonkeyPatch) -> None:
    svc, probes = site
    with_table(svc, tailed, monkeypatch)
    result = svc.identify_descriptor(probes["002"], fpir=FPIR, purpose=REFUSING)
    assert result.match is None and result.calibration == "beyond"
    assert "does not decide beyond" in (result.calibration_note or "")
    assert all(not c.decision.match and c.decision.calibration == "beyond" for c in result.candidates)
    assert 'beyond_table = "refuse"' in (result.candidates[0].decision.calibration_note or "")
    # at FPIR 5% the same search needs 1.7e-4 per comparison, within the measured table: the volunteer is found
    measured = svc.identify_descriptor(probes["002"], fpir=0.05, purpose=REFUSING)
    assert measured.match is not None and measured.calibration == "measured" and measured.calibration_note is None


def test_a_device_is_told_the_calibration_but_not_how_many_were_searched(
        site: tuple[Service, dict[str, np.ndarray]], tailed: CalibrationTable,
        monkeypatch: pytest.MonkeyPatch) -> None:
    svc, probes = site
    with_table(svc, tailed, monkeypatch)
    body = svc.identify_descriptor(probes["002"], fpir=FPIR, purpose=REFUSING, actor=DEVICE).to_dict()
    assert body["unknown"] and body["calibration"] == "beyond" and "searched_subjects" not in body
    assert not re.search(r"\de-\d", body["calibration_note"])  # no rate: FPIR / FMR gives the gallery's size


def test_verify_below_the_table_follows_the_purpose_too(
        site: tuple[Service, dict[str, np.ndarray]], tailed: CalibrationTable,
        monkeypatch: pytest.MonkeyPatch) -> None:
    svc, probes = site
    with_table(svc, tailed, monkeypatch)
    access = svc.verify_descriptor(probes["003"], "003", fmr=1e-7, purpose="access-control")
    assert access.decision.match and access.decision.calibration == "extrapolated"
    refusing = svc.verify_descriptor(probes["003"], "003", fmr=1e-7, purpose=REFUSING, actor=DEVICE)
    assert not refusing.decision.match and refusing.to_dict()["calibration"] == "beyond"
    assert "distance" not in refusing.to_dict()


def test_the_signed_table_without_a_tail_fit_matches_nobody_beyond_it(
        site: tuple[Service, dict[str, np.ndarray]]) -> None:
    svc, probes = site
    assert svc.table.tail is None or svc.table.min_fmr > 1e-9
    result = svc.identify_descriptor(probes["002"], fpir=svc.table.min_fmr * GALLERY / 100,
                                     purpose="access-control")
    expected = "extrapolated" if svc.table.tail is not None else "beyond"
    assert result.calibration == expected and (result.match is not None) == (expected == "extrapolated")


def test_the_verify_command_prints_why_beyond_the_table(tmp_path: Path, tailed: CalibrationTable,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from facekeeper.cli.main import app

    monkeypatch.setattr(Service, "table", property(lambda self: tailed))  # the signed table's place
    home, runner = tmp_path / "site", CliRunner()

    def fk(*args: str) -> str:
        result = runner.invoke(app, ["--home", str(home), *args])
        assert result.exit_code == 0, result.output
        return result.output

    fk("init", "--key-dir", str(tmp_path / "keys"))
    for field, text in NOTICE.items():
        fk("notice", "set", field, text)
    out = fk("verify", str(london("001")), str(london("001", "smiling")), "--fmr", "1e-7")
    assert out.startswith("MATCH") and "extrapolated from the impostor tail" in out
    data = json.loads(fk("--json", "verify", str(london("001")), str(london("001", "smiling")), "--fmr", "1e-7"))
    assert data["calibration"] == "extrapolated" and data["within_calibration"] is False


def test_withdrawal_is_built_in_verify_only_and_refuses_beyond_the_table() -> None:
    purposes = Settings(data_dir=DATA, key_dir=DATA).purposes
    w = purposes["withdrawal"]
    assert "identify" not in w.operations and "verify" in w.operations
    assert (w.beyond_table, purposes["payment"].beyond_table, purposes["access-control"].beyond_table) == (
        "refuse", "refuse", "extrapolate")


def test_a_beyond_table_policy_other_than_refuse_or_extrapolate_is_refused(tmp_path: Path) -> None:
    from facekeeper.config import validate_privacy

    settings = Settings(data_dir=tmp_path, key_dir=tmp_path)
    settings.purposes["payment"].beyond_table = "guess"
    with pytest.raises(ConfigError, match="beyond_table"):
        validate_privacy(settings)


def test_json_of_a_verify_answer_carries_the_calibration(site: tuple[Service, dict[str, np.ndarray]]) -> None:
    svc, probes = site
    body = svc.verify_descriptor(probes["003"], "003", purpose="access-control").to_dict()
    assert json.loads(json.dumps(body))["calibration"] == "measured" and body["calibration_note"] is None
