"""What a site releases: noise within the stated error, audited before it leaves, and nothing leaves unasked."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from facekeeper.egress import EgressGuard
from facekeeper.engine import Engine
from facekeeper.errors import ConsentRequired
from facekeeper.federation.histogram import PROTOCOL, Layout, fmr_error_bound, threshold_from_histogram
from facekeeper.federation.join import Federation
from facekeeper.federation.pairs import PairPlan
from tests.federation.sites import FORM, IMPROVE, site, synthetic_people

LAYOUT = Layout(("fast",))
BINS = PROTOCOL["fast"][1]


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory, engine: Engine):
    rng = np.random.default_rng(11)
    out = []
    for i in range(4):
        svc = site(tmp_path_factory.mktemp(f"site{i}"), engine, synthetic_people(rng, 250, 4), prefix=f"s{i}-")
        svc.settings.federation.yearly_epsilon = math.inf
        out.append(svc)
    yield out
    for svc in out:
        svc.close()


def summed(sites, epsilon: float, seed: int) -> np.ndarray:
    total = np.zeros(LAYOUT.length, np.int64)
    for i, svc in enumerate(sites):
        fed = Federation(svc.settings, svc.privacy, svc.calibration)
        total += fed.prepare(svc.actor, LAYOUT, "127.0.0.1:9", epsilon=epsilon,
                             rng=np.random.default_rng(seed * 100 + i)).vector
    return total


@pytest.mark.parametrize("epsilon", [1.0, 20.0])
def test_with_noise_the_table_stays_within_the_stated_error(sites, epsilon: float) -> None:
    exact = LAYOUT.split(summed(sites, math.inf, 0))["fast"][0]
    total = float(exact.sum())
    scale = PairPlan(8, 4, 6).sensitivity / epsilon
    for seed in range(1, 6):
        noisy = LAYOUT.split(summed(sites, epsilon, seed))["fast"][0]
        for fmr in (1e-2, 3e-2):
            t = threshold_from_histogram(noisy, fmr, BINS)
            if t is None:  # the noisy counts may not support the FMR at all: then no table point, no error
                continue
            below = math.ceil((t - BINS.low) / BINS.width)
            e = fmr_error_bound(fmr, total, below, BINS.count, len(sites), scale)
            low = threshold_from_histogram(exact, fmr - e, BINS) if fmr - e > 0 else BINS.low
            high = threshold_from_histogram(exact, min(fmr + e, 1.0), BINS)
            assert (low or BINS.low) - BINS.width <= t <= (high or BINS.high) + BINS.width
            if epsilon >= 20 and fmr >= 3e-2:
                assert e < fmr  # 1,000 people, epsilon 20: the bound is tighter than the rate itself


def test_a_release_is_audited_with_its_size_digest_and_epsilon(sites) -> None:
    svc = sites[0]
    fed = Federation(svc.settings, svc.privacy, svc.calibration)
    release = fed.prepare(svc.actor, LAYOUT, "127.0.0.1:9", epsilon=0.5, rng=np.random.default_rng(1))
    entry = [e for e in svc.privacy.audit.entries() if e.action == "federation.round"][-1]
    assert entry.outcome == "released" and entry.purpose == "model-improvement"
    assert entry.detail["sha256"] == release.digest and entry.detail["bytes"] == LAYOUT.length * 8
    assert entry.detail["epsilon"] == 0.5 and entry.detail["delta"] == 0.0
    assert entry.detail["sensitivity"] == PairPlan(8, 4, 6).sensitivity
    assert release.vector.dtype == np.int64 and len(release.vector) == LAYOUT.length


def test_calibrating_and_preparing_a_release_open_no_connection(tmp_path: Path, engine: Engine) -> None:
    svc = site(tmp_path, engine, synthetic_people(np.random.default_rng(12), 40, 4))
    try:
        with EgressGuard(block=False) as guard:
            svc.calibration.measure(svc.actor, None, (1e-2,), PairPlan(20, 8, 6))
            Federation(svc.settings, svc.privacy, svc.calibration).prepare(svc.actor, LAYOUT, "203.0.113.9:9092")
        assert guard.attempts == []
    finally:
        svc.close()


def test_the_vendor_writes_federated_tables_with_their_provenance_and_keeps_the_others(tmp_path: Path) -> None:
    import json
    import shutil

    from facekeeper.bundle.manifest import default_calibration_path
    from facekeeper.matching import CalibrationTable
    from facekeeper.publisher.federate import write_calibration

    path = tmp_path / "calibration.json"
    shutil.copy(default_calibration_path(), path)
    before = json.loads(path.read_text())
    fused_key = PROTOCOL["accurate"][0]
    tables = {key: CalibrationTable(key, "federated test", 9000, 300, ((1e-2, 0.5),))
              for key in ("dlib-resnet-v1", fused_key)}
    write_calibration(path, tables, {"sites": 3, "epsilon_per_site": 1.0, "delta": 0.0})
    after = json.loads(path.read_text())
    assert after["provenance"]["sites"] == 3
    by_id = {t["model_id"]: t for t in after["tables"]}
    assert by_id["dlib-resnet-v1"]["source"] == "federated test"
    assert [t for t in after["tables"] if t["model_id"] != "dlib-resnet-v1"] == \
        [t for t in before["tables"] if t["model_id"] != "dlib-resnet-v1"]
    if "fusion" in before:
        assert after["fusion"]["table"]["source"] == "federated test"
        assert after["fusion"]["models"] == before["fusion"]["models"]


def test_cli_join_refuses_bad_addresses_and_plaintext_without_asking_and_shows_the_budget(sites) -> None:
    import json

    from typer.testing import CliRunner

    from facekeeper.cli.main import app
    from facekeeper.errors import InvalidInput

    home = str(sites[1].settings.data_dir)
    released = len([e for e in sites[1].privacy.audit.entries() if e.action == "federation.round"])
    runner = CliRunner()
    r = runner.invoke(app, ["--home", home, "federate", "join", "--superlink", "vendor.example"])
    assert r.exit_code == InvalidInput.exit_code and "HOST:PORT" in r.output
    r = runner.invoke(app, ["--home", home, "federate", "join", "--superlink", "vendor.example:9092"])
    assert r.exit_code == InvalidInput.exit_code and "--root-certificates" in r.output
    assert len([e for e in sites[1].privacy.audit.entries() if e.action == "federation.round"]) == released
    r = runner.invoke(app, ["--home", home, "--json", "federate", "budget"])
    assert r.exit_code == 0 and json.loads(r.output)["round_epsilon"] == 1.0


def test_the_vendor_withholds_thresholds_the_noise_cannot_support(sites) -> None:
    from facekeeper.publisher.federate import Aggregate, tables_from_sum

    sensitivity = PairPlan(8, 4, 6).sensitivity
    exact = Aggregate(LAYOUT, summed(sites, math.inf, 0), len(sites), 0.0)
    tables, provenance = tables_from_sum(exact, epsilon=math.inf, sensitivity=sensitivity)
    assert tables["dlib-resnet-v1"].points and provenance["withheld"] == []
    noisy = Aggregate(LAYOUT, summed(sites, 1.0, 9), len(sites), 0.0)
    tables, provenance = tables_from_sum(noisy, epsilon=1.0, sensitivity=sensitivity)
    assert "dlib-resnet-v1" not in tables  # 1,000 people at epsilon 1 cannot support FMR 1e-2
    assert {w["fmr"] for w in provenance["withheld"]} and all(w["error_bound"] > w["fmr"] / 2
                                                             for w in provenance["withheld"])


def test_a_spent_budget_refuses_before_anything_is_computed_or_sent(tmp_path: Path, engine: Engine) -> None:
    from tests.privacy.conftest import Clock

    clock = Clock()
    svc = site(tmp_path, engine, synthetic_people(np.random.default_rng(8), 12, 3))
    svc.privacy.clock = svc.clock = clock
    svc.settings.federation.round_epsilon, svc.settings.federation.yearly_epsilon = 1.0, 2.5
    try:
        fed = Federation(svc.settings, svc.privacy, svc.calibration)
        admin = svc.actor
        for _ in range(2):
            fed.prepare(admin, LAYOUT, "127.0.0.1:1")
        from facekeeper.errors import PrivacyBudgetSpent

        with pytest.raises(PrivacyBudgetSpent, match=r"2 of the yearly 2\.5"):
            fed.prepare(admin, LAYOUT, "127.0.0.1:1")
        outcomes = [e.outcome for e in svc.privacy.audit.entries() if e.action == "federation.round"]
        assert outcomes == ["released", "released", "refused:privacy-budget-spent"]
        clock.advance(366)
        assert fed.budget(clock())["spent_last_365_days"] == 0
        with pytest.raises(ConsentRequired):  # model-improvement consents last a year unless renewed
            fed.prepare(admin, LAYOUT, "127.0.0.1:1")
        for i in range(12):
            svc.grant_consent(f"p{i:04d}", IMPROVE, FORM)
        fed.prepare(admin, LAYOUT, "127.0.0.1:1")
    finally:
        svc.close()
