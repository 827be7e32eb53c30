"""Threshold tables that hold on every population measured: at each FMR, the strictest population's threshold.

A threshold measured on one population lets strangers of another through at a different rate: faces94's
SFace thresholds let London's strangers through at 6-11x the stated FMR (docs/accuracy.md). So a shipped table
takes, at each FMR, the lowest (strictest) of the thresholds of every population it was given: measured where
the population has at least ``MIN_FALSE_MATCHES`` impostor pairs below it, else the strict end of the 95%
interval of its impostor-tail fit (``facekeeper.tail``), else nothing (a population too small to fit says
nothing about that FMR). A point enters the table only where at least one population measured it, so the
table still claims a measured rate only where one was counted; below the points, the table carries the tail fit
whose strict ends are lowest there.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from facekeeper.evaluation import MIN_FALSE_MATCHES, TABLE_FMRS
from facekeeper.matching import CalibrationTable
from facekeeper.tail import TailFit, fit_tail

DEEP_FMRS = tuple(10.0**-e for e in range(6, 10))  # where 1:N over large galleries decides


@dataclass(frozen=True)
class PopulationThreshold:
    """One population's threshold at one FMR and how it was found: "measured" or "extrapolated"."""

    population: str
    fmr: float
    threshold: float
    how: str


def population_thresholds(name: str, impostor: np.ndarray, tail: TailFit | None,
                          fmrs: Sequence[float] = TABLE_FMRS) -> list[PopulationThreshold]:
    """``name``'s threshold at each of ``fmrs`` it can speak for: counted, or the tail fit's strict end."""
    out = []
    ordered = np.sort(np.asarray(impostor, np.float64))
    for fmr in fmrs:
        allowed = math.floor(fmr * len(ordered) + 1e-9)  # as ``evaluation.operating_point`` counts them
        if allowed >= MIN_FALSE_MATCHES:
            out.append(PopulationThreshold(name, fmr, float(ordered[allowed - 1]), "measured"))
        elif tail is not None:
            out.append(PopulationThreshold(name, fmr, tail.interval(fmr)[0], "extrapolated"))
    return out


@dataclass(frozen=True)
class Strictest:
    """The table and, per FMR, which population set each point (the evidence the docs print)."""

    table: CalibrationTable
    chosen: tuple[PopulationThreshold, ...]  # the strictest population at each table FMR
    tail_from: str | None  # the population whose tail fit the table carries


def strictest_table(model_id: str, source: str, populations: Mapping[str, tuple[np.ndarray, np.ndarray]],
                    *, fmrs: Sequence[float] = TABLE_FMRS) -> Strictest:
    """The table of ``model_id`` from ``populations`` (name -> (genuine, impostor) scores, lower = more alike).

    Each point is the strictest population threshold at its FMR, for the FMRs some population measured; the
    carried tail is the fit whose strict ends over ``DEEP_FMRS`` are lowest in sum. ``impostor_pairs`` and
    ``genuine_pairs`` count every population's pairs.
    """
    if not populations:
        raise ValueError("a table needs at least one population")
    tails = {name: fit_tail(imp) for name, (_, imp) in populations.items()}
    rows = [row for name, (_, imp) in populations.items()
            for row in population_thresholds(name, imp, tails[name], fmrs)]
    measured = {row.fmr for row in rows if row.how == "measured"}
    if not measured:
        raise ValueError(f"no population has {MIN_FALSE_MATCHES} impostor pairs below any FMR of the table")
    chosen = tuple(min((r for r in rows if r.fmr == fmr), key=lambda r: r.threshold) for fmr in sorted(measured))
    fitted = {name: t for name, t in tails.items() if t is not None}
    tail_from = min(fitted, key=lambda n: sum(fitted[n].interval(f)[0] for f in DEEP_FMRS)) if fitted else None
    table = CalibrationTable(
        model_id, source, sum(len(imp) for _, imp in populations.values()),
        sum(len(gen) for gen, _ in populations.values()),
        tuple((r.fmr, math.floor(r.threshold * 1e4) / 1e4) for r in chosen),  # rounded down: never looser
        None if tail_from is None else fitted[tail_from])
    return Strictest(table, chosen, tail_from)
