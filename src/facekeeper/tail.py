"""Thresholds below the measured table: the impostor tail fitted by extreme-value theory.

A table measures an FMR only where enough impostor pairs fall below its threshold (10 in ``evaluation``,
30 in site calibration), so 4.57M pairs stop at 1e-5. A 1:N search over 100,000 people at FPIR 1% needs
1e-7. Below the table the lowest impostor scores are modelled instead of counted: by the Pickands-Balkema-de
Haan theorem the scores beyond a low enough threshold ``u`` follow a generalized Pareto distribution (GPD),
whatever the distribution of the rest. With ``p_u`` the share of impostor pairs at or below ``u`` and
``y = u - score`` the exceedance (scores are distances: lower is more alike), the FMR at ``u - y`` is
``p_u * (1 + xi * y / sigma) ** (-1 / xi)``; solving it for a target FMR gives the threshold.

The fit is maximum likelihood, by the profile likelihood in ``theta = xi / sigma`` (Grimshaw 1993): a grid
over ``theta`` refined by golden-section search, ``xi`` kept at or above -1 where the likelihood is bounded.
Its uncertainty is a bootstrap: the count below ``u`` redrawn (binomial) and the exceedances resampled,
refitted ``BOOTSTRAP`` times; the threshold's 95% interval is the 2.5th and 97.5th percentile of the refits'
thresholds. Pairs that share a photo are not independent, so the true interval is somewhat wider. numpy
only (scipy is not a dependency).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

METHOD = ("generalized Pareto tail, maximum likelihood (profile likelihood in xi/sigma), fitted to the"
          " lowest impostor scores; 95% interval from a bootstrap of the fit")
MIN_EXCEEDANCES = 100  # fewer scores below u give a fit too loose to state
BOOTSTRAP = 200
LEVEL = 0.95
_GOLDEN = (math.sqrt(5) - 1) / 2


def tail_size(n: int) -> int:
    """How many of ``n`` impostor scores form the tail: 3·sqrt(n), at most a fifth of them.

    The usual compromise (also PSIS's): enough exceedances for a stable fit, few enough that ``u`` lies in
    the tail where the GPD approximation holds. 4.57M pairs give 6,414 (``p_u`` 1.4e-3).
    """
    return min(n // 5, math.ceil(3 * math.sqrt(n)))


def _profile(theta: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(log-likelihood, xi) of the GPD maximised over sigma, at each ``theta`` (none of them 0)."""
    logs = np.log1p(np.outer(theta, y))
    xi = logs.mean(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ll = -len(y) * (np.log(xi / theta) + xi + 1)
    ll[~np.isfinite(ll) | (xi < -1)] = -np.inf
    return ll, xi


def gpd_mle(y: np.ndarray) -> tuple[float, float]:
    """(xi, sigma): the maximum-likelihood GPD of exceedances ``y`` (>= 0, not all equal)."""
    y = np.asarray(y, np.float64)
    top = float(y.max())
    if top <= 0:
        raise ValueError("the exceedances are all zero")
    # theta in (-1/top, inf): dense near the bounded end, log-spaced on both sides of the exponential (theta=0)
    scale = 1 / top
    grid = np.concatenate([-scale * (1 - np.logspace(-8, 0, 40, endpoint=False)),
                           scale * np.logspace(-6, 4, 60)])
    ll, _ = _profile(grid, y)
    exp_ll = -len(y) * (math.log(float(y.mean())) + 1)  # theta -> 0: the exponential
    i = int(np.argmax(ll))
    if exp_ll >= ll[i]:
        return 0.0, float(y.mean())
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    for _ in range(40):
        a, b = hi - _GOLDEN * (hi - lo), lo + _GOLDEN * (hi - lo)
        la, lb = _profile(np.array([a, b]), y)[0]
        lo, hi = (lo, b) if la >= lb else (a, hi)
    theta = (lo + hi) / 2
    ll_t, xi_t = _profile(np.array([theta]), y)
    if not ll_t[0] >= ll[i]:
        theta, xi = float(grid[i]), float(_profile(grid[i : i + 1], y)[1][0])
    else:
        xi = float(xi_t[0])
    return xi, xi / float(theta)


def _depth(p_u: float, fmr: np.ndarray | float, xi: np.ndarray | float, sigma: np.ndarray | float) -> np.ndarray:
    """The exceedance ``y`` at which the tail's FMR is ``fmr``: sigma/xi · ((p_u/fmr)^xi - 1)."""
    log_ratio = np.log(p_u / np.asarray(fmr, np.float64))
    xi = np.asarray(xi, np.float64)
    small = np.abs(xi) < 1e-9
    safe = np.where(small, 1.0, xi)
    return np.asarray(sigma) * np.where(small, log_ratio, np.expm1(safe * log_ratio) / safe)


def _share(p_u: np.ndarray | float, y: float, xi: np.ndarray | float, sigma: np.ndarray | float) -> np.ndarray:
    """The tail's FMR ``y`` > 0 below its threshold: p_u · (1 + xi·y/sigma)^(-1/xi), 0 past the tail's end when
    xi < 0 (the inverse of ``_depth``)."""
    xi, sigma = np.asarray(xi, np.float64), np.asarray(sigma, np.float64)
    small = np.abs(xi) < 1e-9
    safe = np.where(small, 1.0, xi)
    base = 1 + safe * y / sigma
    power = np.where(base > 0, np.maximum(base, 1e-300) ** (-1 / safe), 0.0)
    return np.asarray(p_u, np.float64) * np.where(small, np.exp(-y / sigma), power)


@dataclass(frozen=True)
class TailFit:
    """A GPD fitted to the impostor scores at or below ``u``; ``replicates`` are the bootstrap refits."""

    u: float
    p_u: float  # share of impostor pairs at or below u
    exceedances: int
    impostor_pairs: int
    xi: float
    sigma: float
    replicates: tuple[tuple[float, float, float], ...]  # (p_u, xi, sigma) of each bootstrap refit

    def threshold(self, fmr: float) -> float:
        """The score at which the fitted tail lets ``fmr`` of impostor pairs through."""
        return float(self.u - _depth(self.p_u, fmr, self.xi, self.sigma))

    def interval(self, fmr: float) -> tuple[float, float]:
        """The 95% bootstrap interval of ``threshold(fmr)``: (strict end, loose end)."""
        if not self.replicates:
            t = self.threshold(fmr)
            return t, t
        r = np.asarray(self.replicates, np.float64)
        t = self.u - _depth(r[:, 0], fmr, r[:, 1], r[:, 2])  # type: ignore[arg-type]
        lo, hi = np.quantile(t, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
        return float(lo), float(hi)

    def fmr_at(self, score: float) -> float:
        """The fitted tail's FMR at ``score`` (0 beyond the tail's end when xi < 0)."""
        y = self.u - score
        return self.p_u if y <= 0 else float(_share(self.p_u, y, self.xi, self.sigma))

    def fmr_upper(self, score: float) -> float:
        """The loose end of the 95% bootstrap interval of ``fmr_at(score)`` (the fit's own value without refits):
        an estimate that never flatters a match."""
        if not self.replicates:
            return self.fmr_at(score)
        r = np.asarray(self.replicates, np.float64)
        y = self.u - score
        fmrs = r[:, 0] if y <= 0 else _share(r[:, 0], y, r[:, 1], r[:, 2])
        return float(np.quantile(fmrs, (1 + LEVEL) / 2))

    def to_dict(self) -> dict[str, Any]:
        return {"method": METHOD, "u": round(self.u, 6), "p_u": self.p_u, "exceedances": self.exceedances,
                "impostor_pairs": self.impostor_pairs, "xi": round(self.xi, 6), "sigma": round(self.sigma, 8),
                "bootstrap": [[p, round(x, 6), round(s, 8)] for p, x, s in self.replicates]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TailFit:
        reps = tuple((float(p), float(x), float(s)) for p, x, s in data.get("bootstrap", []))
        return cls(float(data["u"]), float(data["p_u"]), int(data["exceedances"]), int(data["impostor_pairs"]),
                   float(data["xi"]), float(data["sigma"]), reps)


def fit_tail(impostor: np.ndarray, *, exceedances: int | None = None, bootstrap: int = BOOTSTRAP,
             seed: int = 0) -> TailFit | None:
    """The tail fit of these impostor scores, or None when they are too few (< ``MIN_EXCEEDANCES`` in the tail)."""
    scores = np.sort(np.asarray(impostor, np.float64))
    n = len(scores)
    k = tail_size(n) if exceedances is None else exceedances
    if k < MIN_EXCEEDANCES or k >= n:
        return None
    u = float(scores[k])
    y = u - scores[:k]
    if float(y.max()) <= 0:
        return None
    xi, sigma = gpd_mle(y)
    rng = np.random.default_rng(seed)
    reps = []
    for _ in range(bootstrap):
        k_b = max(int(rng.binomial(n, k / n)), MIN_EXCEEDANCES // 2)
        sample = rng.choice(y, size=k_b, replace=True)
        if float(sample.max()) <= 0:
            continue
        xb, sb = gpd_mle(sample)
        reps.append((k_b / n, xb, sb))
    return TailFit(u, k / n, k, n, xi, sigma, tuple(reps))
