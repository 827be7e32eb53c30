"""Tables that hold on every population: the strictest population threshold at each FMR."""

from __future__ import annotations

import json

import numpy as np
import pytest

from facekeeper.bundle.manifest import default_calibration_path
from facekeeper.evaluation import MIN_FALSE_MATCHES, operating_point
from facekeeper.fusion import DLIB_MODEL_ID, FACENET_MODEL_ID, SFACE_MODEL_ID, FusionCalibration, fusion_model_id
from facekeeper.matching import CalibrationTable
from facekeeper.tail import fit_tail
from facekeeper.transfer import population_thresholds, strictest_table


def _population(n: int, shift: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(genuine, impostor) distances; a lower ``shift`` is a population whose strangers look more alike."""
    rng = np.random.default_rng(seed)
    return rng.normal(0.35, 0.05, 200), rng.normal(0.8 + shift, 0.08, n)


def test_each_point_is_the_strictest_measured_threshold_and_names_its_population() -> None:
    pops = {"wide": _population(200_000, 0.0, 1), "close": _population(200_000, -0.05, 2)}
    st = strictest_table("m", "two sets", pops)
    for row, (fmr, value) in zip(st.chosen, st.table.points, strict=True):
        measured = {name: operating_point(g, i, fmr, MIN_FALSE_MATCHES).threshold for name, (g, i) in pops.items()}
        assert row.population == "close" and row.how == "measured"
        assert value == np.floor(min(t for t in measured.values() if t is not None) * 1e4) / 1e4
    assert st.table.impostor_pairs == 400_000 and st.table.genuine_pairs == 400
    part = strictest_table("m", "a set and its part", {**pops, "part": pops["close"]}, subgroups=frozenset({"part"}))
    assert part.table.impostor_pairs == 400_000


def test_a_set_too_small_to_count_speaks_through_the_strict_end_of_its_tail() -> None:
    big, small = _population(400_000, 0.0, 3), _population(20_000, -0.08, 4)
    st = strictest_table("m", "big and small", {"big": big, "small": small})
    assert [f for f, _ in st.table.points] == [1e-4, 1e-3, 1e-2]  # only where some set counted 10 pairs
    tail = fit_tail(small[1])
    assert tail is not None
    by_fmr = {row.fmr: row for row in st.chosen}
    assert by_fmr[1e-3].population == "small" and by_fmr[1e-3].how == "measured"  # 20 pairs below it
    assert by_fmr[1e-4].population == "small" and by_fmr[1e-4].how == "extrapolated"  # 2 pairs expected
    assert by_fmr[1e-4].threshold == tail.interval(1e-4)[0]
    assert st.tail_from == "big"  # the small set's fit does not reach 1e-5 (0.2 pairs expected)


def test_a_fit_speaks_only_down_to_one_expected_pair() -> None:
    rows = population_thresholds("small", _population(20_000, 0.0, 11)[1], fit_tail(_population(20_000, 0.0, 11)[1]),
                                 (1e-3, 1e-4, 5e-5, 4e-5, 1e-5))
    assert [(r.fmr, r.how) for r in rows] == [(1e-3, "measured"), (1e-4, "extrapolated"), (5e-5, "extrapolated")]


def test_the_carried_tail_is_the_strictest_of_those_reaching_below_the_table() -> None:
    loose, strict = _population(300_000, 0.0, 12), _population(300_000, -0.05, 13)
    st = strictest_table("m", "two sets", {"loose": loose, "strict": strict})
    assert st.tail_from == "strict"


def test_the_table_holds_on_every_population_it_was_built_from() -> None:
    pops = {"a": _population(300_000, 0.0, 5), "b": _population(300_000, -0.04, 6), "c": _population(300_000, 0.03, 7)}
    table = strictest_table("m", "three sets", pops).table
    for fmr, threshold in table.points:
        for _, imp in pops.values():
            if fmr * len(imp) >= MIN_FALSE_MATCHES:
                assert np.mean(imp <= threshold) <= fmr


def test_a_population_too_small_to_fit_adds_nothing() -> None:
    big = _population(200_000, 0.0, 8)
    alone = strictest_table("m", "one set", {"big": big}).table
    with_tiny = strictest_table("m", "one set and a group", {"big": big, "tiny": _population(300, -0.3, 9)}).table
    assert with_tiny.points == alone.points


def test_no_population_large_enough_is_an_error() -> None:
    with pytest.raises(ValueError, match="no population"):
        strictest_table("m", "tiny", {"tiny": _population(300, 0.0, 10)})


def test_a_point_is_never_looser_than_the_point_above_it() -> None:
    # the small set's wide interval at 1e-4 lies below the big set's count at 1e-5
    big, small = _population(1_000_000, 0.0, 14), _population(20_000, -0.12, 15)
    st = strictest_table("m", "big and small", {"big": big, "small": small})
    values = [v for _, v in st.table.points]
    assert values == sorted(values)
    by_fmr = {row.fmr: row for row in st.chosen}
    assert by_fmr[1e-5].how == "as at 0.0001" and by_fmr[1e-5].population == "small"


def test_every_shipped_table_has_a_tail_fit_and_never_loosens_as_the_fmr_falls() -> None:
    raw = json.loads(default_calibration_path().read_text())
    tables = [CalibrationTable.from_dict(t) for t in raw["tables"]] + [FusionCalibration.from_dict(raw["fusion"]).table]
    assert {t.model_id for t in tables} >= {DLIB_MODEL_ID, SFACE_MODEL_ID, FACENET_MODEL_ID,
                                            fusion_model_id(SFACE_MODEL_ID)}
    for table in tables:
        values = [v for _, v in table.points]
        assert table.tail is not None and values == sorted(values), table.model_id
        assert table.threshold(1e-7).value <= values[0]
