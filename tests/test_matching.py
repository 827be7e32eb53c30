"""Thresholds past the measured table: the impostor tail's fit, its interval, and the purpose's policy."""

from __future__ import annotations

from statistics import NormalDist

import numpy as np
import pytest

from facekeeper import evaluation as ev
from facekeeper.matching import CalibrationTable, decide, per_comparison_fmr
from facekeeper.tail import fit_tail, gpd_mle

# Impostor distances ~ N(1.0, 0.1): 400,000 pairs measure down to 1e-5 (4 false matches at 1e-5: not enough).
IMPOSTOR = np.random.default_rng(7).normal(1.0, 0.1, 400_000)
GENUINE = np.random.default_rng(8).normal(0.45, 0.06, 2_000)
TRUE = NormalDist(1.0, 0.1)


@pytest.fixture(scope="module")
def table() -> CalibrationTable:
    return ev.calibration_table("m-v1", "synthetic normal", GENUINE, IMPOSTOR)


def gpd_sample(xi: float, sigma: float, n: int, seed: int) -> np.ndarray:
    u = np.random.default_rng(seed).uniform(size=n)
    return sigma / xi * ((1 - u) ** -xi - 1)


@pytest.mark.parametrize("xi", [-0.25, 0.2])
def test_gpd_maximum_likelihood_recovers_known_parameters(xi: float) -> None:
    fitted_xi, fitted_sigma = gpd_mle(gpd_sample(xi, 0.05, 20_000, seed=3))
    assert fitted_xi == pytest.approx(xi, abs=0.03) and fitted_sigma == pytest.approx(0.05, rel=0.05)


def test_a_table_stops_at_the_lowest_fmr_its_impostor_pairs_support(table: CalibrationTable) -> None:
    assert [f for f, _ in table.points] == [1e-4, 1e-3, 1e-2]  # 1e-5 of 400,000 is 4 pairs, fewer than 10
    assert table.tail is not None and table.tail.exceedances == 1898 and table.tail.impostor_pairs == 400_000


def test_the_extrapolated_1e6_threshold_states_an_interval_holding_the_true_one(table: CalibrationTable) -> None:
    t = table.threshold(1e-6)
    true = TRUE.inv_cdf(1e-6)
    assert t.extrapolated and not t.within and t.interval is not None
    low, high = t.interval
    assert low <= true <= high and high - low < 0.1
    assert low <= t.value <= high < table.points[0][1]  # stricter than the lowest measured threshold


def test_a_threshold_within_the_points_is_measured_and_says_so(table: CalibrationTable) -> None:
    t = table.threshold(1e-3)
    assert (t.within, t.extrapolated, t.interval) == (True, False, None)
    assert t.value == pytest.approx(TRUE.inv_cdf(1e-3), abs=0.01)
    above = table.threshold(0.05)  # looser than the table: its loosest threshold, stricter than asked
    assert (above.value, above.within, above.extrapolated) == (table.points[-1][1], False, False)


def test_the_tail_fit_survives_the_table_file_and_old_tables_still_read(table: CalibrationTable) -> None:
    again = CalibrationTable.from_dict(table.to_dict())
    before, after = table.threshold(1e-7), again.threshold(1e-7)
    assert after.value == pytest.approx(before.value, abs=1e-4) and after.extrapolated
    assert after.interval == pytest.approx(before.interval, abs=1e-4)
    assert "generalized Pareto" in table.to_dict()["tail"]["method"]
    old = CalibrationTable("m-v1", "old", 10, 10, ((1e-3, 0.5), (1e-2, 0.6)))
    assert "tail" not in old.to_dict()  # a signed table without a fit keeps its exact bytes
    assert CalibrationTable.from_dict(old.to_dict()).threshold(1e-5) == (0.5, False, False, None)


def test_too_few_impostor_pairs_fit_no_tail() -> None:
    assert fit_tail(IMPOSTOR[:1000]) is None  # 3 * sqrt(1000) = 95 exceedances: too loose a fit


def test_a_1n_search_over_a_large_gallery_follows_the_purpose_policy(table: CalibrationTable) -> None:
    fmr = per_comparison_fmr(0.01, 1_000_000)  # 1e-8: four decades below the lowest measured point (1e-4)
    close = TRUE.inv_cdf(1e-12)  # a score far rarer than any stranger's
    refused = decide(table, close, fmr, beyond="refuse")
    assert not refused.match and refused.calibration == "beyond" and "refuse" in (refused.calibration_note or "")
    extrapolated = decide(table, close, fmr, beyond="extrapolate")
    assert extrapolated.match and extrapolated.calibration == "extrapolated"
    assert extrapolated.threshold == pytest.approx(table.threshold(fmr).interval[0])  # type: ignore[index]
    assert not extrapolated.within_calibration and "extrapolated" in (extrapolated.calibration_note or "")
    loose = table.points[0][1] - 1e-3  # passes the lowest measured threshold, not the extrapolated one
    assert not decide(table, loose, fmr, beyond="extrapolate").match
    measured = decide(table, close, 1e-3, beyond="refuse")
    assert measured.match and measured.calibration == "measured" and measured.calibration_note is None
    assert measured.to_dict()["calibration"] == "measured"


def test_without_a_tail_fit_nobody_matches_beyond_the_table() -> None:
    old = CalibrationTable("m-v1", "old", 100_000, 10, ((1e-4, 0.44), (1e-2, 0.58)))
    d = decide(old, 0.1, 1e-6, beyond="extrapolate")
    assert not d.match and d.calibration == "beyond" and "no tail fit" in (d.calibration_note or "")
    with pytest.raises(ValueError, match="beyond"):
        decide(old, 0.1, 1e-3, beyond="guess")


def test_a_score_closer_than_the_table_measures_gets_the_tails_fmr_not_the_tables_floor(
        table: CalibrationTable) -> None:
    distance = TRUE.inv_cdf(1e-6)  # a stranger this close: about one pair in a million
    estimated = table.fmr_at(distance)
    assert estimated < table.min_fmr / 10  # not the table's floor of 1e-4
    assert table.tail is not None and estimated >= table.tail.fmr_at(distance)  # the interval's loose end
    assert 1e-6 / 3 < estimated < 1e-6 * 10
    assert decide(table, distance, 1e-3).estimated_fmr == estimated


def test_without_a_tail_fit_a_close_score_is_bounded_by_the_lowest_measured_fmr(table: CalibrationTable) -> None:
    bare = CalibrationTable(table.model_id, table.source, table.impostor_pairs, table.genuine_pairs, table.points)
    assert bare.fmr_at(TRUE.inv_cdf(1e-6)) == table.min_fmr
