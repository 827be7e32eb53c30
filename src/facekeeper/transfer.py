"""Threshold tables that hold on every population measured: at each FMR, the strictest population's threshold.

A threshold measured on one population lets strangers of another through at a different rate: dlib + FaceNet's
faces94 thresholds let London's strangers through at 4.4x the stated FMR at 1e-4 (docs/accuracy.md, "Do tables
transfer?"). So a shipped table
takes, at each FMR, the lowest (strictest) of the thresholds of every population it was given: measured where
the population has at least ``MIN_FALSE_MATCHES`` impostor pairs below it, else the strict end of the 95%
interval of its impostor-tail fit (``facekeeper.tail``) down to the FMR at which one of its pairs would be
expected (``1 / n``), else nothing. Further down a small set's fit speaks, not its data: 4,704 pairs fitted
down to 1e-5 put dlib's threshold at a negative distance. A point enters the table only where at least one
population measured it, so the table claims a measured rate only where one was counted; a point is never looser
than the one above it (a wide interval at 1e-4 can be stricter than a count at 1e-5); below the points the
table carries, of the fits that reach the next decade down, the one strictest there.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from facekeeper.evaluation import MIN_FALSE_MATCHES, TABLE_FMRS
from facekeeper.matching import CalibrationTable
from facekeeper.tail import TailFit, fit_tail


@dataclass(frozen=True)
class PopulationThreshold:
    """One population's threshold at one FMR and how it was found: "measured", "extrapolated", or "as at F" (held
    to the stricter threshold of the higher FMR F, so that the table never loosens as the FMR falls)."""

    population: str
    fmr: float
    threshold: float
    how: str


def population_thresholds(name: str, impostor: np.ndarray, tail: TailFit | None,
                          fmrs: Sequence[float] = TABLE_FMRS) -> list[PopulationThreshold]:
    """``name``'s threshold at each of ``fmrs`` it can speak for: counted, or the tail fit's strict end where one
    of its pairs would be expected."""
    out = []
    ordered = np.sort(np.asarray(impostor, np.float64))
    for fmr in fmrs:
        allowed = math.floor(fmr * len(ordered) + 1e-9)  # as ``evaluation.operating_point`` counts them
        if allowed >= MIN_FALSE_MATCHES:
            out.append(PopulationThreshold(name, fmr, float(ordered[allowed - 1]), "measured"))
        elif tail is not None and fmr * len(ordered) >= 1:
            out.append(PopulationThreshold(name, fmr, tail.interval(fmr)[0], "extrapolated"))
    return out


@dataclass(frozen=True)
class Strictest:
    """The table and, per FMR, which population set each point (the evidence the docs print)."""

    table: CalibrationTable
    chosen: tuple[PopulationThreshold, ...]  # the strictest population at each table FMR, FMR ascending
    tail_from: str | None  # the population whose tail fit the table carries


def strictest_table(model_id: str, source: str, populations: Mapping[str, tuple[np.ndarray, np.ndarray]],
                    *, fmrs: Sequence[float] = TABLE_FMRS, subgroups: frozenset[str] = frozenset()) -> Strictest:
    """The table of ``model_id`` from ``populations`` (name -> (genuine, impostor) scores, lower = more alike).

    Each point is the strictest population threshold at its FMR, for the FMRs some population measured; the
    carried tail is, of the fits that reach a tenth of the lowest point (or else the largest population's),
    the one whose strict end is lowest there. ``impostor_pairs`` and ``genuine_pairs`` count the pairs of every
    population but the ``subgroups`` (parts of another population: its pairs are counted there).
    """
    if not populations:
        raise ValueError("a table needs at least one population")
    tails = {name: fit_tail(imp) for name, (_, imp) in populations.items()}
    rows = [row for name, (_, imp) in populations.items()
            for row in population_thresholds(name, imp, tails[name], fmrs)]
    measured = {row.fmr for row in rows if row.how == "measured"}
    if not measured:
        raise ValueError(f"no population has {MIN_FALSE_MATCHES} impostor pairs below any FMR of the table")
    chosen: list[PopulationThreshold] = []
    for fmr in sorted(measured, reverse=True):  # never looser at a lower FMR than at a higher one
        best = min((r for r in rows if r.fmr == fmr), key=lambda r: r.threshold)
        if chosen and chosen[-1].threshold < best.threshold:
            best = PopulationThreshold(chosen[-1].population, fmr, chosen[-1].threshold, f"as at {chosen[-1].fmr:g}")
        chosen.append(best)
    chosen.reverse()
    fitted = {name: t for name, t in tails.items() if t is not None}
    below = min(measured) / 10
    reach = {n: t for n, t in fitted.items() if below * t.impostor_pairs >= 1}
    if not reach and fitted:
        largest = max(fitted, key=lambda n: fitted[n].impostor_pairs)
        reach = {largest: fitted[largest]}
    tail_from = min(reach, key=lambda n: reach[n].interval(below)[0]) if reach else None
    table = CalibrationTable(
        model_id, source, sum(len(imp) for n, (_, imp) in populations.items() if n not in subgroups),
        sum(len(gen) for n, (gen, _) in populations.items() if n not in subgroups),
        tuple((r.fmr, math.floor(r.threshold * 1e4) / 1e4) for r in chosen),  # rounded down: never looser
        None if tail_from is None else fitted[tail_from])
    return Strictest(table, tuple(chosen), tail_from)
