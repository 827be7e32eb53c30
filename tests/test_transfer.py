"""Tables that hold on every population: the strictest population threshold at each FMR."""

from __future__ import annotations

import numpy as np
import pytest

from facekeeper.evaluation import MIN_FALSE_MATCHES, operating_point
from facekeeper.tail import fit_tail
from facekeeper.transfer import strictest_table


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


def test_a_set_too_small_to_count_speaks_through_the_strict_end_of_its_tail() -> None:
    big, small = _population(400_000, 0.0, 3), _population(20_000, -0.08, 4)
    st = strictest_table("m", "big and small", {"big": big, "small": small})
    assert [f for f, _ in st.table.points] == [1e-4, 1e-3, 1e-2]  # only where some set counted 10 pairs
    tail = fit_tail(small[1])
    assert tail is not None
    for row in st.chosen:
        if row.fmr < 1e-3:  # 20,000 pairs count 10 false matches only down to 5e-4
            assert row.population == "small" and row.how == "extrapolated"
            assert row.threshold == tail.interval(row.fmr)[0]
    assert st.tail_from == "small"


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
