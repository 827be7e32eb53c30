"""Site self-calibration: bounded pairs, thresholds with intervals, refusal by rule, adopt and revert."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from facekeeper import evaluation
from facekeeper.engine import Engine
from facekeeper.errors import CalibrationRefused, ConfigError
from facekeeper.federation import histogram as H
from facekeeper.federation.calibrate import MIN_FALSE_MATCHES
from facekeeper.federation.pairs import Mode, PairPlan, plan_distances, subject_pairs
from facekeeper.privacy import Actor
from tests.federation.sites import site, synthetic_people

ADMIN = Actor("cal-admin", "admin")
KEY = b"k" * 32


def test_each_person_changes_a_bounded_number_of_pairs_whatever_the_gallery_size() -> None:
    for n, partners in ((6, 8), (17, 8), (18, 8), (40, 3), (200, 5)):
        people = [f"s{i}" for i in range(n)]
        before = set(subject_pairs(KEY, people, partners))
        after = set(subject_pairs(KEY, [*people, "newcomer"], partners))
        assert len(before ^ after) <= 3 * partners
        degree = max(sum(1 for e in after if p in e) for p in [*people, "newcomer"])
        assert degree <= 2 * partners


def test_planned_pairs_respect_the_per_subject_caps_and_repeat_exactly() -> None:
    rng = np.random.default_rng(1)
    people = {f"s{i}": {"m": v} for i, v in enumerate(synthetic_people(rng, 30, 9))}
    plan = PairPlan(partners=4, per_partner=5, genuine=7)
    d = plan_distances(KEY, Mode("fast", "m", ("m",)), people, plan)
    assert len(d.impostor) == 30 * 4 * 5 and len(d.genuine) == 30 * 7
    again = plan_distances(KEY, Mode("fast", "m", ("m",)), people, plan)
    assert np.array_equal(d.impostor, again.impostor)
    other = plan_distances(b"x" * 32, Mode("fast", "m", ("m",)), people, plan)
    assert not np.array_equal(d.impostor, other.impostor)  # the pairs are secret to the deployment key
    assert plan.sensitivity == 3 * 4 * 5 + 7


def test_thresholds_from_histograms_are_within_one_bin_of_the_exact_ones() -> None:
    rng = np.random.default_rng(2)
    impostor = rng.normal(0.75, 0.08, 200_000)
    genuine = rng.normal(0.35, 0.06, 5_000)
    bins = H.Bins()
    for f in (1e-2, 1e-3, 1e-4):
        exact = evaluation.operating_point(genuine, impostor, f).threshold
        assert exact is not None
        assert abs(H.threshold_from_histogram(H.histogram(impostor, bins), f, bins) - exact) <= bins.width
    assert H.threshold_from_histogram(H.histogram(impostor[:50], bins), 1e-3, bins) is None


def test_discrete_laplace_noise_has_the_stated_variance() -> None:
    rng = np.random.default_rng(3)
    mech = H.Mechanism(epsilon=0.5, sensitivity=10)
    draws = mech.noise(rng, 200_000)
    assert draws.dtype == np.int64
    assert abs(draws.var() / H.noise_variance(mech.scale) - 1) < 0.05
    assert not H.Mechanism(math.inf, 10).noise(rng, 5).any()


@pytest.fixture
def calibrated_site(tmp_path: Path, engine: Engine):
    svc = site(tmp_path, engine, synthetic_people(np.random.default_rng(4), 60, 6))
    yield svc
    svc.close()


def test_calibrate_measures_refuses_by_rule_adopts_and_reverts_audited(calibrated_site) -> None:
    svc = calibrated_site
    shipped = svc.table
    m = svc.calibration.measure(ADMIN, None, (1e-2, 1e-3, 1e-4), PairPlan(30, 20, 15))
    assert m.subjects == 60 and m.genuine_pairs == 60 * 15
    assert m.impostor_pairs == 60 * 59 // 2 * 20  # 30 partners each way: everyone, each pair of people once
    assert [p.fmr for p in m.points] == [1e-2, 1e-3]
    assert [r["fmr"] for r in m.refused] == [1e-4]  # 35,400 pairs < 30 / 1e-4
    assert m.refused[0]["needs_impostor_pairs"] == math.ceil(MIN_FALSE_MATCHES / 1e-4)
    for p in m.points:
        assert p.low <= p.threshold <= p.high
    assert {s.fmr for s in m.shipped} == {f for f, _ in shipped.points}
    out = json.dumps(m.to_dict())
    for pseudonym in svc.privacy.ledger.allowed("model-improvement", svc.clock()):
        assert pseudonym not in out
    assert "p00" not in out
    assert svc.table == shipped  # measuring alone changes nothing

    adopted = svc.calibration.adopt(ADMIN)
    assert svc.table == adopted and adopted.points == m.table.points
    assert adopted.source.startswith("site self-calibration")
    assert svc.calibration.revert(ADMIN) == shipped and svc.table == shipped
    actions = [(e.action, e.outcome) for e in svc.privacy.audit.entries() if e.action.startswith("calibration")]
    assert actions == [("calibration.measure", "ok"), ("calibration.adopt", "ok"), ("calibration.revert", "ok")]
    assert svc.privacy.audit.verify().ok


def test_an_adoption_reaches_a_service_already_running(calibrated_site, engine: Engine) -> None:
    from facekeeper.service import Service

    with Service.open(calibrated_site.settings.data_dir, engine=engine) as other:
        before = other.table
        calibrated_site.calibration.measure(ADMIN, None, (1e-2,), PairPlan(10, 16, 15))
        adopted = calibrated_site.calibration.adopt(ADMIN)
        assert before != adopted and other.table == adopted


def test_only_people_who_consented_to_model_improvement_are_measured(tmp_path: Path, engine: Engine) -> None:
    rng = np.random.default_rng(5)
    svc = site(tmp_path, engine, synthetic_people(rng, 30, 4), consent=False)
    try:
        with pytest.raises(CalibrationRefused, match="30/f impostor pairs"):
            svc.calibration.measure(ADMIN, None, (1e-2,))
        refused = [e for e in svc.privacy.audit.entries() if e.action == "calibration.measure"]
        assert refused[-1].outcome == "refused:calibration-refused"
        assert svc.calibration.distances(svc.calibration.mode(None), PairPlan(), svc.clock()).subjects == 0
    finally:
        svc.close()


def test_an_altered_site_table_is_refused_until_reverted(calibrated_site) -> None:
    svc = calibrated_site
    svc.calibration.measure(ADMIN, None, (1e-2,), PairPlan(10, 16, 15))
    svc.calibration.adopt(ADMIN)
    path = svc.settings.data_dir / "site-calibration.json"
    doc = json.loads(path.read_text())
    doc["adopted"][svc.engine.model_id]["table"]["points"][0][1] = 0.9  # loosen the threshold
    path.write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match="altered"):
        _ = svc.table
    svc.calibration.revert(ADMIN)
    assert svc.table == svc.bundle.table_for(svc.engine.model_id)


def test_cli_calibrate_shows_both_tables_and_adopts(calibrated_site) -> None:
    from typer.testing import CliRunner

    from facekeeper.cli.main import app

    home = str(calibrated_site.settings.data_dir)
    runner = CliRunner()
    r = runner.invoke(app, ["--home", home, "calibrate", "--fmr", "1e-2,1e-4", "--partners", "10"])
    assert r.exit_code == 0, r.output
    assert "shipped" in r.output and "refused" in r.output and "30/f" in r.output
    r = runner.invoke(app, ["--home", home, "--json", "calibrate", "adopt"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["adopted"]["source"].startswith("site self-calibration")
    r = runner.invoke(app, ["--home", home, "--json", "calibrate", "show"])
    assert json.loads(r.output)["fast"]["adopted_at"] is not None
    r = runner.invoke(app, ["--home", home, "calibrate", "--partners", "1", "--fmr", "1e-5"])
    assert r.exit_code == CalibrationRefused.exit_code and "needs at least 30/f" in r.output


def test_accurate_mode_is_calibrated_on_fused_scores_and_decides_with_the_adopted_table(
        tmp_path: Path, engine: Engine) -> None:
    import dataclasses

    from facekeeper.bundle.manifest import default_calibration_path, read_fusion
    from facekeeper.federation.histogram import Layout
    from facekeeper.federation.join import Federation
    from facekeeper.fusion import SIDE_MODELS
    from tests.federation.sites import FORM, IMPROVE

    rng = np.random.default_rng(9)
    svc = site(tmp_path, engine, [])
    try:
        fusion = svc.bundle.fusion or read_fusion(default_calibration_path())  # signed once the vendor re-signs
        svc.bundle = dataclasses.replace(svc.bundle, fusion=fusion)
        svc._calibration = None
        (side_model,) = fusion.side_models
        for i, dlib in enumerate(synthetic_people(rng, 60, 6)):
            centre = rng.normal(0.0, 1.0, SIDE_MODELS[side_model])
            side = centre / np.linalg.norm(centre) + rng.normal(0.0, 0.02, (6, SIDE_MODELS[side_model]))
            side /= np.linalg.norm(side, axis=1, keepdims=True)
            sid = f"acc{i:03d}"
            for purpose in ("payment", IMPROVE):
                svc.grant_consent(sid, purpose, FORM)
            svc.gallery.enroll(sid, dlib, engine.model_id, pseudonym=svc.privacy.registry.find(sid),
                               side={side_model: side})
        m = svc.calibration.measure(ADMIN, "accurate", (1e-2, 1e-3), PairPlan(30, 20, 15))
        assert m.table_key == svc.fusion.table.model_id and [p.fmr for p in m.points] == [1e-2, 1e-3]
        fast = svc.calibration.measure(ADMIN, "fast", (1e-2,), PairPlan(30, 20, 15))
        assert m.impostor_pairs == fast.impostor_pairs and m.points[0].threshold != fast.points[0].threshold
        adopted = svc.calibration.adopt(ADMIN, "accurate")
        decision = svc._fused(svc.fusion, 0.5, [1.0], 1e-2)  # one distance per side model
        assert decision.threshold == pytest.approx(adopted.threshold(1e-2)[0])
        assert svc.table == svc.bundle.table_for(svc.engine.model_id)  # fast mode keeps the signed table

        svc.settings.federation.yearly_epsilon = math.inf
        release = Federation(svc.settings, svc.privacy, svc.calibration).prepare(
            ADMIN, Layout(("fast", "accurate")), "127.0.0.1:9", epsilon=math.inf)
        parts = Layout(("fast", "accurate")).split(release.vector)
        assert parts["accurate"][0].sum() == parts["fast"][0].sum() > 0  # the same pairs, scored both ways
    finally:
        svc.close()


def test_below_the_supported_rates_the_site_tail_is_extrapolated_with_an_interval() -> None:
    from statistics import NormalDist

    from facekeeper.federation.calibrate import measure_distances
    from facekeeper.federation.pairs import PairDistances

    rng = np.random.default_rng(5)
    d = PairDistances("fast", rng.normal(0.9, 0.08, 120_000), rng.normal(0.35, 0.05, 600), subjects=40)
    mode = Mode("fast", "dlib-resnet-v1", ("dlib-resnet-v1",))
    m = measure_distances(d, mode, PairPlan(8, 4, 6), (1e-2, 1e-3, 1e-5, 1e-6), None, 0.0)
    assert [p.fmr for p in m.points] == [1e-2, 1e-3] and [r["fmr"] for r in m.refused] == [1e-5, 1e-6]
    rows = {row["fmr"]: row for row in m.to_dict()["tail"]["extrapolated"]}
    true = NormalDist(0.9, 0.08).inv_cdf(1e-6)
    low, high = rows[1e-6]["ci95"]
    assert low <= true <= high and low <= rows[1e-6]["threshold"] <= high < rows[1e-5]["threshold"]
    assert m.table is not None and m.table.threshold(1e-6).extrapolated  # adopted, the table carries the fit
    few = PairDistances("fast", d.impostor[:1000], d.genuine, subjects=40)
    assert measure_distances(few, mode, PairPlan(8, 4, 6), (1e-2,), None, 0.0).to_dict()["tail"] is None


def test_an_adopted_site_table_carries_its_tail_fit(calibrated_site) -> None:
    svc = calibrated_site
    svc.calibration.measure(ADMIN, None, (1e-2, 1e-3, 1e-4), PairPlan(30, 20, 15))
    adopted = svc.calibration.adopt(ADMIN)
    assert adopted.tail is not None and svc.table.tail == adopted.tail
    assert svc.table.threshold(1e-6).extrapolated
