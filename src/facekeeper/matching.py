"""Decisions at a stated false-match rate.

A threshold is only meaningful with the rate of strangers it lets through, and that rate belongs to the
population it was measured on. The calibration table maps target FMRs to distances for one model;
1:N search divides the target false-positive identification rate (FPIR) by the number of subjects
searched, because every extra subject is one more chance for a stranger to match someone.

Below the lowest FMR the table measured, a table with a tail fit (``facekeeper.tail``) extrapolates; the
purpose decides whether to use it (``beyond_table = "extrapolate"``, at the strict end of its 95%
interval) or to accept nobody (``"refuse"``). Every decision says which: ``calibration`` is ``measured``,
``extrapolated`` or ``beyond``.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from importlib import resources
from itertools import pairwise
from typing import Any, NamedTuple

from facekeeper.errors import ModelMismatch
from facekeeper.tail import TailFit

BEYOND_POLICIES = ("refuse", "extrapolate")  # [purposes.NAME] beyond_table


class Threshold(NamedTuple):
    """A table's answer for one FMR. ``within``: the FMR lies in the measured range. ``extrapolated``: it lies
    below it and ``value`` comes from the tail fit, with ``interval`` its 95% interval (strict end first)."""

    value: float
    within: bool
    extrapolated: bool = False
    interval: tuple[float, float] | None = None


@dataclass(frozen=True)
class CalibrationTable:
    """(fmr, distance) points for one model, measured on ``source`` with ``impostor_pairs`` comparisons;
    ``tail`` fits the impostor scores below the points, when there were enough to fit."""

    model_id: str
    source: str
    impostor_pairs: int
    genuine_pairs: int
    points: tuple[tuple[float, float], ...]  # sorted by fmr ascending (distance ascending)
    tail: TailFit | None = None

    @property
    def min_fmr(self) -> float:
        return self.points[0][0]

    def threshold(self, fmr: float) -> Threshold:
        """The distance at which the FMR is ``fmr``: interpolated (log FMR) between measured points.

        Above the largest measured FMR the largest threshold is used (stricter than asked). Below the smallest,
        the tail fit's threshold when there is one (``extrapolated``, never looser than the smallest measured
        threshold), else the smallest threshold with ``within`` false: the true FMR there is unknown, so the
        caller must say so rather than pretend.
        """
        if fmr < self.points[0][0]:
            floor = self.points[0][1]
            if self.tail is None:
                return Threshold(floor, False)
            lo, hi = self.tail.interval(fmr)
            return Threshold(min(self.tail.threshold(fmr), floor), False, True, (min(lo, floor), min(hi, floor)))
        if fmr == self.points[0][0]:
            return Threshold(self.points[0][1], True)
        if fmr >= self.points[-1][0]:
            return Threshold(self.points[-1][1], fmr <= self.points[-1][0])
        for (f0, d0), (f1, d1) in pairwise(self.points):
            if f0 <= fmr <= f1:
                t = (math.log10(fmr) - math.log10(f0)) / (math.log10(f1) - math.log10(f0))
                return Threshold(d0 + t * (d1 - d0), True)
        raise AssertionError("unreachable: points are sorted")

    def fmr_at(self, distance: float) -> float:
        """The estimated FMR of accepting at ``distance`` (log-linear between measured points).

        Closer than the lowest measured point, the tail fit's FMR at the loose end of its 95% interval (a
        stranger this close is rarer than the table can count, but the estimate must not flatter the match);
        without a tail fit, the lowest measured FMR, an upper bound.
        """
        pts = self.points
        if distance <= pts[0][1]:
            return pts[0][0] if self.tail is None else min(pts[0][0], self.tail.fmr_upper(distance))
        if distance >= pts[-1][1]:
            return pts[-1][0]
        for (f0, d0), (f1, d1) in pairwise(pts):
            if d0 <= distance <= d1:
                t = (distance - d0) / (d1 - d0) if d1 > d0 else 0.0
                return 10 ** (math.log10(f0) + t * (math.log10(f1) - math.log10(f0)))
        raise AssertionError("unreachable: points are sorted")

    def to_dict(self) -> dict[str, Any]:
        out = {"model_id": self.model_id, "source": self.source, "impostor_pairs": self.impostor_pairs,
               "genuine_pairs": self.genuine_pairs, "points": [list(p) for p in self.points]}
        return {**out, "tail": self.tail.to_dict()} if self.tail is not None else out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CalibrationTable:
        points = tuple(sorted((float(f), float(d)) for f, d in data["points"]))
        tail = TailFit.from_dict(data["tail"]) if data.get("tail") else None
        return cls(str(data["model_id"]), str(data["source"]), int(data["impostor_pairs"]),
                   int(data["genuine_pairs"]), points, tail)


def default_table(model_id: str) -> CalibrationTable:
    """The table shipped with facekeeper for ``model_id`` (``data/calibration.json``)."""
    raw = json.loads(resources.files("facekeeper").joinpath("data/calibration.json").read_text())
    for entry in raw["tables"]:
        if entry["model_id"] == model_id:
            return CalibrationTable.from_dict(entry)
    raise ModelMismatch(f"no calibration table for model {model_id}: the model bundle is incomplete")


SCORE_DECIMALS = 2  # shown scores move in 0.01 steps: enough to read a decision, no longer 1e-4 per answer


def fmr_decade(fmr: float) -> float:
    """The power of ten at or below ``fmr`` (1e-9 at least): the audit's FMR bucket, as a number."""
    return 10.0 ** max(-9, min(0, math.floor(math.log10(fmr)))) if fmr > 0 else 1e-9


def similarity(distance: float) -> float:
    """A 0..1 score for people, not for decisions: 1 is identical, 0 is as far as faces get (>= 1.0)."""
    return round(max(0.0, 1.0 - distance), 4)


@dataclass(frozen=True)
class Decision:
    """A decision and the rate it was made at. ``distance`` is the score compared with ``threshold``: the dlib
    distance in ``fast`` mode, the fused z-score in ``accurate`` mode (both lower = more alike)."""

    match: bool
    distance: float
    similarity: float
    threshold: float
    target_fmr: float  # per-comparison FMR the threshold was set for
    estimated_fmr: float  # the table's FMR at this distance: how often a stranger gets this close
    within_calibration: bool
    mode: str = "fast"  # which models decided: "fast" (dlib) or "accurate" (dlib + FaceNet fused)
    # "measured": the threshold comes from measured points; "extrapolated": from the tail fit, below them;
    # "beyond": below them and not extrapolated (purpose policy, or no tail fit), so nobody matches
    calibration: str = "measured"
    calibration_note: str | None = None  # why, in rates only (a device is told it too): never a score

    def shown(self) -> Decision:
        """The decision as it leaves the service: scores to ``SCORE_DECIMALS`` decimals, the FMR as its decade.

        Exact scores are an oracle: enough of them rebuild a template (docs/deployment.md, "What each role
        sees"). The match itself was decided on the exact score.
        """
        return dataclasses.replace(self, distance=round(self.distance, SCORE_DECIMALS),
                                   similarity=round(self.similarity, SCORE_DECIMALS),
                                   estimated_fmr=fmr_decade(self.estimated_fmr))

    def to_dict(self) -> dict[str, Any]:
        shown = self.shown()
        return {"match": self.match, "mode": self.mode, "distance": shown.distance, "similarity": shown.similarity,
                "threshold": round(self.threshold, 4), "target_fmr": self.target_fmr,
                "estimated_fmr": shown.estimated_fmr, "within_calibration": self.within_calibration,
                "calibration": self.calibration, "calibration_note": self.calibration_note}


def beyond_note(table: CalibrationTable, fmr: float, calibration: str) -> str | None:
    """Why a decision at ``fmr`` is not on measured points, in rates and pair counts only."""
    if calibration == "measured":
        return None
    below = (f"FMR {fmr:.2g} per comparison is below the lowest the table measured ({table.min_fmr:g}, on"
             f" {table.impostor_pairs:,} impostor pairs)")
    if calibration == "extrapolated":
        return (f"{below}: threshold extrapolated from the impostor tail (generalized Pareto fit), at the strict"
                " end of its 95% interval")
    return f"{below} and the table has no tail fit to extrapolate from: nobody matches"


def decide(table: CalibrationTable, distance: float, fmr: float, *, mode: str = "fast",
           shown_similarity: float | None = None, beyond: str = "extrapolate") -> Decision:
    """Match when ``distance`` is within the table's threshold for ``fmr``. ``shown_similarity`` overrides the
    0..1 figure for people (a fused score is no distance; accurate mode shows dlib's).

    Below the measured points the tail fit's threshold is used at the strict end of its interval (the fit's
    bias on a normal-like tail is toward looser thresholds), unless ``beyond`` is ``refuse`` (``refused``);
    a table without a tail fit matches nobody there.
    """
    t = table.threshold(fmr)
    calibration, threshold = "measured", t.value
    if fmr < table.min_fmr:
        if t.extrapolated and t.interval is not None:
            calibration, threshold = "extrapolated", t.interval[0]
        else:
            calibration = "beyond"
    shown = similarity(distance) if shown_similarity is None else shown_similarity
    match = calibration != "beyond" and distance <= threshold
    decision = Decision(match, distance, shown, threshold, fmr, table.fmr_at(distance), t.within, mode,
                        calibration, beyond_note(table, fmr, calibration))
    return refused(decision, beyond)


def refused(decision: Decision, beyond: str) -> Decision:
    """``decision`` under the purpose's ``beyond_table`` policy: with ``refuse`` an extrapolated threshold
    decides nothing, and nobody matches."""
    if beyond not in BEYOND_POLICIES:
        raise ValueError(f"beyond must be one of {BEYOND_POLICIES}, not {beyond!r}")
    if beyond == "extrapolate" or decision.calibration != "extrapolated":
        return decision
    note = (f"FMR {decision.target_fmr:.2g} per comparison is below the lowest the table measured: this purpose"
            ' does not decide beyond the table (beyond_table = "refuse"), nobody matches')
    return dataclasses.replace(decision, match=False, calibration="beyond", calibration_note=note)


def per_comparison_fmr(fpir: float, gallery_size: int) -> float:
    """The FMR per comparison that keeps a 1:N search's FPIR at ``fpir`` (FPIR ≈ N · FMR for small rates)."""
    return fpir / max(gallery_size, 1)
