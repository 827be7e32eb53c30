"""Fixed-bin distance histograms: what a site releases in a federated round, and how a table comes from them.

The bins are public and the same everywhere (``PROTOCOL``: equal bins over each mode's range, [0.2, 1.2)
in steps of 0.005 for dlib distances; values outside fall in the first or last bin), so histograms from
different sites add up bin by bin, and their sum is the histogram of the pooled pairs. A threshold for an
FMR is read from the impostor histogram the way ``evaluation.operating_point`` reads it from sorted
distances: the distance below which ``floor(fmr * impostors)`` impostor pairs fall, interpolated
linearly inside its bin, so a table from histograms is within one bin width of the one from exact distances.

Privacy: each site adds discrete Laplace noise (the two-sided geometric mechanism) to its integer counts
before anything leaves. With L1 sensitivity ``Δ`` (one person added or removed, ``PairPlan.sensitivity``
for each mode released) and ``P(k) ∝ exp(-ε |k| / Δ)``, the release is ε-differentially private with
δ = 0 (Ghosh, Roughgarden, Sundararajan 2009): integers in, integers out, no floating-point leak.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

BINS = 400


@dataclass(frozen=True)
class Bins:
    """``count`` equal bins over [low, high); values outside fall in the first or last bin."""

    low: float = 0.0
    high: float = 2.0
    count: int = BINS

    @property
    def width(self) -> float:
        return (self.high - self.low) / self.count

    def index(self, values: np.ndarray) -> np.ndarray:
        pos = np.floor((np.asarray(values, np.float64) - self.low) / self.width)
        return np.clip(pos, 0, self.count - 1).astype(np.int64)


def histogram(values: np.ndarray, bins: Bins) -> np.ndarray:
    """Counts per fixed bin (int64, ``bins.count`` long)."""
    return np.bincount(bins.index(values), minlength=bins.count).astype(np.int64)


def threshold_from_histogram(impostor: np.ndarray, fmr: float, bins: Bins,
                             min_false_matches: int = 1) -> float | None:
    """The score that lets ``fmr`` of the impostor pairs through, or None if the counts cannot support it.

    Noisy counts are summed as they are (zero-mean noise keeps the running sums unbiased; clipping each
    negative count to zero would not), and the running sum is made non-decreasing before it is searched.
    """
    counts = np.asarray(impostor, np.float64)
    total = counts.sum()
    allowed = math.floor(fmr * total + 1e-9)
    if allowed < max(min_false_matches, 1):
        return None
    cum = np.maximum.accumulate(np.cumsum(counts))
    b = min(int(np.searchsorted(cum, allowed, side="left")), bins.count - 1)
    before = cum[b - 1] if b else 0.0
    inside = cum[b] - before
    frac = min(max((allowed - before) / inside, 0.0), 1.0) if inside > 0 else 1.0
    return float(bins.low + (b + frac) * bins.width)


def rate_above(genuine: np.ndarray, score: float, bins: Bins) -> float | None:
    """The share of genuine pairs scoring above ``score`` (the FNMR there), uniform inside a bin."""
    counts = np.asarray(genuine, np.float64)
    total = counts.sum()
    if total <= 0:
        return None
    pos = (score - bins.low) / bins.width
    b = int(min(max(math.floor(pos), 0), bins.count - 1))
    below = counts[:b].sum() + counts[b] * min(max(pos - b, 0.0), 1.0)
    return float(max(0.0, min(1.0, 1.0 - below / total)))


def table_points(impostor: np.ndarray, fmrs: Sequence[float], bins: Bins,
                 min_false_matches: int) -> list[tuple[float, float]]:
    """(fmr, score) for each FMR the counts support with ``min_false_matches`` impostor pairs below."""
    points = []
    for f in fmrs:
        t = threshold_from_histogram(impostor, f, bins, min_false_matches)
        if t is not None:
            points.append((f, round(t, 4)))
    return sorted(points)


# -- differential privacy ---------------------------------------------------------------------------
def discrete_laplace(rng: np.random.Generator, scale: float, size: int) -> np.ndarray:
    """Integer noise with ``P(k) ∝ exp(-|k| / scale)``: the difference of two geometric variables."""
    if scale <= 0:
        return np.zeros(size, np.int64)
    p = 1.0 - math.exp(-1.0 / scale)
    return (rng.geometric(p, size) - rng.geometric(p, size)).astype(np.int64)


def noise_variance(scale: float) -> float:
    """Variance of one discrete Laplace draw: 2a / (1 - a)^2 with a = exp(-1/scale)."""
    if scale <= 0:
        return 0.0
    a = math.exp(-1.0 / scale)
    return 2 * a / (1 - a) ** 2


@dataclass(frozen=True)
class Mechanism:
    """ε per release, δ = 0; noise scale per count = Δ · modes / ε (the modes' histograms share the ε)."""

    epsilon: float
    sensitivity: int
    modes: int = 1

    @property
    def delta(self) -> float:
        return 0.0

    @property
    def scale(self) -> float:
        if self.epsilon == math.inf:
            return 0.0
        return self.sensitivity * self.modes / self.epsilon

    def noise(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return discrete_laplace(rng, self.scale, size)


def fmr_error_bound(fmr: float, impostor_total: float, bins_below: int, bins: int, sites: int, scale: float,
                    z: float = 4.0) -> float:
    """How far the FMR read from a noisy summed histogram can stray: ``z`` standard deviations of the noise
    in a cumulative count over ``bins_below`` bins summed over ``sites``, plus ``fmr`` times that of the
    noisy total (all ``bins``), divided by the impostor total.

    The threshold the vendor derives for FMR ``f`` then lies between the noise-free thresholds for
    ``f - e`` and ``f + e`` (plus one bin width of interpolation), except with probability below 1/z^2
    (Chebyshev; ~6e-5 for a Gaussian tail at z = 4).
    """
    if impostor_total <= 0:
        return math.inf
    var = noise_variance(scale) * sites
    return z * (math.sqrt(bins_below * var) + fmr * math.sqrt(bins * var)) / impostor_total


# -- the round's wire format ------------------------------------------------------------------------
# Every mode a round may carry: (the bundle table it calibrates, its public bins). A release is, for each
# mode in the order given, the impostor histogram then the genuine histogram.
PROTOCOL: dict[str, tuple[str, Bins]] = {
    # dlib distances: impostors below 0.2 do not occur and thresholds lie far above it, so the bins start
    # there (fewer bins below a threshold, less summed noise); width 0.005 as everywhere
    "fast": ("dlib-resnet-v1", Bins(0.2, 1.2, 200)),
    # accurate mode's fused score (dlib + SFace since bundle 1.3.0, sum of two z-scores, lower = more alike):
    # its thresholds lie near -9..-4
    "accurate": ("fusion-dlib-resnet-v1+sface-2021dec-int8bq", Bins(-12.0, 4.0, 400)),
}


@dataclass(frozen=True)
class Layout:
    modes: tuple[str, ...]

    def __post_init__(self) -> None:
        unknown = [m for m in self.modes if m not in PROTOCOL]
        if unknown or not self.modes or len(set(self.modes)) != len(self.modes):
            raise ValueError(f"a round carries distinct modes among {', '.join(PROTOCOL)}, not {list(self.modes)}")

    @classmethod
    def parse(cls, text: str) -> Layout:
        return cls(tuple(m.strip() for m in text.split(",") if m.strip()))

    @property
    def length(self) -> int:
        return sum(2 * PROTOCOL[m][1].count for m in self.modes)

    def join(self, parts: dict[str, tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        return np.concatenate([np.concatenate(parts[m]) for m in self.modes]).astype(np.int64)

    def split(self, vector: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        if len(vector) != self.length:
            raise ValueError(f"a release for modes {','.join(self.modes)} has {self.length} counts, not {len(vector)}")
        out, at = {}, 0
        for m in self.modes:
            n = PROTOCOL[m][1].count
            out[m] = (np.asarray(vector[at : at + n]), np.asarray(vector[at + n : at + 2 * n]))
            at += 2 * n
        return out
